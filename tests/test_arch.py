"""Presets, builders, forward/backward, parameter counts and the authors' checkpoint layout."""

from __future__ import annotations

import pytest
import torch

from srnas.arch import ArchConfig, build_model, count_params, load_weights, preset_config
from srnas.arch.cost import module_params

# REFERENCE.md section 1 (trainable parameters, mean shift excluded).
PUBLISHED_PARAMS = {
    ("edsr-baseline", 2): 1_369_859, ("edsr-baseline", 3): 1_554_499, ("edsr-baseline", 4): 1_517_571,
    ("edsr", 2): 40_729_603, ("edsr", 3): 43_680_003, ("edsr", 4): 43_089_923,
    ("mdsr-baseline", None): 3_227_203, ("mdsr", None): 7_953_987,
}


@pytest.mark.parametrize(("name", "scale"), list(PUBLISHED_PARAMS))
def test_preset_parameter_count_is_exact(name: str, scale: int | None) -> None:
    cfg = preset_config(name, scale=scale)
    model = build_model(cfg)
    assert module_params(model) == PUBLISHED_PARAMS[(name, scale)]
    assert count_params(cfg) == PUBLISHED_PARAMS[(name, scale)]


@pytest.mark.parametrize("name", ["edsr-baseline", "edsr", "mdsr-baseline", "mdsr"])
def test_preset_forward_backward_every_scale(name: str) -> None:
    torch.manual_seed(0)
    scales = (2, 3, 4)
    if name.startswith("mdsr"):
        models = {s: build_model(preset_config(name)) for s in (None,)}
        model = models[None]
        for s in scales:
            x = torch.rand(1, 3, 6, 5) * 255
            y = model(x, scale=s)
            assert y.shape == (1, 3, 6 * s, 5 * s)
            y.mean().backward()
            model.zero_grad()
    else:
        for s in scales:
            model = build_model(name, scale=s)
            x = torch.rand(1, 3, 6, 5) * 255
            y = model(x)
            assert y.shape == (1, 3, 6 * s, 5 * s)
            y.mean().backward()
            grads = [p.grad for p in model.parameters() if p.requires_grad]
            assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_x8_upsampler_builds() -> None:
    cfg = ArchConfig(family="edsr", scales=(8,), n_resblocks=1, n_feats=8)
    y = build_model(cfg)(torch.rand(1, 3, 4, 4))
    assert y.shape == (1, 3, 32, 32)


def test_mean_shift_is_frozen_and_excluded() -> None:
    model = build_model("edsr-baseline", scale=2)
    assert not model.sub_mean.weight.requires_grad and not model.add_mean.bias.requires_grad
    # An all-mean image passes the mean shift unchanged around a zero body.
    mean = torch.tensor([0.4488, 0.4371, 0.4040]).view(1, 3, 1, 1) * 255
    assert torch.allclose(model.sub_mean(mean.expand(1, 3, 2, 2)), torch.zeros(1, 3, 2, 2), atol=1e-4)


def test_mdsr_rejects_unserved_scale() -> None:
    model = build_model("mdsr-baseline")
    with pytest.raises(ValueError, match="scale 8 not served"):
        model(torch.rand(1, 3, 4, 4), scale=8)
    with pytest.raises(ValueError, match="pass scale="):
        model(torch.rand(1, 3, 4, 4))


def test_bicubic_skip_untrained_net_equals_bicubic() -> None:
    cfg = ArchConfig(family="edsr", scales=(2,), n_resblocks=2, n_feats=8, global_skip="bicubic")
    model = build_model(cfg).eval()
    x = torch.rand(1, 3, 7, 9) * 255
    with torch.no_grad():
        y = model(x)
        ref = model.bicubic[0](x)
    assert torch.allclose(y, ref, atol=1e-3)
    # A constant image stays constant through the bicubic skip (weights sum to one).
    const = torch.full((1, 3, 5, 5), 100.0)
    assert torch.allclose(model.bicubic[0](const), torch.full((1, 3, 10, 10), 100.0), atol=1e-4)


# ---- the authors' checkpoint layout ---------------------------------------------------------

def _authors_keys_edsr(n_blocks: int, scale: int, bn: bool = False) -> set[str]:
    """State-dict keys of EDSR as written by sanghyun-son/EDSR-PyTorch (REFERENCE.md sec. 1)."""
    keys = {f"{m}.{p}" for m in ("sub_mean", "add_mean") for p in ("weight", "bias")}
    keys |= {"head.0.weight", "head.0.bias", "tail.1.weight", "tail.1.bias"}
    conv_idx = (0, 3) if bn else (0, 2)
    for i in range(n_blocks):
        for j in conv_idx:
            keys |= {f"body.{i}.body.{j}.weight", f"body.{i}.body.{j}.bias"}
        if bn:
            for j in (1, 4):
                keys |= {f"body.{i}.body.{j}.{p}" for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    keys |= {f"body.{n_blocks}.weight", f"body.{n_blocks}.bias"}
    stages = [0] if scale == 3 else [2 * i for i in range({2: 1, 4: 2, 8: 3}[scale])]
    keys |= {f"tail.0.{i}.{p}" for i in stages for p in ("weight", "bias")}
    return keys


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_edsr_keys_match_authors_layout(scale: int) -> None:
    model = build_model("edsr-baseline", scale=scale)
    assert set(model.state_dict()) == _authors_keys_edsr(16, scale)


def test_edsr_bn_keys_match_authors_layout() -> None:
    cfg = ArchConfig(family="edsr", scales=(2,), n_resblocks=3, n_feats=8, batch_norm=True)
    assert set(build_model(cfg).state_dict()) == _authors_keys_edsr(3, 2, bn=True)


def test_mdsr_keys_match_authors_layout() -> None:
    keys = set(build_model("mdsr-baseline").state_dict())
    for s in range(3):
        for b in range(2):
            assert f"pre_process.{s}.{b}.body.0.weight" in keys and f"pre_process.{s}.{b}.body.2.bias" in keys
    assert {"upsample.0.0.weight", "upsample.1.0.weight", "upsample.2.0.weight", "upsample.2.2.weight"} <= keys
    assert {"tail.0.weight", "head.0.weight", "body.16.weight", "sub_mean.weight"} <= keys


def test_authors_state_dict_loads_strictly_and_reproduces_outputs(tmp_path) -> None:
    torch.manual_seed(1)
    donor = build_model("edsr-baseline", scale=2)
    # A state dict as the authors' code writes it: plain tensors, DataParallel prefix included.
    state = {f"module.{k}": v.clone() for k, v in donor.state_dict().items()}
    assert set(k.removeprefix("module.") for k in state) == _authors_keys_edsr(16, 2)
    path = tmp_path / "edsr_baseline_x2-1bc95232.pt"
    torch.save(state, path)
    fresh = build_model("edsr-baseline", scale=2)
    load_weights(fresh, path, strict=True)
    x = torch.rand(1, 3, 8, 8) * 255
    with torch.no_grad():
        assert torch.equal(donor.eval()(x), fresh.eval()(x))


def test_strict_load_rejects_wrong_keys(tmp_path) -> None:
    from srnas.errors import ConfigError

    state = build_model("edsr-baseline", scale=2).state_dict()
    state.pop("tail.1.bias")
    with pytest.raises(ConfigError, match="missing"):
        load_weights(build_model("edsr-baseline", scale=2), state)
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="broken.pt"):
        load_weights(build_model("edsr-baseline", scale=2), bad)


def test_x2_weights_initialise_x3_except_upsampler() -> None:
    torch.manual_seed(2)
    x2 = build_model("edsr-baseline", scale=2)
    x3 = build_model("edsr-baseline", scale=3)
    before = {k: v.clone() for k, v in x3.state_dict().items()}
    untouched = load_weights(x3, x2.state_dict(), transfer=True)
    assert untouched == ["tail.0.0.bias", "tail.0.0.weight"]
    after = x3.state_dict()
    for key, value in x2.state_dict().items():
        if not key.startswith("tail.0."):
            assert torch.equal(after[key], value), key
    assert torch.equal(after["tail.0.0.weight"], before["tail.0.0.weight"])


def test_mdsr_transfer_skips_upsamplers() -> None:
    src = build_model(ArchConfig(family="mdsr", scales=(2,), n_resblocks=2, n_feats=8))
    dst = build_model(ArchConfig(family="mdsr", scales=(3,), n_resblocks=2, n_feats=8))
    untouched = load_weights(dst, src.state_dict(), transfer=True)
    assert untouched and all(k.startswith("upsample.") for k in untouched)
