"""Live terminal progress of a search (read from the study, so it covers every worker) and the
final summary table of the best trials or the Pareto set."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from srnas.outcomes import (beats_reference, count_trials, pareto_trials, reference_psnr,
                            results_of_record, study_counts)


def _fmt_params(n: Any) -> str:
    if not isinstance(n, (int, float)):
        return "-"
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"


def _describe(t: Any) -> str:
    cfg = t.user_attrs.get("config") or {}
    if not cfg:
        return "-"
    ks = sorted(set(cfg.get("kernel_sizes", [])))
    text = f"B{cfg.get('n_resblocks')} F{cfg.get('n_feats')} k{'/'.join(map(str, ks))} rs{cfg.get('res_scale'):g}"
    blocks = sorted(set(cfg.get("block") or ["res"]))
    if blocks != ["res"]:
        text += " " + "/".join(blocks)
    if cfg.get("batch_norm"):
        text += " BN"
    if cfg.get("global_skip", "none") != "none":
        text += f" skip={cfg['global_skip']}"
    if cfg.get("family") == "mdsr":
        text += f" head{cfg.get('head_blocks')}x{cfg.get('head_kernel') or '-'}"
    return text


class SearchProgress:
    """A rich progress bar refreshed from the storage every ``interval`` seconds."""

    def __init__(self, study: Any, budget: int, *, console: Any = None, interval: float = 2.0) -> None:
        from rich.console import Console

        self.study = study
        self.budget = budget
        self.console = console or Console(stderr=True)
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_finished = 0
        self._t0 = time.monotonic()

    def snapshot(self) -> dict[str, Any]:
        from optuna.trial import TrialState

        c = study_counts(self.study)
        best_text = "-"
        complete = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if complete:
            best = max(complete, key=lambda t: t.values[0])
            best_text = f"{best.values[0]:.2f} dB #{best.number} ({_fmt_params(best.user_attrs.get('params'))})"
        return {"finished": c.finished, "pruned": c.pruned, "running": c.running, "failed": c.failed,
                "infeasible": c.infeasible, "repeats": c.repeats, "best": best_text}

    def _eta(self, finished: int) -> str:
        done_here = finished - self._start_finished
        if done_here <= 0 or finished >= self.budget:
            return "-"
        per = (time.monotonic() - self._t0) / done_here
        secs = per * (self.budget - finished)
        return f"{int(secs // 60)}m{int(secs % 60):02d}s"

    def __enter__(self) -> "SearchProgress":
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self._start_finished = self.snapshot()["finished"]
        self._progress = Progress(TextColumn("[bold]search"), BarColumn(bar_width=20), MofNCompleteColumn(),
                                  TextColumn("{task.fields[detail]}"),
                                  console=self.console, transient=False)
        self._task = self._progress.add_task("search", total=self.budget, detail="",
                                             completed=self._start_finished)
        self._progress.start()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def refresh(self) -> None:
        try:
            s = self.snapshot()
        except Exception:  # storage busy: try again next tick
            return
        detail = (f"best {s['best']} | pruned {s['pruned']} failed {s['failed']} run {s['running']}"
                  + (f" infeasible {s['infeasible']}" if s["infeasible"] else "")
                  + (f" rep {s['repeats']}" if s["repeats"] else "")
                  + f" | ETA {self._eta(s['finished'])}")
        self._progress.update(self._task, completed=min(s["finished"], self.budget), detail=detail)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.refresh()

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.refresh()
        self._progress.stop()


def summary_table(study: Any, *, top: int = 5) -> Any:
    """Best architectures (single objective) or the Pareto set (multi-objective, bicubic as the
    reference point) as a rich Table, with how many distinct architectures were trained."""
    from rich.table import Table

    trials = study.get_trials(deepcopy=False)
    counts = count_trials(trials)
    record = results_of_record(trials)
    multi = len(study.directions) > 1
    bicubic = reference_psnr(record)
    if multi:
        rows = pareto_trials(trials)
        title = f"Pareto set ({len(rows)} of {len(record)} architectures trained to full fidelity"
    else:
        rows = [t for t in record if beats_reference(t)][:top]
        title = f"Best {len(rows)} of {len(record)} architectures trained to full fidelity"
        if record and not rows:
            title = f"No architecture beat bicubic ({len(record)} trained to full fidelity"
    title += (f"; {counts.finished} distinct trained, {counts.pruned} pruned, {counts.repeats} repeated proposals"
              + (f"; bicubic {bicubic:.2f} dB" if bicubic is not None else "") + ")")
    protocol = next((t.user_attrs.get("protocol") for t in rows if t.user_attrs.get("protocol")), None)
    table = Table(title=title + (f" (PSNR protocol: {protocol})" if protocol else ""))
    for col in ("#", "architecture", "params", "Mult-Adds", "PSNR", "bicubic", "time"):
        table.add_column(col, justify="left" if col == "architecture" else "right")
    for t in rows:
        a = t.user_attrs
        macs = a.get("mult_adds")
        table.add_row(str(t.number), _describe(t), _fmt_params(a.get("params")),
                      f"{macs / 1e9:.2f}G" if isinstance(macs, (int, float)) else "-",
                      f"{t.values[0]:.3f}", f"{a.get('bicubic_psnr', math.nan):.3f}",
                      f"{a.get('wall_time_s', math.nan):.1f}s" + (" (reused)" if "reused_from" in a else ""))
    return table
