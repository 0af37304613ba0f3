"""`run_fidelity`: one command per space, resumable, from the sample to the tables.

The study samples ``n`` architectures of a space (`srnas.results.fidelity.sample`), trains each
with every proxy schedule (``seeds`` seeds) and with a ``reference`` schedule at least 10x longer
(``reference_seeds`` other seeds), then analyses the runs (`srnas.results.fidelity.analysis`):
proxy designs scored on the first ``select_images`` validation images against the reference
scored on the remaining, held-out images.

Files in the output folder (resumable: a re-run trains only the runs not yet in ``runs.csv``;
another proxy list, reference or seed count reuses the runs it shares):

- ``runs.csv``: one row per training run (architecture, schedule, seed), appended as it ends;
- ``archs.csv``: the sampled architectures with costs and zero-cost scores;
- ``fidelity.csv``: one row per architecture and variant with every design's score;
- ``designs.csv``: every design's statistics; ``checkpoints.csv``: tau at every evaluation point;
- ``correlations.json``: all of it, with the sample's spread, the noise ceiling, the rule's
  steps and the defaults it picked (``recommended``, ``first_rung``);
- ``fidelity.html``: self-contained plotly figures; ``settings.json``: what the folder holds.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from srnas.arch.config import ArchConfig
from srnas.arch.cost import count_mult_adds, count_params
from srnas.data import load_eval_set
from srnas.errors import ConfigError, SrnasError
from srnas.fileio import atomic_write_text
from srnas.log import ProgressClock
from srnas.results.fidelity.analysis import ArchRecord, analyse, design_grid
from srnas.results.fidelity.plots import write_plot
from srnas.results.fidelity.runs import (
    RUN_COLUMNS, append_row, append_run, read_csv, read_runs, run_jobs, write_table,
)
from srnas.results.fidelity.sample import fixed_variant, sample_spread, stratified_sample, variant_sample
from srnas.results.fidelity.stats import BAND_TOLERANCE, BOOTSTRAP
from srnas.space.search_space import SearchSpace
from srnas.studies import trials_root
from srnas.train.schedules import get_schedule
from srnas.units import human_duration

ARCH_COLUMNS = ("arch_id", "describe", "params", "mult_adds", "mult_adds_learned", "skip", "synflow", "grad_norm",
                "synflow_cpu_s", "grad_norm_cpu_s", "config")
#: Reference runs use seeds ``seed + REFERENCE_SEED_OFFSET + j`` (initialisations unlike the proxy's).
REFERENCE_SEED_OFFSET = 1000
#: Evaluation points of a reference run (its curve on the selection image).
REFERENCE_EVAL_POINTS = 10
MAIN_VARIANT = "searchable"

__all__ = ["FidelityError", "FidelityResult", "run_fidelity", "parse_fidelity", "parse_fix", "default_out_dir",
           "RUN_COLUMNS"]


class FidelityError(SrnasError):
    """A fidelity study cannot run or resume."""


def parse_fidelity(text: str) -> Any:
    """A schedule from ``NAME[*FACTOR][@MAX_UPDATES]`` (see `srnas.train.get_schedule`)."""
    return get_schedule(text.strip())


def parse_fix(items: Iterable[str]) -> dict[str, Any]:
    """``["global_skip=bicubic", ...]`` -> ``{"global_skip": "bicubic"}`` (values read as YAML scalars)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"--fix {item!r}: expected KEY=VALUE, e.g. global_skip=bicubic")
        out[key.strip()] = yaml.safe_load(value.strip())
    return out


def default_out_dir(space: str, proxies: Sequence[str], reference: str) -> Path:
    """``trials/fidelity/<space>-<proxy>[+...]-vs-<reference>`` (names made file-safe)."""
    safe = lambda t: "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(t).stem or t)  # noqa: E731
    return trials_root() / "fidelity" / f"{safe(space)}-{'+'.join(safe(p) for p in proxies)}-vs-{safe(reference)}"


@dataclasses.dataclass
class FidelityResult:
    """Per-variant analyses (see `srnas.results.fidelity.analysis.analyse`), the files written
    and how many runs were trained now and found done."""

    variants: dict[str, dict[str, Any]]
    out_dir: Path
    trained: int
    skipped: int
    spread: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    csv: Path = dataclasses.field(init=False)
    json: Path = dataclasses.field(init=False)
    html: Path = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.csv, self.json, self.html = (self.out_dir / "fidelity.csv", self.out_dir / "correlations.json",
                                          self.out_dir / "fidelity.html")

    @property
    def designs(self) -> list[dict[str, Any]]:
        return [d for v in self.variants.values() for d in v["designs"]]


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        what = "a positive integer" if low == 1 else f"an integer >= {low}"
        extra = " (a rank correlation needs at least 3 points)" if name == "--n" else ""
        raise ConfigError(f"{name} must be {what}{extra}, got {value!r}")


def run_fidelity(space: str | SearchSpace, n: int, proxies: str | Sequence[str], reference: str, *,
                 data: str = "demo", out_dir: str | Path | None = None, seed: int = 0, seeds: int = 2,
                 reference_seeds: int = 3, select_images: int = 1, fix: Mapping[str, Any] | None = None,
                 device: str = "auto", workers: int = 1, threads: int | None = None,
                 resamples: int = BOOTSTRAP, train: bool = True,
                 log: Callable[[str], None] | None = None) -> FidelityResult:
    """Run (or resume) a fidelity study and write its files; see the module docstring.

    ``proxies``: one or more proxy fidelity names (a comma list is split). ``seeds``: training
    seeds per proxy; ``reference_seeds``: of the reference (its mean is the truth; two or more
    give its noise ceiling). ``select_images``: how many of the first validation images score the
    proxies (the rest, at least one, score the reference). ``fix``: a space variant studied next
    to the space (e.g. ``{"global_skip": "bicubic"}``). ``workers``: training processes
    (``threads`` torch threads each; default: cores / workers). ``train=False`` trains nothing
    and writes the tables from the runs recorded so far (each variant over its architectures
    with every run: a study cut short says so by its ``n``).
    """
    from srnas.train.device import cpu_count  # lazy: torch (start-up)

    say = log or (lambda _msg: None)
    _check_int("--n", n, 3)
    for name, value in (("--seeds", seeds), ("--reference-seeds", reference_seeds), ("--workers", workers),
                        ("--select-images", select_images)):
        _check_int(name, value, 1)
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
    val_names, bicubic = _bicubic(data, sp.scales)
    if select_images >= len(val_names):
        raise ConfigError(f"--select-images {select_images}: data {data!r} has {len(val_names)} validation image(s); "
                          "at least one must stay held out for the reference")
    select, held_out = val_names[:select_images], val_names[select_images:]
    fix = dict(fix or {})
    variant = fixed_variant(sp, fix) if fix else None
    out = Path(out_dir) if out_dir is not None else default_out_dir(sp.name, names, reference)
    out.mkdir(parents=True, exist_ok=True)
    # Runs are keyed by (architecture, schedule, seed): only what decides the sample must match.
    settings = {"space": sp.name, "space_canonical": sp.canonical(), "n": n, "seed": seed, "data": data, "fix": fix,
                "sampler": "dimensions"}
    _check_settings(out / "settings.json", settings)
    atomic_write_text(out / "settings.json", json.dumps(
        settings | {"proxies": {k: s.to_dict() for k, s in proxy_schedules.items()}, "seeds": seeds,
                    "reference": reference_schedule.to_dict(), "reference_seeds": reference_seeds,
                    "select_images": select, "held_out_images": held_out}, indent=2) + "\n")

    samples: dict[str, list[ArchConfig]] = {MAIN_VARIANT: stratified_sample(sp, n, seed=seed)}
    if variant is not None:
        samples[_variant_label(fix)] = variant_sample(samples[MAIN_VARIANT], variant, fix, seed=seed)
    configs: dict[str, ArchConfig] = {}
    for picks in samples.values():
        for cfg in picks:
            configs.setdefault(cfg.arch_id, cfg)

    # Training runs validate on the first image during training (the curve); the final model
    # is scored on every image afterwards, so selection and held-out designs share runs.
    train_proxy = {k: s.replace(val_images=1) for k, s in proxy_schedules.items()}
    train_reference = reference_schedule.replace(
        val_images=1, eval_every=max(1, reference_schedule.updates // REFERENCE_EVAL_POINTS))
    proxy_seeds = [seed + j for j in range(seeds)]
    ref_seeds = [seed + REFERENCE_SEED_OFFSET + j for j in range(reference_seeds)]
    runs_path = out / "runs.csv"
    done = read_runs(runs_path)
    jobs: list[tuple[ArchConfig, Any, int]] = []
    for cfg in sorted(configs.values(), key=lambda c: (_sample_order(samples, c), c.arch_id)):
        for sched in train_proxy.values():
            jobs += [(cfg, sched, s) for s in proxy_seeds]
        jobs += [(cfg, train_reference, s) for s in ref_seeds]
    todo = [(c, s, k) for c, s, k in jobs if (c.arch_id, s.fidelity_id, k) not in done]
    say(f"fidelity study: {len(configs)} architectures of space {sp.name}"
        + (f" and its variant {variant.name}" if variant else "")
        + f", {len(jobs)} runs ({len(jobs) - len(todo)} already done): proxies {', '.join(names)} ({seeds} seed(s)) "
          f"scored on {', '.join(select)} vs reference {reference_schedule.name} ({reference_schedule.updates} "
          f"updates, {reference_seeds} seed(s)) scored on held-out {', '.join(held_out)}, on {data} -> {out}")

    archs = _arch_rows(out / "archs.csv", configs.values(), seed=seed)
    counter = {"k": 0}
    clock = ProgressClock(len(todo))
    runs_left = Counter(c.arch_id for c, _, _ in todo)  # an architecture is done with its last run
    archs_todo = len(runs_left)

    def finished(row: dict[str, Any]) -> None:
        counter["k"] += 1
        append_run(runs_path, row)
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
    run_jobs(todo, data=data, scales=sp.scales, device=device, workers=n_workers, threads=per_worker, on_done=finished)

    skip_dim = sp.params.get("global_skip")
    designs = design_grid(names, seeds, skip_searched=skip_dim is not None and len(skip_dim.choices) > 1)
    results: dict[str, dict[str, Any]] = {}
    spread: dict[str, dict[str, Any]] = {}
    for label, picks in samples.items():
        records = _records(picks, archs, done, train_proxy, proxy_seeds, train_reference, ref_seeds)
        searched = skip_dim is not None and len(skip_dim.choices) > 1 and label == MAIN_VARIANT
        variant_designs = designs if searched else [d for d in designs if d.kind != "indicator"]
        results[label] = analyse(label, records, variant_designs, select=select, held_out=held_out,
                                 reference_updates=reference_schedule.updates, skip_searched=searched,
                                 resamples=resamples, seed=seed)
        spread[label] = sample_spread(sp if label == MAIN_VARIANT else variant, picks)  # type: ignore[arg-type]

    write_table(out / "fidelity.csv", [r for v in results.values() for r in v["table"]])
    write_table(out / "designs.csv", [d for v in results.values() for d in v["designs"]])
    write_table(out / "checkpoints.csv", [c | {"variant": k} for k, v in results.items() for c in v["checkpoints"]])
    payload = {"space": sp.name, "n": n, "seed": seed, "seeds": proxy_seeds, "data": data,
               "select_images": select, "held_out_images": held_out,
               "bicubic_psnr": dict(zip(val_names, bicubic, strict=True)),
               "protocol": sorted({r["protocol"] for r in done.values() if r["protocol"]}),
               "proxies": {k: {"fidelity_id": s.fidelity_id, "updates": s.updates, "eval_every": s.eval_every}
                           for k, s in proxy_schedules.items()},
               "reference": {"name": reference_schedule.name, "fidelity_id": reference_schedule.fidelity_id,
                             "updates": reference_schedule.updates, "seeds": ref_seeds},
               "band_tolerance": BAND_TOLERANCE, "bootstrap": resamples, "spread": spread,
               "variants": {k: {"archs": [c.arch_id for c in samples[k]], **{key: v[key] for key in (
                   "n", "chosen", "chosen_schedule", "steps", "first_rung", "first_rungs", "noise_ceiling", "designs",
                   "checkpoints", "reference_curve")}} for k, v in results.items()},
               "recommended": {k: v["chosen"] for k, v in results.items()},
               "first_rung": {k: v["first_rung"] for k, v in results.items()}}
    atomic_write_text(out / "correlations.json", json.dumps(payload, indent=2) + "\n")
    write_plot(results, out / "fidelity.html",
               title=f"Proxy fidelity on {sp.name}: scored on {', '.join(select)} vs {reference_schedule.name} "
                     f"({reference_schedule.updates} updates, {reference_seeds} seeds) on {', '.join(held_out)}")
    return FidelityResult(variants=results, out_dir=out, trained=len(todo), skipped=len(jobs) - len(todo),
                          spread=spread)


def _check_settings(path: Path, settings: Mapping[str, Any]) -> None:
    if not path.is_file():
        return
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        known = None
    changed = [k for k, v in settings.items() if not isinstance(known, dict) or known.get(k) != v]
    if changed:
        raise FidelityError(f"{path.parent} holds a fidelity study with other settings ({', '.join(changed)} differ; "
                            f"{path}); pass another -o folder, or the same settings to resume")


def _records(picks: Sequence[ArchConfig], archs: Mapping[str, Mapping[str, Any]],
             done: Mapping[tuple[str, str, int], dict[str, Any]], train_proxy: Mapping[str, Any],
             proxy_seeds: Sequence[int], train_reference: Any, ref_seeds: Sequence[int]) -> list[ArchRecord]:
    """The architectures of ``picks`` whose every run is recorded without error."""
    out = []
    for cfg in picks:
        proxies = {name: [done.get((cfg.arch_id, sched.fidelity_id, s)) for s in proxy_seeds]
                   for name, sched in train_proxy.items()}
        reference = [done.get((cfg.arch_id, train_reference.fidelity_id, s)) for s in ref_seeds]
        runs = [r for rs in proxies.values() for r in rs] + reference
        if all(r is not None and not r["error"] for r in runs):
            out.append(ArchRecord(cfg, archs[cfg.arch_id], proxies, reference))  # type: ignore[arg-type]
    return out


def _variant_label(fix: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in fix.items())


def _sample_order(samples: Mapping[str, list[ArchConfig]], cfg: ArchConfig) -> tuple[int, int]:
    """Main-sample architectures first, each variant's extra ones after (a cut-short study keeps
    whole architectures of the main sample)."""
    for rank, picks in enumerate(samples.values()):
        for i, c in enumerate(picks):
            if c.arch_id == cfg.arch_id:
                return rank, i
    return len(samples), 0


def _arch_rows(path: Path, configs: Iterable[ArchConfig], *, seed: int) -> dict[str, dict[str, Any]]:
    """Costs and zero-cost scores of every architecture (computed once, kept in ``archs.csv``)."""
    from srnas.results.zero_cost import ZERO_COST_SCORES  # lazy: torch (start-up)

    numeric = ("params", "mult_adds", "mult_adds_learned", "skip", "synflow", "grad_norm", "synflow_cpu_s",
               "grad_norm_cpu_s")
    known = {}
    for raw in read_csv(path, ARCH_COLUMNS):
        try:
            known[raw["arch_id"]] = {**raw, **{k: float(raw[k]) for k in numeric}}
        except ValueError:
            continue
    for cfg in configs:
        if cfg.arch_id in known:
            continue
        learned = cfg.replace(global_skip="none")  # the skip has no parameters, only Mult-Adds
        row: dict[str, Any] = {
            "arch_id": cfg.arch_id, "describe": cfg.describe(), "params": count_params(cfg),
            "mult_adds": max(count_mult_adds(cfg, scale=s) for s in cfg.scales),
            "mult_adds_learned": max(count_mult_adds(learned, scale=s) for s in cfg.scales),
            "skip": 1 if cfg.global_skip == "bicubic" else 0, "config": cfg.to_json()}
        for name, score in ZERO_COST_SCORES.items():
            t = time.process_time()
            row[name] = score(cfg, seed=seed)
            row[f"{name}_cpu_s"] = round(time.process_time() - t, 4)
        append_row(path, ARCH_COLUMNS, row)
        known[cfg.arch_id] = row
    return known


def _bicubic(data: str, scales: tuple[int, ...]) -> tuple[list[str], list[float]]:
    """Names of the validation images and the bicubic PSNR of each (mean over scales)."""
    from srnas.train.evaluate import evaluate_bicubic  # lazy: torch (start-up)

    sets = [load_eval_set(data, s) for s in scales]
    per_scale = [[r.psnr for r in evaluate_bicubic(v, scale=s, with_ssim=False).rows] for v, s in zip(sets, scales, strict=True)]
    return list(sets[0].names), [float(sum(v) / len(v)) for v in zip(*per_scale, strict=True)]
