"""`srnas report` in a real browser (headless Chromium through the DevTools protocol, tests/browser.py).

A study with trials of every state (complete with sample images, pruned, infeasible the old and
the new way, failed, repeats, running, confirmed, retrained) is reported; the page, opened with
the network off, loads with no console error and no failed request, asks for nothing outside the
file, draws every figure it promises with every trace, and decodes every embedded sample image at
its size. A report broken on purpose (a figure's data invalid, an image corrupt or gone) is caught.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.trial import TrialState, create_trial

from srnas.arch.config import ArchConfig
from srnas.results.report import DEFAULT_SAMPLES, write_report
from srnas.results.report_figures import FIGURE_TITLES

sys.path.insert(0, str(Path(__file__).parent))
from browser import Page, pixel_digest  # noqa: E402
from test_report import build_study  # noqa: E402  (the hand-built study helper lives there)

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.browser

#: (width, height) of a sample strip: bicubic | SR | HR of a 48 px LR crop at x2, 4 px gaps
#: (`srnas.search.objective`'s ``_sample_image``).
STRIP_SIZE = (3 * 96 + 2 * 4, 96)
#: URL schemes a self-contained file may use: itself, its inline images, nothing else.
OFFLINE_SCHEMES = ("file:", "data:", "about:", "blob:")
#: The report, the figures it promises and the images it must show (fixture `reported`).
Reported = tuple[Path, dict[str, list[int]], dict[str, tuple[int, int, int]]]


def _strip_png(seed: int, size: tuple[int, int] = STRIP_SIZE) -> bytes:
    from PIL import Image

    width, height = size
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def every_state_study(root: Path, name: str = "every-state") -> optuna.Study:
    """A study in ``root/<name>/`` holding trials of every state `srnas search` and `srnas confirm`
    leave: complete ones with an LR | SR | HR sample, one pruned by the pruner, one failed, two
    infeasible (COMPLETE with their constraint values), a repeat (FAIL), a running one; the best
    two confirmed and the best three retrained."""
    source = build_study(root / "source", name, n_complete=6)
    folder = root / name
    store = FileSystemArtifactStore(str(folder / "artifacts"))
    (folder / "artifacts").mkdir(parents=True)
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{folder / 'study.db'}", direction="maximize")
    for key, value in source.user_attrs.items():
        study.set_user_attr(key, value)
    for t in source.trials:
        attrs = dict(t.user_attrs)
        if t.state == TrialState.COMPLETE and "infeasible" not in attrs:  # never trained: no sample
            png = folder / f"sample-{t.number}.png"
            png.write_bytes(_strip_png(t.number))
            attrs["sample_artifact"] = upload_artifact(artifact_store=store, file_path=str(png), study_or_trial=study,
                                                       mimetype="image/png")
        study.add_trial(create_trial(state=t.state, values=t.values, params=t.params, distributions=t.distributions,
                                     user_attrs=attrs, system_attrs=t.system_attrs,
                                     intermediate_values=t.intermediate_values))
    best = sorted((t for t in study.trials if t.state == TrialState.COMPLETE), key=lambda t: -t.values[0])
    # A repeat (a proposal of a known architecture, not trained again), as srnas records it.
    study.add_trial(create_trial(state=TrialState.FAIL, params=best[0].params, distributions=best[0].distributions,
                                 user_attrs={**best[0].user_attrs, "reused_from": best[0].number}))
    # Infeasible as srnas records it now: COMPLETE, placeholder value, constraint values set.
    over = {k: v for k, v in best[2].user_attrs.items() if k not in ("psnr", "psnr_curve", "sample_artifact")}
    study.add_trial(create_trial(state=TrialState.COMPLETE, values=[0.0], params=best[2].params,
                                 distributions=best[2].distributions, system_attrs={"constraints": [1000.0]},
                                 user_attrs={**over, "arch_id": "over-the-cap", "infeasible": "max_params exceeded by 1,000"}))
    study.add_trial(create_trial(state=TrialState.RUNNING, params=best[3].params, distributions=best[3].distributions,
                                 user_attrs={"arch_id": "in-training"}))
    for t, gap in ((best[0], 0.31), (best[1], 0.12)):
        psnr = t.values[0] - gap
        study.set_user_attr(f"confirmed:{t.user_attrs['arch_id']}", {
            "trial": t.number, "psnr": psnr, "sd": 0.05, "seeds": [1, 2], "runs": [psnr - 0.05, psnr + 0.05],
            "on": "held-out", "images": ["china", "flower"], "selection_images": ["coffee"],
            "selection_psnr": t.values[0], "gap": gap})
    for t, psnr in zip(best[:3], (34.0, 33.8, 33.5)):
        retrained = folder / "retrain" / t.user_attrs["arch_id"]
        retrained.mkdir(parents=True)
        (retrained / "config.yaml").write_text(ArchConfig.from_dict(t.user_attrs["config"]).to_yaml())
        (retrained / "metrics.json").write_text(json.dumps({
            "arch_id": t.user_attrs["arch_id"], "bicubic_psnr": 33.66, "updates": 300000,
            "final": {"psnr": psnr, "ssim": 0.93, "protocol": "benchmark", "scale": 2, "val_set": "Set5"},
            "schedule": {"name": "paper", "fidelity_id": "u300000"}}))
    return study


def promised_marks(fig: Any) -> list[int]:
    """What each trace of a plotly figure must draw: its points (markers, bars, a box's points)
    with finite coordinates, or 1 for a line-only trace (its line)."""
    def valid(v: Any) -> bool:
        return v is not None and (not isinstance(v, (int, float)) or math.isfinite(v))

    marks = []
    for trace in fig.data:
        if trace.type == "scatter" and "markers" not in (trace.mode or ""):
            marks.append(1)
            continue
        ys = list(trace.y) if trace.y is not None else []
        xs = list(trace.x) if trace.x is not None else [0] * len(ys)
        marks.append(sum(1 for x, y in zip(xs, ys) if valid(x) and valid(y)))
    return marks


#: Per plotly figure on the page: drawn or not, its title, and per rendered trace its points
#: (markers, bars, box points) and its lines with a shape.
_FIGURES_JS = """
Array.from(document.querySelectorAll('div.plotly-graph-div')).map(div => ({
  id: div.id,
  drawn: div.classList.contains('js-plotly-plot') && div.querySelector('svg.main-svg') !== null,
  title: (div.querySelector('.gtitle') || {}).textContent || '',
  traces: Array.from(div.querySelectorAll('g.trace')).map(g => ({
    points: g.querySelectorAll('path.point, g.point').length,
    lines: Array.from(g.querySelectorAll('path.js-line')).filter(p => (p.getAttribute('d') || '').length > 2).length}))
}))
"""

def check_report(page: Page, figures: dict[str, list[int]], images: dict[str, tuple[int, int, int]]) -> list[str]:
    """What is wrong with the report open in ``page``: console errors, failed requests, requests
    that leave the file, a promised figure (``figures``: element id -> `promised_marks`) absent or
    not drawn, a trace missing or drawn with fewer or more marks; a promised image (``images``:
    "trial N" -> width, height and `pixel_digest` of its sample) absent, not decoding, of another
    size or showing other pixels, or an image not promised. An empty list: nothing."""
    wrong = list(page.problems())
    wrong += [f"request outside the file: {url[:120]}" for url in page.requests if not url.startswith(OFFLINE_SCHEMES)]
    drawn = {f["id"]: f for f in page.evaluate(_FIGURES_JS)}
    for div_id in sorted(set(drawn) - set(figures)):
        wrong.append(f"figure {div_id}: on the page but not promised")
    for div_id, marks in figures.items():
        shown = drawn.get(div_id)
        if shown is None:
            wrong.append(f"figure {div_id}: promised, not on the page")
            continue
        if not shown["drawn"]:
            wrong.append(f"figure {div_id}: not drawn")
            continue
        if len(shown["traces"]) != len(marks):
            wrong.append(f"figure {div_id} ({shown['title']!r}): {len(shown['traces'])} traces drawn of {len(marks)}")
            continue
        for i, (trace, expected) in enumerate(zip(shown["traces"], marks)):
            got = trace["points"] or trace["lines"]
            if got != expected:
                wrong.append(f"figure {div_id} ({shown['title']!r}) trace {i}: {got} marks drawn of {expected}")
    shown = {}
    for img in page.images():
        name = img["alt"].split(":")[0]
        shown[name] = img
        if name not in images:
            wrong.append(f"image {img['alt']!r}: not promised")
        elif not img["ok"]:
            wrong.append(f"image {img['alt']!r} ({img['src']}...) does not decode: {img['error']}")
        elif (img["width"], img["height"]) != images[name][:2]:
            wrong.append(f"image {img['alt']!r}: {img['width']}x{img['height']}, expected {images[name][0]}x{images[name][1]}")
        elif img["digest"] != images[name][2]:
            wrong.append(f"image {img['alt']!r}: other pixels than the trial's sample")
    wrong += [f"image of {name}: promised, not on the page" for name in images if name not in shown]
    return wrong


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> Reported:
    """The every-state study's report: (HTML file, element id -> `promised_marks` of each figure,
    "trial N" -> (width, height, `pixel_digest`) of each sample strip it must show: one per
    complete architecture, as there are no more than the report's default number of samples)."""
    root = tmp_path_factory.mktemp("trials")
    study = every_state_study(root)
    result = write_report(study.study_name, root=root, static_images=False)
    figures = {div_id: promised_marks(fig) for div_id, fig in result.figures.items()}
    originals = [t for t in study.trials if t.state == TrialState.COMPLETE and "sample_artifact" in t.user_attrs
                 and "reused_from" not in t.user_attrs]
    assert len(originals) <= DEFAULT_SAMPLES
    images = {f"trial {t.number}": (*STRIP_SIZE, pixel_digest(_strip_png(t.number))) for t in originals}
    return result.html, figures, images


def test_report_draws_every_figure_and_image_offline(reported: Reported,
                                                      open_page: Callable[..., Page]) -> None:
    html_file, figures, images = reported
    # Every figure the report knows of, the retrained scatter included: the study exercises them all.
    assert set(figures) == set(FIGURE_TITLES)
    page = open_page("report", html_file.as_uri(), offline=True)
    wrong = check_report(page, figures, images)
    assert not wrong, "\n".join(wrong)
    assert page.evaluate("document.querySelectorAll('.js-plotly-plot').length") == len(FIGURE_TITLES)
    # The summary counts every state the study holds.
    summary = page.evaluate("document.getElementById('summary').innerText")
    for words in ("repeated proposals", "infeasible", "failed", "running", "confirmed"):
        assert words in summary, words
    # The best-trials table sorts when a header is clicked (the inline sorter runs).
    order = page.evaluate("""(() => {
      const th = Array.from(document.querySelectorAll('#table-best-trials th')).find(h => h.textContent === '#');
      th.click(); const asc = Array.from(document.querySelectorAll('#table-best-trials tbody tr'))
        .map(r => parseInt(r.cells[0].innerText));
      th.click(); const desc = Array.from(document.querySelectorAll('#table-best-trials tbody tr'))
        .map(r => parseInt(r.cells[0].innerText));
      return [asc, desc]; })()""")
    assert order[0] == sorted(order[0]) and order[1] == sorted(order[0], reverse=True) and len(order[0]) > 1


def _edit_figure(text: str, div_id: str, edit: Callable[[list[dict[str, Any]]], None]) -> str:
    """The report with the data of the figure ``div_id`` changed in place by ``edit``."""
    start = text.index("[", text.index(f'"{div_id}",', text.index("Plotly.newPlot(")))
    data, end = json.JSONDecoder().raw_decode(text, start)
    edit(data)
    return text[:start] + json.dumps(data) + text[end:]


def _no_arrays(data: list[dict[str, Any]]) -> None:
    data[0]["x"] = data[0]["y"] = "not numbers"  # plotly drops the trace


def _null_ys(data: list[dict[str, Any]]) -> None:
    data[0]["y"] = [None] * len(data[0]["y"])  # valid JSON, no point to draw


def _break_json(text: str, div_id: str) -> str:
    """The figure's data cut off mid-way (a script that does not parse: nothing is drawn)."""
    start = text.index(f'"{div_id}",', text.index("Plotly.newPlot("))
    return text[:start] + f'"{div_id}", [{{"x": [1, 2' + text[text.index("</script>", start):]


def test_broken_report_is_caught(reported: Reported, open_page: Callable[..., Page]) -> None:
    """The checker the test above relies on does fail: a figure whose data is no array, one whose
    points are all null, one whose script does not parse, a corrupt image, one of the wrong size,
    one cut short (the browser still decodes what it has), one whose file is gone and one removed
    from the page are each named."""
    html_file, figures, images = reported
    text = html_file.read_text(encoding="utf-8")
    broken = _edit_figure(text, "fig-history", _no_arrays)
    broken = _edit_figure(broken, "fig-curves", _null_ys)
    broken = _break_json(broken, "fig-res-scale")
    embedded = re.findall(r"<img src='data:image/png;base64,([A-Za-z0-9+/=]+)' alt='(trial \d+)", broken)
    assert len(embedded) == len(images) >= 5
    (corrupt, a), (resized, b), (short, c), (gone, d), (removed, e) = embedded[:5]
    broken = broken.replace(corrupt, base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 64).decode())
    broken = broken.replace(resized, base64.b64encode(_strip_png(0, (32, 16))).decode())
    broken = broken.replace(short, base64.b64encode(base64.b64decode(short)[:4000]).decode())
    broken = broken.replace(f"data:image/png;base64,{gone}", "sample-gone.png")
    broken = re.sub(f"<img src='data:image/png;base64,{re.escape(removed)}'[^>]*>", "", broken)
    bad_file = html_file.with_name("broken.html")
    bad_file.write_text(broken, encoding="utf-8")
    page = open_page("broken-report", bad_file.as_uri(), offline=True)
    wrong = check_report(page, figures, images)
    joined = "\n".join(wrong)
    assert "figure fig-history ('Optimisation history'): 2 traces drawn of 3" in joined, joined
    assert re.search(r"figure fig-curves \('Intermediate PSNR curves'\) trace 0: 0 marks drawn of [1-9]", joined), joined
    assert "figure fig-res-scale: not drawn" in joined and "uncaught: SyntaxError" in joined, joined
    assert re.search(f"image '{a}: .*' \\(data:image/png;base64,.*\\) does not decode", joined), joined
    assert re.search(f"image '{b}: .*': 32x16, expected 296x96", joined), joined
    assert re.search(f"image '{c}: .*': other pixels than the trial's sample", joined), joined
    assert re.search(r"request failed: file://.*/sample-gone.png: net::ERR_FILE_NOT_FOUND", joined), joined
    assert re.search(f"image '{d}: .*' \\(sample-gone.png...\\) does not decode", joined), joined
    assert f"image of {e}: promised, not on the page" in joined, joined
    # What was not broken is not named: the other figures and images pass.
    untouched = set(figures) - {"fig-history", "fig-curves", "fig-res-scale"}
    assert not [w for w in wrong if any(re.match(f"figure {d}[ :]", w) for d in untouched)]
    assert not [w for w in wrong if any(f"'{n}:" in w for n, _ in embedded[5:])]
