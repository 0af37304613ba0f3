"""The report's plotly figures: optimisation history, Pareto fronts (with published models as
reference points when they were measured like the study), parameter importances, PSNR by
``res_scale``, intermediate PSNR curves, and proxy vs retrained PSNR with its table.

`srnas.results.report` lays them out on the page. Each builder returns a
``plotly.graph_objects.Figure`` (some with the HTML text that goes beside it, or None in its place
when there is nothing to draw); `_style` titles them from `FIGURE_TITLES`.

>>> from srnas.results.report_figures import FIGURE_TITLES
>>> FIGURE_TITLES["fig-history"]
'Optimisation history'
"""

from __future__ import annotations

import html
import importlib.util
import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import plotly.graph_objects as go

from srnas.arch.cost import count_mult_adds, count_params
from srnas.arch.presets import preset_config
from srnas.outcomes import results_of_record
from srnas.results.frame import complete_trials, pareto_mask, retrained_results
from srnas.train.published import PUBLISHED_DIV2K, published_rows

if TYPE_CHECKING:
    import optuna
    import pandas as pd

#: Element id -> title of every figure the report draws.
FIGURE_TITLES: dict[str, str] = {
    "fig-history": "Optimisation history",
    "fig-pareto-params": "Pareto front: PSNR vs parameters",
    "fig-pareto-macs": "Pareto front: PSNR vs Mult-Adds",
    "fig-importance": "Parameter importances",
    "fig-res-scale": "PSNR by res_scale value",
    "fig-curves": "Intermediate PSNR curves",
    "fig-proxy-vs-retrained": "Proxy vs retrained PSNR",
}
#: Below this many complete trials parameter importances are flagged as a rough hint.
IMPORTANCE_MIN_TRIALS = 20


# ---- published reference points ------------------------------------------------------------


def _parse_count(text: str) -> float | None:
    """``"1,370K"`` -> 1.37e6, ``"40.7M"`` -> 4.07e7, ``"316.3G"`` -> 3.163e11, ``"-"`` -> None."""
    t = text.strip().replace(",", "")
    if not t or t == "-":
        return None
    mult = {"K": 1e3, "M": 1e6, "G": 1e9}.get(t[-1].upper(), 1.0)
    try:
        return float(t[:-1] if mult != 1.0 else t) * mult
    except ValueError:
        return None


def published_points(protocol: str | None, scale: int | None, val_set: str | None) -> list[dict[str, Any]]:
    """Published models measured like the given scores (same protocol, scale and set), if any.

    Each point: ``model``, ``params``, ``mult_adds`` (None when not on record), ``psnr``,
    ``source``. The "benchmark" rows need ``val_set`` to be one of the published sets; "div2k"
    rows are DIV2K validation 0801-0900, with costs from the presets' exact cost model.
    """
    if protocol == "benchmark" and val_set and scale:
        out = []
        for row in published_rows(int(scale)):
            if val_set in row.psnr and row.model != "Bicubic":
                out.append({"model": row.model, "params": _parse_count(row.params),
                            "mult_adds": _parse_count(row.mult_adds), "psnr": row.psnr[val_set],
                            "source": f"published, {val_set} x{scale}, benchmark protocol"})
        return out
    if protocol == "div2k" and scale and (val_set in (None, "DIV2K")):
        out = []
        for model, by_scale in PUBLISHED_DIV2K.items():
            if int(scale) not in by_scale:
                continue
            cfg = preset_config(model.lower(), scale=int(scale))
            out.append({"model": model, "params": float(count_params(cfg)),
                        "mult_adds": float(count_mult_adds(cfg, scale=int(scale))),
                        "psnr": by_scale[int(scale)],
                        "source": f"published, DIV2K 0801-0900 x{scale}, div2k protocol, full training"})
        return out
    return []


# ---- helpers ---------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _style(fig: Any, div_id: str) -> Any:
    """Title (unless the builder set a more specific one), template and size of a figure."""
    if not fig.layout.title.text:
        fig.update_layout(title={"text": FIGURE_TITLES[div_id]})
    fig.update_layout(template="plotly_white", margin={"l": 60, "r": 20, "t": 60, "b": 50}, height=460)
    return fig


def _figure_html(fig: Any, div_id: str) -> str:
    """A figure as a ``<div id=div_id>`` plus its inline script (plotly.js is loaded once, in the head)."""
    return _style(fig, div_id).to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                                       config={"displaylogo": False, "responsive": True})


def _note(text: str, element_id: str | None = None) -> str:
    ident = f" id='{element_id}'" if element_id else ""
    return f"<p class='note'{ident}>{html.escape(text)}</p>"


# ---- figures ---------------------------------------------------------------------------------


def _history(frame: "pd.DataFrame") -> Any:
    trained = frame[frame["trained"] & frame["psnr"].notna()].sort_values("number")
    complete = trained[trained["state"] == "COMPLETE"]
    pruned = trained[trained["state"] == "PRUNED"]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=complete["number"], y=complete["psnr"], mode="markers", name="complete",
                             text=complete["describe"], hovertemplate="#%{x}: %{y:.3f} dB<br>%{text}<extra></extra>"))
    if not pruned.empty:
        fig.add_trace(go.Scatter(x=pruned["number"], y=pruned["psnr"], mode="markers", name="pruned (last PSNR)",
                                 marker={"symbol": "x", "color": "lightgray"}, text=pruned["describe"],
                                 hovertemplate="#%{x}: %{y:.3f} dB (pruned)<br>%{text}<extra></extra>"))
    if not complete.empty:
        best = complete["psnr"].cummax()
        fig.add_trace(go.Scatter(x=complete["number"], y=best, mode="lines", name="best so far",
                                 line={"shape": "hv", "color": "firebrick"}))
    bicubic = trained["bicubic_psnr"].dropna()
    if not bicubic.empty:
        fig.add_hline(y=float(bicubic.median()), line_dash="dot", line_color="gray",
                      annotation_text=f"bicubic {bicubic.median():.2f} dB")
    fig.update_xaxes(title="trial")
    fig.update_yaxes(title="validation PSNR (dB)")
    return fig


def _pareto(frame: "pd.DataFrame", cost: str, label: str, published: Sequence[dict[str, Any]]) -> Any:
    done = frame[(frame["state"] == "COMPLETE") & frame["psnr"].notna() & frame[cost].notna()]
    done = done.drop_duplicates("arch_id") if "arch_id" in done else done
    fig = go.Figure()
    bicubic = done["bicubic_psnr"].dropna().astype(float) if "bicubic_psnr" in done else None
    reference = float(bicubic.max()) if bicubic is not None and not bicubic.empty else None
    if reference is not None:  # a free reference point: nets not above it are never on the front
        fig.add_hline(y=reference, line={"dash": "dash", "color": "gray"},
                      annotation_text=f"bicubic {reference:.2f} dB (reference)", annotation_position="bottom right")
    if not done.empty:
        mask = pareto_mask(done[cost].astype(float).tolist(), done["psnr"].astype(float).tolist(), reference=reference)
        front = done[mask].sort_values(cost)
        fig.add_trace(go.Scatter(x=done[cost], y=done["psnr"], mode="markers", name="trials",
                                 marker={"color": "steelblue", "opacity": 0.6},
                                 text=[f"#{n} {d}" for n, d in zip(done["number"], done["describe"])],
                                 hovertemplate="%{text}<br>%{x:.4s} · %{y:.3f} dB<extra></extra>"))
        fig.add_trace(go.Scatter(x=front[cost], y=front["psnr"], mode="lines+markers", name="Pareto front",
                                 line={"shape": "hv", "color": "firebrick"}, marker={"size": 9},
                                 text=[f"#{n} {d}" for n, d in zip(front["number"], front["describe"])],
                                 hovertemplate="%{text}<br>%{x:.4s} · %{y:.3f} dB<extra></extra>"))
    points = [p for p in published if p.get(cost if cost == "params" else "mult_adds") is not None]
    if points:
        key = "params" if cost == "params" else "mult_adds"
        fig.add_trace(go.Scatter(x=[p[key] for p in points], y=[p["psnr"] for p in points],
                                 mode="markers+text", name="published (reference)",
                                 marker={"symbol": "star", "size": 13, "color": "darkorange"},
                                 text=[p["model"] for p in points], textposition="top center",
                                 customdata=[p["source"] for p in points],
                                 hovertemplate="%{text}<br>%{customdata}<br>%{x:.4s} · %{y:.2f} dB<extra></extra>"))
    fig.update_xaxes(title=label, type="log", exponentformat="SI")  # 25G, not plotly's default 25B
    fig.update_yaxes(title="validation PSNR (dB)")
    return fig


def _results_study(study: "optuna.Study") -> "optuna.Study":
    """An in-memory copy holding only the results of record (COMPLETE, feasible, one per
    architecture): infeasible configs' placeholder values and repeats stay out of importances."""
    import optuna  # lazy: optuna (start-up)

    copy = optuna.create_study(directions=study.directions)
    copy.add_trials(results_of_record(study.get_trials(deepcopy=False)))
    return copy


def _importances(study: "optuna.Study") -> tuple[dict[str, float], str]:
    """Parameter importances for the first objective (PSNR) of the results of record, and the
    method; parameters that took one value only (fixed in the space, e.g. ``act``) are left out.

    fANOVA (seeded) when scikit-learn is installed, else PED-ANOVA (no extra dependency).
    """
    # lazy: optuna; optuna.importance takes 1.9 s to import
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator

    study = _results_study(study)
    trials = study.get_trials(deepcopy=False)
    common = set.intersection(*(set(t.params) for t in trials)) if trials else set()
    varied = sorted(name for name in common if len({repr(t.params[name]) for t in trials}) > 1)
    if not varied:
        return {}, "fANOVA"
    if importlib.util.find_spec("sklearn") is not None:
        evaluator: Any = FanovaImportanceEvaluator(seed=0)
        method = "fANOVA"
    else:
        evaluator = PedAnovaImportanceEvaluator()
        method = "PED-ANOVA"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        values = optuna.importance.get_param_importances(study, evaluator=evaluator, params=varied,
                                                         target=lambda t: float(t.values[0]))
    return dict(values), method


def _importance_figure(study: "optuna.Study", frame: "pd.DataFrame") -> tuple[Any, str]:
    """(importance bar figure or None, HTML text about res_scale or why nothing was computed)."""
    n_complete = int(((frame["state"] == "COMPLETE") & frame["psnr"].notna()).sum())
    try:
        if n_complete < 2:
            raise ValueError(f"needs at least 2 complete trials, the study has {n_complete}")
        importances, method = _importances(study)
        if not importances:
            raise ValueError("no parameter varied across the complete trials")
    except Exception as exc:  # optuna raises ValueError/RuntimeError for degenerate studies
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None, _note(f"Parameter importances not computed: {reason}.", "importance-note")
    names = list(importances)[::-1]
    colors = ["firebrick" if n == "res_scale" else "steelblue" for n in names]
    fig = go.Figure(go.Bar(x=[importances[n] for n in names], y=names, orientation="h", marker={"color": colors}))
    fig.update_xaxes(title=f"importance for PSNR ({method}, normalised)")
    fig.update_layout(title={"text": f"{FIGURE_TITLES['fig-importance']} ({method}, {n_complete} complete trials)"})
    ranked = list(importances)
    caution = ""
    if n_complete < IMPORTANCE_MIN_TRIALS:
        caution = _note(f"Caution: these importances rest on {n_complete} complete trials. {method} fits a model "
                        f"of PSNR over the searched parameters; with fewer than {IMPORTANCE_MIN_TRIALS} trials its "
                        "ranking is a rough hint that more trials can overturn, not a measurement.",
                        "importance-caution")
    if "res_scale" in importances:
        text = (f"<p id='res-scale-importance'><b>res_scale</b> importance: {importances['res_scale']:.3f} "
                f"(rank {ranked.index('res_scale') + 1} of {len(ranked)}, {method}).</p>")
    else:
        text = _note("res_scale is not among the varied parameters of the complete trials "
                     "(fixed in the space, or too few trials).", "res-scale-importance")
    return fig, caution + text


def _res_scale_figure(frame: "pd.DataFrame") -> tuple[Any, str]:
    """(box plot of PSNR per res_scale value or None, summary table HTML)."""
    done = frame[(frame["state"] == "COMPLETE") & frame["psnr"].notna()]
    if done.empty or "res_scale" not in done or done["res_scale"].isna().all():
        return None, ""
    fig = go.Figure()
    rows = []
    for value in sorted(done["res_scale"].dropna().unique()):
        sub = done[done["res_scale"] == value]["psnr"]
        fig.add_trace(go.Box(y=sub, name=f"{value:g}", boxpoints="all", jitter=0.3, pointpos=0))
        rows.append(f"<tr><td>{value:g}</td><td>{len(sub)}</td><td>{sub.mean():.3f}</td>"
                    f"<td>{sub.median():.3f}</td><td>{sub.max():.3f}</td></tr>")
    fig.update_xaxes(title="res_scale", type="category")
    fig.update_yaxes(title="validation PSNR (dB)")
    fig.update_layout(showlegend=False)
    table = ("<table class='plain' id='table-res-scale'><tr><th>res_scale</th><th>trials</th><th>mean</th>"
             f"<th>median</th><th>best</th></tr>{''.join(rows)}</table>")
    return fig, table


def _curves(frame: "pd.DataFrame") -> Any:
    trained = frame[frame["trained"]].sort_values("number") if not frame.empty else frame
    fig = go.Figure()
    for _, row in trained.iterrows():
        curve = json.loads(row["psnr_curve"] or "[]")
        if not curve:
            continue
        fig.add_trace(go.Scatter(
            x=[p[0] for p in curve], y=[p[1] for p in curve], mode="lines+markers", name=f"#{row['number']}",
            line={"dash": "solid" if row["state"] == "COMPLETE" else "dot", "width": 1.5}, opacity=0.75,
            hovertemplate=f"#{row['number']} {html.escape(str(row.get('describe', '')))}<br>"
                          "update %{x}: %{y:.3f} dB<extra></extra>"))
    fig.update_xaxes(title="update")
    fig.update_yaxes(title="validation PSNR (dB)")
    fig.update_layout(showlegend=len(fig.data) <= 30)
    return fig



def _retrained(study_name: str, root: Path | None, study: "optuna.Study") -> tuple[str, Any, str]:
    """(retrained table or note HTML, proxy-vs-retrained figure or None, text about Kendall tau)."""
    retrained = retrained_results(study_name, root)
    if not retrained:
        return (_note(f"No retrained models yet (nothing in trials/{study_name}/retrain/): run "
                      f"`srnas retrain --study {study_name} --top K` to add them.", "retrained-note"), None,
                _note("Proxy vs retrained PSNR: needs at least 2 retrained architectures of this study.",
                      "proxy-vs-retrained-note"))
    best_proxy: dict[str, Any] = {}
    for t in complete_trials(study):
        best_proxy.setdefault(str(t.user_attrs.get("arch_id")), t)
    rows, pairs = [], []
    for arch_id, r in sorted(retrained.items(), key=lambda kv: -kv[1]["psnr"]):
        t = best_proxy.get(arch_id)
        proxy = float(t.values[0]) if t is not None else None
        scale = r["scale"] if isinstance(r["scale"], int) else None
        ref = ", ".join(f"{p['model']} {p['psnr']:.2f}" for p in published_points(r["protocol"], scale, r["val_set"])) or "-"
        cfg = r["config"]
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (
            arch_id, t.number if t is not None else "-", cfg.describe() if cfg else "-", _fmt(proxy, 3),
            _fmt(r["psnr"], 3), _fmt(r["ssim"], 4), r["protocol"] or "-",
            (r["val_set"] or "-") + (f" ({r['val_images']} images)" if r.get("val_images") else ""),
            f"x{r['scale']}" if r["scale"] else "-", r["schedule"] or "-", r["updates"] or "-",
            "yes" if r["weights"] else "no", ref)) + "</tr>")
        if t is not None and proxy is not None:
            pairs.append({"trial": t.number, "proxy": proxy, "retrained": r["psnr"],
                          "describe": cfg.describe() if cfg else arch_id})
    head = "".join(f"<th>{h}</th>" for h in ("arch_id", "trial", "architecture", "proxy PSNR", "retrained PSNR",
                                              "SSIM", "protocol", "set", "scale", "schedule", "updates",
                                              "weights", "published on the same set"))
    table = (f"<table class='sortable' id='table-retrained'><thead><tr>{head}</tr></thead>"
             f"<tbody>{''.join(rows)}</tbody></table>")
    if len(pairs) < 2:
        return table, None, _note(f"Proxy vs retrained PSNR: {len(pairs)} retrained architecture(s) match a "
                                  "complete trial; the rank correlation needs at least 2.", "proxy-vs-retrained-note")
    from scipy.stats import kendalltau  # lazy: scipy.stats (0.8 s to import)

    tau = float(kendalltau([p["proxy"] for p in pairs], [p["retrained"] for p in pairs]).statistic)
    tau_text = "undefined (constant scores)" if math.isnan(tau) else f"{tau:.3f}"
    fig = go.Figure(go.Scatter(x=[p["proxy"] for p in pairs], y=[p["retrained"] for p in pairs],
                               mode="markers+text", text=[f"#{p['trial']}" for p in pairs], textposition="top center",
                               customdata=[p["describe"] for p in pairs],
                               hovertemplate="%{customdata}<br>proxy %{x:.3f} · retrained %{y:.3f} dB<extra></extra>"))
    fig.update_xaxes(title="proxy PSNR (dB)")
    fig.update_yaxes(title="retrained PSNR (dB)")
    fig.update_layout(title={"text": f"{FIGURE_TITLES['fig-proxy-vs-retrained']} (Kendall tau = {tau_text}, n = {len(pairs)})"})
    text = (f"<p id='kendall-tau'>Kendall tau between proxy and retrained PSNR: <b>{tau_text}</b> "
            f"over {len(pairs)} architectures.</p>")
    return table, fig, text
