"""`write_report`: one self-contained, offline HTML file about a study, plus ``trials.csv``.

The HTML embeds plotly.js once, inline (no external script URLs), and holds these parts, each
with a stable element id that tests and users can link to:

======================  ==========================================================
id                      content
======================  ==========================================================
``summary``             study settings, trial counts, best trial
``fig-history``         Optimisation history (PSNR per trial, best so far)
``fig-pareto-params``   Pareto front: PSNR vs parameters
``fig-pareto-macs``     Pareto front: PSNR vs Mult-Adds
``fig-importance``      Parameter importances (res_scale highlighted)
``fig-res-scale``       PSNR by res_scale value (docs/reference.md section 4b)
``fig-curves``          Intermediate PSNR curves
``table-best-trials``   Best trials (sortable: click a column header), counts in K/M/G
``samples``             LR | SR | HR strips of the best trials, embedded as data: URIs
``retrained``           Retrained results (from ``trials/<study>/retrain/``)
``fig-proxy-vs-retrained``  Proxy vs retrained PSNR with Kendall tau (>= 2 retrained)
``static-export``       which static PNGs were written, or why none were
======================  ==========================================================

Published models are drawn on the Pareto plots only when their numbers were measured the same
way as the study's (same protocol, scale and validation set); otherwise the report says why not.

The figures are built in `srnas.results.report_figures`, the static PNGs written by
`srnas.results.report_images`.

>>> from srnas.results.report import COLUMN_LABELS
>>> COLUMN_LABELS["psnr"]
'PSNR (dB)'
"""

from __future__ import annotations

import base64
import dataclasses
import html
import math
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plotly.offline import get_plotlyjs

from srnas._version import __version__
from srnas.artifacts import artifact_location, is_s3_url, open_artifact_store
from srnas.errors import WriteError
from srnas.fileio import atomic_write_text
from srnas.outcomes import confirmed_records, count_trials, results_of_record, study_counts
from srnas.results.frame import complete_trials, study_frame, trial_config
from srnas.results.report_figures import (
    _curves, _figure_html, _history, _importance_figure, _note, _pareto, _res_scale_figure, _retrained, _style,
    published_points,
)
from srnas.results.report_images import _static_pngs
from srnas.studies import StudyHome
from srnas.train.published import BENCHMARK_SETS, PUBLISHED_DIV2K, PUBLISHED_X2, PUBLISHED_X4
from srnas.units import human_count, human_duration

if TYPE_CHECKING:
    import optuna
    import pandas as pd

#: Columns of the best-trials table, in order (``schedule``: the proxy fidelity by name).
TABLE_COLUMNS = ("number", "psnr", "confirmed_psnr", "confirmed_sd", "confirmed_gap", "ssim", "bicubic_psnr",
                 "params", "mult_adds", "activation_mb",
                 "describe", "arch_id", "protocol", "schedule", "wall_time_s", "repeats", "preset")
#: What the best-trials table calls its columns.
COLUMN_LABELS = {"number": "#", "psnr": "PSNR (dB)", "confirmed_psnr": "confirmed PSNR, held out (dB)",
                 "confirmed_sd": "confirmed sd (dB)", "confirmed_gap": "winner's-curse gap (dB)", "ssim": "SSIM",
                 "bicubic_psnr": "bicubic (dB)",
                 "params": "params", "mult_adds": "Mult-Adds (720p)", "activation_mb": "train activations",
                 "describe": "architecture", "arch_id": "arch_id", "protocol": "protocol", "schedule": "proxy",
                 "wall_time_s": "time", "repeats": "repeated proposals", "preset": "preset"}
#: LR | SR | HR strips embedded by default (the best trials with a sample image).
DEFAULT_SAMPLES = 6
_MAX_SAMPLE_BYTES = 4 << 20


@dataclasses.dataclass
class ReportResult:
    """What `write_report` wrote, the notes it printed into the HTML, and the plotly figures
    (element id -> ``plotly.graph_objects.Figure``, e.g. to show them in a notebook)."""

    html: Path
    csv: Path
    pngs: list[Path]
    notes: list[str]
    n_trials: int
    n_trained: int
    figures: dict[str, Any]


# ---- published reference points ------------------------------------------------------------


def _published_table_html() -> str:
    head = "".join(f"<th>{s}</th>" for s in BENCHMARK_SETS)
    rows = []
    for row in (*PUBLISHED_X2, *PUBLISHED_X4):
        cells = "".join(f"<td>{row.psnr.get(s, '')}</td>" for s in BENCHMARK_SETS)
        rows.append(f"<tr><td>{html.escape(row.model)}</td><td>x{row.scale}</td><td>{row.params}</td>"
                    f"<td>{row.mult_adds}</td>{cells}</tr>")
    div2k = "; ".join(f"{m} " + "/".join(f"{v:.2f}" for v in by.values()) for m, by in PUBLISHED_DIV2K.items())
    return ("<details><summary>Published numbers (docs/reference.md section 3), for context</summary>"
            "<table class='plain'><tr><th>model</th><th>scale</th><th>params</th><th>Mult-Adds</th>"
            f"{head}</tr>{''.join(rows)}</table>"
            "<p>PSNR in dB, Y channel, crop = scale, no self-ensemble. DIV2K validation (RGB, crop scale+6, "
            f"x2/x3/x4): {html.escape(div2k)}.</p></details>")


# ---- helpers ---------------------------------------------------------------------------------


def _study_protocol(frame: "pd.DataFrame") -> str | None:
    protocols = sorted({str(p) for p in frame.get("protocol", []) if isinstance(p, str) and p})
    return protocols[0] if len(protocols) == 1 else ("/".join(protocols) if protocols else None)


def _study_val_set(protocol: str | None) -> str | None:
    """The validation set the proxy scores were measured on, when it is a published one.

    Searches validate on the data set's held-out part (demo: coffee; a folder: every 10th
    image); only DIV2K roots validate on a published set (0801-0900, "div2k" protocol).
    """
    return "DIV2K" if protocol == "div2k" else None


# ---- tables and samples ----------------------------------------------------------------------


_SORTER_JS = """
function srnasSort(th) {
  const table = th.closest('table'), body = table.tBodies[0], idx = th.cellIndex;
  const asc = th.dataset.order !== 'asc';
  table.querySelectorAll('th').forEach(h => delete h.dataset.order);
  th.dataset.order = asc ? 'asc' : 'desc';
  const key = r => { const c = r.cells[idx]; if (c.dataset.v !== undefined) return parseFloat(c.dataset.v);
                     const t = c.innerText.trim(); const n = parseFloat(t.replace(/,/g, ''));
                     return isNaN(n) || !/^[-+0-9.,eE]+$/.test(t) ? t.toLowerCase() : n; };
  const rows = Array.from(body.rows).sort((a, b) => { const x = key(a), y = key(b);
    if (typeof x === typeof y) return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
    return typeof x === 'number' ? -1 : 1; });
  rows.forEach(r => body.appendChild(r));
}
document.addEventListener('DOMContentLoaded', () => {
  document.querySelectorAll('table.sortable th').forEach(th => th.addEventListener('click', () => srnasSort(th)));
});
"""


def _cell(column: str, value: Any) -> tuple[str, Any]:
    """(text shown, value sorted by) of one best-trials cell: counts in K/M/G, times in s/m/h."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        # Proxies rank by PSNR; SSIM is scored by full trainings (retrain, eval).
        return ("not scored", None) if column == "ssim" else ("-", None)
    if column in ("params", "mult_adds"):
        return human_count(float(value)), float(value)
    if column == "activation_mb":
        return f"{float(value):,.0f} MB", float(value)
    if column == "wall_time_s":
        return human_duration(float(value)), float(value)
    if column in ("repeats", "number"):
        return f"{int(value)}", int(value)
    if column == "confirmed_gap":
        return f"{float(value):+.3f}", float(value)
    if column == "ssim" or (column.startswith("value_") and isinstance(value, float) and abs(value) < 10):
        return f"{float(value):.4f}", float(value)
    if column.startswith("value_"):
        return human_count(float(value)), float(value)
    if isinstance(value, float):
        return f"{value:.3f}", value
    return str(value), None


def _best_table(frame: "pd.DataFrame", top: int) -> str:
    done = frame[(frame["state"] == "COMPLETE") & frame["psnr"].notna()] if not frame.empty else frame
    if done.empty:
        return _note("No complete trials yet.", "table-best-trials")
    done = done.copy()
    # Repeats (FAIL, ``reused_from``: proposals of a known architecture) are counted in its row.
    if "reused_from" in done and "arch_id" in done:
        repeats = frame[frame["reused_from"].notna()].groupby("arch_id").size()
        done = done[done["reused_from"].isna()]
        done["repeats"] = done["arch_id"].map(repeats).fillna(0).astype(int)
        done = done.drop(columns="reused_from")
    cols = [c for c in TABLE_COLUMNS
            if c in done.columns and (not c.startswith("confirmed") or done[c].notna().any())]
    extra = [c for c in done.columns if c.startswith("value_")]
    # Confirmed architectures first, by their confirmed score (`srnas.outcomes.results_of_record`).
    if "confirmed_psnr" in done:
        done["_unconfirmed"] = done["confirmed_psnr"].isna()
        best = done.sort_values(["_unconfirmed", "confirmed_psnr", "psnr", "number"],
                                ascending=[True, False, False, True]).head(top)
        best = best.drop(columns="_unconfirmed")
    else:
        best = done.sort_values(["psnr", "number"], ascending=[False, True]).head(top)
    order = cols[:2] + extra + cols[2:]
    head = "".join(f"<th>{html.escape(COLUMN_LABELS.get(c, c.removeprefix('value_')))}</th>" for c in order)
    rows = []
    for _, row in best.iterrows():
        cells = []
        for c in order:
            text, key = _cell(c, row[c])
            sort = "" if key is None else f" data-v='{key}'"
            cells.append(f"<td{sort}>{html.escape(text)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (f"<table id='table-best-trials' class='sortable'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _samples(study: "optuna.Study", artifacts: str, k: int) -> str:
    """The LR | SR | HR strips of the best ``k`` architectures that have one, embedded as
    data: URIs (the file stays self-contained); a note when there are none. ``artifacts``: the
    study's store (a folder or ``s3://bucket/prefix``, `srnas.artifacts.artifact_location`)."""
    if k <= 0:
        return _note("Sample images not embedded (--samples 0).", "samples-note")
    store = open_artifact_store(artifacts) if is_s3_url(artifacts) or Path(artifacts).is_dir() else None
    figures: list[str] = []
    seen: set[Any] = set()
    missing: list[str] = []
    for t in complete_trials(study):
        if len(figures) >= k:
            break
        artifact = t.user_attrs.get("sample_artifact")
        arch = t.user_attrs.get("arch_id")
        if t.user_attrs.get("sample_missing"):  # the store was down when the trial finished
            missing.append(f"#{t.number} (not stored: {t.user_attrs['sample_missing'][:120]})")
            continue
        # The id comes from the storage: only a plain id may name a file in the store.
        if store is None or arch in seen or not isinstance(artifact, str) or not re.fullmatch(r"[A-Za-z0-9-]{1,64}", artifact):
            continue
        try:
            with store.open_reader(artifact) as reader:
                data = reader.read(_MAX_SAMPLE_BYTES + 1)
        except Exception as exc:  # removed or unreadable artifact: the report goes on without it, and says so
            missing.append(f"#{t.number} (unreadable in {artifacts}: {type(exc).__name__})")
            continue
        if not data.startswith(b"\x89PNG\r\n\x1a\n") or len(data) > _MAX_SAMPLE_BYTES:
            continue
        seen.add(arch)
        cfg = trial_config(t)
        a = t.user_attrs
        caption = (f"#{t.number}: {t.values[0]:.2f} dB (bicubic {a.get('bicubic_psnr', math.nan):.2f} dB), "
                   f"{human_count(a.get('params'))} params, {human_count(a.get('mult_adds'))} Mult-Adds, "
                   f"{cfg.describe() if cfg else '-'}")
        uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        figures.append(f"<figure class='sample'><img src='{uri}' alt='trial {t.number}: bicubic | SR | HR'>"
                       f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    gone = _note(f"Sample images missing: {', '.join(missing)}.", "samples-missing") if missing else ""
    if not figures:
        return gone + _note("No sample images: trials trained by srnas search store an LR | SR | HR strip in "
                            f"{artifacts}; none was found for the complete trials.", "samples-note")
    return ("<p>The most detailed part of the first validation image, left to right: bicubic upscaling of the LR "
            "input, the trial's SR output, the HR original (each shown at 2x, pixels kept sharp).</p>"
            f"<div id='samples'>{''.join(figures)}</div>" + gone)


# ---- the report ------------------------------------------------------------------------------


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.5em 0.8em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 3px 6px; text-align: right; }
th { background: #f4f4f4; } table.sortable th { cursor: pointer; }
table.sortable th[data-order=asc]::after { content: " \\25B2"; } table.sortable th[data-order=desc]::after { content: " \\25BC"; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 12px; } dt { font-weight: bold; }
#samples { display: flex; flex-wrap: wrap; gap: 12px; }
figure.sample { margin: 0; } figure.sample img { width: 592px; image-rendering: pixelated; border: 1px solid #ddd; }
figure.sample figcaption { font-size: 0.85em; max-width: 592px; }
"""


def html_document(title: str, body: str) -> str:
    """A complete offline HTML page: plotly.js inline once, the table sorter, ``body``."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_CSS}</style>
<script type="text/javascript">{get_plotlyjs()}</script>
<script type="text/javascript">{_SORTER_JS}</script>
</head><body>
{body}
</body></html>
"""


def _report_target(out: str | Path | None, default: Path) -> Path:
    """The HTML file to write (``out`` may be a folder, or end with ``/``: ``out/report.html``), its folder
    created; a path that cannot be a file is one `WriteError` line naming it."""
    target = Path(out) if out is not None else default
    if target.is_dir() or str(out or "").endswith(("/", os.sep)):  # "-o DIR/": a folder, even a new one
        target = target / default.name
    folder = target.parent
    blocking = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise WriteError(f"{target}: cannot write the report there: {blocking} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteError(f"{target}: cannot create the folder {folder} ({exc.strerror or exc})") from None
    return target


def _scored_images(study: "optuna.Study", schedule: dict[str, Any]) -> str:
    """How many validation images the trials were scored on: what they recorded (a set may
    hold fewer images than the schedule's ``val_images``), else what the schedule asks."""
    scored = {t.user_attrs["val_images"] for t in study.get_trials(deepcopy=False)
              if isinstance(t.user_attrs.get("val_images"), int)}
    if scored:
        return "/".join(str(n) for n in sorted(scored))
    return str(schedule.get("val_images") or "all")


def _trial_counts(study: "optuna.Study") -> str:
    """The summary's trial line, with the counts every command uses (`srnas.outcomes`)."""
    trials = study.get_trials(deepcopy=False)
    c = count_trials(trials)
    parts = [f"{len(trials)} trials: {c.finished} distinct architectures trained "
             f"({len(results_of_record(trials))} complete, {c.pruned} pruned)"]
    for n, what in ((c.repeats, "repeated proposals (not trained again)"), (c.infeasible, "infeasible (never trained)"),
                    (c.failed, "failed"), (c.running, "running")):
        if n:
            parts.append(f"{n} {what}")
    return ", ".join(parts)


def _confirmed_text(study: "optuna.Study", t: Any) -> str:
    """`` (confirmed 32.10 dB held out, gap +0.12 dB)`` for a confirmed trial of record, else ``""``."""
    record = confirmed_records(study.user_attrs).get(str(t.user_attrs.get("arch_id")))
    if not record or record.get("trial") != t.number:
        return ""
    return f" (confirmed {record['psnr']:.3f} dB on {record['on']} images, winner's-curse gap {record['gap']:+.3f} dB)"


def write_report(study_name: str, *, out: str | Path | None = None, storage: str | None = None,
                 root: Path | None = None, top: int = 20, static_images: bool = True,
                 samples: int = DEFAULT_SAMPLES) -> ReportResult:
    """Write the HTML report of a study and ``trials.csv`` next to it; return what was written.

    ``out`` defaults to ``trials/<study>/report.html`` (a folder: ``report.html`` in it);
    ``top`` is the number of rows of the best-trials table; ``samples`` how many of the best
    architectures' LR | SR | HR strips are embedded (from the study's artifact store). Static
    PNGs go to ``<out stem>-figures/`` when kaleido and a Chromium are present
    (``static_images=False`` skips them). Raises `StudyError` (one line) for an unknown study
    and `WriteError` for an output path that cannot be written.
    """
    home = StudyHome(study_name, root)
    study = home.load(storage)
    target = _report_target(out, home.report)
    csv_path = target.parent / "trials.csv"
    frame = study_frame(study)
    attrs = study.user_attrs
    protocol = _study_protocol(frame)
    scales = list(attrs.get("scales") or [])
    if not scales and "scales" in frame and frame["scales"].notna().any():
        scales = sorted({int(s) for v in frame["scales"].dropna() for s in str(v).split("/")})
    scale = scales[0] if len(scales) == 1 else None
    published = published_points(protocol, scale, _study_val_set(protocol))
    schedule = attrs.get("schedule") or {}
    notes: list[str] = []

    # -- summary
    complete = complete_trials(study)
    best = complete[0] if complete else None
    best_cfg = trial_config(best, study_name=study_name) if best is not None else None
    scales_text = ", ".join(f"x{s}" for s in scales) or "-"
    summary = {
        "study": study_name,
        "space": attrs.get("space", "-"),
        "objectives": ", ".join(attrs.get("objectives") or ["psnr"]),
        "data": attrs.get("data", "-"),
        "proxy fidelity": (f"{schedule.get('name', '-')}: "
                           f"{schedule.get('updates', '-')} updates, batch {schedule.get('batch', '-')}, "
                           f"LR patch {schedule.get('patch', '-')}, "
                           f"{_scored_images(study, schedule)} validation image(s)"),
        "protocol": (protocol or "-") + {"benchmark": " (Y channel, crop = scale)",
                                         "div2k": " (RGB, crop = scale + 6)"}.get(protocol or "", ""),
        "scales": scales_text,
        "trials": _trial_counts(study),
        "best trial": (f"#{best.number}: {best.values[0]:.3f} dB{_confirmed_text(study, best)}, "
                       f"{best_cfg.describe() if best_cfg else '-'}, "
                       f"{human_count(best.user_attrs.get('params'))} params, "
                       f"{human_count(best.user_attrs.get('mult_adds'))} Mult-Adds" if best is not None else "-"),
        "generated": f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by srnas {__version__}",
    }
    summary_html = "<dl id='summary'>" + "".join(
        f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in summary.items()) + "</dl>"
    if not frame["trained"].any():
        notes.append("The study has no trained trials yet: the figures are empty.")

    # -- figures (plotly objects; rendered to HTML below, and to PNG when possible)
    figures: dict[str, Any] = {}
    texts: dict[str, str] = {}
    figures["fig-history"] = _history(frame)
    figures["fig-pareto-params"] = _pareto(frame, "params", "trainable parameters", published)
    figures["fig-pareto-macs"] = _pareto(frame, "mult_adds", "Mult-Adds (one forward pass, 1280x720 output)", published)
    if published:
        texts["published"] = _note(
            f"Published models drawn as reference points: {', '.join(p['model'] for p in published)} "
            f"({published[0]['source']}). The proxy scores come from {schedule.get('updates', '?')} updates "
            f"scored on {_scored_images(study, schedule)} validation image(s): reference only.", "published-note")
    else:
        texts["published"] = _note(
            "Published models (docs/reference.md section 3) are not drawn: they were measured on Set5/Set14/B100/"
            "Urban100 (benchmark protocol) or DIV2K 0801-0900 (div2k protocol) after full training, while these "
            f"proxy scores are on the validation part of '{attrs.get('data', '?')}' ({protocol or 'unknown'} "
            f"protocol, {scales_text}) after a short proxy training; the numbers do not compare.", "published-note")
    fig, texts["importance"] = _importance_figure(study, frame)
    if fig is not None:
        figures["fig-importance"] = fig
    fig, texts["res_scale"] = _res_scale_figure(frame)
    if fig is not None:
        figures["fig-res-scale"] = fig
    else:
        texts["res_scale"] = _note("PSNR by res_scale: no complete trials with a config yet.", "res-scale-note")
    figures["fig-curves"] = _curves(frame)
    texts["retrained"], fig, texts["proxy"] = _retrained(study_name, root, study)
    if fig is not None:
        figures["fig-proxy-vs-retrained"] = fig
    for div_id, fig in figures.items():
        _style(fig, div_id)

    def block(div_id: str) -> str:
        return _figure_html(figures[div_id], div_id) if div_id in figures else ""

    pngs: list[Path] = []
    if static_images:
        pngs, png_note = _static_pngs(figures, target.parent / f"{target.stem}-figures")
    else:
        png_note = "Static PNGs not requested (--no-png)."
    notes.append(png_note)

    samples_html = _samples(study, artifact_location(study.user_attrs, home), samples)
    body = f"""<h1>srnas report: {html.escape(study_name)}</h1>
{summary_html}
<section id="section-history"><h2>Optimisation history</h2>{block("fig-history")}</section>
<section id="section-pareto"><h2>Pareto fronts</h2>{block("fig-pareto-params")}{block("fig-pareto-macs")}
{texts["published"]}{_published_table_html()}</section>
<section id="section-importance"><h2>Parameter importances and res_scale</h2>
<p>How much each searched parameter explains the proxy PSNR. docs/reference.md section 4b asks how much
<code>res_scale</code> matters: its bar is red, and the box plot shows PSNR per value.</p>
{block("fig-importance")}{texts["importance"]}{block("fig-res-scale")}{texts["res_scale"]}</section>
<section id="section-curves"><h2>Intermediate PSNR curves</h2>{block("fig-curves")}</section>
<section id="section-best"><h2>Best trials</h2><p>Click a column header to sort.</p>{_best_table(frame, top)}</section>
<section id="section-samples"><h2>Samples of the best trials</h2>{samples_html}</section>
<section id="retrained"><h2>Retrained results</h2>{texts["retrained"]}</section>
<section id="section-proxy-vs-retrained"><h2>Proxy vs retrained</h2>{block("fig-proxy-vs-retrained")}{texts["proxy"]}</section>
<section id="static-export"><h2>Static images</h2>{_note(png_note, "static-export-note")}</section>"""
    document = html_document(f"srnas report: {study_name}", body)
    atomic_write_text(csv_path, frame.to_csv(index=False))
    atomic_write_text(target, document)
    return ReportResult(html=target, csv=csv_path, pngs=pngs, notes=notes, n_trials=len(frame),
                        n_trained=study_counts(study).finished, figures=figures)
