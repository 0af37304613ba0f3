"""Published efficient nets as presets of the ``efficient`` family: the authors' parameter counts
at x2, x3 and x4 (docs/reference.md section 1b, which names each source file and commit), the
trunks' wiring, costs against module counts, and ONNX through onnxruntime."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from srnas.arch import ArchConfig, build_model, count_mult_adds, count_params, fuse, preset_config
from srnas.arch.cost import activation_memory, measure_activation_memory, measure_mult_adds, module_params
from srnas.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

#: docs/reference.md section 1b: counted from the authors' code (SPAN: inference form, fused).
AUTHORS_PARAMS = {
    ("imdn", 2): 694_404, ("imdn", 3): 703_059, ("imdn", 4): 715_176,
    ("rfdn", 4): 433_448,
    ("rlfn", 2): 526_856, ("rlfn", 3): 533_891, ("rlfn", 4): 543_740,
    ("rlfn-s", 2): 454_620, ("rlfn-s", 3): 461_115, ("rlfn-s", 4): 470_208,
    ("span", 2): 410_700, ("span", 3): 417_195, ("span", 4): 426_288,
}
EFFICIENT_PRESETS = ("imdn", "rfdn", "rlfn", "rlfn-s", "span")


@pytest.mark.parametrize(("name", "scale"), list(AUTHORS_PARAMS))
def test_preset_has_the_authors_parameter_count(name: str, scale: int) -> None:
    cfg = preset_config(name, scale=scale)
    model = build_model(cfg)
    assert count_params(cfg, fused=True) == AUTHORS_PARAMS[(name, scale)]
    assert module_params(fuse(model)) == AUTHORS_PARAMS[(name, scale)]


def test_reference_doc_records_every_count_with_its_source() -> None:
    text = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    section = text[text.index("## 1b."):]
    section = section[:section.index("\n## ", 5)]
    for (name, scale), count in AUTHORS_PARAMS.items():
        row = next((line for line in section.splitlines() if line.startswith(f"| {name} |")), None)
        assert row is not None, name
        assert f"{count:,}" in row, (name, scale, row)
        assert re.search(r"[0-9a-f]{40}", row), row  # the commit the count was read at


def test_span_training_form_is_larger_and_fuses_to_the_published_count() -> None:
    cfg = preset_config("span", scale=4)
    assert count_params(cfg) == 1_840_488  # SPAN's branches before fusion, as trained
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.02)
        x = torch.rand(1, 3, 9, 11) * 255
        before = model(x)
        after = fuse(model)(x)
    assert torch.allclose(after, before, atol=1e-2), float((after - before).abs().max())  # on 0..255


def test_trunks_wire_as_the_papers() -> None:
    imdn = build_model(preset_config("imdn", scale=2))
    assert imdn.aggregate[0].in_channels == 6 * 64 and imdn.aggregate[0].kernel_size == (1, 1)
    assert imdn.tail[0].out_channels == 3 * 4 and isinstance(imdn.tail[1], torch.nn.PixelShuffle)
    rlfn = build_model(preset_config("rlfn", scale=4))
    assert rlfn.aggregate is None and rlfn.trunk_conv.kernel_size == (3, 3)
    span = build_model(preset_config("span", scale=4))
    assert span.aggregate.in_channels == 4 * 48
    # SPAN's trunk reads the last block's first activated conv: changing that conv changes the output.
    x = torch.rand(1, 3, 8, 8) * 255
    with torch.no_grad():
        y = span.eval()(x)
        span.body[5].c1_r.sk.bias.add_(1.0)
        assert not torch.allclose(span(x), y)


def test_the_efficient_family_is_validated() -> None:
    with pytest.raises(ConfigError, match="exactly one scale for family 'efficient'"):
        ArchConfig(family="efficient", scales=(2, 3))
    with pytest.raises(ConfigError, match="ArchConfig.trunk: invalid value 'dense'; allowed: imdn \\| rlfn \\| span"):
        ArchConfig(family="efficient", trunk="dense")
    with pytest.raises(ConfigError, match="ArchConfig.trunk: invalid value 'imdn'; allowed: unset for family"):
        ArchConfig(family="edsr", trunk="imdn")
    cfg = preset_config("rlfn-s", scale=2)
    assert cfg.trunk == "rlfn" and "trunk=rlfn" in cfg.describe() and cfg.min_lr_size == 15
    assert ArchConfig.from_json(cfg.to_json()) == cfg
    assert "trunk" not in preset_config("edsr-baseline").to_dict()  # old configs keep their arch_id
    assert cfg.replace(family="edsr").trunk is None


@pytest.mark.parametrize("name", EFFICIENT_PRESETS)
def test_preset_costs_and_training_step(name: str) -> None:
    cfg = preset_config(name, scale=3, n_resblocks=2)  # two blocks keep it fast; the layout is the preset's
    model = build_model(cfg).train()
    assert module_params(model) == count_params(cfg)
    x = torch.rand(2, 3, 16, 17) * 255
    assert measure_mult_adds(model, x[:1]) == count_mult_adds(cfg, hr_size=(48, 51))
    assert measure_activation_memory(model, x[..., :16]) == activation_memory(cfg, batch=2, patch=16)
    model(x).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
    fused = fuse(model)
    assert module_params(fused) == count_params(cfg, fused=True)
    assert measure_mult_adds(fused, x[:1]) == count_mult_adds(cfg, hr_size=(48, 51), fused=True)


@pytest.mark.parametrize("name", EFFICIENT_PRESETS)
def test_preset_exports_to_onnx(name: str, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from srnas.results.export import ONNX_TOLERANCE, export_onnx

    cfg = preset_config(name, scale=4)
    torch.manual_seed(0)
    model = fuse(build_model(cfg))
    diff = export_onnx(model, cfg, tmp_path / f"{name}.onnx", scale=4)
    assert 0 <= diff <= ONNX_TOLERANCE * cfg.rgb_range


def _authors_keys(name: str) -> set[str]:
    """The state-dict keys of the authors' module, written from their code (docs/reference.md 1b)."""
    wb = lambda prefix: {f"{prefix}.weight", f"{prefix}.bias"}  # noqa: E731
    rep = lambda prefix: set().union(*(wb(f"{prefix}.{p}") for p in ("sk", "conv.0", "conv.1", "conv.2", "eval_conv")))  # noqa: E731
    keys: set[str] = set()
    if name == "imdn":
        keys |= wb("fea_conv") | wb("c.0") | wb("LR_conv") | wb("upsampler.0")
        for n in range(1, 7):
            for c in ("c1", "c2", "c3", "c4", "c5", "cca.conv_du.0", "cca.conv_du.2"):
                keys |= wb(f"IMDB{n}.{c}")
    elif name == "rfdn":
        keys |= wb("fea_conv") | wb("c.0") | wb("LR_conv") | wb("upsampler.0")
        for n in range(1, 5):
            for c in ("c1_d", "c1_r", "c2_d", "c2_r", "c3_d", "c3_r", "c4", "c5", *(
                    f"esa.{e}" for e in ("conv1", "conv_f", "conv_max", "conv2", "conv3", "conv3_", "conv4"))):
                keys |= wb(f"B{n}.{c}")
    elif name == "rlfn":
        keys |= wb("conv_1") | wb("conv_2") | wb("upsampler.0")
        for n in range(1, 7):
            for c in ("c1_r", "c2_r", "c3_r", "c5", *(f"esa.{e}" for e in ("conv1", "conv_f", "conv2", "conv3", "conv4"))):
                keys |= wb(f"block_{n}.{c}")
    else:  # span
        keys |= rep("conv_1") | rep("conv_2") | wb("conv_cat") | wb("upsampler.0")
        for n in range(1, 7):
            for c in ("c1_r", "c2_r", "c3_r"):
                keys |= rep(f"block_{n}.{c}")
    return keys


@pytest.mark.parametrize("name", ["imdn", "rfdn", "rlfn", "span"])
def test_the_authors_state_dict_layout_loads_strictly(name: str) -> None:
    from srnas.arch import load_weights
    from srnas.arch.checkpoint import efficient_authors_keys

    cfg = preset_config(name, scale=4)
    torch.manual_seed(0)
    donor, target = build_model(cfg).eval(), build_model(cfg).eval()
    authors = _authors_keys(name)
    renamed = efficient_authors_keys(dict.fromkeys(authors, None), donor)
    mean_shift = {k for k in donor.state_dict() if k.split(".")[0] in ("sub_mean", "add_mean")}
    assert set(renamed) == set(donor.state_dict())
    assert {k for k, v in renamed.items() if v is None} == set(donor.state_dict()) - mean_shift
    # The donor's tensors under the authors' names load strictly; SPAN's eval_conv (its fused
    # conv, derived from the branches) is dropped whatever it holds.
    own = donor.state_dict()
    state = {}
    for key in authors:
        ours = [k for k in efficient_authors_keys({key: None}, donor) if k not in mean_shift]
        state[key] = own[ours[0]] if ours else torch.zeros(1)
        assert ours or key.split(".")[-2] == "eval_conv"
    assert load_weights(target, state) == []
    x = torch.rand(1, 3, 16, 16) * 255
    with torch.no_grad():
        assert torch.equal(target(x), donor(x))
    with pytest.raises(ConfigError, match="keys do not match the model"):
        load_weights(build_model(cfg), {k: v for k, v in state.items() if not k.startswith("upsampler")})
