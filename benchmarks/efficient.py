"""The efficient-SR family on this machine, measured in one run (docs/blocks.md):

1. CPU latency of each published preset (x4) in its training form and fused (re-parameterisable
   convs as one conv each, `srnas.arch.fuse`), median of ``--repeats`` forward passes on a
   ``--lr`` LR input, batch 1, fp32, ``--threads`` threads, both forms timed alternately;
2. a demo-data search over the CPU space ``efficient-tiny`` (``--budget`` architectures, the
   space's proxy, no confirmation), then its top 3 and the published presets at x2 trained again
   with ``--seeds`` fresh seeds at the same proxy and scored on the same image, so that the
   searched nets stand next to the presets with a seed spread.

    python benchmarks/efficient.py [--budget 40] [--seeds 2] [--lr 64] [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PRESETS = ("imdn", "rfdn", "rlfn", "rlfn-s", "span")


def latency_table(lr: int, repeats: int, threads: int) -> list[dict[str, Any]]:
    import torch

    from srnas.arch import build_model, count_params, preset_config
    from srnas.arch.cost import count_mult_adds, measure_latency

    torch.set_num_threads(threads)
    rows = []
    for name in PRESETS:
        cfg = preset_config(name, scale=4)
        torch.manual_seed(0)
        model = build_model(cfg).eval()
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(3):  # alternate, so that a change of machine load hits both forms
            for fused in (False, True):
                times[fused].append(measure_latency(model, (lr, lr), device="cpu", repeats=repeats, warmup=1,
                                                    fused=fused))
        hr = (lr * 4, lr * 4)
        row = {"preset": name, "params": count_params(cfg), "params_fused": count_params(cfg, fused=True),
               "gmacs": count_mult_adds(cfg, hr_size=hr) / 1e9, "gmacs_fused": count_mult_adds(cfg, hr_size=hr, fused=True) / 1e9,
               "ms": statistics.median(times[False]), "ms_fused": statistics.median(times[True])}
        rows.append(row)
        print(f"{name:7s} params {row['params']:>9,} -> {row['params_fused']:>9,}  "
              f"{row['gmacs']:6.2f}G -> {row['gmacs_fused']:6.2f}G  "
              f"{row['ms']:8.1f} ms -> {row['ms_fused']:8.1f} ms  x{row['ms'] / row['ms_fused']:.2f}", flush=True)
    return rows


def search_next_to_presets(budget: int, seeds: int, root: Path) -> dict[str, Any]:
    import optuna
    from optuna.trial import TrialState

    from srnas.arch import ArchConfig, count_params, preset_config
    from srnas.arch.cost import count_mult_adds
    from srnas.cli import main
    from srnas.search.objective import Objective
    from srnas.space import SearchSpace
    from srnas.train.schedules import get_schedule

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t0 = time.perf_counter()
    rc = main(["search", "--space", "efficient-tiny", "--budget", str(budget), "--study", "efficient-bench",
               "--confirm", "0", "--seed", "0", "--no-progress", "-q"])
    if rc != 0:
        raise SystemExit(f"efficient.py: the search failed with exit code {rc}")
    search_s = time.perf_counter() - t0
    study = optuna.load_study(study_name="efficient-bench", storage=f"sqlite:///{root / 'efficient-bench' / 'study.db'}")
    done = [t for t in study.trials if t.state == TrialState.COMPLETE and "infeasible" not in t.user_attrs]
    done.sort(key=lambda t: -t.values[0])
    top = [ArchConfig.from_dict(t.user_attrs["config"]) for t in done[:3]]
    space = SearchSpace.load("efficient-tiny")
    schedule = get_schedule(space.proxy)
    objective = Objective(space, schedule, data="demo", device="cpu", seed=0, threads=2)
    nets = [(f"searched #{t.number}", c) for t, c in zip(done[:3], top)]
    nets += [(name, preset_config(name, scale=2)) for name in PRESETS]
    rows = []
    for label, cfg in nets:
        scores = [float(objective.fit(cfg, seed=10_000 + s).final["psnr"]) for s in range(seeds)]
        row = {"net": label, "describe": cfg.describe(), "params_fused": count_params(cfg, fused=True),
               "gmacs_fused": count_mult_adds(cfg, fused=True) / 1e9, "psnr": scores,
               "mean": statistics.fmean(scores), "sd": statistics.stdev(scores) if len(scores) > 1 else 0.0}
        rows.append(row)
        print(f"{label:14s} {row['params_fused']:>9,} params {row['gmacs_fused']:7.2f}G  "
              f"{row['mean']:.3f} dB (sd {row['sd']:.3f}, {seeds} seeds)  {row['describe']}", flush=True)
    return {"budget": budget, "search_s": search_s, "trained": len(done), "proxy": schedule.name,
            "seeds": seeds, "rows": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", type=int, default=40)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--lr", type=int, default=64, help="LR side of the latency input (x4: HR 4x this)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-search", action="store_true")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    import os

    import torch

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"python {platform.python_version()}", flush=True)
    print(f"\nCPU latency at x4, LR {args.lr}x{args.lr}, batch 1, fp32, {args.threads} threads "
          f"(training form -> fused):", flush=True)
    out: dict[str, Any] = {"latency": latency_table(args.lr, args.repeats, args.threads)}
    if not args.skip_search:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["SRNAS_TRIALS_DIR"] = tmp
            print(f"\nsearch over efficient-tiny on the demo data, budget {args.budget}; top 3 and presets at x2 "
                  f"retrained with {args.seeds} fresh seeds:", flush=True)
            out["search"] = search_next_to_presets(args.budget, args.seeds, Path(tmp))
            print(f"search: {out['search']['search_s']:.0f} s for {out['search']['trained']} complete trials", flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
