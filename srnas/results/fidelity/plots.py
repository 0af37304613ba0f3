"""The fidelity study's HTML page: per variant, every design's tau with its interval (overall,
inside parameter bands, within skip groups), tau against updates for every proxy schedule and
for the reference's own curve, the reference PSNR against the chosen design, and the table."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from srnas.fileio import atomic_write_text
from srnas.results.report import html_document

STATS = (("tau", "tau_lo", "tau_hi", "overall"), ("band_tau", "band_lo", "band_hi", "inside 10% parameter bands"),
         ("group_tau", "group_lo", "group_hi", "within skip groups"))


def _errors(rows: list[Mapping[str, Any]], stat: str, lo: str, hi: str) -> dict[str, Any]:
    up = [None if d.get(stat) is None or d.get(hi) is None else d[hi] - d[stat] for d in rows]
    down = [None if d.get(stat) is None or d.get(lo) is None else d[stat] - d[lo] for d in rows]
    return {"type": "data", "array": up, "arrayminus": down}


def write_plot(results: Mapping[str, Mapping[str, Any]], path: Path, *, title: str) -> None:
    """Write the self-contained page (plotly from the report's inline bundle, no network)."""
    variants = list(results)
    titles = []
    for v in variants:
        titles += [f"{v}: Kendall tau with the held-out reference (95% CI)", f"{v}: tau at each evaluation point",
                   f"{v}: reference PSNR vs the chosen design"]
    fig = make_subplots(rows=len(variants), cols=3, column_widths=[0.46, 0.30, 0.24], vertical_spacing=0.2,
                        subplot_titles=titles)
    for i, v in enumerate(variants, 1):
        res = results[v]
        rows = [d for d in res["designs"] if d.get("tau") is not None]
        labels = [d["label"] for d in rows]
        for stat, lo, hi, name in STATS:
            if not any(d.get(stat) is not None for d in rows):
                continue
            fig.add_trace(go.Bar(x=labels, y=[d.get(stat) for d in rows], name=name, showlegend=i == 1,
                                 legendgroup=name, error_y=_errors(rows, stat, lo, hi)), row=i, col=1)
        ceiling = res.get("noise_ceiling") or {}
        if ceiling.get("tau") is not None:
            fig.add_hline(y=ceiling["tau"], line_dash="dot", row=i, col=1,
                          annotation_text="reference seed vs seed", annotation_position="top left")
        fig.update_yaxes(range=[-1, 1], row=i, col=1)
        curves: dict[str, list[Mapping[str, Any]]] = {}
        for c in res["checkpoints"]:
            curves.setdefault(c["schedule"], []).append(c)
        if res.get("reference_curve"):
            curves["reference (vs its other seeds)"] = list(res["reference_curve"])
        for name, pts in curves.items():
            fig.add_trace(go.Scatter(x=[p["update"] for p in pts], y=[p["tau"] for p in pts], mode="lines+markers",
                                     name=name, legendgroup=f"curve-{name}", showlegend=i == 1,
                                     error_y=_errors(pts, "tau", "tau_lo", "tau_hi")), row=i, col=2)
        if res.get("first_rung"):
            fig.add_vline(x=res["first_rung"], line_dash="dash", row=i, col=2)
        fig.update_xaxes(title_text="updates", type="log", row=i, col=2)
        fig.update_yaxes(range=[-1, 1], row=i, col=2)
        chosen = res.get("chosen")
        if chosen:
            pts = [r for r in res["table"] if r.get(chosen) is not None]
            fig.add_trace(go.Scatter(x=[r[chosen] for r in pts], y=[r["reference_psnr"] for r in pts], mode="markers",
                                     text=[f"{r['describe']}<br>{r['arch_id']}" for r in pts], showlegend=False,
                                     hovertemplate="%{text}<br>%{x:.3f} -> %{y:.3f} dB<extra></extra>"), row=i, col=3)
            label = next((d["label"] for d in res["designs"] if d["design"] == chosen), chosen)
            fig.update_xaxes(title_text=f"{label} (dB)", row=i, col=3)
            fig.update_yaxes(title_text="reference PSNR, held out (dB)", row=i, col=3)
    fig.update_layout(title={"text": title}, template="plotly_white", height=600 * len(variants), barmode="group")

    def cell(value: Any) -> str:
        return "-" if value is None else (f"{value:+.3f}" if isinstance(value, float) else str(value))

    def ci(d: Mapping[str, Any], lo: str, hi: str) -> str:
        return f"{cell(d.get(lo))} .. {cell(d.get(hi))}"

    head = "".join(f"<th>{h}</th>" for h in ("variant", "design", "tau", "95% CI", "band tau", "95% CI", "skip-group tau",
                                             "95% CI", "tau - chosen", "paired 95% CI", "CPU s / arch"))
    body_rows = "".join(
        f"<tr><td>{d['variant']}</td><td>{d['label']}</td><td>{cell(d.get('tau'))}</td><td>{ci(d, 'tau_lo', 'tau_hi')}</td>"
        f"<td>{cell(d.get('band_tau'))}</td><td>{ci(d, 'band_lo', 'band_hi')}</td><td>{cell(d.get('group_tau'))}</td>"
        f"<td>{ci(d, 'group_lo', 'group_hi')}</td><td>{cell(d.get('vs_chosen'))}</td>"
        f"<td>{ci(d, 'vs_chosen_lo', 'vs_chosen_hi')}</td><td>{d['cpu_s']:.1f}</td></tr>"
        for v in variants for d in results[v]["designs"])
    body = (fig.to_html(full_html=False, include_plotlyjs=False, div_id="fig-fidelity", config={"displaylogo": False})
            + f"<table id='table-designs'><tr>{head}</tr>{body_rows}</table>")
    atomic_write_text(path, html_document(title, body))
