"""Shared test settings: small thread counts, a private HOME and cache folder per session."""

from __future__ import annotations

import os

import pytest

# Keep tests fast and predictable on 2 cores, and keep NNI / caches out of the real HOME.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(autouse=True, scope="session")
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    home = tmp_path_factory.mktemp("home")
    os.environ["HOME"] = str(home)
    os.environ.setdefault("SRNAS_CACHE_DIR", str(home / ".cache" / "srnas"))
