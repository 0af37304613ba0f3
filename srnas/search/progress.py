"""Progress of a search, read from the study (so it covers every worker): a live bar on a
terminal, plain lines otherwise, and the final summary table of the best trials or the Pareto
set.

Plain lines (also written to the study's ``search.log`` by `srnas.search.engines.run_search`):
one per finished trial with its state, PSNR, parameters, training time and the best so far, and
a progress line at least every minute (`srnas.log.progress_interval`) with the ETA. On a
terminal the bar shows the same; the lines then reach the terminal only with -v.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from srnas.log import VERBOSE_ONLY, ProgressClock, get_logger
from srnas.outcomes import (beats_reference, confirmed_records, count_trials, is_infeasible, is_repeat,
                            pareto_trials, reference_psnr, results_of_record)
from srnas.units import human_count, human_duration

log = get_logger("search")

#: Seconds before a search's first progress line (later ones every `progress_interval`).
FIRST_LINE_S = 10.0
#: Trial states that end a trial.
_FINISHED = ("COMPLETE", "PRUNED", "FAIL")


def _fmt_params(n: Any) -> str:
    return human_count(n, 1 if isinstance(n, (int, float)) and n < 1e6 else 2)


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


def _best_text(complete: list[Any]) -> str:
    if not complete:
        return "-"
    best = max(complete, key=lambda t: t.values[0])
    return f"{best.values[0]:.2f} dB #{best.number} ({_fmt_params(best.user_attrs.get('params'))})"


def trial_line(t: Any, best: str) -> str:
    """One plain line for a finished trial: number, state, PSNR, parameters, time, best so far."""
    a = t.user_attrs
    what = f"trial {t.number}"
    cost = f"{_fmt_params(a.get('params'))} params, {_describe(t)}"
    took = human_duration(a.get("wall_time_s"))
    if is_repeat(t):
        return f"{what} repeats trial {a['reused_from']} ({a.get('psnr', math.nan):.2f} dB), not trained again: {cost}"
    if t.state.name == "FAIL":
        reason = str(a.get("error") or "no reason recorded").splitlines()[0][:160]
        return f"{what} failed: {reason}; best {best}"
    if is_infeasible(t):
        return f"{what} infeasible, not trained ({a.get('infeasible')}): {cost}"
    if t.state.name == "PRUNED":
        curve = a.get("psnr_curve") or []
        at = f" at update {int(curve[-1][0]):,}" if curve else ""
        return f"{what} pruned{at}: {a.get('psnr', math.nan):.2f} dB, {cost}, {took}; best {best}"
    return f"{what} complete: {t.values[0]:.2f} dB, {cost}, {took}; best {best}"


class SearchProgress:
    """Watches a study while workers run: refreshes every ``interval`` seconds from the storage,
    draws a rich bar when ``bar`` and the console is a terminal, and logs one line per trial
    that finishes plus a progress line every ``every`` seconds (default `progress_interval`)."""

    def __init__(self, study: Any, budget: int, *, console: Any = None, interval: float = 2.0,
                 bar: bool = True, every: float | None = None) -> None:
        self.study = study
        self.budget = budget
        self.console = console or Console(stderr=True)
        self.interval = interval
        self.bar = bar and self.console.is_terminal
        self.every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._reported: set[int] = set()
        self._start_finished = 0
        self._clock: ProgressClock | None = None
        self._progress: Any = None

    def snapshot(self) -> dict[str, Any]:
        """Counts, the best trial as text, and the finished trials (``trials``)."""
        trials = self.study.get_trials(deepcopy=False)
        c = count_trials(trials)
        complete = [t for t in trials if t.state.name == "COMPLETE" and t.values and not is_infeasible(t)]
        return {"finished": c.finished, "pruned": c.pruned, "running": c.running, "failed": c.failed,
                "infeasible": c.infeasible, "repeats": c.repeats, "best": _best_text(complete),
                "trials": [t for t in trials if t.state.name in _FINISHED]}

    def _eta(self, finished: int) -> str:
        return human_duration(self._clock.eta(finished)) if self._clock is not None else "-"

    def __enter__(self) -> "SearchProgress":
        s = self.snapshot()
        self._start_finished = s["finished"]
        self._reported = {t.number for t in s["trials"]}
        # The first progress line after FIRST_LINE_S: a search shows early that it trains.
        self._clock = ProgressClock(self.budget, start=self._start_finished, every=self.every, first=FIRST_LINE_S)
        if self.bar:
            self._progress = Progress(TextColumn("[bold]search"), BarColumn(bar_width=20), MofNCompleteColumn(),
                                      TextColumn("{task.fields[detail]}"),
                                      console=self.console, transient=False)
            self._task = self._progress.add_task("search", total=self.budget, detail="",
                                                 completed=self._start_finished)
            self._progress.start()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _counts_text(self, s: dict[str, Any]) -> str:
        return (f"pruned {s['pruned']} failed {s['failed']} run {s['running']}"
                + (f" infeasible {s['infeasible']}" if s["infeasible"] else "")
                + (f" rep {s['repeats']}" if s["repeats"] else ""))

    def refresh(self, *, final: bool = False) -> None:
        """Read the study once: log newly finished trials, a progress line when one is due,
        and update the bar."""
        with self._lock:
            try:
                s = self.snapshot()
            except Exception:  # storage busy: try again next tick
                return
            route = VERBOSE_ONLY if self.bar else None
            new = sorted((t for t in s["trials"] if t.number not in self._reported), key=lambda t: t.number)
            for t in new:
                self._reported.add(t.number)
                quiet_kind = is_infeasible(t) or is_repeat(t)
                log.info(trial_line(t, s["best"]), extra=VERBOSE_ONLY if quiet_kind else route)
            assert self._clock is not None
            if final or self._clock.due():
                log.info(f"search {min(s['finished'], self.budget)}/{self.budget} architectures trained "
                         f"({self._counts_text(s)}), best {s['best']}, elapsed "
                         f"{human_duration(self._clock.elapsed())}, ETA {self._eta(s['finished'])}", extra=route)
            if self._progress is not None:
                detail = f"best {s['best']} | {self._counts_text(s)} | ETA {self._eta(s['finished'])}"
                self._progress.update(self._task, completed=min(s["finished"], self.budget), detail=detail)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.refresh()

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._clock is None:  # __enter__ failed: nothing to finish
            return
        self.refresh(final=True)
        if self._progress is not None:
            self._progress.stop()


def summary_table(study: Any, *, top: int = 5) -> Any:
    """Best architectures (single objective) or the Pareto set (multi-objective, bicubic as the
    reference point) as a rich Table, with how many distinct architectures were trained."""
    trials = study.get_trials(deepcopy=False)
    counts = count_trials(trials)
    confirmed = confirmed_records(study.user_attrs)
    record = results_of_record(trials, confirmed)
    multi = len(study.directions) > 1
    bicubic = reference_psnr(record)
    if multi:
        rows = pareto_trials(trials)
        title = f"Pareto set: {len(rows)} of {len(record)} architectures trained to full fidelity"
    else:
        rows = [t for t in record if beats_reference(t)][:top]
        title = f"Best {len(rows)} of {len(record)} architectures trained to full fidelity"
        if record and not rows:
            title = f"No architecture beat bicubic ({len(record)} trained to full fidelity)"
    per = counts.repeats / counts.finished if counts.finished else 0.0
    title += (f" ({counts.finished} distinct trained, {counts.pruned} pruned, {counts.repeats} repeated proposals "
              f"({per:.2f} per trained architecture)"
              + (f"; bicubic {bicubic:.2f} dB" if bicubic is not None else "") + ")")
    protocol = next((t.user_attrs.get("protocol") for t in rows if t.user_attrs.get("protocol")), None)
    table = Table(title=title + (f" (PSNR protocol: {protocol})" if protocol else ""))
    shown = {str(t.user_attrs.get("arch_id")): confirmed.get(str(t.user_attrs.get("arch_id"))) for t in rows}
    with_confirmed = any(r is not None for r in shown.values())
    columns = ["#", "architecture", "params", "Mult-Adds", "PSNR", "bicubic", "time"]
    if with_confirmed:  # held-out score of fresh seeds, and selection score minus theirs on the same images
        columns[5:5] = ["confirmed", "gap"]
    for col in columns:
        table.add_column(col, justify="left" if col == "architecture" else "right")
    for t in rows:
        a = t.user_attrs
        macs = a.get("mult_adds")
        cells = [str(t.number), _describe(t), _fmt_params(a.get("params")), human_count(macs), f"{t.values[0]:.3f}"]
        if with_confirmed:
            c = shown.get(str(a.get("arch_id")))
            cells += [f"{c['psnr']:.3f} ± {c['sd']:.3f}", f"{c['gap']:+.3f}"] if c else ["-", "-"]
        cells += [f"{a.get('bicubic_psnr', math.nan):.3f}",
                  f"{a.get('wall_time_s', math.nan):.1f}s" + (" (reused)" if "reused_from" in a else "")]
        table.add_row(*cells)
    if with_confirmed:
        table.caption = ("confirmed: mean PSNR of fresh-seed trainings on the validation images the search did not "
                         "select on (± sd); gap: the search's score minus the fresh seeds' on the same images "
                         "(the winner's curse); confirmed architectures rank first")
    return table
