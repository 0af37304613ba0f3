"""The proxy-fidelity study: which cheap score ranks architectures as a longer training does?

`run_fidelity` samples ``n`` architectures of a space stratified by parameter count, in bands of
``per_band`` architectures whose parameter counts lie within 10% of each other, and trains each
with every proxy schedule and with a ``reference`` schedule (at least 10x longer), ``seeds``
times each. The final model of every run is scored on each validation image. Proxy *designs*
are then read off the same runs and compared side by side against the reference PSNR (mean
over the reference seeds and all validation images):

- every proxy schedule with 1 or ``seeds`` seeds averaged, scored on the first validation image
  (the demo: coffee) or on all of them;
- the proxy's validation curve extrapolated to the reference length (``a + b ln(updates)``
  fitted to the last two thirds of the curve);
- the zero-cost scores synflow and grad-norm (`srnas.results.zero_cost`) and the #params and
  Mult-Adds baselines.

A space variant with one dimension fixed (``fix={"global_skip": "bicubic"}``: the bicubic skip
on for every net instead of searchable) is studied next to the space itself with the same
designs: its sample is the main sample with the value forced (a duplicate or infeasible result
is replaced by the nearest unused config by parameters), so runs of configs in both are shared.

For each design: Kendall tau-b with a bootstrap 95% interval (architectures resampled), overall
and over the pairs of architectures whose parameter counts differ by at most 10% (``band``:
where #params cannot rank), Spearman rho, and the CPU seconds it costs per architecture
(process CPU time of the proxy trainings; scoring on more validation images adds the measured
CPU time of those images at each of the schedule's evaluation points).

Fidelity names: a proxy schedule (``tiny``, ``tiny-step``, ``tiny-cosine``, ``short``...),
optionally ``NAME*F`` (F times longer) and/or ``NAME@N`` (cut to N updates).

Files in the output folder (resumable: a re-run trains only the runs not yet recorded; another
proxy list, reference or seed count reuses the runs it shares):

- ``runs.csv``: one row per training run (architecture, schedule, seed), appended as it ends;
- ``archs.csv``: the sampled architectures with costs and zero-cost scores;
- ``fidelity.csv``: one row per architecture and variant with every design's score;
- ``designs.csv`` and ``correlations.json``: the statistics of every design;
- ``fidelity.html``: self-contained plotly figures; ``settings.json``: what the folder holds.
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
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from srnas.arch.config import ArchConfig
from srnas.arch.cost import count_mult_adds, count_params
from srnas.errors import ConfigError, SrnasError, TrainingError
from srnas.log import ProgressClock
from srnas.space import SearchSpace
from srnas.units import human_duration

RUNS_NAME, ARCHS_NAME, TABLE_NAME, DESIGNS_NAME = "runs.csv", "archs.csv", "fidelity.csv", "designs.csv"
RUN_COLUMNS = ("arch_id", "schedule", "train_id", "seed", "updates", "psnr", "images", "curve", "fit_cpu_s",
               "fit_wall_s", "eval_cpu_s", "eval_points", "protocol", "error", "config")
ARCH_COLUMNS = ("arch_id", "describe", "params", "mult_adds", "synflow", "grad_norm", "synflow_cpu_s",
                "grad_norm_cpu_s", "config")
#: Two architectures are in one parameter band when their counts differ by at most this fraction.
BAND_TOLERANCE = 0.10
#: Bootstrap resamples for the 95% intervals.
BOOTSTRAP = 2000
#: Reference runs use seeds ``seed + REFERENCE_SEED_OFFSET + j`` (initialisations unlike the proxy's).
REFERENCE_SEED_OFFSET = 1000
#: Largest space that is enumerated for sampling; larger ones are sampled at random.
ENUMERATE_LIMIT = 20_000
MAIN_VARIANT = "searchable"


class FidelityError(SrnasError):
    """A fidelity study cannot run or resume."""


# ---- fidelities ------------------------------------------------------------------------------


def parse_fidelity(text: str) -> Any:
    """A schedule from ``NAME[*FACTOR][@MAX_UPDATES]`` (see `srnas.train.get_schedule`)."""
    from srnas.train.schedules import get_schedule

    return get_schedule(text.strip())


# ---- sampling --------------------------------------------------------------------------------


def _pool(space: SearchSpace, *, seed: int, pool_size: int) -> list[ArchConfig]:
    """Distinct feasible configs of ``space`` sorted by (params, arch_id)."""
    if space.size() <= ENUMERATE_LIMIT:
        candidates = list(space.enumerate())
    else:
        candidates = space.sample_random(pool_size, seed=seed)
    unique: dict[str, ArchConfig] = {}
    for cfg in candidates:
        if space.satisfies(cfg):
            unique.setdefault(cfg.arch_id, cfg)
    return sorted(unique.values(), key=lambda c: (count_params(c), c.arch_id))


def _nearest(pool: Sequence[ArchConfig], target: float, used: set[str], rng: random.Random,
             within: float | None = None) -> ArchConfig | None:
    """An unused config of ``pool`` nearest to ``target`` params (log scale); ties broken at random.
    With ``within``, only configs whose params lie within that factor of ``target``."""
    best: list[ArchConfig] = []
    best_d = math.inf
    for cfg in pool:
        if cfg.arch_id in used:
            continue
        d = abs(math.log(count_params(cfg) / target))
        if within is not None and d > math.log(within):
            continue
        if d < best_d - 1e-12:
            best, best_d = [cfg], d
        elif abs(d - best_d) <= 1e-12:
            best.append(cfg)
    return rng.choice(best) if best else None


def stratified_sample(space: SearchSpace, n: int, *, seed: int = 0, per_band: int = 1,
                      pool_size: int = 4000) -> list[ArchConfig]:
    """``n`` distinct feasible configs spread over the space's parameter range, in bands.

    The candidate pool (every config of a space of at most `ENUMERATE_LIMIT`, else
    ``pool_size`` random draws) is sorted by parameter count and cut into ``ceil(n / per_band)``
    strata of equal size (quantile bins). In each stratum one config (the band's anchor) is
    drawn with ``seed``, then ``per_band - 1`` more from the unused configs whose parameter
    counts lie within a factor ``sqrt(1.1)`` of the anchor's (so any two of a band differ by at
    most 10%; the nearest ones when the band is sparse). Returned in ascending parameter order.
    """
    if isinstance(per_band, bool) or not isinstance(per_band, int) or per_band < 1:
        raise ConfigError(f"--per-band must be a positive integer, got {per_band!r}")
    pool = _pool(space, seed=seed, pool_size=pool_size)
    if len(pool) < n:
        raise ConfigError(f"space {space.name!r} has {len(pool)} feasible configs; --n {n} needs at least {n}")
    rng = random.Random(seed)
    bands = math.ceil(n / per_band)
    picks: list[ArchConfig] = []
    used: set[str] = set()
    for i in range(bands):
        lo, hi = (i * len(pool)) // bands, ((i + 1) * len(pool)) // bands
        anchor = pool[rng.randrange(lo, hi)]
        if anchor.arch_id in used:  # an earlier band reached into this stratum
            free = [c for c in pool[lo:hi] if c.arch_id not in used]
            anchor = rng.choice(free) if free else _nearest(pool, count_params(anchor), used, rng)  # type: ignore[assignment]
        band = [anchor]
        used.add(anchor.arch_id)
        size = min(per_band, n - len(picks))
        target = count_params(anchor)
        while len(band) < size:
            cfg = _nearest(pool, target, used, rng, within=math.sqrt(1 + BAND_TOLERANCE))
            if cfg is None:  # fewer configs than per_band within the band: take the nearest
                cfg = _nearest(pool, target, used, rng)
            assert cfg is not None  # len(pool) >= n
            band.append(cfg)
            used.add(cfg.arch_id)
        picks.extend(band)
    return sorted(picks, key=lambda c: (count_params(c), c.arch_id))


def _fix_field(space: SearchSpace, key: str) -> str:
    from srnas.space import DIMENSIONS

    for dim in DIMENSIONS:
        if dim.name == key and space.family in dim.families:
            if dim.per_block:
                raise ConfigError(f"--fix {key}: only a dimension with one value per net can be fixed "
                                  "(e.g. global_skip, res_scale, n_feats)")
            return dim.field
    allowed = ", ".join(d.name for d in DIMENSIONS if space.family in d.families and not d.per_block)
    raise ConfigError(f"--fix {key}: unknown dimension; allowed: {allowed}")


def fixed_variant(space: SearchSpace, fix: Mapping[str, Any]) -> SearchSpace:
    """``space`` with each dimension of ``fix`` fixed at its value (named ``SPACE[key=value]``)."""
    from srnas.space import ParamSpec

    params = dict(space.params)
    for key, value in fix.items():
        _fix_field(space, key)
        params[key] = ParamSpec(key, (value,))
    label = ",".join(f"{k}={v}" for k, v in fix.items())
    return dataclasses.replace(space, name=f"{space.name}[{label}]", params=params)


def variant_sample(picks: Sequence[ArchConfig], variant: SearchSpace, fix: Mapping[str, Any], *,
                   seed: int = 0, pool_size: int = 4000) -> list[ArchConfig]:
    """The configs of ``picks`` with ``fix`` forced, as configs of ``variant``; a duplicate or a
    config outside ``variant`` is replaced by the unused one nearest by parameters."""
    fields = {_fix_field(variant, k): v for k, v in fix.items()}
    pool = _pool(variant, seed=seed, pool_size=pool_size)
    rng = random.Random(seed)
    used: set[str] = set()
    out = []
    for cfg in picks:
        try:
            forced: ArchConfig | None = cfg.replace(**fields)
        except (ConfigError, ValueError):
            forced = None
        if forced is None or forced.arch_id in used or variant.params_of(forced) is None \
                or not variant.satisfies(forced):
            forced = _nearest(pool, count_params(cfg), used, rng)
            if forced is None:
                raise ConfigError(f"space {variant.name!r} has fewer than {len(picks)} feasible configs")
        used.add(forced.arch_id)
        out.append(forced)
    return sorted(out, key=lambda c: (count_params(c), c.arch_id))


# ---- statistics ------------------------------------------------------------------------------


def _signs(values: np.ndarray) -> np.ndarray:
    return np.sign(values[:, None] - values[None, :])


def band_pairs(params: Sequence[float], tolerance: float = BAND_TOLERANCE) -> np.ndarray:
    """``n x n`` mask of the pairs whose parameter counts differ by at most ``tolerance``
    (larger / smaller <= 1 + tolerance); the diagonal is False."""
    p = np.asarray(params, dtype=float)
    hi, lo = np.maximum(p[:, None], p[None, :]), np.minimum(p[:, None], p[None, :])
    mask = hi <= lo * (1 + tolerance) + 1e-9
    np.fill_diagonal(mask, False)
    return mask


def kendall_tau_b(x: Sequence[float], y: Sequence[float], pairs: np.ndarray | None = None) -> float | None:
    """Kendall tau-b of ``x`` vs ``y``, over every pair or only the pairs ``pairs`` marks
    (an ``n x n`` boolean mask); None where undefined (no pair untied in ``x`` or in ``y``)."""
    sx, sy = _signs(np.asarray(x, dtype=float)), _signs(np.asarray(y, dtype=float))
    mask = np.triu(np.ones_like(sx, dtype=bool), 1) if pairs is None else np.triu(pairs, 1)
    sx, sy = sx[mask], sy[mask]
    denom = math.sqrt(float(np.abs(sx).sum()) * float(np.abs(sy).sum()))
    return float((sx * sy).sum() / denom) if denom > 0 else None


def bootstrap_tau(x: Sequence[float], y: Sequence[float], params: Sequence[float] | None = None, *,
                  resamples: int = BOOTSTRAP, seed: int = 0, level: float = 0.95) -> tuple[float, float] | None:
    """Percentile bootstrap interval of `kendall_tau_b` (architectures resampled with
    replacement; pairs of one architecture with its own copy count as ties). With ``params``
    the tau is taken over the pairs of one parameter band (`band_pairs`). None when more than
    half of the resamples leave the statistic undefined."""
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(xa)
    if n < 2:
        return None
    sx, sy = _signs(xa), _signs(ya)
    band = band_pairs(params) if params is not None else None
    rng = np.random.default_rng(seed)
    upper = np.triu(np.ones((n, n), dtype=bool), 1)
    values = []
    for _ in range(resamples):
        idx = rng.integers(0, n, n)
        same = idx[:, None] == idx[None, :]
        keep = upper & ~same
        if band is not None:
            keep &= band[np.ix_(idx, idx)]
        bx, by = sx[np.ix_(idx, idx)][keep], sy[np.ix_(idx, idx)][keep]
        # Copies of one architecture are tied in both rankings: tau-b counts them in no denominator.
        denom = math.sqrt(float(np.abs(bx).sum()) * float(np.abs(by).sum()))
        if denom > 0:
            values.append(float((bx * by).sum() / denom))
    if len(values) < resamples / 2:
        return None
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


def rank_stats(x: Sequence[float], y: Sequence[float], params: Sequence[float], *,
               resamples: int = BOOTSTRAP, seed: int = 0) -> dict[str, Any]:
    """Kendall tau-b with its bootstrap 95% interval, overall and inside parameter bands, the
    number of band pairs, and Spearman rho, of ``x`` (a design's scores) vs ``y`` (reference)."""
    from scipy.stats import spearmanr

    band = band_pairs(params)
    overall = bootstrap_tau(x, y, resamples=resamples, seed=seed)
    inside = bootstrap_tau(x, y, params, resamples=resamples, seed=seed)
    rho = None
    if len(set(x)) > 1 and len(set(y)) > 1:
        value = float(spearmanr(x, y).statistic)
        rho = value if math.isfinite(value) else None
    return {"n": len(x), "tau": kendall_tau_b(x, y), "tau_lo": overall[0] if overall else None,
            "tau_hi": overall[1] if overall else None, "band_tau": kendall_tau_b(x, y, band),
            "band_lo": inside[0] if inside else None, "band_hi": inside[1] if inside else None,
            "band_pairs": int(np.triu(band, 1).sum()), "rho": rho}


def extrapolate_curve(curve: Sequence[Sequence[float]], to_updates: int) -> float:
    """PSNR at ``to_updates`` from ``a + b ln(update)`` fitted to the curve points at or after a
    third of the run (the last point alone when fewer than two)."""
    points = [(float(u), float(p)) for u, p in curve]
    if not points:
        raise ValueError("empty curve")
    last = points[-1][0]
    tail = [(u, p) for u, p in points if u >= last / 3]
    if len(tail) < 2:
        return points[-1][1]
    lu = np.log([u for u, _ in tail])
    b, a = np.polyfit(lu, [p for _, p in tail], 1)
    return float(a + b * math.log(to_updates))


# ---- designs ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Design:
    """One way to score an architecture: ``kind`` is ``proxy`` (``seeds`` runs of ``schedule``
    scored on the first ``images`` validation images), ``extrapolation`` (the first run's curve),
    ``zero-cost`` (a score at initialisation) or ``cost`` (#params, Mult-Adds)."""

    key: str
    label: str
    kind: str
    schedule: str | None = None
    seeds: int = 1
    images: int = 1


def proxy_designs(proxies: Sequence[str], seeds: int, images: int) -> list[Design]:
    """The design grid read off the runs: each proxy x {1, seeds} seeds x {1, images} images,
    its curve extrapolation, then the zero-cost scores and the cost baselines."""
    out = []
    for name in proxies:
        for k in sorted({1, seeds}):
            for v in sorted({1, images}):
                label = f"{name}, {k} seed{'s' if k > 1 else ''}, {v} val image{'s' if v > 1 else ''}"
                out.append(Design(f"{name}|s{k}|v{v}", label, "proxy", name, k, v))
        out.append(Design(f"{name}|extrapolated", f"{name} curve extrapolated", "extrapolation", name))
    out += [Design("synflow", "synflow (at init)", "zero-cost"), Design("grad_norm", "grad-norm (at init)", "zero-cost"),
            Design("params", "#params", "cost"), Design("mult_adds", "Mult-Adds", "cost")]
    return out


# ---- CSV -------------------------------------------------------------------------------------


def _read_csv(path: Path, columns: Sequence[str]) -> list[dict[str, str]]:
    """Complete rows of a CSV written by `_append` (a line cut short by a crash is ignored)."""
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return [dict(r) for r in csv.DictReader(handle) if all(r.get(c) is not None for c in columns)]


def _append(path: Path, columns: Sequence[str], row: Mapping[str, Any]) -> None:
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
    for raw in _read_csv(path, RUN_COLUMNS):
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


def _write_table(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    from srnas.fileio import atomic_write_text

    buffer = io.StringIO()
    columns = list(rows[0]) if rows else []
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    atomic_write_text(path, buffer.getvalue())


# ---- training runs ---------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _load_data(spec: str, scales: tuple[int, ...]) -> tuple[Any, dict[int, Any]]:
    """Training set for every scale, and one validation set per scale (as `srnas retrain`)."""
    from srnas.data import load_eval_set, load_train_set

    return load_train_set(spec, list(scales)), {s: load_eval_set(spec, s) for s in scales}


def _init_worker(data: str, scales: tuple[int, ...], device: str, threads: int | None) -> None:
    _WORKER.update(data=_load_data(data, scales), device=device, threads=threads)


def _train_run(config_json: str, schedule: dict[str, Any], seed: int) -> dict[str, Any]:
    """Train one config in this (worker) process; score the final model on each validation image."""
    from srnas.train.evaluate import evaluate_model
    from srnas.train.schedules import schedule_from_dict
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
    first = val[cfg.scales[0]]
    images: dict[str, float] = {}
    costs: dict[str, float] = {}
    for i, name in enumerate(first.names):
        t = time.process_time()
        scores = [evaluate_model(result.model, val[s].subset([i]), scale=s, with_ssim=False).psnr for s in cfg.scales]
        costs[name] = round(time.process_time() - t, 4)
        images[name] = float(sum(scores) / len(scores))
    row["images"], row["eval_cpu_s"] = images, costs
    row["psnr"] = float(sum(images.values()) / len(images))
    return row


def _run_jobs(jobs: Sequence[tuple[ArchConfig, Any, int]], *, data: str, scales: tuple[int, ...], device: str,
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
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

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


# ---- the study -------------------------------------------------------------------------------


@dataclasses.dataclass
class FidelityResult:
    """Per-variant tables (one row per architecture), design statistics, the recommended design
    and the files written."""

    tables: dict[str, list[dict[str, Any]]]
    designs: list[dict[str, Any]]
    recommended: dict[str, dict[str, Any] | None]
    out_dir: Path
    trained: int
    skipped: int
    csv: Path = dataclasses.field(init=False)
    json: Path = dataclasses.field(init=False)
    html: Path = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.csv, self.json, self.html = (self.out_dir / TABLE_NAME, self.out_dir / "correlations.json",
                                          self.out_dir / "fidelity.html")


def default_out_dir(space: str, proxies: Sequence[str], reference: str) -> Path:
    """``trials/fidelity/<space>-<proxy>[+...]-vs-<reference>`` (names made file-safe)."""
    from srnas.studies import trials_root

    safe = lambda t: "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(t).stem or t)  # noqa: E731
    return trials_root() / "fidelity" / f"{safe(space)}-{'+'.join(safe(p) for p in proxies)}-vs-{safe(reference)}"


def parse_fix(items: Iterable[str]) -> dict[str, Any]:
    """``["global_skip=bicubic", ...]`` -> ``{"global_skip": "bicubic"}`` (values read as YAML scalars)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"--fix {item!r}: expected KEY=VALUE, e.g. global_skip=bicubic")
        out[key.strip()] = yaml.safe_load(value.strip())
    return out


def _score(design: Design, arch: Mapping[str, Any], runs: Mapping[str, list[dict[str, Any]]],
           reference_updates: int) -> tuple[float, float]:
    """(score, CPU seconds) of ``design`` for one architecture."""
    if design.kind == "cost":
        return float(arch[design.key]), 0.0
    if design.kind == "zero-cost":
        return float(arch[design.key]), float(arch[f"{design.key}_cpu_s"])
    seeds = runs[design.schedule or ""]
    if design.kind == "extrapolation":
        return extrapolate_curve(seeds[0]["curve"], reference_updates), seeds[0]["fit_cpu_s"]
    values, cost = [], 0.0
    for run in seeds[:design.seeds]:
        names = list(run["images"])[:design.images]
        values.append(sum(run["images"][n] for n in names) / len(names))
        extra = sum(run["eval_cpu_s"][n] for n in names[1:])
        cost += run["fit_cpu_s"] + run["eval_points"] * extra
    return sum(values) / len(values), cost


def recommend(designs: Sequence[Mapping[str, Any]], variant: str = MAIN_VARIANT, *,
              kinds: Sequence[str] = ("proxy",)) -> dict[str, Any] | None:
    """Of ``variant``'s designs of ``kinds`` whose overall tau beats #params', the one with the
    best tau per CPU second (None if none beats #params).

    Only trained proxies by default: a search's objective is a PSNR on the validation set, which
    neither an extrapolated curve nor a zero-cost score gives (their rows are reported beside).
    """
    rows = [d for d in designs if d["variant"] == variant]
    base = next((d["tau"] for d in rows if d["design"] == "params"), None)
    if base is None:
        base = -1.0
    better = [d for d in rows if d["kind"] in kinds and d["tau"] is not None and d["tau"] > base and d["cpu_s"] > 0]
    return max(better, key=lambda d: d["tau"] / d["cpu_s"]) if better else None


def run_fidelity(space: str | SearchSpace, n: int, proxies: str | Sequence[str], reference: str, *,
                 data: str = "demo", out_dir: str | Path | None = None, seed: int = 0, seeds: int = 2,
                 per_band: int = 4, fix: Mapping[str, Any] | None = None, val_images: int | None = None,
                 device: str = "auto", workers: int = 1, threads: int | None = None,
                 resamples: int = BOOTSTRAP, train: bool = True,
                 log: Callable[[str], None] | None = None) -> FidelityResult:
    """Run (or resume) a fidelity study and write its files; see the module docstring.

    ``proxies``: one or more proxy fidelity names (a comma list is split). ``seeds``: training
    seeds per proxy and for the reference (the reference is their mean). ``fix``: a space
    variant studied next to the space (e.g. ``{"global_skip": "bicubic"}``). ``val_images``: how
    many validation images the "all images" designs and the reference use (None: all).
    ``workers``: training processes (``threads`` torch threads each; default: cores / workers).
    ``train=False`` trains nothing and writes the tables from the runs recorded so far (each
    variant over its architectures with every run: a study cut short says so by its ``n``).
    """
    from srnas.fileio import atomic_write_text
    from srnas.train.device import cpu_count

    say = log or (lambda _msg: None)
    if isinstance(n, bool) or not isinstance(n, int) or n < 3:
        raise ConfigError(f"--n must be an integer >= 3 (a rank correlation needs at least 3 points), got {n!r}")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"--seeds must be a positive integer, got {seeds!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"--workers must be a positive integer, got {workers!r}")
    if val_images is not None and (isinstance(val_images, bool) or not isinstance(val_images, int) or val_images < 1):
        raise ConfigError(f"--val-images must be a positive integer, got {val_images!r}")
    names = [p.strip() for p in ([proxies] if isinstance(proxies, str) else proxies) for p in p.split(",") if p.strip()]
    if not names:
        raise ConfigError("--proxy: give at least one proxy fidelity, e.g. --proxy tiny-step,tiny-cosine")
    sp = space if isinstance(space, SearchSpace) else SearchSpace.load(space)
    proxy_schedules = {name: parse_fidelity(name) for name in names}
    reference_schedule = parse_fidelity(reference)
    for name, sched in proxy_schedules.items():
        if sched.fidelity_id == reference_schedule.fidelity_id:
            raise ConfigError(f"--proxy {name!r} and --reference {reference!r} are the same fidelity; "
                              "compare two different ones, e.g. --proxy tiny --reference tiny*10")
        if reference_schedule.updates < sched.updates:
            raise ConfigError(f"--reference {reference!r} ({reference_schedule.updates} updates) is shorter than "
                              f"--proxy {name!r} ({sched.updates}); the reference should be the longer training")
    fix = dict(fix or {})
    variant = fixed_variant(sp, fix) if fix else None
    out = Path(out_dir) if out_dir is not None else default_out_dir(sp.name, names, reference)
    out.mkdir(parents=True, exist_ok=True)
    # Runs are keyed by (architecture, schedule, seed): only what decides the sample must match.
    settings = {"space": sp.name, "space_canonical": sp.canonical(), "n": n, "per_band": per_band, "seed": seed,
                "data": data, "fix": fix}
    settings_file = out / "settings.json"
    if settings_file.is_file():
        try:
            known = json.loads(settings_file.read_text(encoding="utf-8"))
        except ValueError:
            known = None
        if not isinstance(known, dict) or any(known.get(k) != v for k, v in settings.items()):
            changed = [k for k, v in settings.items() if not isinstance(known, dict) or known.get(k) != v]
            raise FidelityError(f"{out} holds a fidelity study with other settings ({', '.join(changed)} differ; "
                                f"{settings_file}); pass another -o folder, or the same settings to resume")
    atomic_write_text(settings_file, json.dumps(
        settings | {"proxies": {k: s.to_dict() for k, s in proxy_schedules.items()}, "seeds": seeds,
                    "reference": reference_schedule.to_dict(), "val_images": val_images}, indent=2) + "\n")

    samples: dict[str, list[ArchConfig]] = {MAIN_VARIANT: stratified_sample(sp, n, seed=seed, per_band=per_band)}
    if variant is not None:
        samples[_variant_label(fix)] = variant_sample(samples[MAIN_VARIANT], variant, fix, seed=seed)
    configs: dict[str, ArchConfig] = {}
    for picks in samples.values():
        for cfg in picks:
            configs.setdefault(cfg.arch_id, cfg)

    # Training runs validate on the first image during training (the curve); the final model
    # is scored on every image afterwards, so that 1-image and all-image designs share runs.
    train_proxy = {k: s.replace(val_images=1) for k, s in proxy_schedules.items()}
    train_reference = reference_schedule.replace(val_images=1, eval_every=reference_schedule.updates)
    ref_seeds = [seed + REFERENCE_SEED_OFFSET + j for j in range(seeds)]
    runs_path = out / RUNS_NAME
    done = read_runs(runs_path)
    jobs: list[tuple[ArchConfig, Any, int]] = []
    order = sorted(configs.values(), key=lambda c: (_band_order(samples, c), c.arch_id))
    for cfg in order:
        for sched in train_proxy.values():
            jobs += [(cfg, sched, seed + j) for j in range(seeds)]
        jobs += [(cfg, train_reference, s) for s in ref_seeds]
    todo = [(c, s, k) for c, s, k in jobs if (c.arch_id, s.fidelity_id, k) not in done]
    say(f"fidelity study: {len(configs)} architectures of space {sp.name}"
        + (f" and its variant {variant.name}" if variant else "")
        + f", {len(jobs)} runs ({len(jobs) - len(todo)} already done): proxies {', '.join(names)} vs reference "
          f"{reference_schedule.name} ({reference_schedule.updates} updates), {seeds} seed(s) each, on {data} -> {out}")

    archs = _arch_rows(out / ARCHS_NAME, configs.values(), seed=seed)
    counter = {"k": 0}
    clock = ProgressClock(len(todo))
    runs_left = Counter(c.arch_id for c, _, _ in todo)  # an architecture is done with its last run
    archs_todo = len(runs_left)

    def finished(row: dict[str, Any]) -> None:
        counter["k"] += 1
        _append(runs_path, RUN_COLUMNS, {**row, **{k: json.dumps(row[k]) for k in ("images", "curve", "eval_cpu_s")},
                                         "config": row["config"]})
        done[(row["arch_id"], row["train_id"], row["seed"])] = row | {"config": json.loads(row["config"])}
        what = f"{row['psnr']:.3f} dB" if not row["error"] else f"FAILED ({row['error'][:80]})"
        eta = f"elapsed {human_duration(clock.elapsed())}, ETA {human_duration(clock.eta(counter['k']))}"
        say(f"[{counter['k']}/{len(todo)}] {configs[row['arch_id']].describe()} {row['schedule']} seed {row['seed']}: "
            f"{what} ({row['fit_cpu_s']:.0f} CPU s); {eta}")
        runs_left[row["arch_id"]] -= 1
        if runs_left[row["arch_id"]] == 0:
            n_done = archs_todo - sum(1 for v in runs_left.values() if v > 0)
            say(f"architecture {n_done}/{archs_todo} done: {configs[row['arch_id']].describe()} "
                f"({row['arch_id']}); {eta}")

    if not train:
        if todo:
            say(f"--no-train: {len(todo)} runs missing; the tables cover the architectures with every run")
        todo = []
    n_workers = min(workers, max(1, len(todo)))
    per_worker = threads or (max(1, cpu_count() // n_workers) if n_workers > 1 else None)
    _run_jobs(todo, data=data, scales=sp.scales, device=device, workers=n_workers, threads=per_worker,
              on_done=finished)

    val_names, bicubic = _bicubic(data, sp.scales)
    images = min(val_images or len(val_names), len(val_names))
    designs = proxy_designs(names, seeds, images)
    tables: dict[str, list[dict[str, Any]]] = {}
    stats_rows: list[dict[str, Any]] = []
    for label, picks in samples.items():
        table, design_rows = _analyse(label, picks, archs, done, designs, train_proxy, train_reference, ref_seeds,
                                      seeds, images, reference_schedule.updates, resamples=resamples, seed=seed)
        tables[label] = table
        stats_rows += design_rows
    recommended = {label: recommend(stats_rows, label) for label in samples}

    _write_table(out / TABLE_NAME, [r for rows in tables.values() for r in rows])
    _write_table(out / DESIGNS_NAME, stats_rows)
    payload = {"space": sp.name, "variants": {k: [c.arch_id for c in v] for k, v in samples.items()},
               "n": n, "per_band": per_band, "seed": seed, "seeds": seeds, "data": data,
               "val_images": val_names[:images], "bicubic_psnr": dict(zip(val_names, bicubic, strict=True)),
               "protocol": sorted({r["protocol"] for r in done.values() if r["protocol"]}),
               "proxies": {k: {"fidelity_id": s.fidelity_id, "updates": s.updates} for k, s in proxy_schedules.items()},
               "reference": {"name": reference_schedule.name, "fidelity_id": reference_schedule.fidelity_id,
                             "updates": reference_schedule.updates, "seeds": ref_seeds},
               "band_tolerance": BAND_TOLERANCE, "bootstrap": resamples, "designs": stats_rows,
               "recommended": {k: (v["design"] if v else None) for k, v in recommended.items()}}
    atomic_write_text(out / "correlations.json", json.dumps(payload, indent=2) + "\n")
    write_plot(tables, stats_rows, out / "fidelity.html",
               title=f"Proxy fidelity on {sp.name}: vs {reference_schedule.name} ({reference_schedule.updates} "
                     f"updates, {seeds} seeds), n = {n}")
    return FidelityResult(tables=tables, designs=stats_rows, recommended=recommended, out_dir=out,
                          trained=len(todo), skipped=len(jobs) - len(todo))


def _variant_label(fix: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in fix.items())


def _band_order(samples: Mapping[str, list[ArchConfig]], cfg: ArchConfig) -> tuple[int, int]:
    """Main-sample architectures first, each variant's extra ones after (a cut-short study keeps
    whole architectures of the main sample)."""
    for rank, picks in enumerate(samples.values()):
        for i, c in enumerate(picks):
            if c.arch_id == cfg.arch_id:
                return rank, i
    return len(samples), 0


def _arch_rows(path: Path, configs: Iterable[ArchConfig], *, seed: int) -> dict[str, dict[str, Any]]:
    """Costs and zero-cost scores of every architecture (computed once, kept in ``archs.csv``)."""
    from srnas.results.zero_cost import ZERO_COST_SCORES

    known = {}
    for raw in _read_csv(path, ARCH_COLUMNS):
        try:
            known[raw["arch_id"]] = {**raw, **{k: float(raw[k]) for k in ARCH_COLUMNS[2:-1]}}
        except ValueError:
            continue
    for cfg in configs:
        if cfg.arch_id in known:
            continue
        row: dict[str, Any] = {"arch_id": cfg.arch_id, "describe": cfg.describe(), "params": count_params(cfg),
                               "mult_adds": max(count_mult_adds(cfg, scale=s) for s in cfg.scales), "config": cfg.to_json()}
        for name, score in ZERO_COST_SCORES.items():
            t = time.process_time()
            row[name] = score(cfg, seed=seed)
            row[f"{name}_cpu_s"] = round(time.process_time() - t, 4)
        _append(path, ARCH_COLUMNS, row)
        known[cfg.arch_id] = row
    return known


def _bicubic(data: str, scales: tuple[int, ...]) -> tuple[list[str], list[float]]:
    """Names of the validation images and the bicubic PSNR of each (mean over scales)."""
    from srnas.data import load_eval_set
    from srnas.train.evaluate import evaluate_bicubic

    sets = [load_eval_set(data, s) for s in scales]
    per_scale = [[r.psnr for r in evaluate_bicubic(v, scale=s, with_ssim=False).rows] for v, s in zip(sets, scales, strict=True)]
    return list(sets[0].names), [float(sum(v) / len(v)) for v in zip(*per_scale, strict=True)]


def _analyse(label: str, picks: Sequence[ArchConfig], archs: Mapping[str, Mapping[str, Any]],
             done: Mapping[tuple[str, str, int], dict[str, Any]], designs: Sequence[Design],
             train_proxy: Mapping[str, Any], train_reference: Any, ref_seeds: Sequence[int], seeds: int,
             images: int, reference_updates: int, *, resamples: int, seed: int
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One variant's table (one row per architecture with every run) and its design statistics."""
    table: list[dict[str, Any]] = []
    scores: dict[str, list[float]] = {d.key: [] for d in designs}
    costs: dict[str, list[float]] = {d.key: [] for d in designs}
    reference, params = [], []
    band_of = _bands(picks)
    for cfg in picks:
        refs = [done.get((cfg.arch_id, train_reference.fidelity_id, s)) for s in ref_seeds]
        runs = {name: [done.get((cfg.arch_id, sched.fidelity_id, seed + j)) for j in range(seeds)]
                for name, sched in train_proxy.items()}
        complete = all(r is not None and not r["error"] for r in refs) and \
            all(r is not None and not r["error"] for rs in runs.values() for r in rs)
        arch = archs[cfg.arch_id]
        row: dict[str, Any] = {"variant": label, "band": band_of[cfg.arch_id], "arch_id": cfg.arch_id,
                               "describe": cfg.describe(), "params": int(arch["params"]),
                               "mult_adds": int(arch["mult_adds"]), "synflow": arch["synflow"],
                               "grad_norm": arch["grad_norm"]}
        if not complete:
            table.append(row | {"reference_psnr": None})
            continue
        ref = sum(sum(list(r["images"].values())[:images]) / images for r in refs if r) / len(refs)  # type: ignore[union-attr]
        row["reference_psnr"] = ref
        for j, r in enumerate(refs):
            row[f"reference_seed{j}"] = r["psnr"] if r else None
        reference.append(ref)
        params.append(float(arch["params"]))
        good = {k: [r for r in v if r] for k, v in runs.items()}
        for d in designs:
            value, cpu = _score(d, arch, good, reference_updates)
            scores[d.key].append(value)
            costs[d.key].append(cpu)
            row[d.key] = value
        table.append(row)
    out = []
    for i, d in enumerate(designs):
        stats = rank_stats(scores[d.key], reference, params, resamples=resamples, seed=seed + i) if len(reference) >= 3 \
            else {"n": len(reference), "tau": None, "tau_lo": None, "tau_hi": None, "band_tau": None,
                  "band_lo": None, "band_hi": None, "band_pairs": 0, "rho": None}
        cpu = float(np.mean(costs[d.key])) if costs[d.key] else 0.0
        out.append({"variant": label, "design": d.key, "label": d.label, "kind": d.kind, **stats,
                    "cpu_s": round(cpu, 3),
                    "tau_per_cpu_s": (stats["tau"] / cpu if stats["tau"] is not None and cpu > 0 else None)})
    return table, out


def _bands(picks: Sequence[ArchConfig]) -> dict[str, int]:
    """Band number of each pick: consecutive picks (by params) within the band tolerance of the
    band's first one share a band."""
    out: dict[str, int] = {}
    band, first = -1, None
    for cfg in sorted(picks, key=lambda c: (count_params(c), c.arch_id)):
        p = count_params(cfg)
        if first is None or p > first * (1 + BAND_TOLERANCE) + 1e-9:
            band, first = band + 1, p
        out[cfg.arch_id] = band
    return out


# ---- plot ------------------------------------------------------------------------------------


def write_plot(tables: Mapping[str, Sequence[Mapping[str, Any]]], designs: Sequence[Mapping[str, Any]], path: Path,
               *, title: str) -> None:
    """A self-contained HTML: tau (overall and in parameter bands) of every design with its
    bootstrap interval per variant, reference PSNR against the recommended design, and the table."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from srnas.fileio import atomic_write_text
    from srnas.results.report import html_document

    variants = list(tables)
    fig = make_subplots(rows=len(variants), cols=2, column_widths=[0.62, 0.38], vertical_spacing=0.18,
                        subplot_titles=[t for v in variants for t in (f"{v}: Kendall tau with the reference (95% CI)",
                                                                      f"{v}: reference PSNR vs best design")])
    for i, v in enumerate(variants, 1):
        rows = [d for d in designs if d["variant"] == v]
        labels = [d["label"] for d in rows]
        for stat, lo, hi, name in (("tau", "tau_lo", "tau_hi", "overall"), ("band_tau", "band_lo", "band_hi",
                                                                           "inside 10% parameter bands")):
            y = [d[stat] for d in rows]
            err_hi = [None if d[stat] is None or d[hi] is None else d[hi] - d[stat] for d in rows]
            err_lo = [None if d[stat] is None or d[lo] is None else d[stat] - d[lo] for d in rows]
            fig.add_trace(go.Bar(x=labels, y=y, name=name, showlegend=i == 1, legendgroup=name,
                                 error_y={"type": "data", "array": err_hi, "arrayminus": err_lo}), row=i, col=1)
        fig.update_yaxes(range=[-1, 1], row=i, col=1)
        best = recommend(designs, v)
        if best is not None:
            pts = [r for r in tables[v] if r.get("reference_psnr") is not None]
            fig.add_trace(go.Scatter(x=[r[best["design"]] for r in pts], y=[r["reference_psnr"] for r in pts],
                                     mode="markers", text=[f"{r['describe']}<br>{r['arch_id']}" for r in pts],
                                     showlegend=False, hovertemplate="%{text}<br>%{x:.3f} -> %{y:.3f} dB<extra></extra>"),
                          row=i, col=2)
            fig.update_xaxes(title_text=best["label"], row=i, col=2)
            fig.update_yaxes(title_text="reference PSNR (dB)", row=i, col=2)
    fig.update_layout(title={"text": title}, template="plotly_white", height=560 * len(variants), barmode="group")

    def cell(value: Any) -> str:
        return "-" if value is None else (f"{value:+.3f}" if isinstance(value, float) else str(value))

    head = "".join(f"<th>{h}</th>" for h in ("variant", "design", "tau", "95% CI", "band tau", "95% CI",
                                             "band pairs", "rho", "CPU s / arch"))
    body_rows = "".join(
        f"<tr><td>{d['variant']}</td><td>{d['label']}</td><td>{cell(d['tau'])}</td>"
        f"<td>{cell(d['tau_lo'])} .. {cell(d['tau_hi'])}</td><td>{cell(d['band_tau'])}</td>"
        f"<td>{cell(d['band_lo'])} .. {cell(d['band_hi'])}</td><td>{d['band_pairs']}</td><td>{cell(d['rho'])}</td>"
        f"<td>{d['cpu_s']:.1f}</td></tr>" for d in designs)
    body = (fig.to_html(full_html=False, include_plotlyjs=False, div_id="fig-fidelity",
                        config={"displaylogo": False})
            + f"<table id='table-designs'><tr>{head}</tr>{body_rows}</table>")
    atomic_write_text(path, html_document(title, body))
