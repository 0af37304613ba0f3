"""Presets, block types, builders, forward/backward, parameter counts and the authors' checkpoint
layout."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F

from srnas.arch import ArchConfig, build_model, count_params, get_block, load_weights, preset_config
from srnas.arch.cost import activation_memory, count_mult_adds, measure_activation_memory, measure_mult_adds, module_params
from srnas.arch.presets import MDSR_SCALES
from srnas.arch.registry import ACTS_SAVING_INPUT, BLOCKS, BlockType, register_block
from srnas.errors import ConfigError

# docs/reference.md section 1 (trainable parameters, mean shift excluded).
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


def test_preset_forward_backward_every_scale(preset_name: str) -> None:
    torch.manual_seed(0)
    # EDSR presets: one network per scale; MDSR presets: one network serving 2, 3 and 4.
    configs = {c.arch_id: c for c in (preset_config(preset_name, scale=s) for s in MDSR_SCALES)}
    for cfg in configs.values():
        model = build_model(cfg)
        assert module_params(model) == count_params(cfg)
        h, w = max(6, cfg.min_lr_size), max(5, cfg.min_lr_size)  # ESA blocks need 15x15
        for s in cfg.scales:
            model.zero_grad()
            y = model(torch.rand(1, 3, h, w) * 255, scale=s)
            assert y.shape == (1, 3, h * s, w * s)
            y.mean().backward()
            grads = [p.grad for n, p in model.named_parameters() if p.requires_grad and _serves(n, cfg, s)]
            assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


def _serves(param_name: str, cfg: ArchConfig, scale: int) -> bool:
    """Whether a parameter is on the path of ``scale`` (MDSR's other heads get no gradient)."""
    parts = param_name.split(".")
    return parts[0] not in ("pre_process", "upsample") or int(parts[1]) == cfg.scales.index(scale)


# ---- block types --------------------------------------------------------------------------------


def test_every_block_type_in_edsr_and_mdsr(block_name: str) -> None:
    torch.manual_seed(0)
    block = get_block(block_name)
    side = max(6, block.min_size)  # ESA's pooled branch needs 15x15 maps
    for cfg in (ArchConfig(n_resblocks=2, n_feats=16, kernel_sizes=(3, 5), block=block_name,
                           batch_norm=block.batch_norm_ok),
                ArchConfig(family="mdsr", scales=(2, 3), n_resblocks=2, n_feats=16, block=block_name,
                           act="silu", head_blocks=1, head_kernel=5)):
        model = build_model(cfg).train()
        assert module_params(model) == count_params(cfg)
        for i, k in enumerate(cfg.kernel_sizes):  # body.{i} is the registered type, as the authors name it
            reference = get_block(block_name).build(16, k, batch_norm=cfg.batch_norm)
            assert {n: v.shape for n, v in model.body[i].state_dict().items()} == \
                {n: v.shape for n, v in reference.state_dict().items()}
        if cfg.family == "mdsr":  # the pre-processing heads stay EDSR blocks
            res = get_block("res").build(16, 5)
            assert model.pre_process[0][0].state_dict().keys() == res.state_dict().keys()
        for s in cfg.scales:
            model.zero_grad()
            y = model(torch.rand(2, 3, side, side + 1) * 255, scale=s)
            assert y.shape == (2, 3, side * s, (side + 1) * s)
            y.mean().backward()
            grads = {name: p.grad for name, p in model.body.named_parameters()}
            assert all(g is not None and torch.isfinite(g).all() for g in grads.values()), grads
            assert sum(float(g.abs().sum()) for g in grads.values()) > 0


def test_rcab_is_rcans_channel_attention_block() -> None:
    torch.manual_seed(0)
    rcab = get_block("rcab")
    assert [rcab.reduced_feats(f) for f in (1, 8, 16, 33, 64, 256)] == [1, 1, 1, 2, 4, 16]
    block = rcab.build(32, 3, act="relu", res_scale=0.5).eval()
    sd = block.state_dict()  # RCAN's names: body.{0,2} convs, body.3 = CALayer with conv_du.{0,2}
    assert sorted(sd) == sorted(f"body.{m}.{p}" for m in ("0", "2", "3.conv_du.0", "3.conv_du.2")
                                for p in ("weight", "bias"))
    assert sd["body.3.conv_du.0.weight"].shape == (2, 32, 1, 1) and sd["body.3.conv_du.2.weight"].shape == (32, 2, 1, 1)
    x = torch.randn(2, 32, 6, 7)
    u = F.conv2d(F.relu(F.conv2d(x, sd["body.0.weight"], sd["body.0.bias"], padding=1)),
                 sd["body.2.weight"], sd["body.2.bias"], padding=1)
    z = u.mean(dim=(2, 3), keepdim=True)
    attention = torch.sigmoid(F.conv2d(F.relu(F.conv2d(z, sd["body.3.conv_du.0.weight"], sd["body.3.conv_du.0.bias"])),
                                       sd["body.3.conv_du.2.weight"], sd["body.3.conv_du.2.bias"]))
    assert attention.shape == (2, 32, 1, 1)
    with torch.no_grad():
        assert torch.allclose(block(x), x + 0.5 * u * attention, atol=1e-5)
    bn = rcab.build(32, 3, batch_norm=True)
    assert [type(m).__name__ for m in bn.body] == ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d",
                                                   "ChannelAttention"]


def test_dwsep_is_depthwise_then_pointwise() -> None:
    torch.manual_seed(0)
    block = get_block("dwsep").build(12, 5, act="lrelu").eval()
    sd = block.state_dict()  # the depthwise convs carry no bias
    assert sorted(sd) == ["body.0.weight", "body.1.bias", "body.1.weight", "body.3.weight", "body.4.bias", "body.4.weight"]
    assert sd["body.0.weight"].shape == (12, 1, 5, 5) and sd["body.1.weight"].shape == (12, 12, 1, 1)
    x = torch.randn(1, 12, 9, 8)
    h = F.leaky_relu(F.conv2d(F.conv2d(x, sd["body.0.weight"], padding=2, groups=12),
                              sd["body.1.weight"], sd["body.1.bias"]), 0.2)
    body = F.conv2d(F.conv2d(h, sd["body.3.weight"], padding=2, groups=12), sd["body.4.weight"], sd["body.4.bias"])
    with torch.no_grad():
        assert torch.allclose(block(x), x + body, atol=1e-5)
    bn = get_block("dwsep").build(12, 3, batch_norm=True)
    assert [type(m).__name__ for m in bn.body] == ["Conv2d", "Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "Conv2d",
                                                   "BatchNorm2d"]


class _HalfBottleneck(BlockType):
    """A block type the project does not ship: 1x1 conv F->F/2 -> [BN] -> act -> kxk conv F/2->F -> [BN]."""

    name = "test-half-bottleneck"

    @classmethod
    def build(cls, n_feats: int, kernel_size: int, *, batch_norm: bool = False, act: str = "relu",
              res_scale: float = 1.0) -> torch.nn.Module:
        from srnas.arch.blocks import Residual, activation, conv

        half = max(1, n_feats // 2)
        layers = [conv(n_feats, half, 1), *([torch.nn.BatchNorm2d(half)] if batch_norm else []), activation(act),
                  conv(half, n_feats, kernel_size), *([torch.nn.BatchNorm2d(n_feats)] if batch_norm else [])]
        return Residual(torch.nn.Sequential(*layers), res_scale)

    @classmethod
    def params(cls, n_feats: int, kernel_size: int, *, batch_norm: bool = False) -> int:
        half = max(1, n_feats // 2)
        return (n_feats * half + half) + (kernel_size ** 2 * half * n_feats + n_feats) + 2 * (half + n_feats) * batch_norm

    @classmethod
    def mult_adds(cls, n_feats: int, kernel_size: int, *, pixels: int, size: tuple[int, int] | None = None) -> int:
        half = max(1, n_feats // 2)
        return (n_feats * half + kernel_size ** 2 * half * n_feats) * pixels

    @classmethod
    def saved_elements(cls, n_feats: int, kernel_size: int, *, batch_norm: bool = False, act: str = "relu",
                       pixels: int, size: tuple[int, int] | None = None) -> int:
        half = max(1, n_feats // 2)
        # conv1 input, act output; BN: both conv outputs; silu/gelu: the act input.
        return (n_feats + half * (1 + (act in ACTS_SAVING_INPUT)) + (half + n_feats) * batch_norm) * pixels


@pytest.fixture()
def half_bottleneck() -> Iterator[str]:
    register_block(_HalfBottleneck)
    yield _HalfBottleneck.name
    BLOCKS.unregister(_HalfBottleneck.name)


def test_a_new_block_type_is_one_class_and_its_registration(half_bottleneck: str) -> None:
    """Config, builder and every cost of the model accept a newly registered type, nothing else edited."""
    for kw in ({}, {"batch_norm": True, "act": "gelu"}, {"family": "mdsr", "scales": (2, 4), "head_blocks": 1}):
        cfg = ArchConfig(n_resblocks=3, n_feats=10, kernel_sizes=(3, 5, 3), block=(half_bottleneck, "rcab", half_bottleneck), **kw)
        assert f"block={half_bottleneck}/rcab/{half_bottleneck}" in cfg.describe()
        assert ArchConfig.from_json(cfg.to_json()) == cfg
        model = build_model(cfg).train()
        assert module_params(model) == count_params(cfg)
        for s in cfg.scales:
            assert measure_mult_adds(model, torch.zeros(1, 3, 5, 7), scale=s) == count_mult_adds(cfg, scale=s, hr_size=(5 * s, 7 * s))
            x = torch.rand(2, 3, 8, 8) * 255
            assert measure_activation_memory(model, x, scale=s) == activation_memory(cfg, batch=2, patch=8, scale=s)


def test_registration_errors() -> None:
    class Clash(_HalfBottleneck):
        name = "res"

    with pytest.raises(ValueError, match="block type 'res' is already registered"):
        register_block(Clash)
    with pytest.raises(TypeError, match="not a BlockType subclass"):
        register_block(torch.nn.Conv2d)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown block type 'nope'; allowed: res \\| rcab \\| dwsep \\| imdb"):
        get_block("nope")
    assert BLOCKS["res"].name == "res" and "test-half-bottleneck" not in BLOCKS


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
    """State-dict keys of EDSR as written by sanghyun-son/EDSR-PyTorch (docs/reference.md section 1)."""
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
