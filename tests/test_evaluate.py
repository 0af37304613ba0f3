"""Evaluation runner: tiled inference, self-ensemble, scoring a set with its protocol."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from srnas.arch import ArchConfig, build_model
from srnas.data import SRImageSet, demo_split
from srnas.errors import ConfigError, DataError
from srnas.train.evaluate import (
    EvalResult, evaluate_bicubic, evaluate_model, receptive_radius, super_resolve, upscale_image,
)


def _random_net(cfg: ArchConfig, seed: int = 0) -> torch.nn.Module:
    """A network in its default random init, with the zero tail of a bicubic-skip net
    re-initialised and batch-norm statistics made non-trivial (so every layer matters)."""
    torch.manual_seed(seed)
    net = build_model(cfg).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d) and m.weight.requires_grad and not m.weight.any():
                m.reset_parameters()
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-1, 1)
    return net


def _lr(h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 255


CONFIGS = [
    (ArchConfig(n_resblocks=2, n_feats=8, kernel_sizes=(3, 5), global_skip="bicubic"), 2),
    (ArchConfig(scales=(3,), n_resblocks=1, n_feats=8, kernel_sizes=7), 3),
    (ArchConfig(scales=(4,), n_resblocks=2, n_feats=8, batch_norm=True, act="lrelu"), 4),
    (ArchConfig(family="mdsr", scales=(2, 3), n_resblocks=1, n_feats=8, head_blocks=1, head_kernel=5,
                global_skip="bicubic"), 3),
]


@pytest.mark.parametrize("cfg,scale", CONFIGS, ids=lambda c: c.describe() if isinstance(c, ArchConfig) else str(c))
def test_tiled_inference_equals_whole_image(cfg: ArchConfig, scale: int) -> None:
    net = _random_net(cfg)
    x = _lr(37, 29)
    whole = super_resolve(net, x, scale=scale)
    for tile in (8, 13, 40):
        tiled = super_resolve(net, x, scale=scale, tile=tile)
        assert tiled.shape == whole.shape == (1, 3, 37 * scale, 29 * scale)
        assert (tiled - whole).abs().max().item() < 1e-4, tile


def test_too_little_overlap_is_visible() -> None:
    """Guards the test above: without enough context the tile seams differ."""
    net = _random_net(CONFIGS[0][0])
    x = _lr(37, 29)
    whole = super_resolve(net, x, scale=2)
    assert (super_resolve(net, x, scale=2, tile=8, tile_overlap=0) - whole).abs().max().item() > 1e-2


@pytest.mark.parametrize("cfg,scale", CONFIGS[:3], ids=["x2", "x3", "x4"])
def test_receptive_radius_bounds_the_measured_one(cfg: ArchConfig, scale: int) -> None:
    net = _random_net(cfg)
    x = _lr(41, 41)
    base = super_resolve(net, x, scale=scale)
    poked = x.clone()
    poked[..., 20, 20] += 50
    changed = (super_resolve(net, poked, scale=scale) - base).abs().amax(dim=1)[0] > 0
    rows = changed.any(dim=1).nonzero().flatten()
    measured = max(20 * scale - rows.min().item(), rows.max().item() - (20 * scale + scale - 1)) / scale
    assert 0 < measured <= receptive_radius(net, scale)


def _dihedral_outputs(net: torch.nn.Module, x: torch.Tensor, scale: int) -> list[torch.Tensor]:
    """The 8 transforms written independently with rot90/flip, each inverted."""
    outs = []
    for flip in (False, True):
        for k in range(4):
            t = torch.rot90(x.flip(-1) if flip else x, k, dims=(-2, -1))
            with torch.no_grad():
                y = torch.rot90(net(t, scale=scale), -k, dims=(-2, -1))
            outs.append(y.flip(-1) if flip else y)
    return outs


@pytest.mark.parametrize("tile", [None, 9])
def test_self_ensemble_is_the_mean_of_the_8_transforms(tile: int | None) -> None:
    cfg, scale = CONFIGS[0]
    net = _random_net(cfg)
    x = _lr(20, 15)
    ens = super_resolve(net, x, scale=scale, self_ensemble=True, tile=tile)
    outs = _dihedral_outputs(net, x, scale)
    assert (ens - torch.stack(outs).mean(0)).abs().max().item() < 1e-4
    # ... and the transforms do differ (the test would catch an ensemble of one transform)
    assert (outs[0] - outs[5]).abs().max().item() > 1e-2


def test_upscale_image_quantises_and_matches_tiling() -> None:
    cfg, _ = CONFIGS[0]
    net = _random_net(cfg).train()
    img = (np.random.default_rng(0).random((23, 31, 3)) * 255).astype(np.uint8)
    out = upscale_image(net, img)
    assert out.dtype == np.uint8 and out.shape == (46, 62, 3)
    assert net.training  # mode restored
    tiled = upscale_image(net, img, tile=10)
    assert np.abs(out.astype(int) - tiled.astype(int)).max() <= 1  # rounding of values within 1e-4 of .5
    ref = super_resolve(net.eval(), torch.from_numpy(img).permute(2, 0, 1)[None].float(), scale=2)
    expected = ref[0].clamp(0, 255).round().byte().permute(1, 2, 0).numpy()
    assert np.array_equal(out, expected)
    with pytest.raises(ConfigError, match="scale 3 not served"):
        upscale_image(net, img, scale=3)
    mdsr = _random_net(CONFIGS[3][0])
    with pytest.raises(ConfigError, match="give the scale"):
        upscale_image(mdsr, img)
    assert upscale_image(mdsr, img, scale=3).shape == (69, 93, 3)


def _set(n: int = 3, scale: int = 2, protocol: str = "benchmark") -> SRImageSet:
    rng = np.random.default_rng(1)
    from srnas.data import imresize

    hr = [np.clip(rng.normal(128, 40, (24 + 6 * i, 30, 3)), 0, 255).astype(np.uint8) for i in range(n)]
    hr = [h[: h.shape[0] // scale * scale, : h.shape[1] // scale * scale] for h in hr]
    lr = [imresize(h, 1 / scale) for h in hr]
    return SRImageSet(name="synthetic", names=[f"im{i}" for i in range(n)], hr=hr, lr={scale: lr}, protocol=protocol)


def test_evaluate_model_rows_means_and_protocol() -> None:
    from srnas.metrics import evaluate_pair

    data = _set()
    net = _random_net(CONFIGS[0][0])
    res = evaluate_model(net, data, scale=2)
    assert isinstance(res, EvalResult)
    assert res.protocol == "benchmark" and res.scale == 2 and res.n_images == 3 and not res.self_ensemble
    assert [r.name for r in res.rows] == data.names
    assert res.psnr == pytest.approx(np.mean([r.psnr for r in res.rows]))
    assert res.ssim == pytest.approx(np.mean([r.ssim for r in res.rows]))
    sr = upscale_image(net, data.lr[2][1], scale=2)
    direct = evaluate_pair(sr, data.hr[1], 2, "benchmark")
    assert res.rows[1].psnr == pytest.approx(direct["psnr"]) and res.rows[1].ssim == pytest.approx(direct["ssim"])
    div2k = evaluate_model(net, data, scale=2, protocol="div2k", max_images=2, with_ssim=False)
    assert div2k.protocol == "div2k" and div2k.n_images == 2 and div2k.ssim is None
    assert div2k.rows[0].psnr != res.rows[0].psnr
    d = res.to_dict()
    assert d["n_images"] == 3 and d["rows"][0]["name"] == "im0"


def test_bicubic_skip_net_at_init_scores_like_bicubic() -> None:
    train, val = demo_split((2,))
    net = build_model(ArchConfig(n_resblocks=1, n_feats=4, global_skip="bicubic"))
    ours = evaluate_model(net, val, scale=2, with_ssim=False)
    bic = evaluate_bicubic(val, scale=2, with_ssim=False)
    # Mean over the three demo validation photographs (coffee 30.59, china 24.35, flower 35.18 dB).
    assert bic.method == "bicubic" and bic.psnr == pytest.approx(30.04, abs=0.02)
    assert ours.psnr == pytest.approx(bic.psnr, abs=0.02)


def test_missing_scale_and_bad_tiles() -> None:
    data = _set()
    net = _random_net(CONFIGS[0][0])
    with pytest.raises(DataError, match="no LR images at x3"):
        evaluate_model(net, data, scale=3)
    with pytest.raises(ConfigError, match="tile"):
        super_resolve(net, _lr(8, 8), scale=2, tile=0)
    with pytest.raises(ConfigError, match="bf16"):
        super_resolve(net, _lr(8, 8), scale=2, bf16=True)
