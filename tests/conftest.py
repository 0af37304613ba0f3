"""Shared test settings (small thread counts, a private HOME and cache folder per session) and
fixtures several test files use: the registries to parametrise over (timm's habit: every
registered block type and every preset, never a hand list) and a private studies folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from srnas.arch.presets import PRESETS
from srnas.arch.registry import block_names

# Keep tests fast and predictable on 2 cores, and keep NNI / caches out of the real HOME.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(autouse=True, scope="session")
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    home = tmp_path_factory.mktemp("home")
    os.environ["HOME"] = str(home)
    os.environ.setdefault("SRNAS_CACHE_DIR", str(home / ".cache" / "srnas"))


@pytest.fixture(params=block_names())
def block_name(request: pytest.FixtureRequest) -> str:
    """Each registered block type in turn (`srnas.arch.registry.BLOCKS`)."""
    return request.param


@pytest.fixture(params=list(PRESETS))
def preset_name(request: pytest.FixtureRequest) -> str:
    """Each registered preset in turn (`srnas.arch.presets.PRESETS`)."""
    return request.param


@pytest.fixture()
def trials_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty studies folder, made the default through ``SRNAS_TRIALS_DIR``."""
    root = tmp_path / "trials"
    monkeypatch.setenv("SRNAS_TRIALS_DIR", str(root))
    return root


@pytest.fixture()
def postgres_url() -> str:
    """The PostgreSQL storage URL of the shared-storage tests (.ci/run starts the server and sets
    ``SRNAS_TEST_POSTGRES_URL``); the test is skipped without it."""
    url = os.environ.get("SRNAS_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("SRNAS_TEST_POSTGRES_URL not set (.ci/run starts a PostgreSQL server and sets it)")
    return url
