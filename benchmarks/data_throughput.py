"""Can data feeding keep up with training? PatchSampler throughput next to an EDSR step.

Prints, per device (CPU, and CUDA when available):
- PatchSampler minibatches (batch 16, LR 48 -> HR 96, x2, 8 dihedral augmentations) drawn from
  synthetic decoded DIV2K-sized images (2040x1356), as patches/s and ms per minibatch;
- one EDSR-baseline x2 training step (Adam lr 1e-4, L1 loss) on such a minibatch, fp32;
- the share of a training step that sampling would take (sampling runs in the training loop).

Also prints the time of one MATLAB-bicubic x1/2 of a DIV2K-sized image (LR generation), and
how many operations the accelerator path of the sampler runs per minibatch (each non-view aten
operation is a kernel launch on a GPU; counted on the CPU by forcing that path, so the figure is
the same on every machine), for x2 and for MDSR's x2/x3/x4.

    .venv/bin/python benchmarks/data_throughput.py            # about 30-60 s on 2 CPU cores
    .venv/bin/python benchmarks/data_throughput.py --devices cuda --steps 50
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from srnas.arch import build_model
from srnas.data import PatchSampler, SRImageSet, imresize

HR_SHAPE = (1356, 2040, 3)  # DIV2K's most common HR size (height x width)


def synthetic_div2k(n: int, seed: int = 0) -> SRImageSet:
    """``n`` DIV2K-sized random images; LR by decimation (content does not affect speed)."""
    rng = np.random.default_rng(seed)
    hr = [rng.integers(0, 256, HR_SHAPE, dtype=np.uint8) for _ in range(n)]
    lr = {2: [np.ascontiguousarray(h[::2, ::2]) for h in hr]}
    return SRImageSet("synthetic-div2k", [f"{i:04d}" for i in range(n)], hr, lr, protocol="div2k")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_sampler(data: SRImageSet, device: torch.device, batches: int, rounds: int = 5) -> tuple[float, float]:
    """(seconds to pack the images onto the device, seconds per minibatch).

    The per-minibatch time is the fastest of ``rounds`` rounds, which keeps the figure
    meaningful on a machine shared with other work.
    """
    start = time.perf_counter()
    sampler = PatchSampler(data, 2, patch=48, batch=16, device=device, seed=0)
    _sync(device)
    setup = time.perf_counter() - start
    for _ in range(5):
        sampler.sample()
    per_round = max(1, batches // rounds)
    best = float("inf")
    for _ in range(rounds):
        _sync(device)
        start = time.perf_counter()
        for _ in range(per_round):
            sampler.sample()
        _sync(device)
        best = min(best, (time.perf_counter() - start) / per_round)
    return setup, best


def launches_per_minibatch(data: SRImageSet, scales: tuple[int, ...], minibatches: int = 64,
                           rounds: int = 5) -> tuple[float, float]:
    """(non-view aten operations, CPU milliseconds) per ``sample()`` of the accelerator path
    (the per-block work shared out over its minibatches); operations counted with a dispatch
    mode, time the best of ``rounds`` rounds without it (``rounds=0``: not timed, inf)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        ops = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            if not func.is_view:
                Count.ops += 1
            return func(*args, **(kwargs or {}))

    sampler = PatchSampler(data, scales, patch=48, batch=16, seed=0, shared_store=False)
    sampler._batched = True  # the path an accelerator takes
    with Count():
        for _ in range(minibatches):
            sampler.sample()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(minibatches):
            sampler.sample()
        best = min(best, (time.perf_counter() - start) / minibatches)
    return Count.ops / minibatches, best * 1e3


def time_train_step(data: SRImageSet, device: torch.device, steps: int, warmup: int) -> float:
    """Seconds per EDSR-baseline x2 training step (batch 16, LR 48, fp32, Adam, L1).

    The fastest single step on the CPU (robust to other load); the mean over ``steps`` on CUDA.
    """
    torch.manual_seed(0)
    model = build_model("edsr-baseline", scale=2).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
    loss_fn = torch.nn.L1Loss()
    lr, hr, _ = PatchSampler(data, 2, patch=48, batch=16, device=device, seed=1).sample()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(lr), hr)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    if device.type == "cpu":
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        return min(times)
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=8, help="synthetic DIV2K-sized images (default 8)")
    parser.add_argument("--batches", type=int, default=200, help="timed sampler minibatches (default 200)")
    parser.add_argument("--steps", type=int, default=None, help="timed training steps (default: 3 on CPU, 50 on CUDA)")
    parser.add_argument("--devices", default=None, help="comma-separated, e.g. cpu,cuda (default: cpu and cuda if available)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

    data = synthetic_div2k(args.images)
    start = time.perf_counter()
    imresize(data.hr[0], 1 / 2)
    print(f"MATLAB-bicubic x1/2 of one {HR_SHAPE[1]}x{HR_SHAPE[0]} uint8 image (numpy, CPU): "
          f"{time.perf_counter() - start:.2f} s")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {args.images} images of "
          f"{HR_SHAPE[1]}x{HR_SHAPE[0]}; minibatch = 16 patches, LR 48 -> HR 96 (x2), augmented\n")
    header = f"{'device':<28} {'pack s':>7} {'sample ms':>10} {'patches/s':>10} {'train ms':>9} {'train p/s':>10} {'data share':>10}"
    print(header)
    print("-" * len(header))
    for name in devices:
        device = torch.device(name)
        label = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        setup, per_batch = time_sampler(data, device, args.batches)
        steps = args.steps or (50 if device.type == "cuda" else 3)
        per_step = time_train_step(data, device, steps, warmup=1 if device.type == "cpu" else 10)
        print(f"{label[:28]:<28} {setup:>7.2f} {per_batch * 1e3:>10.2f} {16 / per_batch:>10.0f} "
              f"{per_step * 1e3:>9.1f} {16 / per_step:>10.1f} {per_batch / (per_batch + per_step):>9.1%}")
    print("\ndata share = sampling time / (sampling + training step): what feeding costs a training loop.")
    small = SRImageSet("launch-count", data.names[:2], [h[:384, :384] for h in data.hr[:2]],
                       {s: [imresize(h[:384, :384], 1 / s) for h in data.hr[:2]] for s in (2, 3, 4)}, protocol="div2k")
    for scales in ((2,), (2, 3, 4)):
        ops, ms = launches_per_minibatch(small, scales)
        print(f"accelerator path, scales {'/'.join(map(str, scales))}: {ops:.1f} kernel-launching operations per "
              f"minibatch; {ms:.2f} ms per minibatch when run on the CPU")


if __name__ == "__main__":
    main()
