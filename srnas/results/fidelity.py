"""The proxy-fidelity study: does a short proxy training rank architectures as a longer one does?

`run_fidelity` samples ``n`` architectures of a space stratified by parameter count, trains each
at a ``proxy`` and at a ``reference`` fidelity, and compares the rankings: Kendall tau and
Spearman rho of proxy PSNR vs reference PSNR, next to the same correlations for ranking by
parameter count, by Mult-Adds and by two zero-cost scores (`srnas.results.zero_cost`).

Fidelity names: a proxy schedule (``tiny``, ``short``, ``medium``, ``paper``...), optionally
``NAME*F`` (F times longer: updates, milestones and evaluation interval scaled by F) and/or
``NAME@N`` (cut to N updates), e.g. ``tiny*10`` or ``tiny@40``.

Outputs in the output folder (resumable: a re-run skips the architectures already in the CSV):

- ``fidelity.csv``: one row per architecture, appended as soon as it finishes;
- ``correlations.json``: the correlations (null where undefined, e.g. constant scores);
- ``fidelity.html``: self-contained plotly scatter plots and the correlation bars;
- ``settings.json``: what the folder holds (a re-run with other settings is refused).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from srnas.arch.config import ArchConfig
from srnas.arch.cost import count_mult_adds, count_params
from srnas.errors import ConfigError, SrnasError
from srnas.space import SearchSpace

CSV_NAME = "fidelity.csv"
CSV_COLUMNS = ("arch_id", "stratum", "describe", "params", "mult_adds", "synflow", "grad_norm",
               "proxy_psnr", "reference_psnr", "bicubic_psnr", "protocol", "proxy_wall_s",
               "reference_wall_s", "seed", "config")
#: Rankings compared with the reference PSNR (CSV column -> label).
PREDICTORS = {"proxy_psnr": "proxy PSNR", "params": "parameters", "mult_adds": "Mult-Adds",
              "synflow": "synflow", "grad_norm": "grad-norm"}
#: Largest space that is enumerated for sampling; larger ones are sampled at random.
ENUMERATE_LIMIT = 20_000


class FidelityError(SrnasError):
    """A fidelity study cannot run or resume."""


# ---- fidelities ------------------------------------------------------------------------------


def parse_fidelity(text: str) -> Any:
    """A schedule from ``NAME[*FACTOR][@MAX_UPDATES]`` (see `srnas.train.get_schedule`)."""
    from srnas.train.schedules import get_schedule

    return get_schedule(text.strip())


# ---- sampling --------------------------------------------------------------------------------


def stratified_sample(space: SearchSpace, n: int, *, seed: int = 0, pool_size: int = 4000) -> list[ArchConfig]:
    """``n`` distinct feasible configs spread over the space's parameter range.

    The candidate pool (every config of a space of at most `ENUMERATE_LIMIT`, else
    ``pool_size`` random draws) is sorted by parameter count and cut into ``n`` strata of
    equal size (quantile bins); one config is drawn from each stratum with ``seed``. Returned
    in ascending parameter order.
    """
    if space.size() <= ENUMERATE_LIMIT:
        candidates = list(space.enumerate())
    else:
        candidates = space.sample_random(pool_size, seed=seed)
    unique: dict[str, ArchConfig] = {}
    for cfg in candidates:
        if space.satisfies(cfg):
            unique.setdefault(cfg.arch_id, cfg)
    pool = sorted(unique.values(), key=lambda c: (count_params(c), c.arch_id))
    if len(pool) < n:
        raise ConfigError(f"space {space.name!r} has {len(pool)} feasible configs; --n {n} needs at least {n}")
    rng = random.Random(seed)
    picks = []
    for i in range(n):
        lo, hi = (i * len(pool)) // n, ((i + 1) * len(pool)) // n
        picks.append(pool[rng.randrange(lo, hi)])
    return picks


# ---- correlations ----------------------------------------------------------------------------


def _clean(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def correlations(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Kendall tau (tau-b) and Spearman rho, with p-values, of each predictor vs reference PSNR."""
    from scipy.stats import kendalltau, spearmanr

    reference = [float(r["reference_psnr"]) for r in rows]
    out: dict[str, dict[str, float | None]] = {}
    for key in PREDICTORS:
        values = [float(r[key]) for r in rows]
        if len(values) < 2 or len(set(values)) < 2 or len(set(reference)) < 2:
            out[key] = {"kendall_tau": None, "kendall_p": None, "spearman_rho": None, "spearman_p": None}
            continue
        kt = kendalltau(values, reference)
        sr = spearmanr(values, reference)
        out[key] = {"kendall_tau": _clean(kt.statistic), "kendall_p": _clean(kt.pvalue),
                    "spearman_rho": _clean(sr.statistic), "spearman_p": _clean(sr.pvalue)}
    return out


# ---- CSV -------------------------------------------------------------------------------------


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Complete rows of a fidelity CSV (a line cut short by a crash is ignored)."""
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="", encoding="utf-8") as handle:
        for raw in csv.DictReader(handle):
            try:
                row: dict[str, Any] = dict(raw)
                for key in ("params", "mult_adds", "stratum", "seed"):
                    row[key] = int(row[key])
                for key in ("synflow", "grad_norm", "proxy_psnr", "reference_psnr", "bicubic_psnr",
                            "proxy_wall_s", "reference_wall_s"):
                    row[key] = float(row[key])
                json.loads(row["config"])
            except (KeyError, TypeError, ValueError):
                continue
            rows.append(row)
    return rows


def _append_row(path: Path, row: dict[str, Any]) -> None:
    """Append one row and fsync it; first cut off a partial last line left by a crash."""
    new = not path.is_file() or path.stat().st_size == 0
    if not new:
        with path.open("rb+") as handle:
            data = handle.read()
            if not data.endswith(b"\n"):
                handle.truncate(data.rfind(b"\n") + 1)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    if new:
        writer.writeheader()
    writer.writerow({k: row[k] for k in CSV_COLUMNS})
    with path.open("a", encoding="utf-8", newline="") as handle:
        handle.write(buffer.getvalue())
        handle.flush()
        os.fsync(handle.fileno())


# ---- plot ------------------------------------------------------------------------------------


def _fmt_corr(c: dict[str, float | None]) -> str:
    tau, rho = c["kendall_tau"], c["spearman_rho"]
    return f"tau {tau:.2f}, rho {rho:.2f}" if tau is not None and rho is not None else "undefined"


def write_plot(rows: Sequence[dict[str, Any]], corr: dict[str, dict[str, float | None]], path: Path,
               *, title: str) -> None:
    """A self-contained HTML: reference PSNR against each predictor, and the correlation bars."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from srnas.fileio import atomic_write_text
    from srnas.results.report import html_document

    keys = list(PREDICTORS)
    fig = make_subplots(rows=2, cols=3, subplot_titles=[f"{PREDICTORS[k]} ({_fmt_corr(corr[k])})" for k in keys]
                        + ["rank correlation with reference PSNR"], vertical_spacing=0.14, horizontal_spacing=0.07)
    reference = [r["reference_psnr"] for r in rows]
    hover = [f"{r['describe']}<br>{r['arch_id']}" for r in rows]
    for i, key in enumerate(keys):
        row, col = divmod(i, 3)
        fig.add_trace(go.Scatter(x=[r[key] for r in rows], y=reference, mode="markers", name=PREDICTORS[key],
                                 text=hover, hovertemplate="%{text}<br>%{x:.4g} -> %{y:.3f} dB<extra></extra>",
                                 showlegend=False), row=row + 1, col=col + 1)
        fig.update_xaxes(title_text=PREDICTORS[key], type="log" if key != "proxy_psnr" else "linear",
                         row=row + 1, col=col + 1)
        fig.update_yaxes(title_text="reference PSNR (dB)" if col == 0 else None, row=row + 1, col=col + 1)
    labels = [PREDICTORS[k] for k in keys]
    for stat, name in (("kendall_tau", "Kendall tau"), ("spearman_rho", "Spearman rho")):
        fig.add_trace(go.Bar(x=labels, y=[corr[k][stat] for k in keys], name=name), row=2, col=3)
    fig.update_yaxes(range=[-1, 1], row=2, col=3)
    fig.update_layout(title={"text": title}, template="plotly_white", height=760, barmode="group",
                      legend={"x": 1.0, "y": 0.0})
    table = "".join(
        f"<tr><td>{PREDICTORS[k]}</td>" + "".join(
            f"<td>{'-' if corr[k][s] is None else f'{corr[k][s]:.3f}'}</td>"
            for s in ("kendall_tau", "kendall_p", "spearman_rho", "spearman_p")) + "</tr>" for k in keys)
    body = (fig.to_html(full_html=False, include_plotlyjs=False, div_id="fig-fidelity",
                        config={"displaylogo": False})
            + "<table id='table-correlations'><tr><th>ranking by</th><th>Kendall tau</th><th>p</th>"
              f"<th>Spearman rho</th><th>p</th></tr>{table}</table>")
    atomic_write_text(path, html_document(title, body))


# ---- the study -------------------------------------------------------------------------------


@dataclasses.dataclass
class FidelityResult:
    """Rows (one per architecture), correlations, and the files written."""

    rows: list[dict[str, Any]]
    correlations: dict[str, dict[str, float | None]]
    csv: Path
    json: Path
    html: Path
    trained: int
    skipped: int


def _load_data(spec: str, scales: tuple[int, ...]) -> tuple[Any, dict[int, Any]]:
    """Training set for every scale, and one validation set per scale (as `srnas retrain`)."""
    from srnas.data import load_eval_set, load_train_set

    return load_train_set(spec, list(scales)), {s: load_eval_set(spec, s) for s in scales}


def default_out_dir(space: str, proxy: str, reference: str) -> Path:
    """``trials/fidelity/<space>-<proxy>-vs-<reference>`` (names made file-safe)."""
    from srnas.studies import trials_root

    safe = lambda t: "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(t).stem or t)  # noqa: E731
    return trials_root() / "fidelity" / f"{safe(space)}-{safe(proxy)}-vs-{safe(reference)}"


def run_fidelity(space: str | SearchSpace, n: int, proxy: str, reference: str, *, data: str = "demo",
                 out_dir: str | Path | None = None, seed: int = 0, device: str = "auto",
                 log: Callable[[str], None] | None = None) -> FidelityResult:
    """Run (or resume) a fidelity study and write its CSV, JSON and HTML; see the module docstring.

    Each architecture is trained with the same seed at both fidelities; rows are appended to the
    CSV as each finishes, and architectures already in it are skipped.
    """
    from srnas.fileio import atomic_write_text
    from srnas.results.zero_cost import grad_norm, synflow
    from srnas.train import Trainer

    say = log or (lambda _msg: None)
    if isinstance(n, bool) or not isinstance(n, int) or n < 3:
        raise ConfigError(f"--n must be an integer >= 3 (a rank correlation needs at least 3 points), got {n!r}")
    sp = space if isinstance(space, SearchSpace) else SearchSpace.load(space)
    proxy_schedule, reference_schedule = parse_fidelity(proxy), parse_fidelity(reference)
    if proxy_schedule.fidelity_id == reference_schedule.fidelity_id:
        raise ConfigError(f"--proxy {proxy!r} and --reference {reference!r} are the same fidelity; "
                          "compare two different ones, e.g. --proxy tiny --reference tiny*10")
    out = Path(out_dir) if out_dir is not None else default_out_dir(sp.name, proxy, reference)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"space": sp.name, "space_file": str(sp.source), "n": n, "seed": seed, "data": data,
                "proxy": proxy_schedule.to_dict(), "reference": reference_schedule.to_dict()}
    settings_file = out / "settings.json"
    if settings_file.is_file():
        try:
            known = json.loads(settings_file.read_text(encoding="utf-8"))
        except ValueError:
            known = None
        keys = ("space", "n", "seed", "data")
        if not isinstance(known, dict) or any(known.get(k) != settings[k] for k in keys) or \
                known.get("proxy", {}).get("fidelity_id") != proxy_schedule.fidelity_id or \
                known.get("reference", {}).get("fidelity_id") != reference_schedule.fidelity_id:
            raise FidelityError(f"{out} holds a fidelity study with other settings ({settings_file}); "
                                "pass another -o folder, or the same settings to resume")
    else:
        atomic_write_text(settings_file, json.dumps(settings, indent=2) + "\n")

    configs = stratified_sample(sp, n, seed=seed)
    csv_path = out / CSV_NAME
    done = {r["arch_id"]: r for r in read_rows(csv_path)}
    todo = [(i, c) for i, c in enumerate(configs) if c.arch_id not in done]
    say(f"fidelity study: {n} architectures of space {sp.name} ({len(configs) - len(todo)} already done), "
        f"proxy {proxy_schedule.name} ({proxy_schedule.updates} updates) vs reference "
        f"{reference_schedule.name} ({reference_schedule.updates} updates) on {data} -> {out}")
    train = val = None
    for k, (i, cfg) in enumerate(todo, 1):
        if train is None:
            train, val = _load_data(data, sp.scales)
        row: dict[str, Any] = {"arch_id": cfg.arch_id, "stratum": i, "describe": cfg.describe(),
                               "params": count_params(cfg),
                               "mult_adds": max(count_mult_adds(cfg, scale=s) for s in cfg.scales),
                               "synflow": synflow(cfg, seed=seed), "grad_norm": grad_norm(cfg, seed=seed),
                               "seed": seed, "config": cfg.to_json()}
        for label, schedule in (("proxy", proxy_schedule), ("reference", reference_schedule)):
            t0 = time.perf_counter()
            result = Trainer(cfg, train, val, schedule, device=device, seed=seed).fit()
            row[f"{label}_psnr"] = float(result.final["psnr"])
            row[f"{label}_wall_s"] = round(time.perf_counter() - t0, 2)
            row["protocol"] = result.final["protocol"]
            row["bicubic_psnr"] = float(result.bicubic_psnr)
        _append_row(csv_path, row)
        done[cfg.arch_id] = row
        say(f"[{k}/{len(todo)}] {cfg.describe()} ({row['params']:,} params): proxy {row['proxy_psnr']:.3f} dB "
            f"({row['proxy_wall_s']:.0f} s), reference {row['reference_psnr']:.3f} dB ({row['reference_wall_s']:.0f} s)")
    rows = [done[c.arch_id] for c in configs]
    corr = correlations(rows)
    payload = {"space": sp.name, "n": len(rows), "data": data, "seed": seed,
               "protocol": sorted({r["protocol"] for r in rows}),
               "proxy": {"name": proxy_schedule.name, "fidelity_id": proxy_schedule.fidelity_id,
                         "updates": proxy_schedule.updates},
               "reference": {"name": reference_schedule.name, "fidelity_id": reference_schedule.fidelity_id,
                             "updates": reference_schedule.updates},
               "target": "reference_psnr", "correlations": corr}
    json_path, html_path = out / "correlations.json", out / "fidelity.html"
    atomic_write_text(json_path, json.dumps(payload, indent=2) + "\n")
    title = (f"Proxy fidelity on {sp.name}: {proxy_schedule.name} ({proxy_schedule.updates} updates) vs "
             f"{reference_schedule.name} ({reference_schedule.updates} updates), n = {len(rows)}")
    write_plot(rows, corr, html_path, title=title)
    return FidelityResult(rows=rows, correlations=corr, csv=csv_path, json=json_path, html=html_path,
                          trained=len(todo), skipped=len(configs) - len(todo))
