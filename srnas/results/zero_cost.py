"""Zero-cost proxies: scores of an untrained network that are cheap to compute at initialisation.

Used by the fidelity study as baselines next to parameter count and Mult-Adds; both follow
Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS" (ICLR 2021):

- `synflow` (Tanaka et al. 2020): with every trainable weight replaced by its absolute value
  and an all-ones input, ``R = sum(f(1))``; the score is ``sum |theta * dR/dtheta|``. It needs
  no data and no labels (a data-independent path norm).
- `grad_norm`: the sum over parameter tensors of the L2 norm of the gradient of the L1 loss on
  one random batch.

Adaptations to EDSR-family networks (each changes what would otherwise be a degenerate score):

- The zero-initialised last conv of ``global_skip: bicubic`` networks would block every gradient
  (both scores would be 0 for all of them); every trainable conv is re-initialised with PyTorch's
  default initialisation (seeded) before scoring, so the scores rate the learnable branch.
- synflow runs with the mean shift's bias removed: subtracting the mean makes the all-ones
  input negative and the ReLUs of a positive-weight network would cut every path. Batch norm is
  in eval mode (identity at initialisation). The networks compute in float32 (their first and
  last stages cast to it), so the score of a very deep or wide net can overflow: it is then
  ``inf`` (ties at the top of a ranking), which the CPU spaces never reach.

>>> from srnas.arch import ArchConfig
>>> cfg = ArchConfig(n_resblocks=2, n_feats=8)
>>> synflow(cfg) > 0 and grad_norm(cfg) > 0
True
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from srnas.arch.blocks import MeanShift
from srnas.arch.config import ArchConfig
from srnas.arch.networks import build_model

#: LR input size (H, W) of the scoring batch, as the tiny proxy's patches.
SCORE_LR_SIZE = (24, 24)


def scoring_model(config: ArchConfig, *, seed: int = 0) -> nn.Module:
    """``config`` built with every trainable conv at PyTorch's default (seeded) initialisation."""
    torch.manual_seed(seed)
    model = build_model(config)
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and not isinstance(module, MeanShift):
            module.reset_parameters()
    return model


def synflow(config: ArchConfig, *, seed: int = 0, lr_size: tuple[int, int] = SCORE_LR_SIZE) -> float:
    """SynFlow score at initialisation (larger: more "trainable signal"); see the module docstring."""
    model = scoring_model(config, seed=seed).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, MeanShift) and module.bias is not None:
                module.bias.zero_()
        params = [p for p in model.parameters() if p.requires_grad]
        for p in params:
            p.abs_()
    x = torch.ones(1, config.n_colors, *lr_size)
    model.zero_grad(set_to_none=True)
    model(x, scale=config.scale).sum().backward()
    with torch.no_grad():
        score = sum(float((p.double() * p.grad.double()).abs().sum()) for p in params if p.grad is not None)
    return score if math.isfinite(score) else math.inf


def grad_norm(config: ArchConfig, *, seed: int = 0, batch: int = 16,
              lr_size: tuple[int, int] = SCORE_LR_SIZE) -> float:
    """Sum of per-tensor gradient L2 norms of the L1 loss on one random batch at initialisation.

    The batch (LR inputs and HR targets, uniform in 0..rgb_range) is drawn from ``seed``, so
    every architecture is scored on the same data.
    """
    model = scoring_model(config, seed=seed).train()
    gen = torch.Generator().manual_seed(seed)
    s = config.scale
    lr = torch.rand(batch, config.n_colors, *lr_size, generator=gen) * config.rgb_range
    hr = torch.rand(batch, config.n_colors, lr_size[0] * s, lr_size[1] * s, generator=gen) * config.rgb_range
    model.zero_grad(set_to_none=True)
    F.l1_loss(model(lr, scale=s), hr).backward()
    return float(sum(p.grad.norm(2) for p in model.parameters() if p.requires_grad and p.grad is not None))


#: Score name -> function, in the order the fidelity study reports them.
ZERO_COST_SCORES = {"synflow": synflow, "grad_norm": grad_norm}
