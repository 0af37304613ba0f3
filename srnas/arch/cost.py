"""Cost model: analytic parameters, Mult-Adds and training activation memory, plus measured
counterparts (hooks, saved tensors, latency) that the analytic numbers are tested against.

Conventions
- Parameters: trainable only (the frozen mean shift is excluded), as in docs/reference.md section 1.
- Mult-Adds: multiply-accumulates of every convolution of one forward pass (mean shift excluded,
  the fixed bicubic skip included) for an HR output of ``hr_size`` (default 720x1280, the
  NAS-for-SR convention); the LR input is ``round(H/s) x round(W/s)``.
- Activation memory: bytes of the tensors autograd keeps for the backward pass of one training
  step; they grow as B*F*H*W.
- Residual blocks: each block type states its own parameters, Mult-Adds and saved elements
  (`srnas.arch.registry`, which also fixes the conventions); the functions here sum them over the
  config's ``block``/``kernel_sizes`` and add the fixed parts (head, body conv, upsampler, tail).
  Block terms that do not scale with the image (RCAB's 1x1 convs on the pooled map) are
  per image, so totals are computed for the actual LR size, not as a per-pixel rate.
- Costs of record: `ConfigCosts` is what a search records and constrains for one config; a
  space's ``constraints:`` limit its fields (`CONSTRAINTS`).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import statistics
import time
from collections.abc import Mapping
from typing import Any

from srnas.arch.config import ArchConfig
from srnas.arch.efficient_blocks import rep_mult_adds, rep_params, rep_saved
from srnas.arch.registry import ACTS_SAVING_INPUT, DEFAULT_BLOCK, BlockType, get_block

NAS_HR_SIZE = (720, 1280)


def _body_blocks(cfg: ArchConfig) -> list[tuple[type[BlockType], int]]:
    """(block type, kernel size) of each residual block of the shared body."""
    return [(get_block(name), k) for name, k in zip(cfg.block, cfg.kernel_sizes)]


def _head_blocks(cfg: ArchConfig) -> list[tuple[type[BlockType], int]]:
    """(block type, kernel size) of each block of one MDSR pre-processing head (``res`` blocks)."""
    if cfg.family != "mdsr":
        return []
    return [(get_block(DEFAULT_BLOCK), cfg.head_kernel or 3)] * (cfg.head_blocks or 0)


def _blocks(cfg: ArchConfig) -> list[tuple[type[BlockType], int]]:
    """Every residual block one forward pass at one scale runs: the body's and one head's."""
    return _body_blocks(cfg) + _head_blocks(cfg)


def _upsampler_params(scale: int, f: int) -> int:
    if scale == 3:
        return 81 * f * f + 9 * f
    return int(math.log2(scale)) * (36 * f * f + 4 * f)


def _scale_branch_params(cfg: ArchConfig, scale: int) -> int:
    n = _upsampler_params(scale, cfg.n_feats)
    n += sum(b.params(cfg.n_feats, k, batch_norm=cfg.batch_norm) for b, k in _head_blocks(cfg))
    return n


def count_params(cfg: ArchConfig, *, scale: int | None = None, fused: bool = False) -> int:
    """Trainable parameters: all scales (``scale=None``) or the sub-network serving one scale;
    ``fused``: of the inference form, re-parameterisable blocks fused (`srnas.arch.fuse`)."""
    f, c = cfg.n_feats, cfg.n_colors
    blocks = sum((b.fused_params if fused else b.params)(f, k, batch_norm=cfg.batch_norm) for b, k in _body_blocks(cfg))
    if cfg.family == "efficient":
        return blocks + _efficient_params(cfg, fused=fused)
    shared = (9 * c * f + f) + blocks                                          # head conv, blocks
    shared += 9 * f * f + f                                                    # body conv
    shared += 9 * f * c + c                                                    # tail conv
    scales = cfg.scales if scale is None else (scale,)
    return shared + sum(_scale_branch_params(cfg, s) for s in scales)


# ---- the efficient family's fixed parts (`srnas.arch.networks.EfficientSR`) ----------------------


def _efficient_params(cfg: ArchConfig, *, fused: bool) -> int:
    """Head, trunk and pixel-shuffle conv of an ``efficient`` net."""
    f, c, s = cfg.n_feats, cfg.n_colors, cfg.scale
    n = 9 * f * c * s * s + c * s * s                                          # conv before the shuffle
    if cfg.trunk == "span":
        return n + rep_params(c, f, 3, fused=fused) + rep_params(f, f, 3, fused=fused) + 4 * f * f + f
    n += 9 * c * f + f + 9 * f * f + f                                         # head, trunk conv
    if cfg.trunk == "imdn":
        n += cfg.n_resblocks * f * f + f                                       # 1x1 over the block outputs
    return n


def _efficient_mult_adds(cfg: ArchConfig, h: int, w: int, *, fused: bool) -> int:
    f, c, s = cfg.n_feats, cfg.n_colors, cfg.scale
    px = h * w
    n = 9 * f * c * s * s * px
    if cfg.trunk == "span":
        return (n + rep_mult_adds(c, f, 3, (h, w), fused=fused) + rep_mult_adds(f, f, 3, (h, w), fused=fused)
                + 4 * f * f * px)
    n += (9 * c * f + 9 * f * f) * px
    if cfg.trunk == "imdn":
        n += cfg.n_resblocks * f * f * px
    return n


def _efficient_saved(cfg: ArchConfig, patch: int, scale: int) -> int:
    """Elements the head, trunk and output stage save (the blocks state their own)."""
    f, c, p2 = cfg.n_feats, cfg.n_colors, patch * patch
    n = f * p2 + c * p2 * scale * scale                                        # shuffle conv input, add_mean input
    if cfg.trunk == "span":
        return n + rep_saved(c, f, 3, (patch, patch)) + rep_saved(f, f, 3, (patch, patch)) + 4 * f * p2
    n += c * p2 + f * p2                                                       # head and trunk conv inputs
    if cfg.trunk == "imdn":  # the concatenation (1x1 input); silu/gelu also keep the 1x1 output
        n += cfg.n_resblocks * f * p2 + (cfg.act in ACTS_SAVING_INPUT) * f * p2
    return n


def lr_size_for(hr_size: tuple[int, int], scale: int) -> tuple[int, int]:
    return (max(1, round(hr_size[0] / scale)), max(1, round(hr_size[1] / scale)))


def count_mult_adds(cfg: ArchConfig, *, scale: int | None = None,
                    hr_size: tuple[int, int] = NAS_HR_SIZE, fused: bool = False) -> int:
    """Multiply-accumulates of one forward pass at ``scale`` (default: the config's first);
    ``fused``: of the inference form, re-parameterisable blocks fused (`srnas.arch.fuse`)."""
    s = cfg.scale if scale is None else scale
    h, w = lr_size_for(hr_size, s)
    lr_px = h * w
    f, c = cfg.n_feats, cfg.n_colors
    blocks = sum((b.fused_mult_adds if fused else b.mult_adds)(f, k, pixels=lr_px, size=(h, w))
                 for b, k in _blocks(cfg))
    if cfg.family == "efficient":
        skip = 25 * c * s * s * lr_px if cfg.global_skip == "bicubic" else 0
        return blocks + _efficient_mult_adds(cfg, h, w, fused=fused) + skip
    per_lr = 9 * c * f                                                         # head
    per_lr += 9 * f * f                                                        # body conv
    if s == 3:
        per_lr += 81 * f * f
    else:
        per_lr += sum(36 * f * f * 4 ** i for i in range(int(math.log2(s))))   # stage i at 2^i LR
    per_lr += 9 * f * c * s * s                                                # tail at HR
    if cfg.global_skip == "bicubic":
        per_lr += 25 * c * s * s
    return per_lr * lr_px + blocks


def activation_memory(cfg: ArchConfig, *, batch: int = 16, patch: int = 48,
                      scale: int | None = None, bytes_per_element: int = 4) -> int:
    """Estimated bytes autograd keeps for backward in one training step (LR patch ``patch``).

    Counts the unique tensors saved by convolutions, activations, batch norm and the blocks'
    own operations (registry); grows as B*F*H*W. The measured counterpart is `measure_activation_memory`.
    """
    s = cfg.scale if scale is None else scale
    f, c, p2 = cfg.n_feats, cfg.n_colors, patch * patch
    elems = sum(b.saved_elements(f, k, batch_norm=cfg.batch_norm, act=cfg.act, pixels=p2, size=(patch, patch))
                for b, k in _blocks(cfg))
    if cfg.family == "efficient":
        return (elems + _efficient_saved(cfg, patch, s)) * batch * bytes_per_element
    elems += c * p2                                                            # head conv input
    elems += f * p2                                                            # body conv input
    elems += f * p2                                                            # first upsampler conv input
    if s != 3:
        elems += sum(f * p2 * 4 ** i for i in range(1, int(math.log2(s))))    # later stages
    elems += f * p2 * s * s                                                    # tail conv input
    elems += c * p2 * s * s                                                    # add_mean input
    return elems * batch * bytes_per_element


@dataclasses.dataclass(frozen=True)
class Cost:
    params: int
    params_total: int
    mult_adds: int
    activation_bytes: int
    scale: int
    hr_size: tuple[int, int]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def cost_of(cfg: ArchConfig, *, scale: int | None = None, hr_size: tuple[int, int] = NAS_HR_SIZE,
            batch: int = 16, patch: int = 48) -> Cost:
    """All analytic costs of a config at one scale."""
    s = cfg.scale if scale is None else scale
    return Cost(
        params=count_params(cfg, scale=s),
        params_total=count_params(cfg),
        mult_adds=count_mult_adds(cfg, scale=s, hr_size=hr_size),
        activation_bytes=activation_memory(cfg, batch=batch, patch=patch, scale=s),
        scale=s,
        hr_size=(int(hr_size[0]), int(hr_size[1])),
    )


# ---- costs of record and constraints --------------------------------------------------------

#: The batch and LR patch at which ``max_activation_mb`` is evaluated (the paper's schedule).
ACTIVATION_BATCH, ACTIVATION_PATCH = 16, 48
#: Constraint key -> the `ConfigCosts` field it limits.
CONSTRAINTS = {"max_params": "params", "max_mult_adds": "mult_adds", "max_activation_mb": "activation_mb"}


@dataclasses.dataclass(frozen=True)
class ConfigCosts:
    """What a search records and constrains for one config, computed once: trainable
    parameters (all scales), Mult-Adds at the worst scale (720p convention) and training
    activation memory at the worst scale (batch 16, LR patch 48, fp32). Parameters and
    Mult-Adds are those of the inference form, re-parameterisable blocks fused (what papers and
    the NTIRE challenge count; the same numbers for every net without such blocks); activation
    memory is the training form's."""

    params: int
    mult_adds: int
    activation_mb: float

    @classmethod
    def of(cls, cfg: ArchConfig) -> "ConfigCosts":
        per_scale = [cost_of(cfg, scale=s, batch=ACTIVATION_BATCH, patch=ACTIVATION_PATCH) for s in cfg.scales]
        return cls(params=count_params(cfg, fused=True),
                   mult_adds=max(count_mult_adds(cfg, scale=s, fused=True) for s in cfg.scales),
                   activation_mb=max(c.activation_bytes for c in per_scale) / 2**20)

    def limited(self, constraint: str) -> float:
        """The measured value that constraint ``constraint`` (e.g. ``max_params``) limits."""
        return float(getattr(self, CONSTRAINTS[constraint]))

    def violations(self, limits: Mapping[str, float]) -> dict[str, float]:
        """For each constraint of ``limits``, measured minus limit (feasible when <= 0), as Optuna expects."""
        return {key: self.limited(key) - limit for key, limit in limits.items()}

    def to_attrs(self) -> dict[str, Any]:
        """The trial user attributes (``params``, ``mult_adds``, ``activation_mb``)."""
        return {"params": self.params, "mult_adds": self.mult_adds, "activation_mb": round(self.activation_mb, 2)}


# ---- measured counterparts -----------------------------------------------------------------


def module_params(model: Any) -> int:
    """Trainable parameters of a built module."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def measure_mult_adds(model: Any, lr_input: Any, *, scale: int | None = None) -> int:
    """Mult-Adds of one forward pass counted with forward hooks on every convolution.

    ``model`` is a network (called with ``scale=`` when given) or any module, e.g. one block.
    """
    # lazy: torch (start-up), also under srnas.arch.blocks
    import torch
    from torch import nn

    from srnas.arch.blocks import BicubicUpsample, MeanShift

    total = 0

    def conv_hook(mod: nn.Conv2d, _inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = mod.kernel_size
        total += (out.numel() // out.shape[0]) * (mod.in_channels // mod.groups) * kh * kw

    def bicubic_hook(_mod: Any, _inp: Any, out: torch.Tensor) -> None:
        nonlocal total  # each output value is a 25-tap filter of one input channel
        total += (out.numel() // out.shape[0]) * 25

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and not isinstance(m, MeanShift):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, BicubicUpsample):
            handles.append(m.register_forward_hook(bicubic_hook))
    try:
        with torch.no_grad():
            _forward(model, lr_input, scale)
    finally:
        for h in handles:
            h.remove()
    return total


def _forward(model: Any, x: Any, scale: int | None) -> Any:
    return model(x) if scale is None else model(x, scale=scale)


def measure_activation_memory(model: Any, lr_input: Any, *, scale: int | None = None) -> int:
    """Bytes of the unique tensors of 3 or more dims autograd saves in one forward pass
    (parameters and buffers excluded). ``model`` as in `measure_mult_adds`."""
    import torch  # lazy: torch (start-up)

    param_ptrs = {p.data_ptr() for p in model.parameters()}
    param_ptrs |= {b.data_ptr() for b in model.buffers()}
    seen: dict[tuple[int, Any], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.data_ptr() not in param_ptrs and t.dim() >= 3:
            seen[(t.untyped_storage().data_ptr(), t.storage_offset())] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _forward(model, lr_input, scale)
    return sum(seen.values())


def measure_latency(model: Any, lr_size: tuple[int, int] = (180, 320), *, scale: int | None = None,
                    device: str = "cpu", repeats: int = 10, warmup: int = 2, batch: int = 1,
                    fused: bool = True) -> float:
    """Median forward latency in milliseconds for an LR input of ``lr_size`` on ``device``;
    ``fused``: of the inference form (re-parameterisable convs fused, on a copy of ``model``).

    On CUDA as the NTIRE efficient-SR challenge times it: CUDA events around each forward, fp32,
    cuDNN autotuning off (restored after); elsewhere wall time."""
    # lazy: torch (start-up), also under srnas.arch.efficient_layers
    import torch

    from srnas.arch.efficient_layers import fuse

    n_colors = getattr(getattr(model, "config", None), "n_colors", 3)
    if fused and any(callable(getattr(m, "fuse", None)) for m in model.modules()):
        model = fuse(copy.deepcopy(model))
    model = model.to(device).eval()
    x = torch.rand(batch, n_colors, *lr_size, device=device) * 255
    times = []
    cuda = str(device).startswith("cuda")
    autotune = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = False if cuda else autotune
        with torch.inference_mode():
            for i in range(warmup + repeats):
                if cuda:
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    torch.cuda.synchronize(device)
                    start.record()
                    model(x, scale=scale)
                    end.record()
                    torch.cuda.synchronize(device)
                    took = start.elapsed_time(end)
                else:
                    t0 = time.perf_counter()
                    model(x, scale=scale)
                    took = (time.perf_counter() - t0) * 1000
                if i >= warmup:
                    times.append(took)
    finally:
        torch.backends.cudnn.benchmark = autotune
    return statistics.median(times)
