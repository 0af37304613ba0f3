"""Search quality at equal budget: does the sampler beat random search?

Two comparisons on the demo data, each over several seeds with the same budget of distinct
trained architectures (``srnas search --budget N``, one worker per search, the space's default
proxy unless ``--proxy``):

- ``--objectives psnr``: TPE vs random; the score of a search is its best PSNR (results of
  record: nets trained to the last evaluation that beat bicubic);
- ``--objectives psnr,params``: NSGA-II vs random; the score is the hypervolume of the
  PSNR/params front, reference point (bicubic PSNR, the space's largest parameter count), with
  parameters divided by that maximum (so the hypervolume is in dB).

Prints, per arm, the median with the spread (min..max over seeds) and every seed's value;
writes ``results.json`` into ``--out``. Searches run ``--parallel`` at a time, each pinned to one
core. Studies are kept under ``--out`` (a re-run resumes finished ones: nothing is retrained).

    nice -n 19 python benchmarks/search_quality.py --budget 32 --seeds 3
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

ARMS = (("psnr", "tpe"), ("psnr", "random"), ("psnr,params", "nsga2"), ("psnr,params", "random"))


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


def _describe(config: Any) -> str | None:
    from srnas.arch import ArchConfig

    return ArchConfig.from_dict(config).describe() if isinstance(config, dict) else None


def study_score(name: str, root: Path, objectives: str, max_params: float) -> dict[str, Any]:
    """Best PSNR or hypervolume of one finished study, with its counts."""
    import optuna

    from srnas.outcomes import count_trials, pareto_trials, reference_psnr, results_of_record
    from srnas.studies import StudyHome

    study = optuna.load_study(study_name=name, storage=StudyHome(name, root).storage())
    trials = study.get_trials(deepcopy=False)
    records = results_of_record(trials)
    counts = count_trials(trials)
    ref = reference_psnr(records) or math.nan
    out: dict[str, Any] = {"trained": counts.finished, "pruned": counts.pruned, "repeats": counts.repeats,
                           "bicubic_psnr": ref}
    if objectives == "psnr":
        best = next((t for t in records if float(t.values[0]) > ref), None)
        out["score"] = float(best.values[0]) if best else ref
        out["best"] = _describe(best.user_attrs.get("config")) if best else None
    else:
        front = [(float(t.values[1]), float(t.values[0])) for t in pareto_trials(trials)]
        out["score"] = hypervolume(front, ref_psnr=ref, max_params=max_params)
        out["front"] = len(front)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=32, help="distinct architectures per search (default 32)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per arm (default 3)")
    parser.add_argument("--space", default="tiny")
    parser.add_argument("--data", default="demo")
    parser.add_argument("--proxy", default=None, help="proxy fidelity (default: the space's)")
    parser.add_argument("--parallel", type=int, default=min(2, os.cpu_count() or 1),
                        help="searches at a time, each on one core (default: 2 or the cores)")
    parser.add_argument("--out", type=Path, default=Path("trials/search-quality"))
    args = parser.parse_args(argv)

    from srnas.space import SearchSpace

    space = SearchSpace.load(args.space)
    max_params = float(space.summary()["params"][1])
    args.out.mkdir(parents=True, exist_ok=True)
    proxy = args.proxy or space.proxy or "tiny"
    jobs = [(obj, sampler, seed) for seed in range(args.seeds) for obj, sampler in ARMS]
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(args.parallel))
    env = os.environ | {"SRNAS_TRIALS_DIR": str(args.out.resolve())}
    running: dict[int, tuple[subprocess.Popen, tuple[str, str, int], float]] = {}
    walls: dict[str, float] = {}
    free = cores[: max(1, args.parallel)]

    def name_of(obj: str, sampler: str, seed: int) -> str:
        return f"{args.space}-{sampler}-{obj.replace(',', '_')}-b{args.budget}-s{seed}"

    pending = list(jobs)
    logs = args.out / "logs"
    logs.mkdir(exist_ok=True)
    while pending or running:
        while pending and free:
            obj, sampler, seed = pending.pop(0)
            core = free.pop(0)
            name = name_of(obj, sampler, seed)
            cmd = [sys.executable, "-m", "srnas", "search", "--budget", str(args.budget), "--space", args.space,
                   "--data", args.data, "--proxy", proxy, "--sampler", sampler, "--objectives", obj,
                   "--seed", str(seed), "--study", name, "--workers", "1", "--no-progress"]
            log = (logs / f"{name}.log").open("w")
            pin = (lambda c=core: os.sched_setaffinity(0, {c})) if hasattr(os, "sched_setaffinity") else None
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=pin)
            running[core] = (proc, (obj, sampler, seed), time.perf_counter())
            print(f"started {name} on core {core}", flush=True)
        time.sleep(2)
        for core, (proc, job, t0) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[core]
            free.append(core)
            name = name_of(*job)
            walls[name] = round(time.perf_counter() - t0, 1)
            if proc.returncode != 0:
                print(f"{name} failed (exit {proc.returncode}); see {logs / (name + '.log')}", flush=True)
                for other, _job, _t0 in running.values():
                    other.terminate()
                    other.wait()
                return 1
            print(f"finished {name} in {walls[name]:.0f} s", flush=True)

    results: dict[str, Any] = {"space": args.space, "data": args.data, "proxy": proxy, "budget": args.budget,
                               "seeds": args.seeds, "max_params": max_params, "arms": {}}
    for obj, sampler in ARMS:
        rows = []
        for seed in range(args.seeds):
            name = name_of(obj, sampler, seed)
            rows.append({"seed": seed, "study": name, "wall_s": walls.get(name),
                         **study_score(name, args.out.resolve(), obj, max_params)})
        scores = [r["score"] for r in rows]
        results["arms"][f"{sampler} ({obj})"] = {
            "objectives": obj, "sampler": sampler, "metric": "best PSNR (dB)" if obj == "psnr" else "hypervolume (dB)",
            "median": statistics.median(scores), "min": min(scores), "max": max(scores), "runs": rows}
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\n{args.space} space, {args.data} data, proxy {proxy}, budget {args.budget} distinct architectures, "
          f"{args.seeds} seeds")
    print(f"{'arm':28s} {'metric':18s} {'median':>9s} {'min..max':>19s}  per seed")
    for arm, r in results["arms"].items():
        per_seed = ", ".join(f"{x['score']:.3f}" for x in r["runs"])
        print(f"{arm:28s} {r['metric']:18s} {r['median']:9.3f} {r['min']:9.3f}..{r['max']:<9.3f}  {per_seed}")
    print(f"results: {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
