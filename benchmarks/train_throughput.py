"""Training throughput: a reference-style loop against srnas's Trainer, same model, same device.

(a) reference: what the EDSR authors' code does per update: a torch DataLoader over decoded
    images (random crop + flips/transpose in NumPy per patch, collated on the host, copied to
    the device), fp32, NCHW, eager, Adam, ``loss.item()`` every step.
(b) srnas: `Trainer.update_once` after `Trainer.prepare`, i.e. exactly the path `fit` takes:
    on-device patch sampling, the device policy (CPU: channels_last, threads, fused Adam; CUDA:
    bf16 autocast, channels_last, CUDA graphs, fused Adam), loss checks.

The two loops run in alternating timed rounds and the best round of each counts, so that other
processes on a shared machine disturb the comparison as little as possible.

Models: EDSR-baseline x2 and a proxy net (4 blocks, 32 channels), batch 16, LR patch 48 (the
paper's), on the demo training photographs. Prints patches/s and ms/update per path and the
ratio srnas/reference; runs on the CPU always and on CUDA when present.

    .venv/bin/python benchmarks/train_throughput.py             # CPU (~1-2 min on 2 cores) + CUDA if any
    .venv/bin/python benchmarks/train_throughput.py --device cuda --steps 200
    .venv/bin/python benchmarks/train_throughput.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
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
from srnas.data import SRImageSet, demo_split  # noqa: E402
from srnas.train import ProxySchedule, Trainer  # noqa: E402
from srnas.train.device import cpu_count  # noqa: E402

MODELS: dict[str, Callable[[], ArchConfig]] = {
    "edsr-baseline": lambda: preset_config("edsr-baseline", scale=2),
    "proxy-4x32": lambda: ArchConfig(n_resblocks=4, n_feats=32),
}
#: Timed updates per model and device type when --steps is not given (CPU: ~1-2 min in all).
DEFAULT_STEPS = {("cpu", "edsr-baseline"): 6, ("cpu", "proxy-4x32"): 30,
                 ("cuda", "edsr-baseline"): 300, ("cuda", "proxy-4x32"): 500}


class ReferencePatches(torch.utils.data.Dataset):
    """EDSR-PyTorch style: one random aligned crop of a random image, augmented in NumPy."""

    def __init__(self, data: SRImageSet, scale: int, patch: int, length: int) -> None:
        self.hr = [np.asarray(h) for h in data.hr]
        self.lr = [np.asarray(lr) for lr in data.lr[scale]]
        self.scale, self.patch, self.length = scale, patch, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = index % len(self.hr)
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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class ReferenceLoop:
    """The reference-style loop, advanced ``n`` updates at a time."""

    def __init__(self, cfg: ArchConfig, data: SRImageSet, device: torch.device, batch: int, patch: int,
                 workers: int) -> None:
        torch.manual_seed(0)
        random.seed(0)
        self.device = device
        self.model = build_model(cfg).to(device).train()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
        loader = torch.utils.data.DataLoader(
            ReferencePatches(data, cfg.scale, patch, 10**7 * batch), batch_size=batch, shuffle=True,
            num_workers=workers, pin_memory=device.type == "cuda", drop_last=True)
        self.batches = iter(loader)
        self.policy = "fp32 NCHW eager, DataLoader" + (f" ({workers} workers)" if workers else "")

    def run(self, n: int) -> None:
        for _ in range(n):
            lr, hr = next(self.batches)
            lr, hr = lr.to(self.device, non_blocking=True), hr.to(self.device, non_blocking=True)
            self.opt.zero_grad()
            loss = F.l1_loss(self.model(lr), hr)
            loss.backward()
            self.opt.step()
            loss.item()  # the authors' loss logger reads every loss


class SrnasLoop:
    """`Trainer.update_once` after `Trainer.prepare`: exactly the path `fit` takes."""

    def __init__(self, cfg: ArchConfig, data: SRImageSet, device: torch.device, batch: int, patch: int,
                 precision: str) -> None:
        sched = ProxySchedule(name="bench", updates=10**7, batch=batch, patch=patch, lr=1e-4)
        self.trainer = Trainer(cfg, data, data, sched, device=device, precision=precision)
        self.trainer.prepare()

    @property
    def policy(self) -> str:
        text = self.trainer.policy.describe()
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


def compare(cfg: ArchConfig, data: SRImageSet, device: torch.device, *, batch: int, patch: int, warmup: int,
            steps: int, rounds: int, workers: int, precision: str) -> dict[str, Any]:
    """Both loops on one model, timed in alternating rounds; the best round of each counts
    (the least disturbed by other processes on a shared machine)."""
    ref = ReferenceLoop(cfg, data, device, batch, patch, workers)
    ours = SrnasLoop(cfg, data, device, batch, patch, precision)
    ref.run(warmup)
    ours.run(warmup)
    per_round = max(1, steps // rounds)
    ref_t, our_t = [], []
    for _ in range(rounds):
        ref_t.append(timed(ref, device, per_round))
        our_t.append(timed(ours, device, per_round))
    r, o = min(ref_t), min(our_t)
    return {"steps": per_round * rounds, "rounds": rounds, "reference_ms": r * 1e3, "reference_patches_s": batch / r,
            "srnas_ms": o * 1e3, "srnas_patches_s": batch / o, "ratio": r / o,
            "reference_policy": ref.policy, "srnas_policy": ours.policy,
            "reference_rounds_ms": [t * 1e3 for t in ref_t], "srnas_rounds_ms": [t * 1e3 for t in our_t]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto", help="auto (cpu, plus cuda when present), cpu or cuda")
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma list of {', '.join(MODELS)}")
    ap.add_argument("--steps", type=int, default=None, help="timed updates per run (default per model/device)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating timed rounds per loop (best counts)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed updates first (default 2 CPU, 20 CUDA)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patch", type=int, default=48, help="LR patch size")
    ap.add_argument("--workers", type=int, default=None,
                    help="DataLoader workers of the reference loop (default 0 on CPU: workers would take "
                         "the training cores; 4 on CUDA)")
    ap.add_argument("--precision", default="auto", help="srnas precision: auto (bf16 on CUDA), fp32, bf16")
    ap.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    args = ap.parse_args(argv)

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if args.device == "auto" else [args.device]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        if m not in MODELS:
            ap.error(f"unknown model {m!r}; choose from {', '.join(MODELS)}")
    train, _ = demo_split((2,))
    torch.set_num_threads(cpu_count())
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {cpu_count()} CPU threads"
          + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))
    print(f"batch {args.batch}, LR patch {args.patch}, x2, demo training photographs\n")
    rows: list[dict[str, Any]] = []
    for dev_name in devices:
        device = torch.device(dev_name)
        for m in models:
            cfg = MODELS[m]()
            steps = args.steps or DEFAULT_STEPS[(device.type, m)]
            warmup = args.warmup if args.warmup is not None else (2 if device.type == "cpu" else 20)
            workers = args.workers if args.workers is not None else (0 if device.type == "cpu" else 4)
            row = {"device": str(device), "model": m,
                   **compare(cfg, train, device, batch=args.batch, patch=args.patch, warmup=warmup, steps=steps,
                             rounds=args.rounds, workers=workers, precision=args.precision)}
            rows.append(row)
            print(f"  {dev_name:5s} {m:14s} reference {row['reference_ms']:9.1f} ms  srnas {row['srnas_ms']:9.1f} ms"
                  f"  ({row['steps']} steps, best of {args.rounds} rounds)", flush=True)
    print()
    header = f"{'device':6s} {'model':14s} {'ref ms/upd':>11s} {'ref patch/s':>12s} {'srnas ms/upd':>13s} " \
             f"{'srnas patch/s':>14s} {'ratio':>6s}  srnas policy"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['device']:6s} {r['model']:14s} {r['reference_ms']:11.1f} {r['reference_patches_s']:12.1f} "
              f"{r['srnas_ms']:13.1f} {r['srnas_patches_s']:14.1f} {r['ratio']:5.2f}x  {r['srnas_policy']}")
    if args.json is not None:
        args.json.write_text(json.dumps({"torch": torch.__version__, "batch": args.batch, "patch": args.patch,
                                         "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
