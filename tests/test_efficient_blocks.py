"""The efficient-SR block types (IMDN, RFDN, RLFN, BSRN, SPAN manners): what each computes, its
channel splits, fusion of the re-parameterisable convs, network costs and ONNX export.

Every registered type is also covered by the suites parametrised over the registry
(tests/test_arch.py, tests/test_cost.py, tests/test_export.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from srnas.arch import ArchConfig, build_model, count_mult_adds, count_params, fuse, get_block
from srnas.arch.cost import activation_memory, measure_activation_memory, measure_mult_adds, module_params
from srnas.arch.efficient_blocks import ESA_MIN_SIZE, esa_sizes
from srnas.arch.efficient_layers import RepConv
from srnas.errors import ConfigError

EFFICIENT = ("imdb", "rfdb", "rlfb", "bsconv", "repconv", "spab")
FUSABLE = ("repconv", "spab")


def _perturb(module: torch.nn.Module, scale: float = 0.05) -> None:
    """Move every weight off its initial value (biases and attention included)."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * scale)


def test_the_efficient_types_are_registered_with_their_properties() -> None:
    for name in EFFICIENT:
        block = get_block(name)
        assert block.name == name and not block.batch_norm_ok
        assert block.fusable == (name in FUSABLE)
        assert block.min_size == (ESA_MIN_SIZE if name in ("rfdb", "rlfb") else 1)
        assert block.needs_size == (name in ("rfdb", "rlfb", "repconv", "spab"))


# ---- what each block computes --------------------------------------------------------------------


def test_imdb_splits_distils_and_applies_contrast_attention() -> None:
    """IMDN's block written out by hand from the module's own weights (F=20: d=5, r=15)."""
    torch.manual_seed(0)
    block = get_block("imdb").build(20, 3, act="lrelu", res_scale=0.5).eval()
    _perturb(block)
    assert (block.distilled, block.remaining) == (5, 15)
    assert block.c2.in_channels == 15 and block.c4.out_channels == 5 and block.c5.in_channels == 20
    x = torch.rand(2, 20, 9, 11)
    act = lambda t: F.leaky_relu(t, 0.2)  # noqa: E731
    with torch.no_grad():
        o1 = act(block.c1(x))
        o2 = act(block.c2(o1[:, 5:]))
        o3 = act(block.c3(o2[:, 5:]))
        cat = torch.cat([o1[:, :5], o2[:, :5], o3[:, :5], block.c4(o3[:, 5:])], dim=1)
        stat = cat.std(dim=(2, 3), unbiased=False, keepdim=True) + cat.mean(dim=(2, 3), keepdim=True)
        w = torch.sigmoid(block.cca.conv_du[2](F.relu(block.cca.conv_du[0](stat))))
        expected = x + 0.5 * block.c5(cat * w)
        assert torch.allclose(block(x), expected, atol=1e-5)
    # A width that 4 does not divide: 4d = 32 channels reach the attention and the 1x1 fusion.
    odd = get_block("imdb").build(33, 3)
    assert odd.c5.in_channels == 32 and odd.c5.out_channels == 33 and odd.cca.conv_du[0].out_channels == 2


def test_rfdb_and_rlfb_end_in_spatial_attention_without_an_outer_skip() -> None:
    torch.manual_seed(1)
    x = torch.rand(1, 16, 17, 23)
    rfdb = get_block("rfdb").build(16, 3, act="relu", res_scale=0.5).eval()
    _perturb(rfdb)
    assert {n for n, _ in rfdb.esa.named_children()} == {"conv1", "conv_f", "conv2", "conv_max", "conv3", "conv3_", "conv4"}
    assert rfdb.c1_d.out_channels == 8 and rfdb.c1_r.out_channels == 16 and rfdb.esa.conv1.out_channels == 4
    with torch.no_grad():
        h, pieces = x, []
        for i in (1, 2, 3):
            pieces.append(F.relu(getattr(rfdb, f"c{i}_d")(h)))
            h = F.relu(h + 0.5 * getattr(rfdb, f"c{i}_r")(h))
        pieces.append(F.relu(rfdb.c4(h)))
        u = rfdb.c5(torch.cat(pieces, 1))
        esa = rfdb.esa
        c1_ = esa.conv1(u)
        c = F.max_pool2d(esa.conv2(c1_), 7, 3)
        assert c.shape[-2:] == esa_sizes((17, 23))[2] == (1, 2)
        c = esa.conv3_(F.relu(esa.conv3(F.relu(esa.conv_max(c)))))
        c = F.interpolate(c, size=(17, 23), mode="bilinear", align_corners=False)
        assert torch.allclose(rfdb(x), u * torch.sigmoid(esa.conv4(c + esa.conv_f(c1_))), atol=1e-5)

    rlfb = get_block("rlfb").build(24, 5, act="lrelu").eval()
    assert {n for n, _ in rlfb.esa.named_children()} == {"conv1", "conv_f", "conv2", "conv3", "conv4"}
    assert rlfb.esa.conv1.out_channels == 16 and rlfb.c1_r.kernel_size == (5, 5)


def test_spatial_attention_refuses_maps_under_15_pixels() -> None:
    with pytest.raises(ValueError, match="at least 15x15, not 14x30"):
        esa_sizes((14, 30))
    with pytest.raises(ValueError, match="pass size=\\(h, w\\)"):
        get_block("rlfb").mult_adds(16, 3, pixels=400)
    assert esa_sizes((15, 15)) == ((15, 15), (7, 7), (1, 1))


def test_bsconv_is_pointwise_then_large_depthwise() -> None:
    torch.manual_seed(2)
    block = get_block("bsconv").build(12, 13, act="relu").eval()
    pw, dw = block.body[0].pw, block.body[0].dw
    assert pw.kernel_size == (1, 1) and pw.bias is None
    assert dw.kernel_size == (13, 13) and dw.groups == 12 and dw.bias is not None
    x = torch.rand(1, 12, 16, 16)
    with torch.no_grad():
        h = F.relu(block.body[0].dw(block.body[0].pw(x)))
        assert torch.allclose(block(x), x + block.body[2].dw(block.body[2].pw(h)), atol=1e-6)
    # The large-kernel option is the config's kernel: 9-13 are accepted; parameters grow as k*k*F only.
    cfg = ArchConfig(n_resblocks=2, n_feats=12, block="bsconv", kernel_sizes=(9, 13))
    assert count_params(cfg) == module_params(build_model(cfg))
    assert get_block("bsconv").params(12, 13) - get_block("bsconv").params(12, 3) == 2 * 12 * (169 - 9)


def test_spab_attention_has_no_parameters() -> None:
    torch.manual_seed(3)
    block = get_block("spab").build(8, 3, act="silu").eval()
    _perturb(block)
    convs = [block.c1_r, block.c2_r, block.c3_r]
    assert module_params(block) == sum(module_params(c) for c in convs)
    x = torch.rand(2, 8, 6, 7)
    with torch.no_grad():
        h = convs[2](F.silu(convs[1](F.silu(convs[0](x)))))
        assert torch.allclose(block(x), (x + h) * (torch.sigmoid(h) - 0.5), atol=1e-6)


@pytest.mark.parametrize(("name", "n_feats", "message"), [
    ("imdb", 3, "block type 'imdb' needs n_feats >= 4, not 3"),
    ("rfdb", 2, "block type 'rfdb' needs n_feats >= 4, not 2"),
])
def test_narrow_widths_that_cannot_split_are_refused(name: str, n_feats: int, message: str) -> None:
    with pytest.raises(ConfigError, match=f"ArchConfig.block: {message}"):
        ArchConfig(n_feats=n_feats, block=name)
    with pytest.raises(ConfigError, match=message):
        get_block(name).build(n_feats, 3)
    ArchConfig(n_feats=4, block=name)


# ---- fusion --------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 3, 5, 7])
def test_repconv_fuses_into_one_conv_equal_to_its_branches(k: int) -> None:
    torch.manual_seed(k)
    rep = RepConv(6, 9, k)
    _perturb(rep, 0.2)
    x = torch.randn(2, 6, 5, 8)
    with torch.no_grad():
        before = rep(x)
        weight, bias = rep.fused_weights()
        assert torch.allclose(F.conv2d(x, weight, bias, padding=k // 2), before, atol=1e-5)
        rep.fuse()
        rep.fuse()  # idempotent
        assert rep.fused and list(dict(rep.named_children())) == ["eval_conv"]
        assert torch.allclose(rep(x), before, atol=1e-5)
    assert sorted(rep.state_dict()) == ["eval_conv.bias", "eval_conv.weight"]  # SPAN's key
    assert module_params(rep) == 9 * 6 * k * k + 9


def test_fusing_a_network_keeps_its_output_and_reaches_the_fused_costs() -> None:
    torch.manual_seed(4)
    cfg = ArchConfig(n_resblocks=4, n_feats=12, kernel_sizes=(3, 5, 3, 1), block=("repconv", "spab", "rcab", "spab"),
                     act="silu")
    model = build_model(cfg).eval()
    _perturb(model)
    x = torch.rand(1, 3, 10, 13) * 255
    with torch.no_grad():
        before = model(x)
        assert module_params(model) == count_params(cfg) > count_params(cfg, fused=True)
        assert measure_mult_adds(model, x) == count_mult_adds(cfg, hr_size=(20, 26))
        assert fuse(model) is model
        after = model(x)
    assert torch.allclose(after, before, atol=1e-3), float((after - before).abs().max())  # 0..255 scale
    assert not any(isinstance(m, RepConv) and not m.fused for m in model.modules())
    assert module_params(model) == count_params(cfg, fused=True)
    assert measure_mult_adds(model, x) == count_mult_adds(cfg, hr_size=(20, 26), fused=True)
    # Without fusable blocks both forms coincide.
    plain = ArchConfig(n_resblocks=2, n_feats=8, block="imdb")
    assert count_params(plain, fused=True) == count_params(plain)
    assert count_mult_adds(plain, fused=True) == count_mult_adds(plain)


# ---- networks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kw", [
    {"block": ("imdb", "rfdb", "rlfb"), "act": "lrelu"},
    {"block": ("bsconv", "repconv", "spab"), "act": "gelu", "kernel_sizes": (13, 3, 5), "scales": (3,)},
    {"block": ("rfdb", "spab", "res"), "act": "silu", "global_skip": "bicubic", "scales": (4,)},
    {"family": "mdsr", "scales": (2, 3), "block": ("imdb", "rlfb", "repconv"), "batch_norm": False},
])
def test_networks_of_efficient_blocks_cost_what_they_count(kw: dict) -> None:
    cfg = ArchConfig(**{"n_resblocks": 3, "n_feats": 16, "kernel_sizes": 3, **kw})
    model = build_model(cfg).train()
    for s in cfg.scales:
        assert module_params(model) == count_params(cfg)
        lr = (16, 19)
        assert measure_mult_adds(model, torch.zeros(1, 3, *lr), scale=s) == \
            count_mult_adds(cfg, scale=s, hr_size=(lr[0] * s, lr[1] * s))
        x = torch.rand(2, 3, 16, 16) * 255
        assert measure_activation_memory(model, x, scale=s) == activation_memory(cfg, batch=2, patch=16, scale=s)
        y = model(x, scale=s)
        y.mean().backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all()
                   for n, p in model.body.named_parameters())


@pytest.mark.parametrize("name", EFFICIENT)
def test_efficient_blocks_export_to_onnx(name: str, tmp_path: Path) -> None:
    """Each new type in a network: onnxruntime agrees with PyTorch at another input size than the
    export's; re-parameterisable types export their fused form, one conv per RepConv."""
    pytest.importorskip("onnxruntime")
    import onnx

    from srnas.results.export import ONNX_TOLERANCE, export_onnx

    cfg = ArchConfig(n_resblocks=2, n_feats=16, kernel_sizes=(3, 5), block=name, act="lrelu")
    torch.manual_seed(0)
    net = build_model(cfg)
    _perturb(net)
    if name in FUSABLE:
        fuse(net)
    diff = export_onnx(net, cfg, tmp_path / "m.onnx", scale=2)
    assert 0 <= diff <= ONNX_TOLERANCE * cfg.rgb_range
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    ops = [n.op_type for n in graph.node]
    groups = {a.i for n in graph.node if n.op_type == "Conv" for a in n.attribute if a.name == "group"}
    assert ("Sigmoid" in ops) == (name in ("imdb", "rfdb", "rlfb", "spab"))
    assert ("MaxPool" in ops) == (name in ("rfdb", "rlfb"))
    assert (16 in groups) == (name == "bsconv")
    # head, body conv, upsampler conv, tail conv, mean shifts: 6 convs outside the blocks.
    per_block = {"imdb": 7, "rfdb": 8 + 7, "rlfb": 4 + 5, "bsconv": 4, "repconv": 2, "spab": 3}[name]
    assert ops.count("Conv") == 6 + 2 * per_block


def test_latency_is_measured_on_a_fused_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    from srnas.arch.cost import measure_latency

    fused_here: list[RepConv] = []
    original = RepConv.fuse

    def recording_fuse(self: RepConv) -> None:
        original(self)
        fused_here.append(self)

    monkeypatch.setattr(RepConv, "fuse", recording_fuse)
    model = build_model(ArchConfig(n_resblocks=1, n_feats=8, block="repconv"))
    assert measure_latency(model, (8, 8), repeats=1, warmup=0) > 0
    mine = [m for m in model.modules() if isinstance(m, RepConv)]
    assert fused_here and all(m.fused for m in fused_here) and not any(m.fused for m in mine)
    assert not {id(m) for m in fused_here} & {id(m) for m in mine}  # a copy was fused, not the caller's net
    fused_here.clear()
    measure_latency(model, (8, 8), repeats=1, warmup=0, fused=False)
    assert not fused_here
