"""Training throughput, measured honestly: a reference loop against srnas's Trainer, same model,
same device, same run; plus where a whole proxy trial's time goes, and (CUDA) several workers
sharing one GPU.

(a) reference: what the EDSR authors' code does per update: a torch DataLoader over decoded
    images (random crop + flips/transpose in NumPy per patch, collated on the host, copied to
    the device), fp32, NCHW, eager, Adam, ``loss.item()`` every step, with PyTorch's default
    backend settings (no cuDNN autotuning, no TF32 matmuls) whatever srnas set before.
(b) srnas: `Trainer.update_once` after `Trainer.prepare`, i.e. exactly the path `fit` takes:
    on-device patch sampling, the device policy (CPU: channels_last, threads, fused Adam; CUDA:
    bf16 autocast, channels_last, whole-step CUDA graphs, fused capturable Adam), loss checks;
    and on CUDA also (c) the same with ``torch.compile`` instead of the hand-made graphs.

Rows: EDSR-baseline x2 (batch 16, LR 48, the paper's), MDSR-baseline (x2/x3/x4 drawn per
batch, LR 48) and the tiny proxy net (the tiny space's preset: 4 blocks, 32 channels, bicubic
skip) at the tiny proxy's own LR patch 24. Loops run in alternating timed rounds (at least 3,
each at least 1 s); the best round counts and the median is shown too.

Trial share: whole proxy trials (costs, data on the device, training, validation, sample image)
through the search objective, for the ``tiny`` and ``short`` proxies: the share of each trial's
seconds spent outside training updates (`time_split`), for the first (cold: the training set
goes to the device, the bicubic baseline and the scorer are set up, graphs are captured) and
the second (steady state, another architecture of the same size) trial of a worker. Workers
per GPU (CUDA): 1, 2 and 4 processes training the tiny proxy net on one GPU, started together:
each warms up, then waits at a barrier; all then train over one common window, and the total
is the patches all of them trained in that window divided by its length. The JSON is rewritten
after every row.

    .venv/bin/python benchmarks/train_throughput.py                  # CPU (+ CUDA when present), ~5 min on 2 cores
    .venv/bin/python benchmarks/train_throughput.py --device cuda --json out.json
    .venv/bin/python benchmarks/train_throughput.py --models tiny-proxy --trials tiny
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from srnas.arch import ArchConfig, build_model, preset_config  # noqa: E402
from srnas.data import SRImageSet  # noqa: E402
from srnas.train import ProxySchedule, Trainer, get_schedule  # noqa: E402
from srnas.train.device import cpu_count, cuda_backend_flags  # noqa: E402

#: name -> (config, LR patch)
MODELS: dict[str, tuple[Callable[[], ArchConfig], int]] = {
    "edsr-baseline": (lambda: preset_config("edsr-baseline", scale=2), 48),
    "mdsr-baseline": (lambda: preset_config("mdsr-baseline"), 48),
    "tiny-proxy": (lambda: ArchConfig(n_resblocks=4, n_feats=32, global_skip="bicubic"), 24),
}
BATCH = 16
MIN_ROUND_S = 1.0
MIN_ROUNDS = 3


def bench_data(scales: tuple[int, ...] = (2, 3, 4)) -> tuple[SRImageSet, SRImageSet]:
    """The demo photographs (training and validation sets); on a machine whose packages lack
    some of them (a bare GPU box), scikit-image's training photographs and coffee alone."""
    from srnas.data import demo_split

    try:
        return demo_split(scales)
    except Exception as exc:  # e.g. scikit-learn's sample photographs missing
        import skimage.data

        from srnas.data import imresize, modcrop

        print(f"(demo validation photographs unavailable: {type(exc).__name__}; using coffee alone)")
        step = 12  # every scale divides the crop

        def one(name: str, img: np.ndarray) -> tuple[str, np.ndarray]:
            return name, modcrop(img, step)

        train = [one(n, getattr(skimage.data, n)()) for n in ("astronaut", "rocket", "chelsea")]
        train.append(one("motorcycle", skimage.data.stereo_motorcycle()[0]))
        val = [one("coffee", skimage.data.coffee())]

        def as_set(name: str, items: list[tuple[str, np.ndarray]]) -> SRImageSet:
            hr = [np.ascontiguousarray(i[:, :, :3]) for _, i in items]
            return SRImageSet(name, [n for n, _ in items], hr, {s: [imresize(h, 1 / s) for h in hr] for s in scales},
                              protocol="benchmark")

        return as_set("bench-train", train), as_set("bench-val", val)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def torch_defaults() -> contextlib.AbstractContextManager[None]:
    """PyTorch's own backend defaults for the reference loop (srnas's policy sets others)."""
    return cuda_backend_flags(benchmark=False, tf32_matmul=False, tf32_cudnn=True)


class ReferencePatches(torch.utils.data.Dataset):
    """EDSR-PyTorch style: one random aligned crop of a random image, augmented in NumPy."""

    def __init__(self, data: SRImageSet, scale: int, patch: int, length: int) -> None:
        self.hr = [np.asarray(h) for h in data.hr]
        self.lr = [np.asarray(lr) for lr in data.lr[scale]]
        self.scale, self.patch, self.length = scale, patch, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = random.randrange(len(self.hr))
        lr, hr, p, s = self.lr[i], self.hr[i], self.patch, self.scale
        y = random.randrange(0, lr.shape[0] - p + 1)
        x = random.randrange(0, lr.shape[1] - p + 1)
        lr_p = lr[y:y + p, x:x + p]
        hr_p = hr[y * s:(y + p) * s, x * s:(x + p) * s]
        hflip, vflip, rot90 = random.random() < 0.5, random.random() < 0.5, random.random() < 0.5

        def augment(img: np.ndarray) -> np.ndarray:
            if hflip:
                img = img[:, ::-1]
            if vflip:
                img = img[::-1]
            if rot90:
                img = img.transpose(1, 0, 2)
            return img

        def to_tensor(img: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()

        return to_tensor(augment(lr_p)), to_tensor(augment(hr_p))


class ReferenceLoop:
    """The reference-style loop; MDSR takes the scales in turn (one DataLoader per scale)."""

    def __init__(self, cfg: ArchConfig, data: SRImageSet, device: torch.device, patch: int, workers: int,
                 length: int) -> None:
        torch.manual_seed(0)
        random.seed(0)
        self.device = device
        self.scales = cfg.scales
        self.model = build_model(cfg).to(device).train()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
        self.batches = {s: iter(torch.utils.data.DataLoader(
            ReferencePatches(data, s, patch, length * BATCH), batch_size=BATCH, shuffle=True,
            num_workers=workers, pin_memory=device.type == "cuda", drop_last=True)) for s in self.scales}
        self.step_count = 0
        self.policy = "fp32 NCHW eager, DataLoader" + (f" ({workers} workers)" if workers else "") + ", torch defaults"

    def run(self, n: int) -> None:
        with torch_defaults():
            for _ in range(n):
                s = self.scales[self.step_count % len(self.scales)]
                self.step_count += 1
                lr, hr = next(self.batches[s])
                lr, hr = lr.to(self.device, non_blocking=True), hr.to(self.device, non_blocking=True)
                self.opt.zero_grad()
                loss = F.l1_loss(self.model(lr, scale=s), hr)
                loss.backward()
                self.opt.step()
                loss.item()  # the authors' loss logger reads every loss


class SrnasLoop:
    """`Trainer.update_once` after `Trainer.prepare`: exactly the path `fit` takes."""

    def __init__(self, cfg: ArchConfig, data: SRImageSet, device: torch.device, patch: int, precision: str,
                 compile: str | None = None) -> None:
        sched = ProxySchedule(name="bench", updates=10**6, batch=BATCH, patch=patch, lr=1e-4, eval_every=10**6)
        self.trainer = Trainer(cfg, data, data, sched, device=device, precision=precision, compile=compile)
        self.trainer.prepare()

    @property
    def policy(self) -> str:
        text = self.trainer.policy.describe() + (f" compile={self.trainer.compile}" if self.trainer.compile else "")
        return text + (f" (graphs off: {self.trainer.graph_failure})" if self.trainer.graph_failure else "")

    def run(self, n: int) -> None:
        for _ in range(n):
            self.trainer.update_once()
        self.trainer._flush_losses()  # the loss check (a device sync on CUDA) belongs to the cost


def timed(loop: ReferenceLoop | SrnasLoop, device: torch.device, n: int) -> float:
    """Seconds per update over ``n`` updates."""
    _sync(device)
    start = time.perf_counter()
    loop.run(n)
    _sync(device)
    return (time.perf_counter() - start) / n


def steps_for(loop: ReferenceLoop | SrnasLoop, device: torch.device) -> int:
    """Updates that make a round of at least `MIN_ROUND_S` (from a short probe)."""
    n, per = 1, timed(loop, device, 1)
    while per * n < 0.2:
        n *= 4
        per = timed(loop, device, n)
    return max(1, math.ceil(MIN_ROUND_S / per))


def compare(cfg: ArchConfig, data: SRImageSet, device: torch.device, *, patch: int, warmup: int, rounds: int,
            workers: int, precision: str, compile: str | None = None) -> dict[str, Any]:
    """The reference and srnas loops on one model, in alternating rounds (best of each counts)."""
    ours = SrnasLoop(cfg, data, device, patch, precision)
    ours.run(warmup)
    our_n = steps_for(ours, device)
    ref = ReferenceLoop(cfg, data, device, patch, workers, length=warmup + 4 + our_n * rounds * 4)
    ref.run(warmup)
    ref_n = steps_for(ref, device)
    loops: dict[str, tuple[Any, int]] = {"reference": (ref, ref_n), "srnas": (ours, our_n)}
    if compile:
        comp = SrnasLoop(cfg, data, device, patch, precision, compile=compile)
        comp.run(warmup)
        loops["srnas-compile"] = (comp, steps_for(comp, device))
    times: dict[str, list[float]] = {k: [] for k in loops}
    for _ in range(max(rounds, MIN_ROUNDS)):
        for name, (loop, n) in loops.items():
            times[name].append(timed(loop, device, n))
    row: dict[str, Any] = {"patch": patch, "batch": BATCH, "rounds": len(times["reference"])}
    for name, ts in times.items():
        best = min(ts)
        row[name] = {"ms": best * 1e3, "median_ms": statistics.median(ts) * 1e3, "patches_s": BATCH / best,
                     "steps_per_round": loops[name][1], "policy": loops[name][0].policy}
    row["ratio"] = row["srnas"]["patches_s"] / row["reference"]["patches_s"]
    if "srnas-compile" in row:
        row["compile_ratio"] = row["srnas-compile"]["patches_s"] / row["reference"]["patches_s"]
    return row


def trial_share(proxy: str, device: str, *, data: tuple[SRImageSet, SRImageSet] | None = None) -> list[dict[str, Any]]:
    """Two whole proxy trials of one worker through the search objective: the tiny space's
    preset (cold), then the same net with its kernels changed (steady state)."""
    from srnas.search.objective import Objective
    from srnas.space import SearchSpace

    space = SearchSpace.from_dict({"name": "bench", "parameters": {"n_resblocks": [4], "n_feats": [32],
                                                                  "kernel_size": [3, 5], "global_skip": ["bicubic"]}})
    first = MODELS["tiny-proxy"][0]()
    objective = Objective(space, get_schedule(proxy), data="demo", device=device)
    if data is not None:
        objective._train, objective._val = data[0], data[1]
    objective.load_data()
    rows = []
    for which, cfg in (("cold", first), ("steady", first.replace(kernel_sizes=(3, 5, 3, 5)))):
        start = time.perf_counter()
        costs = space.costs(cfg)
        evaluation = objective.evaluate(cfg, trial_seed=len(rows), costs=costs)
        total = time.perf_counter() - start
        if evaluation.sample_png is not None:
            evaluation.sample_png.unlink(missing_ok=True)
        split = evaluation.attrs["time_split"]
        rows.append({"proxy": proxy, "device": device, "trial": which, "total_s": total,
                     **{f"{k}_s": v for k, v in split.items()}, "outside_share": 1.0 - split["train"] / total,
                     "updates": evaluation.attrs["updates"], "first_replay_s": evaluation.attrs.get("first_replay_s")})
    return rows


def worker_throughput(device: str, model: str, seconds: float) -> dict[str, float]:
    """One process of a workers-per-GPU row: warm up, say ``ready``, wait for ``go DEADLINE``
    on stdin, then train until the (wall-clock) deadline; the patches trained and the window."""
    cfg_fn, patch = MODELS[model]
    train, _ = bench_data(cfg_fn().scales)
    loop = SrnasLoop(cfg_fn(), train, torch.device(device), patch, "auto")
    dev = torch.device(device)
    loop.run(20)
    _sync(dev)
    print("ready", flush=True)
    line = sys.stdin.readline().split()
    start, deadline = time.time(), float(line[1])
    n = 0
    while time.time() < deadline:
        loop.run(5)
        n += 5
    _sync(dev)
    return {"patches": n * BATCH, "start": start, "end": time.time()}


def workers_per_gpu(counts: tuple[int, ...], model: str = "tiny-proxy", seconds: float = 8.0) -> list[dict[str, Any]]:
    """Total patches/s of K processes on one GPU (each its own process, as search workers are),
    timed over one common window after all of them warmed up (see the module docstring)."""
    rows = []
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
    for k in counts:
        procs = [subprocess.Popen([sys.executable, __file__, "--child-worker", model, str(seconds)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  env={**os.environ, "CUDA_VISIBLE_DEVICES": gpu}) for _ in range(k)]
        for p in procs:  # the barrier: every worker warmed up
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        go = time.time() + 0.5
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(f"go {go + seconds}\n")
            p.stdin.flush()
        results = []
        for p in procs:
            out, _ = p.communicate(timeout=600)
            results.append(json.loads(out.strip().splitlines()[-1]))
        window = max(r["end"] for r in results) - max(min(r["start"] for r in results), go)
        total = sum(r["patches"] for r in results)
        rows.append({"workers": k, "window_s": round(window, 3), "total_patches_s": total / window,
                     "per_worker": [r["patches"] / window for r in results]})
    return rows


def main(argv: list[str] | None = None, on_row: Callable[[dict[str, Any]], None] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto", help="auto (cpu, plus cuda when present), cpu or cuda")
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma list of {', '.join(MODELS)}")
    ap.add_argument("--trials", default="tiny,short", help="proxies whose whole-trial time split is measured ('' for none)")
    ap.add_argument("--rounds", type=int, default=MIN_ROUNDS, help=f"alternating timed rounds per loop (>= {MIN_ROUNDS})")
    ap.add_argument("--warmup", type=int, default=None, help="untimed updates first (default 2 CPU, 30 CUDA)")
    ap.add_argument("--workers", type=int, default=None,
                    help="DataLoader workers of the reference loop (default 0 on CPU, 4 on CUDA)")
    ap.add_argument("--precision", default="auto", help="srnas precision: auto (bf16 on CUDA cards that have it), fp32, bf16")
    ap.add_argument("--compile", default="inductor:reduce-overhead",
                    help="torch.compile variant timed on CUDA as a third loop ('' to skip)")
    ap.add_argument("--per-gpu", default="1,2,4", help="CUDA: worker processes per GPU to time ('' to skip)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    ap.add_argument("--child-worker", nargs=2, metavar=("MODEL", "SECONDS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child_worker:
        print(json.dumps(worker_throughput("cuda:0", args.child_worker[0], float(args.child_worker[1]))))
        return 0

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if args.device == "auto" else [args.device]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        if m not in MODELS:
            ap.error(f"unknown model {m!r}; choose from {', '.join(MODELS)}")
    torch.set_num_threads(cpu_count())
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {cpu_count()} CPU threads"
          + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))
    data = bench_data()
    rows: list[dict[str, Any]] = []
    trials: list[dict[str, Any]] = []
    per_gpu: list[dict[str, Any]] = []

    def save() -> None:  # after every row: a hang or a timeout keeps what was measured
        payload = {"torch": torch.__version__, "rows": rows, "trials": trials, "workers_per_gpu": per_gpu}
        if args.json is not None:
            args.json.write_text(json.dumps(payload, indent=2) + "\n")
        if on_row is not None:
            on_row(payload)

    for dev_name in devices:
        device = torch.device(dev_name)
        for m in models:
            cfg_fn, patch = MODELS[m]
            warmup = args.warmup if args.warmup is not None else (2 if device.type == "cpu" else 30)
            workers = args.workers if args.workers is not None else (0 if device.type == "cpu" else 4)
            row = {"device": dev_name, "model": m,
                   **compare(cfg_fn(), data[0], device, patch=patch, warmup=warmup, rounds=args.rounds, workers=workers,
                             precision=args.precision, compile=args.compile if device.type == "cuda" else None)}
            rows.append(row)
            save()
            print(f"  {dev_name:5s} {m:14s} LR {patch:2d}  reference {row['reference']['patches_s']:9.1f} patches/s  "
                  f"srnas {row['srnas']['patches_s']:9.1f}  ({row['ratio']:.2f}x)"
                  + (f"  compile {row['srnas-compile']['patches_s']:9.1f} ({row['compile_ratio']:.2f}x)"
                     if "srnas-compile" in row else ""), flush=True)
    for dev_name in devices:
        for proxy in [p.strip() for p in args.trials.split(",") if p.strip()]:
            for t in trial_share(proxy, dev_name, data=(data[0], data[1])):
                trials.append(t)
                save()
                print(f"  {dev_name:5s} trial {proxy:6s} ({t['trial']:6s}) {t['total_s']:7.2f} s: prepare "
                      f"{t['prepare_s']:.2f}, train {t['train_s']:.2f}, validate {t['validate_s']:.2f} -> outside "
                      f"training {t['outside_share']:.1%}"
                      + (f", first graph replay after {t['first_replay_s']:.2f} s" if t["first_replay_s"] else ""),
                      flush=True)
    if "cuda" in devices and args.per_gpu:
        for k in (int(k) for k in args.per_gpu.split(",")):
            per_gpu += workers_per_gpu((k,))
            save()
            r = per_gpu[-1]
            print(f"  cuda  {r['workers']} worker(s) per GPU: {r['total_patches_s']:9.1f} patches/s in total over one "
                  f"{r['window_s']:.1f} s window (tiny proxy)", flush=True)
    print()
    header = f"{'device':6s} {'model':14s} {'LR':>3s} {'ref patch/s':>12s} {'srnas patch/s':>14s} {'ratio':>6s}  srnas policy"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['device']:6s} {r['model']:14s} {r['patch']:3d} {r['reference']['patches_s']:12.1f} "
              f"{r['srnas']['patches_s']:14.1f} {r['ratio']:5.2f}x  {r['srnas']['policy']}")
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
