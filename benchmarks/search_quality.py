"""Search quality at equal compute: does srnas's default search beat random search?

Arms (each over ``--seeds`` paired seeds: seed s of every arm starts from the same seed):

- ``default``: what ``srnas search`` does: TPE (multivariate, grouped) proposing each
  architecture once, successive halving from the proxy's measured first rung;
- ``random-asha``: random search (each architecture once) with the same pruner;
- ``random``: random search without pruning;
- ``legacy``: the search as srnas ran it before (commit b4bd108): TPE without groups and without
  the distinct-architecture sampler, Hyperband from the first evaluation point (a sampler sees
  only its bracket's trials), repeats told to the study as new observations, infeasible
  configs told PRUNED. The benchmark re-creates those behaviours in its own process.

Every search of a setting gets the same compute: ``--max-updates`` (capped) or
``--pareto-max-updates`` training updates (pruned trials count the updates they ran), one
worker, one core. Two settings:

- ``capped``: ``--objectives psnr`` under ``--max-params`` (the space's largest nets excluded, so
  that size trades against quality). A search's score: its top architecture *after* its own
  confirmation (top 3 trained again on 2 fresh seeds, scored on the held-out demo photographs),
  retrained with the fidelity study's reference schedule (``tiny-cosine*10``) on 2 fresh seeds
  and scored on the held-out images (china, flower). Reference runs are cached by
  (architecture, seed) and shared with the fidelity study's ``runs.csv``.
- ``pareto``: ``--objectives psnr,params``; score: the hypervolume of the search's own
  PSNR/params front (selection image; no confirmation), parameters divided by the space's
  largest count, reference point (bicubic PSNR, that count): in dB.

Prints per arm the median score and, against ``default``, the paired median difference with a
bootstrap 95% interval (seeds resampled) and the Wilcoxon signed-rank p-value, plus the compute
each arm used; writes ``results.json`` into ``--out``. Searches run ``--parallel`` at a time,
each pinned to one core; a re-run resumes (finished studies and cached reference runs are kept).

    nice -n 19 python benchmarks/search_quality.py --seeds 10 --out benchmarks/search-quality
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {"capped": "psnr", "pareto": "psnr,params"}
ARMS = {"capped": ("default", "random-asha", "random", "legacy"), "pareto": ("default", "random", "legacy")}
REFERENCE = "tiny-cosine*10"
REFERENCE_SEEDS = (1000, 1001)
BOOTSTRAP = 5000


# ---- the arms ----------------------------------------------------------------------------------


def arm_options(arm: str, setting: str) -> dict[str, Any]:
    """The ``srnas.search`` options of an arm (the legacy arm's old behaviours are patched in)."""
    pruned = setting == "capped"
    return {"default": {"sampler": "tpe", "pruner": "asha" if pruned else None},
            "random-asha": {"sampler": "random", "pruner": "asha"},
            "random": {"sampler": "random", "pruner": "none" if pruned else None},
            "legacy": {"sampler": "tpe", "pruner": "hyperband" if pruned else None}}[arm]


def _legacy_patches() -> None:
    """Re-create srnas's search before the distinct-architecture sampler (b4bd108) in this process."""
    import optuna

    from srnas.search import optuna_engine, sampling, trial

    def make_sampler(settings: Any, space: Any = None) -> Any:
        return optuna.samplers.TPESampler(seed=settings.seed, multivariate=True, constant_liar=True)

    def make_pruner(settings: Any, schedule: Any) -> Any:
        kind = settings.effective_pruner
        if kind == "none":
            return optuna.pruners.NopPruner()
        return optuna.pruners.HyperbandPruner(min_resource=schedule.eval_points()[0], max_resource=schedule.updates,
                                              reduction_factor=3)

    def reuse(self: Any, t: Any, earlier: Any) -> Any:  # the repeat told as a new observation
        from optuna.trial import TrialState

        for key, value in earlier.user_attrs.items():
            if key not in trial._OWN_ATTRS:
                t.set_user_attr(key, value)
        t.set_user_attr("reused_from", earlier.number)
        if earlier.state == TrialState.COMPLETE:
            self.study.tell(t, list(earlier.values))
            return trial.Outcome("complete", float(earlier.values[0]), reused=True)
        for step, value in earlier.intermediate_values.items():
            t.report(value, step)
        self.study.tell(t, state=TrialState.PRUNED)
        return trial.Outcome("pruned", earlier.user_attrs.get("psnr"), reused=True)

    def infeasible(self: Any, t: Any, cfg: Any, costs: Any, why: str) -> Any:  # told PRUNED
        from optuna.trial import TrialState

        t.set_user_attr("infeasible", why)
        self.study.tell(t, state=TrialState.PRUNED)
        return trial.Outcome("infeasible")

    optuna_engine.make_sampler = make_sampler
    optuna_engine.make_pruner = make_pruner
    sampling.make_sampler = make_sampler
    trial.TrialRunner._reuse = reuse
    trial.TrialRunner._infeasible = infeasible


def run_arm(argv: list[str]) -> int:
    """``search_quality.py _arm ARM SETTING SEED STUDY MAX_UPDATES MAX_PARAMS``: one search."""
    import torch

    import srnas

    arm, setting, seed, study, max_updates, max_params = argv
    torch.set_num_threads(1)
    if arm == "legacy":
        _legacy_patches()
    options = {k: v for k, v in arm_options(arm, setting).items() if v is not None}
    srnas.search(study=study, budget=100_000, max_updates=int(max_updates), seed=int(seed), workers=1,
                 devices="cpu", objectives=SETTINGS[setting], confirm=3 if setting == "capped" else 0,
                 max_params=float(max_params) if setting == "capped" else None, progress=False, **options)
    return 0


# ---- scores --------------------------------------------------------------------------------------


def hypervolume(front: list[tuple[float, float]], *, ref_psnr: float, max_params: float) -> float:
    """Area dominated by ``front`` ((params, psnr) points; params minimised, PSNR maximised)
    above ``ref_psnr`` and below ``max_params``, params in units of ``max_params`` (dB).

    >>> hypervolume([(0.5, 31.0)], ref_psnr=30.0, max_params=1.0)
    0.5
    >>> hypervolume([(0.25, 30.5), (0.5, 31.0)], ref_psnr=30.0, max_params=1.0)
    0.625
    """
    pts = sorted((p / max_params, s) for p, s in front if s > ref_psnr and p <= max_params)
    area, best = 0.0, ref_psnr
    edges = [p for p, _ in pts] + [1.0]
    for (p, s), nxt in zip(pts, edges[1:]):
        best = max(best, s)
        area += (nxt - p) * (best - ref_psnr)
    return area


def study_summary(name: str, root: Path, setting: str, max_params: float) -> dict[str, Any]:
    """Counts, compute, and the setting's selection result of one finished study."""
    import optuna

    from srnas.outcomes import confirmed_records, count_trials, pareto_trials, reference_psnr, results_of_record
    from srnas.studies import StudyHome

    study = optuna.load_study(study_name=name, storage=StudyHome(name, root).storage())
    trials = study.get_trials(deepcopy=False)
    confirmed = confirmed_records(study.user_attrs)
    records = results_of_record(trials, confirmed)
    counts = count_trials(trials)
    ref = reference_psnr(records) or math.nan
    out: dict[str, Any] = {"trained": counts.finished, "pruned": counts.pruned, "repeats": counts.repeats,
                           "infeasible": counts.infeasible, "updates": counts.updates, "bicubic_psnr": ref}
    if setting == "capped":
        top = records[0] if records else None
        out["top"] = None if top is None else {
            "trial": top.number, "arch_id": top.user_attrs["arch_id"], "config": top.user_attrs["config"],
            "selection_psnr": float(top.values[0]), "params": top.user_attrs.get("params"),
            "confirmed": confirmed.get(top.user_attrs["arch_id"])}
    else:
        front = [(float(t.values[1]), float(t.values[0])) for t in pareto_trials(trials)]
        out["score"] = hypervolume(front, ref_psnr=ref, max_params=max_params)
        out["front"] = len(front)
    return out


def reference_scores(tops: dict[str, Any], cache: Path, *, parallel: int, log: Any) -> dict[str, float]:
    """arch_id -> mean held-out PSNR of the reference schedule over `REFERENCE_SEEDS` (trained
    where neither the cache nor the fidelity study has the run)."""
    from srnas.arch.config import ArchConfig
    from srnas.results.fidelity.runs import append_run, read_runs, run_jobs
    from srnas.train.schedules import get_schedule

    schedule = get_schedule(REFERENCE).replace(val_images=1)
    schedule = schedule.replace(eval_every=schedule.updates)  # not part of the fidelity
    done = {**read_runs(ROOT / "benchmarks" / "fidelity-tiny" / "runs.csv"), **read_runs(cache)}
    configs = {arch: ArchConfig.from_dict(cfg) for arch, cfg in tops.items()}
    jobs = [(cfg, schedule, s) for arch, cfg in configs.items() for s in REFERENCE_SEEDS
            if (arch, schedule.fidelity_id, s) not in done]
    log(f"reference: {len(configs)} architectures, {len(jobs)} runs to train ({REFERENCE}, seeds {REFERENCE_SEEDS})")

    def finished(row: dict[str, Any]) -> None:
        append_run(cache, row)
        done[(row["arch_id"], row["train_id"], row["seed"])] = row
        log(f"reference {row['arch_id']} seed {row['seed']}: {row['psnr']:.3f} dB ({row['fit_cpu_s']:.0f} CPU s)")

    run_jobs(jobs, data="demo", scales=(2,), device="cpu", workers=parallel, threads=1, on_done=finished)
    out = {}
    for arch in configs:
        runs = [done[(arch, schedule.fidelity_id, s)] for s in REFERENCE_SEEDS]
        out[arch] = statistics.mean((r["images"]["china"] + r["images"]["flower"]) / 2 for r in runs)
    return out


def paired(a: list[float], b: list[float], *, seed: int = 0) -> dict[str, Any]:
    """Median of a - b over paired seeds with a bootstrap 95% interval and Wilcoxon's p."""
    import numpy as np
    from scipy.stats import wilcoxon

    d = np.asarray(a) - np.asarray(b)
    rng = np.random.default_rng(seed)
    boots = np.median(d[rng.integers(0, len(d), (BOOTSTRAP, len(d)))], axis=1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    p = float(wilcoxon(d).pvalue) if np.any(d != 0) else 1.0
    return {"median": float(np.median(d)), "lo": float(lo), "hi": float(hi), "wins": int((d > 0).sum()),
            "losses": int((d < 0).sum()), "wilcoxon_p": p}


# ---- the run -------------------------------------------------------------------------------------


def _run_searches(jobs: list[tuple[str, str, int]], args: argparse.Namespace, max_params: float,
                  budget: dict[str, int]) -> dict[str, float]:
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(args.parallel))
    env = os.environ | {"SRNAS_TRIALS_DIR": str(args.out.resolve())}
    running: dict[int, tuple[subprocess.Popen, str, float]] = {}
    walls: dict[str, float] = {}
    free = cores[: max(1, args.parallel)]
    pending = list(jobs)
    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    while pending or running:
        while pending and free:
            setting, arm, seed = pending.pop(0)
            name = study_name(setting, arm, seed, budget[setting])
            core = free.pop(0)
            cmd = [sys.executable, __file__, "_arm", arm, setting, str(seed), name, str(budget[setting]),
                   str(max_params)]
            log = (logs / f"{name}.log").open("w")
            pin = (lambda c=core: os.sched_setaffinity(0, {c})) if hasattr(os, "sched_setaffinity") else None
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=pin)
            running[core] = (proc, name, time.perf_counter())
            print(f"started {name} on core {core}", flush=True)
        time.sleep(2)
        for core, (proc, name, t0) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[core]
            free.append(core)
            walls[name] = round(time.perf_counter() - t0, 1)
            if proc.returncode != 0:
                print(f"{name} failed (exit {proc.returncode}); see {logs / (name + '.log')}", flush=True)
                for other, _name, _t0 in running.values():
                    other.terminate()
                    other.wait()
                raise SystemExit(1)
            print(f"finished {name} in {walls[name]:.0f} s", flush=True)
    return walls


def study_name(setting: str, arm: str, seed: int, max_updates: int) -> str:
    return f"sq-{setting}-{arm}-u{max_updates}-s{seed}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_arm":
        return run_arm(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10, help="paired seeds per arm (default 10)")
    parser.add_argument("--max-updates", type=int, default=4500,
                        help="training updates per search of the capped setting (default 4500)")
    parser.add_argument("--pareto-max-updates", type=int, default=6000,
                        help="training updates per search of the pareto setting (default 6000)")
    parser.add_argument("--max-params", type=float, default=60_000, help="the capped setting's parameter cap")
    parser.add_argument("--settings", default="capped,pareto", help="capped, pareto or both")
    parser.add_argument("--parallel", type=int, default=min(2, os.cpu_count() or 1),
                        help="searches (and reference runs) at a time, each on one core")
    parser.add_argument("--out", type=Path, default=Path("trials/search-quality"))
    args = parser.parse_args(argv)

    from srnas.space import SearchSpace

    space = SearchSpace.load("tiny")
    max_params = float(space.summary()["params"][1])
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    args.out.mkdir(parents=True, exist_ok=True)
    budget = {"capped": args.max_updates, "pareto": args.pareto_max_updates}
    jobs = [(setting, arm, seed) for seed in range(args.seeds) for setting in settings for arm in ARMS[setting]]
    todo = [j for j in jobs if not (args.out / "logs" / f"{study_name(*j, budget[j[0]])}.done").is_file()]
    started = time.perf_counter()
    walls = _run_searches(todo, args, args.max_params, budget)
    for name in walls:
        (args.out / "logs" / f"{name}.done").write_text("ok\n", encoding="utf-8")
    results: dict[str, Any] = {"space": "tiny", "data": "demo", "proxy": space.proxy, "seeds": args.seeds,
                               "max_updates": budget, "max_params_cap": args.max_params,
                               "space_max_params": max_params, "reference": REFERENCE,
                               "reference_seeds": list(REFERENCE_SEEDS), "settings": {}}
    for setting in settings:
        rows = {arm: [{"seed": s, "study": study_name(setting, arm, s, budget[setting]),
                       **study_summary(study_name(setting, arm, s, budget[setting]), args.out.resolve(), setting,
                                       max_params)} for s in range(args.seeds)] for arm in ARMS[setting]}
        if setting == "capped":
            tops = {r["top"]["arch_id"]: r["top"]["config"] for rs in rows.values() for r in rs if r["top"]}
            ref = reference_scores(tops, args.out / "reference-runs.csv", parallel=args.parallel,
                                   log=lambda line: print(line, flush=True))
            for rs in rows.values():
                for r in rs:
                    r["score"] = ref[r["top"]["arch_id"]] if r["top"] else math.nan
        arms: dict[str, Any] = {}
        for arm, rs in rows.items():
            scores = [r["score"] for r in rs]
            arms[arm] = {"median": statistics.median(scores), "min": min(scores), "max": max(scores),
                         "updates_median": statistics.median(r["updates"] for r in rs),
                         "trained_median": statistics.median(r["trained"] for r in rs),
                         "repeats_per_trained": sum(r["repeats"] for r in rs) / max(1, sum(r["trained"] for r in rs)),
                         "runs": rs}
            if arm != "default":
                arms[arm]["default_minus_arm"] = paired([x["score"] for x in rows["default"]], scores)
        results["settings"][setting] = {
            "objectives": SETTINGS[setting],
            "metric": "reference PSNR of the confirmed top-1, held out (dB)" if setting == "capped"
            else "hypervolume of the PSNR/params front (dB)", "arms": arms}
    results["wall_s"] = round(time.perf_counter() - started, 1)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    for setting, block in results["settings"].items():
        print(f"\n{setting}: {block['metric']}, {args.seeds} paired seeds, {budget[setting]} updates per search")
        print(f"{'arm':12s} {'median':>8s} {'min..max':>17s} {'updates':>8s} {'trained':>8s} {'rep/arch':>8s}  "
              "default - arm: median [95% CI] (wins/losses, Wilcoxon p)")
        for arm, r in block["arms"].items():
            d = r.get("default_minus_arm")
            diff = (f"{d['median']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}] ({d['wins']}/{d['losses']}, "
                    f"p={d['wilcoxon_p']:.3f})") if d else "-"
            print(f"{arm:12s} {r['median']:8.3f} {r['min']:8.3f}..{r['max']:<8.3f} {r['updates_median']:8.0f} "
                  f"{r['trained_median']:8.0f} {r['repeats_per_trained']:8.2f}  {diff}")
    print(f"results: {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
