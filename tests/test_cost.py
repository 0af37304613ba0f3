"""The analytic cost model agrees exactly with counts taken from built modules."""

from __future__ import annotations

import pytest
import torch

from srnas.arch import ArchConfig, build_model, count_mult_adds, count_params, preset_config
from srnas.arch.cost import (activation_memory, lr_size_for, measure_activation_memory,
                             measure_latency, measure_mult_adds, module_params)
from srnas.space import SearchSpace, available_spaces

SMALL_HR = (24, 36)


def test_edsr_baseline_x2_mult_adds_on_720p_convention() -> None:
    cfg = preset_config("edsr-baseline", scale=2)
    macs = count_mult_adds(cfg)
    assert macs == 316_248_883_200
    assert round(macs / 1e9, 2) == 316.25
    # The hook count on a real 640x360 input agrees.
    assert measure_mult_adds(build_model(cfg), torch.zeros(1, 3, 360, 640)) == macs


@pytest.mark.parametrize(("name", "scale"), [("edsr-baseline", 3), ("edsr-baseline", 4), ("edsr", 2),
                                             ("mdsr-baseline", 2), ("mdsr-baseline", 3), ("mdsr", 4)])
def test_presets_analytic_mult_adds_equal_hooks(name: str, scale: int) -> None:
    cfg = preset_config(name, scale=scale) if name.startswith("edsr") else preset_config(name)
    model = build_model(cfg)
    lr = torch.zeros(1, 3, *lr_size_for(SMALL_HR, scale))
    assert measure_mult_adds(model, lr, scale=scale) == count_mult_adds(cfg, scale=scale, hr_size=SMALL_HR)


def _check(cfg: ArchConfig, hr_size: tuple[int, int] = SMALL_HR) -> None:
    model = build_model(cfg)
    assert module_params(model) == count_params(cfg)
    for s in cfg.scales:
        lr = torch.zeros(1, cfg.n_colors, *lr_size_for(hr_size, s))
        assert measure_mult_adds(model, lr, scale=s) == count_mult_adds(cfg, scale=s, hr_size=hr_size), cfg


@pytest.mark.parametrize("space_name", available_spaces())
def test_fifty_sampled_configs_per_space(space_name: str) -> None:
    space = SearchSpace.load(space_name)
    configs = space.sample_random(50, seed=123)
    assert len({c.arch_id for c in configs}) > 10
    for cfg in configs:
        _check(cfg, hr_size=(12, 12))  # a tiny input keeps the hook count cheap for big nets


@pytest.mark.parametrize("kw", [
    {},
    {"batch_norm": True},
    {"act": "gelu"},
    {"act": "silu", "batch_norm": True, "global_skip": "bicubic"},
    {"family": "mdsr", "scales": (2, 3, 4), "head_blocks": 3, "head_kernel": 3},
    {"family": "mdsr", "scales": (8,), "head_blocks": 0},
])
def test_activation_memory_matches_saved_tensors(kw: dict) -> None:
    cfg = ArchConfig(**{"n_resblocks": 3, "n_feats": 8, "kernel_sizes": (3, 5, 3), **kw})
    model = build_model(cfg).train()
    for s in cfg.scales:
        x = torch.rand(2, 3, 12, 12) * 255
        assert measure_activation_memory(model, x, scale=s) == activation_memory(cfg, batch=2, patch=12, scale=s)


def test_activation_memory_grows_as_b_f_h_w() -> None:
    base = ArchConfig(n_resblocks=16, n_feats=64)
    m = activation_memory(base, patch=48)
    assert activation_memory(base.replace(n_resblocks=32), patch=48) > 1.8 * m
    assert activation_memory(base, patch=96) == pytest.approx(4 * m, rel=1e-9)
    assert activation_memory(base.replace(n_feats=128), patch=48) == pytest.approx(2 * m, rel=0.01)


def test_measure_latency_returns_positive_ms() -> None:
    model = build_model(ArchConfig(n_resblocks=1, n_feats=8))
    assert measure_latency(model, (16, 16), repeats=2, warmup=1) > 0
