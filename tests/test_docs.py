"""The project stands alone: the facts it relies on live in docs/reference.md, every citation
of it names a section that exists, and no file points to a document outside the repository."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "reference.md"
# Spelled in two parts so that this file does not mention the name it looks for.
OUTSIDE_DOC = "REFERENCE" + ".md"
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".cfg", ".html", ".json", ".csv", ""}


def _project_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
        files = [ROOT / line for line in out.splitlines() if line]
    except (OSError, subprocess.CalledProcessError):  # a source tree without git
        files = [p for p in ROOT.rglob("*") if ".venv" not in p.parts and ".git" not in p.parts]
    return [p for p in files if p.is_file() and p.suffix in TEXT_SUFFIXES]


def test_no_project_file_cites_a_document_outside_the_repository() -> None:
    offenders = [str(p.relative_to(ROOT)) for p in _project_files()
                 if OUTSIDE_DOC in p.read_text(encoding="utf-8", errors="replace")]
    assert offenders == []


def test_every_cited_reference_section_exists() -> None:
    headings = set(re.findall(r"^## (\d+b?)\. ", REFERENCE.read_text(encoding="utf-8"), flags=re.M))
    assert {"1", "2", "3", "4", "4b", "5", "6", "7"} <= headings
    cited: dict[str, set[str]] = {}
    for p in _project_files():
        text = p.read_text(encoding="utf-8", errors="replace")
        for m in re.finditer(r"reference\.md\)? sections? (\d+b?)(?: and (\d+b?))?", text):
            for section in filter(None, m.groups()):
                cited.setdefault(section, set()).add(str(p.relative_to(ROOT)))
    assert cited, "nothing cites docs/reference.md"
    missing = {s: sorted(files) for s, files in cited.items() if s not in headings}
    assert missing == {}


@pytest.mark.parametrize("fact", [
    "1,369,859", "316.25G", "37.99", "33.66", "4ace41d33c2384b97e6b320cd0afd6ba",
    "9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335", "3·10⁵", "bicubic skip",
])
def test_reference_holds_the_facts_the_code_pins(fact: str) -> None:
    assert fact in REFERENCE.read_text(encoding="utf-8")


def test_published_numbers_are_the_ones_on_record() -> None:
    from srnas.train.published import PUBLISHED_DIV2K, PUBLISHED_X2, PUBLISHED_X4

    text = REFERENCE.read_text(encoding="utf-8")
    for row in PUBLISHED_X2:
        line = next(ln for ln in text.splitlines() if ln.startswith(f"| {row.model} |"))
        assert all(f"{v:.2f}" in line for v in row.psnr.values()), row.model
    x4 = next(ln for ln in text.splitlines() if ln.startswith("x4:"))
    assert all(f"{v:.2f}" in x4 for row in PUBLISHED_X4 for v in row.psnr.values())
    assert all(f"{v:.2f}" in text for by in PUBLISHED_DIV2K.values() for v in by.values())


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_installs_the_base_package_only_and_shows_it(tmp_path: Path) -> None:
    def dry_run(target: str) -> str:
        return subprocess.run(["make", "-n", target, f"VENV={tmp_path / 'venv'}"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout

    demo = dry_run("demo")
    installs = [line for line in demo.splitlines() if " pip install" in line]
    assert any(line.endswith("-e .") for line in installs), demo
    assert ".[all]" not in demo and "[" not in "".join(installs)  # no extras for the demo
    assert not re.search(r"(^|\s)(-q|--quiet)(\s|$)", demo, flags=re.M), demo  # pip's progress stays visible
    assert demo.count("echo \">>> ") >= 3  # and each step says what it does
    assert '-e ".[all]"' in dry_run("test")


def _proxy_row(name: str) -> str:
    """The README's row of a proxy fidelity, as the code defines it."""
    from srnas.train.schedules import PROXY_FIDELITIES

    s = PROXY_FIDELITIES[name]
    if s.lr_policy == "cosine":
        lr = f"{s.lr:g}, annealed to {s.lr * s.lr_min_factor:g}"
    elif s.lr_milestones:
        lr = f"{s.lr:g}, x{s.lr_gamma:g} at {', '.join(f'{m:,}' for m in s.lr_milestones)}"
    else:
        lr = f"{s.lr:g}"
    images = "all images" if s.val_images is None else f"{s.val_images} image{'s' if s.val_images > 1 else ''}"
    return (f"| `{name}` | {s.updates:,} | {s.batch} x {s.patch} | {lr} | every {s.eval_every:,}, {images} | "
            f"{s.rungs_from():,} |")


def test_readme_proxy_table_is_the_code() -> None:
    from srnas.train.schedules import PROXY_FIDELITIES

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in PROXY_FIDELITIES:
        assert _proxy_row(name) in readme, _proxy_row(name)


def test_readme_lists_every_shipped_space() -> None:
    from srnas.space import available_spaces

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    synopsis = re.search(r"\[--space ([^\]]+)\]", readme)
    assert synopsis is not None
    assert set(synopsis.group(1).split("|")) == {*available_spaces(), "FILE"}


def test_the_version_is_stated_once_per_file_and_agrees() -> None:
    import srnas
    from srnas._version import __version__

    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1) == __version__ == srnas.__version__
