"""The memory budget of a proxy training, checked before any network is built: a space whose
smallest config cannot train on the device is refused when the search starts, and a config
that does not fit is recorded infeasible (never built) instead of running out of memory.

Estimate: the cost model's activation memory at the schedule's batch and patch (what autograd
keeps for backward, worst scale) plus 16 bytes per parameter (fp32 weights, gradients and
Adam's two moments), times `HEADROOM` for the allocator, workspaces and the evaluation.
Available: on CUDA the device's free memory plus what this process's allocator already holds;
on the CPU the least of the memory the kernel reports available, the cgroup's room and the
address-space limit of this process (``ulimit -v``).
"""

from __future__ import annotations

import math
import os
import resource
from pathlib import Path
from typing import Any

from srnas.arch.config import ArchConfig
from srnas.arch.cost import activation_memory, count_params

#: fp32 weights, gradients and Adam's first and second moments.
TRAINING_BYTES_PER_PARAM = 16
#: Allocator fragmentation, convolution workspaces, data and evaluation on top of the estimate.
HEADROOM = 1.25


def training_bytes(cfg: ArchConfig, *, batch: int, patch: int) -> int:
    """Estimated peak memory of training ``cfg`` with ``batch`` LR patches of ``patch`` pixels."""
    activations = max(activation_memory(cfg, batch=batch, patch=patch, scale=s) for s in cfg.scales)
    return int(HEADROOM * (activations + TRAINING_BYTES_PER_PARAM * count_params(cfg)))


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_room() -> int | None:
    """What the memory cgroup of this process still allows (v2, then v1)."""
    pairs = (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
             ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"))
    for limit_file, usage_file in pairs:
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or not limit.isdigit() or int(limit) >= 1 << 60:
            return None
        return max(0, int(limit) - usage)
    return None


def _address_space_room() -> int | None:
    """What ``ulimit -v`` (RLIMIT_AS) leaves this process."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return max(0, soft - int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    return soft


def available_bytes(device: Any, *, now: bool = True) -> int | None:
    """Memory a training on ``device`` (a `torch.device` or its name) may use now; None when
    unknown (MPS). ``now=False`` on CUDA: the card's total memory, read without creating a CUDA
    context (the coordinator of GPU workers trains nothing and should hold no GPU memory)."""
    import torch  # lazy: torch (start-up)

    dev = torch.device(device) if not isinstance(device, torch.device) else device
    if dev.type == "cuda":
        if not now:
            return int(torch.cuda.get_device_properties(dev).total_memory)
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free + torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev))
    if dev.type != "cpu":
        return None
    known = [v for v in (_meminfo_available(), _cgroup_room(), _address_space_room()) if v is not None]
    return min(known) if known else None


def gib(n: float) -> str:
    """Bytes as a short human figure (``3.2 GB``, ``410 MB``)."""
    if not math.isfinite(n):
        return "unbounded"
    return f"{n / 2**30:,.1f} GB" if n >= 2**30 else f"{n / 2**20:,.0f} MB"


def memory_shortfall(cfg: ArchConfig, *, batch: int, patch: int, device: Any, share: int = 1,
                     now: bool = True) -> str | None:
    """Why ``cfg`` cannot train on ``device`` (one phrase), or None when it fits; ``share``:
    workers training on the same memory at the same time; ``now``: see `available_bytes`."""
    have = available_bytes(device, now=now)
    if have is None:
        return None
    need = training_bytes(cfg, batch=batch, patch=patch)
    room = have // max(1, share)
    if need <= room:
        return None
    each = f" (of {gib(have)} shared by {share} workers)" if share > 1 else ""
    return f"training needs about {gib(need)} of memory, {device} has {gib(room)} available{each}"
