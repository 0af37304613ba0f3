"""Shared test settings (small thread counts, a private HOME and cache folder per session) and
fixtures several test files use: the registries to parametrise over (timm's habit: every
registered block type and every preset, never a hand list) and a private studies folder."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

from srnas.arch.presets import PRESETS
from srnas.arch.registry import block_names
from srnas.train.device import cpu_threads

if TYPE_CHECKING:
    from browser import Chromium, Page

#: Fixtures that stand for a server every worker shares: the tests that use them run one after
#: another on one xdist worker (`--dist loadgroup`), because one of them stops PostgreSQL mid-search
#: and the SLURM tests queue on a one-node cluster.
SHARED_SERVERS = ("postgres_url", "slurm")


def pytest_configure(config: pytest.Config) -> None:
    """Keep tests fast and predictable on 2 cores: one torch thread per process in a pytest-xdist
    worker (`make test` runs 2 of them), 2 in a lone pytest. Threads beyond the cores spin while
    they wait: 2 workers of 2 threads each made the suite's small convolutions up to 10x slower.
    srnas's trainings and every `srnas` subprocess take the count from OMP_NUM_THREADS too
    (`srnas.train.device.cpu_threads`)."""
    workers = getattr(config.option, "numprocesses", None)  # -n of pytest-xdist; its workers inherit
    several = hasattr(config, "workerinput") or workers not in (None, 0, "0")
    os.environ.setdefault("OMP_NUM_THREADS", "1" if several else "2")
    torch.set_num_threads(cpu_threads())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(name in getattr(item, "fixturenames", ()) for name in SHARED_SERVERS):
            item.add_marker(pytest.mark.xdist_group("shared-servers"))


#: Nets of 1-2 blocks and 4-8 channels (1.3K-5K parameters, 36 configs; the preset is the
#: smallest): a proxy trial costs a fraction of one in the tiny space (its preset has 122K
#: parameters). For the tests whose subject is processes, storages, output or bookkeeping, not nets.
SMALL_SPACE = """\
name: small
family: edsr
scales: [2]
parameters:
  n_resblocks: [1, 2]
  n_feats: [4, 6, 8]
  res_scale: [0.1, 0.5, 1.0]
  global_skip: [none, bicubic]
presets:
  - {name: small-default, n_resblocks: 1, n_feats: 4, res_scale: 1.0, global_skip: bicubic}
"""


@pytest.fixture(scope="session")
def small_space(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A space file of `SMALL_SPACE` (pass it as ``--space FILE`` or ``space=``)."""
    path = tmp_path_factory.mktemp("space") / "small.yaml"
    path.write_text(SMALL_SPACE)
    return path


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


# ---- the browser tests (tests/browser.py: headless Chromium through the DevTools protocol) ----


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    """One headless Chromium for the session's browser tests; they are skipped, with this
    reason in the summary, where no Chromium is installed."""
    from browser import Chromium, find_chromium

    from srnas.results.report_images import CHROMIUM_NAMES

    executable = find_chromium()
    if executable is None:
        pytest.skip(f"no Chromium on PATH ({', '.join(CHROMIUM_NAMES)}): `make test` and .ci/run install "
                    "Debian's chromium where apt-get can run; else apt-get install chromium")
    with Chromium(executable, tmp_path_factory.mktemp("chromium")) as browser:
        yield browser


@pytest.fixture()
def open_page(chromium: Chromium, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Page]]:
    """``open_page(label, url, offline=False)``: a new tab of `chromium` at ``url``, loaded. When
    the test ends each page is screenshotted to ``tmp_path/<label>.png``, and a failed test's
    report names the files (`pytest_runtest_makereport`)."""
    pages: list[tuple[str, Page]] = []

    def open_(label: str, url: str, *, offline: bool = False) -> Page:
        page = chromium.new_page(offline=offline)
        pages.append((label, page))
        page.goto(url)
        return page

    request.node.browser_pages = (pages, tmp_path)
    yield open_
    for _, page in pages:
        page.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """After a browser test's body: a screenshot of each page it opened, named in the report of a failure."""
    outcome = yield
    report = outcome.get_result()
    opened = getattr(item, "browser_pages", None)
    if report.when != "call" or not opened:
        return
    pages, folder = opened
    shots = []
    for label, page in pages:
        try:
            shots.append(str(page.screenshot(folder / f"{label}.png")))
        except Exception as exc:  # a dead browser must not hide the test's own failure
            shots.append(f"{label}: no screenshot ({type(exc).__name__}: {exc})")
    if report.failed:
        report.sections.append(("browser screenshots (the pages as the test left them)", "\n".join(shots)))
