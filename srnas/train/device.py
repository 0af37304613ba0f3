"""Device and precision policy: which device, which dtype, which memory layout, graphs or not.

On CUDA: bf16 autocast (when the card supports it), channels_last, cuDNN autotuning and CUDA
graphs for the whole training step (small SR nets are launch-bound: docs/reference.md section 6).
On CPU: fp32, channels_last (10-25% faster for these convs), one thread per core, deterministic
with a seed.

>>> resolve_device("cpu").type
'cpu'
>>> policy_for("cpu").autocast_dtype is None
True
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
from collections.abc import Iterator
from typing import Any, cast

import numpy as np
import torch

from srnas.errors import ConfigError

#: ``fp32`` is plain fp32 everywhere (TF32 tensor cores off); ``tf32`` is fp32 storage with TF32
#: matrix and convolution arithmetic on CUDA; ``bf16`` autocasts the body to bf16 and keeps the
#: stages promised fp32 (input, head, output stage, loss, metrics) in plain fp32.
PRECISIONS = ("auto", "fp32", "tf32", "bf16")


def cpu_count() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def cpu_threads() -> int:
    """Threads a training on the CPU uses unless told: ``OMP_NUM_THREADS`` where it is set to a
    positive integer (the usual way to share the cores among processes: one thread per process
    where several train side by side, as SLURM tasks or test workers do; torch's threads spin
    while they wait, so more threads than cores slow every process down many times), else
    every core of `cpu_count`."""
    given = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(given) if given.isdigit() and int(given) > 0 else cpu_count()


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` -> the first CUDA device if there is one, else the CPU; names are validated.

    >>> resolve_device("auto").type in ("cpu", "cuda", "mps")
    True
    """
    if isinstance(device, torch.device):
        dev = device
    else:
        name = "auto" if device is None else str(device).strip().lower()
        if name == "auto":
            if torch.cuda.is_available():
                return torch.device("cuda", torch.cuda.current_device())
            return torch.device("cpu")
        try:
            dev = torch.device(name)
        except (RuntimeError, ValueError):
            raise ConfigError(f"device {device!r} unknown; allowed: auto, cpu, cuda, cuda:N, mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {str(dev)!r} requested but CUDA is not available here (no GPU, or a "
                              "CPU build of PyTorch); use cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device {str(dev)!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device 'mps' requested but not available here; use --device cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device {str(dev)!r} not supported; allowed: auto, cpu, cuda, cuda:N, mps")
    return dev


@dataclasses.dataclass(frozen=True)
class DevicePolicy:
    """How one training run uses its device.

    ``autocast_dtype`` is None for fp32; ``tf32`` lets fp32 matrix products and convolutions use
    TF32 tensor cores (CUDA: process-wide, so it is off under bf16, where the fp32 stages must be
    fp32); ``cuda_graphs`` captures the whole training step (forward, backward, Adam) once per
    input shape and replays it.
    """

    device: torch.device
    autocast_dtype: torch.dtype | None
    channels_last: bool
    cuda_graphs: bool
    cudnn_benchmark: bool
    threads: int | None
    tf32: bool = False

    @property
    def precision(self) -> str:
        if self.autocast_dtype == torch.bfloat16:
            return "bf16"
        return "tf32" if self.tf32 else "fp32"

    def describe(self) -> str:
        """One line, e.g. ``cuda:0 bf16 channels_last cuda-graphs``."""
        parts = [str(self.device), self.precision]
        if self.channels_last:
            parts.append("channels_last")
        if self.cuda_graphs:
            parts.append("cuda-graphs")
        if self.threads:
            parts.append(f"{self.threads} threads")
        return " ".join(parts)

    def autocast(self, *, cache_enabled: bool = True) -> contextlib.AbstractContextManager[Any]:
        """The autocast context of this policy (a no-op for fp32)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype, cache_enabled=cache_enabled)

    def to_dict(self) -> dict[str, Any]:
        return {"device": str(self.device), "precision": self.precision, "tf32": self.tf32,
                "channels_last": self.channels_last,
                "cuda_graphs": self.cuda_graphs, "cudnn_benchmark": self.cudnn_benchmark, "threads": self.threads}


def _env_flag(name: str) -> bool | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    return value.strip().lower() not in ("0", "false", "no", "off")


def policy_for(device: str | torch.device = "auto", precision: str = "auto", *,
               channels_last: bool | None = None, cuda_graphs: bool | None = None,
               threads: int | None = None) -> DevicePolicy:
    """The policy for a device.

    ``precision``: ``auto`` (bf16 on CUDA cards that support it, fp32 elsewhere), ``fp32`` (plain
    fp32: no TF32 on CUDA), ``tf32`` (CUDA only: fp32 with TF32 tensor cores) or ``bf16`` (CUDA
    only). ``channels_last``/``cuda_graphs`` default to the policy above; the
    environment variables ``SRNAS_CHANNELS_LAST`` and ``SRNAS_CUDA_GRAPHS`` (0/1) override the
    defaults. ``threads`` defaults to `cpu_threads` on CPU (``OMP_NUM_THREADS``, else every core).
    """
    dev = resolve_device(device)
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r} unknown; allowed: {', '.join(PRECISIONS)}")
    cuda = dev.type == "cuda"
    if precision == "tf32" and not cuda:
        raise ConfigError(f"precision 'tf32' is a CUDA mode, not available on {dev.type}; use fp32 or auto")
    if precision == "bf16":
        if not cuda:
            raise ConfigError(f"precision 'bf16' is supported on CUDA only, not on {dev.type}; use fp32 or auto")
        if not native_bf16(dev):
            raise ConfigError(f"precision 'bf16': {torch.cuda.get_device_name(dev)} has no native bfloat16 "
                              "(compute capability 8.0 or newer); use fp32")
    use_bf16 = precision == "bf16" or (precision == "auto" and cuda and native_bf16(dev))
    if channels_last is None:
        channels_last = _env_flag("SRNAS_CHANNELS_LAST")
    if channels_last is None:
        channels_last = dev.type in ("cuda", "cpu")
    if cuda_graphs is None:
        cuda_graphs = _env_flag("SRNAS_CUDA_GRAPHS")
    if cuda_graphs is None:
        cuda_graphs = cuda
    return DevicePolicy(
        device=dev,
        autocast_dtype=torch.bfloat16 if use_bf16 else None,
        channels_last=bool(channels_last),
        cuda_graphs=bool(cuda_graphs and cuda),
        cudnn_benchmark=cuda,
        threads=(threads or cpu_threads()) if dev.type == "cpu" else None,
        tf32=precision == "tf32",
    )


def native_bf16(device: torch.device) -> bool:
    """Whether the CUDA card computes bf16 natively (compute capability >= 8.0: Ampere and
    newer); older cards emulate it (`torch.cuda.is_bf16_supported` says yes there too) slowly."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8


@contextlib.contextmanager
def cuda_backend_flags(*, benchmark: bool, tf32_matmul: bool, tf32_cudnn: bool) -> Iterator[None]:
    """cuDNN autotuning and TF32 set for a block, the previous settings restored after."""
    saved = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cudnn.benchmark = benchmark
    torch.backends.cuda.matmul.allow_tf32 = tf32_matmul
    torch.backends.cudnn.allow_tf32 = tf32_cudnn
    try:
        yield
    finally:
        (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32,
         torch.backends.cudnn.allow_tf32) = saved


def exact_fp32(policy: DevicePolicy) -> contextlib.AbstractContextManager[None]:
    """Validation and metrics in plain fp32: no TF32 tensor cores, no cuDNN autotuning (whose
    algorithm choice may change the numbers between runs); the training settings come back after."""
    if policy.device.type != "cuda":
        return contextlib.nullcontext()
    return cuda_backend_flags(benchmark=False, tf32_matmul=False, tf32_cudnn=False)


def bind_device(device: str) -> tuple[dict[str, str], str]:
    """Environment and device name for a worker process bound to ``device``: ``cuda:3`` ->
    (``{"CUDA_VISIBLE_DEVICES": "3"}``, ``"cuda:0"``): the worker sees its GPU only, so every
    allocation, stream and graph capture lands there. Other devices pass through unchanged."""
    name = str(device).strip().lower()
    if name.startswith("cuda:") and name[5:].isdigit():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        index = int(name[5:])
        if visible:  # already restricted: index into the visible list
            ids = [v.strip() for v in visible.split(",") if v.strip()]
            if index < len(ids):
                return {"CUDA_VISIBLE_DEVICES": ids[index]}, "cuda:0"
        return {"CUDA_VISIBLE_DEVICES": str(index)}, "cuda:0"
    return {}, str(device)


def apply_policy(policy: DevicePolicy) -> None:
    """Process-wide settings of a policy: thread count on CPU, cuDNN autotuning and TF32 on CUDA."""
    if policy.threads and torch.get_num_threads() != policy.threads:
        torch.set_num_threads(policy.threads)
    if policy.device.type == "cuda":
        torch.backends.cudnn.benchmark = policy.cudnn_benchmark
        # TF32 only where asked for: under bf16 the fp32 stages (input, head, output stage) and
        # under fp32 everything must compute in fp32, and these flags are process-wide.
        torch.backends.cuda.matmul.allow_tf32 = policy.tf32
        torch.backends.cudnn.allow_tf32 = policy.tf32


def memory_format(policy: DevicePolicy) -> torch.memory_format:
    return torch.channels_last if policy.channels_last else torch.contiguous_format


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The global RNG states (torch CPU and CUDA, NumPy, Python) in checkpoint-safe form."""
    kind, keys, pos, has_gauss, cached = cast(tuple, np.random.get_state())  # the legacy tuple form
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": _python_state_to_safe(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` returned."""
    # RNG states are CPU byte tensors; a checkpoint mapped to another device gets them back.
    torch.set_rng_state(_cpu_bytes(state["torch"]))
    np_state = state["numpy"]
    np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    random.setstate(_python_state_from_safe(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = [_cpu_bytes(t) for t in state["cuda"]]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def _cpu_bytes(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu", torch.uint8)


def _python_state_to_safe(state: tuple[Any, ...]) -> dict[str, Any]:
    version, internal, gauss = state
    return {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss}


def _python_state_from_safe(state: dict[str, Any]) -> tuple[Any, ...]:
    return (state["version"], tuple(int(v) for v in state["internal"].tolist()), state["gauss"])
