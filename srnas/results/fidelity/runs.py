"""The run log and the training runs of a fidelity study.

``runs.csv`` holds one row per training run (architecture, schedule, seed), appended and fsynced
as each run ends, so a study killed at any point resumes where it stopped (a line cut short by
a crash is cut off before the next append). `run_jobs` trains runs in worker processes.

Each run validates on the first validation image during training (its ``curve``: PSNR at
every evaluation point) and scores its final model on every validation image afterwards
(``images``), so that designs scored on the selection image and references scored on held-out
images come from the same runs.
"""

from __future__ import annotations

import csv
import io
import json
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from srnas.arch.config import ArchConfig
from srnas.data import load_eval_set, load_train_set
from srnas.errors import TrainingError
from srnas.fileio import atomic_write_text
from srnas.train.schedules import schedule_from_dict

RUN_COLUMNS = ("arch_id", "schedule", "train_id", "seed", "updates", "psnr", "images", "curve", "fit_cpu_s",
               "fit_wall_s", "eval_cpu_s", "eval_points", "protocol", "error", "config")


def read_csv(path: Path, columns: Sequence[str]) -> list[dict[str, str]]:
    """Complete rows of a CSV written by `append_row` (a line cut short by a crash is ignored)."""
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return [dict(r) for r in csv.DictReader(handle) if all(r.get(c) is not None for c in columns)]


def append_row(path: Path, columns: Sequence[str], row: Mapping[str, Any]) -> None:
    """Append one row and fsync it; first cut off a partial last line left by a crash."""
    new = not path.is_file() or path.stat().st_size == 0
    if not new:
        with path.open("rb+") as handle:
            data = handle.read()
            if not data.endswith(b"\n"):
                handle.truncate(data.rfind(b"\n") + 1)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    if new:
        writer.writeheader()
    writer.writerow({k: row[k] for k in columns})
    with path.open("a", encoding="utf-8", newline="") as handle:
        handle.write(buffer.getvalue())
        handle.flush()
        os.fsync(handle.fileno())


def read_runs(path: Path) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Runs of a ``runs.csv`` by (arch_id, train_id, seed), JSON fields decoded."""
    out = {}
    for raw in read_csv(path, RUN_COLUMNS):
        try:
            row: dict[str, Any] = dict(raw)
            row["seed"], row["updates"], row["eval_points"] = int(raw["seed"]), int(raw["updates"]), int(raw["eval_points"])
            for key in ("psnr", "fit_cpu_s", "fit_wall_s"):
                row[key] = float(raw[key])
            for key in ("images", "curve", "eval_cpu_s", "config"):
                row[key] = json.loads(raw[key])
        except (TypeError, ValueError):
            continue
        out[(row["arch_id"], row["train_id"], row["seed"])] = row
    return out


def append_run(path: Path, row: Mapping[str, Any]) -> None:
    """Append one training run (as `_train_run` returns it) to a ``runs.csv``."""
    append_row(path, RUN_COLUMNS, {**row, **{k: json.dumps(row[k]) for k in ("images", "curve", "eval_cpu_s")}})


def write_table(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Rows as a CSV written atomically; the columns are every key in order of first use."""
    buffer = io.StringIO()
    columns = list(dict.fromkeys(k for row in rows for k in row))
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    atomic_write_text(path, buffer.getvalue())


# ---- training runs ---------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _load_data(spec: str, scales: tuple[int, ...]) -> tuple[Any, dict[int, Any]]:
    """Training set for every scale, and one validation set per scale (as `srnas retrain`)."""
    return load_train_set(spec, list(scales)), {s: load_eval_set(spec, s) for s in scales}


def _init_worker(data: str, scales: tuple[int, ...], device: str, threads: int | None) -> None:
    _WORKER.update(data=_load_data(data, scales), device=device, threads=threads)


def _train_run(config_json: str, schedule: dict[str, Any], seed: int) -> dict[str, Any]:
    """Train one config in this (worker) process; score the final model on each validation image."""
    # lazy: torch (start-up)
    from srnas.train.evaluate import psnr_per_image
    from srnas.train.trainer import Trainer

    cfg = ArchConfig.from_json(config_json)
    sched = schedule_from_dict(schedule)
    train, val = _WORKER["data"]
    row: dict[str, Any] = {"arch_id": cfg.arch_id, "schedule": sched.name, "train_id": sched.fidelity_id,
                           "seed": seed, "updates": sched.updates, "eval_points": len(sched.eval_points()),
                           "config": cfg.to_json(), "error": ""}
    kwargs = {"threads": _WORKER["threads"]} if _WORKER["threads"] else {}
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        result = Trainer(cfg, train, val, sched, device=_WORKER["device"], seed=seed, **kwargs).fit()
    except TrainingError as exc:
        row.update(psnr=math.nan, images={}, curve=[], eval_cpu_s={}, protocol="", error=str(exc),
                   fit_cpu_s=round(time.process_time() - cpu, 3), fit_wall_s=round(time.perf_counter() - wall, 3))
        return row
    row["fit_cpu_s"] = round(time.process_time() - cpu, 3)
    row["fit_wall_s"] = round(time.perf_counter() - wall, 3)
    row["curve"] = [[int(u), float(p)] for u, p in result.psnr_curve]
    row["protocol"] = result.final["protocol"]
    row["images"], row["eval_cpu_s"] = psnr_per_image(result.model, val)
    images = row["images"]
    row["psnr"] = float(sum(images.values()) / len(images))
    return row


def run_jobs(jobs: Sequence[tuple[ArchConfig, Any, int]], *, data: str, scales: tuple[int, ...], device: str,
             workers: int, threads: int | None, on_done: Callable[[dict[str, Any]], None]) -> None:
    """Train every (config, schedule, seed) job, in ``workers`` processes; ``on_done(row)`` in order
    of completion (in this process)."""
    if not jobs:
        return
    if workers <= 1:
        _init_worker(data, scales, device, threads)
        try:
            for cfg, sched, seed in jobs:
                on_done(_train_run(cfg.to_json(), sched.to_dict(), seed))
        finally:
            _WORKER.clear()
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(data, scales, device, threads)) as pool:
        pending = {pool.submit(_train_run, cfg.to_json(), sched.to_dict(), seed) for cfg, sched, seed in jobs}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    on_done(future.result())
        except BaseException:
            for future in pending:
                future.cancel()
            raise
