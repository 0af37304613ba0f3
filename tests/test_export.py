"""`srnas export` on hand-built studies: configs, weights, ONNX with dynamic size, model cards,
bad input; and the exported config retrained with `srnas retrain --config`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState, create_trial

from srnas.arch import ArchConfig, build_model, count_params
from srnas.arch.cost import count_mult_adds
from srnas.cli import main
from srnas.results.export import ONNX_TOLERANCE, ExportError, export_onnx, export_study

sys.path.insert(0, str(Path(__file__).parent))
from test_report import build_study  # noqa: E402  (the hand-built study helper lives there)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _complete(study: optuna.Study) -> list:
    return sorted((t for t in study.trials if t.state == TrialState.COMPLETE), key=lambda t: -t.values[0])


def _fake_retrain(root: Path, study: str, cfg: ArchConfig, seed: int = 0, *, final: dict | None = None,
                  data: str = "demo") -> dict[str, torch.Tensor]:
    """A retrain output folder as `srnas retrain` writes it, with non-trivial random weights
    (``final`` replaces the default final metrics)."""
    torch.manual_seed(seed)
    net = build_model(cfg)
    with torch.no_grad():
        for p in net.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)  # also un-zeroes the tail of a bicubic-skip net
    folder = root / study / "retrain" / cfg.arch_id
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(cfg.to_yaml())
    state = {k: v.clone() for k, v in net.state_dict().items()}
    torch.save(state, folder / "model.pt")
    (folder / "metrics.json").write_text(json.dumps({
        "arch_id": cfg.arch_id, "data": data,
        "final": final or {"psnr": 31.9, "ssim": 0.91, "protocol": "benchmark", "scale": 2, "val_set": "demo-val"},
        "bicubic_psnr": 30.6, "updates": 300000, "schedule": {"name": "paper", "fidelity_id": "u300000-x"}}))
    return state


def _one_trial_study(root: Path, name: str, cfg: ArchConfig) -> optuna.Study:
    """A study of the demo data holding one COMPLETE trial of ``cfg`` (PSNR 31.0)."""
    (root / name).mkdir(parents=True)
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{root / name / 'study.db'}", direction="maximize")
    study.set_user_attr("data", "demo")
    study.add_trial(create_trial(value=31.0, user_attrs={
        "config": cfg.to_dict(), "arch_id": cfg.arch_id, "params": count_params(cfg),
        "mult_adds": max(count_mult_adds(cfg, scale=s) for s in cfg.scales), "psnr": 31.0, "protocol": "benchmark"}))
    return study


def test_export_trial_rebuilds_same_architecture(trials_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    study = build_study(trials_dir, "hand")
    trial = _complete(study)[2]
    out = tmp_path / "export"
    assert main(["export", "--study", "hand", "--trial", str(trial.number), "-o", str(out)]) == 0
    folder = out / trial.user_attrs["arch_id"]
    assert sorted(p.name for p in out.iterdir()) == [folder.name]  # no temporary folders left behind
    for name in ("config.yaml", "config.json"):
        cfg = ArchConfig.load(folder / name)
        assert cfg.arch_id == trial.user_attrs["arch_id"]
        net = build_model(cfg)
        assert sum(p.numel() for p in net.parameters() if p.requires_grad) == trial.user_attrs["params"]
    # Not retrained: no weights, an explicitly named random-init ONNX file, and a card that says so.
    assert not (folder / "model.pt").exists() and not (folder / "model.safetensors").exists()
    assert (folder / "model-untrained-random-init.onnx").is_file()
    card = (folder / "model_card.md").read_text()
    assert "**Status: UNTRAINED.**" in card and f"trial {trial.number}" in card and "study `hand`" in card
    assert f"{trial.user_attrs['params']:,}" in card and "benchmark" in card
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["trained"] is False and meta["trial"] == trial.number and meta["proxy"]["psnr"] == trial.values[0]
    assert "UNTRAINED" in capsys.readouterr().out


def test_export_with_retrained_weights_and_onnx_of_another_size(trials_dir: Path, tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort
    from safetensors.torch import load_file

    study = build_study(trials_dir, "hand")
    # The bicubic global skip is the part of the graph that depends on the input size.
    trial = next(t for t in _complete(study) if t.user_attrs["config"]["global_skip"] == "bicubic")
    cfg = ArchConfig.from_dict(trial.user_attrs["config"])
    state = _fake_retrain(trials_dir, "hand", cfg)
    out = tmp_path / "export"
    [item] = export_study("hand", out, trial=trial.number, formats="yaml,pt,safetensors,onnx")
    assert item.trained and item.folder == out / cfg.arch_id
    assert sorted(item.files) == ["config.yaml", "metadata.json", "model.onnx", "model.pt", "model.safetensors",
                                  "model_card.md"]
    assert "**Status: TRAINED.**" in (item.folder / "model_card.md").read_text()
    for weights in (torch.load(item.folder / "model.pt", weights_only=True), load_file(str(item.folder / "model.safetensors"))):
        assert weights.keys() == state.keys() and all(torch.equal(weights[k], state[k]) for k in state)
    # The graph's height and width are symbolic, and it reproduces PyTorch at another size.
    dims = onnx.load(str(item.folder / "model.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "", "height", "width"]
    net = build_model(cfg).eval()
    net.load_state_dict(state)
    x = torch.rand(1, 3, 19, 53, generator=torch.Generator().manual_seed(1)) * 255
    with torch.no_grad():
        expected = net(x).numpy()
    got = ort.InferenceSession(str(item.folder / "model.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"lr": x.numpy()})[0]
    assert got.shape == (1, 3, 38, 106)
    diff = float(np.abs(got - expected).max())
    # 1e-4 on the [0, 1] image scale: float32 rounding alone gives ~1e-4 on the 0-255 scale.
    assert diff / cfg.rgb_range <= 1e-4 and diff < 1e-3, diff
    assert 0 < item.onnx_max_abs_diff["model.onnx"] <= ONNX_TOLERANCE * cfg.rgb_range


def test_onnx_check_catches_a_size_frozen_graph(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Border padding by size-dependent indices freezes the traced graph: the export must say so."""
    from srnas.arch.blocks import BicubicUpsample

    def frozen_forward(self, x):
        h, w = x.shape[-2:]
        rows = torch.cat([x[..., [1, 0], :], x, x[..., [h - 1, h - 2], :]], dim=-2)
        padded = torch.cat([rows[..., [1, 0]], rows, rows[..., [w - 1, w - 2]]], dim=-1)
        return torch.nn.functional.pixel_shuffle(torch.nn.functional.conv2d(padded, self.weight), self.scale)

    cfg = ArchConfig(n_resblocks=1, n_feats=8, global_skip="bicubic")
    monkeypatch.setattr(BicubicUpsample, "forward", frozen_forward)
    with pytest.raises(ExportError, match="another size|onnxruntime cannot run|differs from PyTorch"):
        export_onnx(build_model(cfg), cfg, tmp_path / "m.onnx", scale=2)


def test_every_block_type_exports_to_onnx(block_name: str, tmp_path: Path) -> None:
    """RCAB's global pooling and dwsep's grouped convs survive the export at another input size."""
    import onnx

    cfg = ArchConfig(n_resblocks=2, n_feats=16, kernel_sizes=(3, 5), block=block_name, act="lrelu")
    torch.manual_seed(0)
    net = build_model(cfg)
    with torch.no_grad():
        for p in net.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)  # attention weights far from their initial values
    diff = export_onnx(net, cfg, tmp_path / "m.onnx", scale=2)
    assert 0 <= diff <= ONNX_TOLERANCE * cfg.rgb_range
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    ops = {n.op_type for n in graph.node}
    groups = {a.i for n in graph.node if n.op_type == "Conv" for a in n.attribute if a.name == "group"}
    if block_name in ("res", "rcab", "dwsep"):  # the efficient types: tests/test_efficient_blocks.py
        assert ("GlobalAveragePool" in ops or "ReduceMean" in ops) == (block_name == "rcab")
        assert ("Sigmoid" in ops) == (block_name == "rcab")
        assert (16 in groups) == (block_name == "dwsep")


def test_export_mdsr_writes_one_onnx_per_scale(trials_dir: Path, tmp_path: Path) -> None:
    cfg = ArchConfig(family="mdsr", scales=(2, 3), n_resblocks=1, n_feats=8, head_blocks=1, head_kernel=3)
    _one_trial_study(trials_dir, "m", cfg)
    [item] = export_study("m", tmp_path / "out", top=1, formats=["json", "onnx"])
    assert {"model-untrained-random-init_x2.onnx", "model-untrained-random-init_x3.onnx"} <= set(item.files)
    assert ArchConfig.load(item.folder / "config.json") == cfg


def test_export_pareto_and_reexport_replaces_folder(trials_dir: Path, tmp_path: Path) -> None:
    build_study(trials_dir, "mo", objectives=("psnr", "params"))
    out = tmp_path / "out"
    first = export_study("mo", out, pareto=True, formats="yaml")
    assert first and len({i.arch_id for i in first}) == len(first)
    (first[0].folder / "stale.txt").write_text("from an older export")
    again = export_study("mo", out, pareto=True, formats="yaml")
    assert [i.arch_id for i in again] == [i.arch_id for i in first]
    assert not (first[0].folder / "stale.txt").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("argv, message", [
    (["--study", "nope", "--top", "1"], "no study 'nope'"),
    (["--study", "hand", "--trial", "99"], "has no trial 99"),
    (["--study", "hand", "--trial", "FAILED"], "is FAIL (TrainingError: non-finite loss"),
    (["--study", "hand", "--trial", "INFEASIBLE"], "is infeasible (max_params exceeded"),
    (["--study", "hand", "--top", "1", "--format", "yaml,tflite"], "unknown export format 'tflite'; allowed: yaml, json"),
])
def test_export_bad_input_is_one_line(trials_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                      argv: list[str], message: str) -> None:
    study = build_study(trials_dir, "hand")
    numbers = {"FAILED": next(t.number for t in study.trials if t.state == TrialState.FAIL),
               "INFEASIBLE": next(t.number for t in study.trials if "infeasible" in t.user_attrs)}
    argv = [str(numbers.get(a, a)) for a in argv]
    out = tmp_path / "out"
    assert main(["export", *argv, "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err
    assert not out.exists()


@pytest.mark.parametrize("missing, fmt", [("onnxruntime", "onnx"), ("onnx", "yaml,onnx"), ("safetensors", "safetensors")])
def test_export_missing_extra_names_it(trials_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                       monkeypatch: pytest.MonkeyPatch, missing: str, fmt: str) -> None:
    build_study(trials_dir, "hand")
    monkeypatch.setitem(sys.modules, missing, None)  # makes `import <missing>` raise ImportError
    out = tmp_path / "out"
    assert main(["export", "--study", "hand", "--top", "1", "--format", fmt, "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"srnas: error: {missing} is needed for {fmt.split(',')[-1]} export but is not installed: pip install 'srnas[export]'"
    assert not out.exists()


def test_export_by_default_writes_what_is_installed_and_names_what_is_not(
        trials_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    study = build_study(trials_dir, "hand")
    monkeypatch.setitem(sys.modules, "onnx", None)  # a machine without the export extra (make demo's)
    out = tmp_path / "out"
    assert main(["export", "--study", "hand", "--top", "1", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "note: onnx skipped: onnx is not installed: pip install 'srnas[export]'" in printed
    arch = next(t for t in _complete(study)).user_attrs["arch_id"]
    files = {p.name for p in (out / arch).iterdir()}
    assert {"config.yaml", "config.json", "model_card.md"} <= files and not any(f.endswith(".onnx") for f in files)


@pytest.mark.slow
def test_exported_config_retrains_and_exports_trained(trials_dir: Path, tmp_path: Path) -> None:
    study = build_study(trials_dir, "hand")
    smallest = min(_complete(study), key=lambda t: t.user_attrs["params"])
    out = tmp_path / "export"
    assert main(["export", "--study", "hand", "--trial", str(smallest.number), "--format", "yaml", "-o", str(out)]) == 0
    config_file = out / smallest.user_attrs["arch_id"] / "config.yaml"
    assert main(["retrain", "--config", str(config_file), "--study", "hand", "--schedule", "proxy-tiny",
                 "--max-updates", "2", "--device", "cpu", "--no-progress"]) == 0
    metrics = json.loads((trials_dir / "hand" / "retrain" / smallest.user_attrs["arch_id"] / "tiny-at2" / "metrics.json").read_text())
    assert metrics["arch_id"] == smallest.user_attrs["arch_id"] and metrics["updates"] == 2
    [item] = export_study("hand", out, trial=smallest.number, formats="yaml,pt")
    assert item.trained and "model.pt" in item.files
    assert "**Status: TRAINED.**" in (item.folder / "model_card.md").read_text()


# ---- model cards with Hugging Face front matter, and load_exported ---------------------------------


def _front_matter(card: str) -> tuple[dict, str]:
    """The card's YAML front matter (parsed) and its Markdown body."""
    import yaml

    assert card.startswith("---\n")
    head, body = card[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


def _snippet(body: str) -> str:
    return body.split("## Usage\n\n```python\n", 1)[1].split("```", 1)[0]


def test_trained_card_front_matter_on_div2k(trials_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture) -> None:
    study = build_study(trials_dir, "hand", protocol="div2k")
    trial = _complete(study)[0]
    cfg = ArchConfig.from_dict(trial.user_attrs["config"])
    final = {"psnr": 34.567891, "ssim": 0.93456789, "protocol": "div2k", "scale": 2, "scales": [2],
             "per_scale": {"2": {"psnr": 34.567891, "ssim": 0.93456789, "bicubic_psnr": 31.0}}, "val_set": "DIV2K"}
    state = _fake_retrain(trials_dir, "hand", cfg, final=final, data="/data/div2k")
    [item] = export_study("hand", tmp_path / "out", trial=trial.number, formats="yaml,pt,safetensors")
    meta, body = _front_matter((item.folder / "model_card.md").read_text())
    assert meta["license"] == "mit" and meta["library_name"] == "srnas" and meta["pipeline_tag"] == "image-to-image"
    assert {"super-resolution", "image-to-image", "srnas", "edsr"} <= set(meta["tags"]) and "untrained" not in meta["tags"]
    assert meta["datasets"] == ["DIV2K"]
    [entry] = meta["model-index"]
    assert entry["name"] == cfg.arch_id
    [result] = entry["results"]
    assert result["task"] == {"type": "image-to-image", "name": "Image Super-Resolution"}
    assert result["dataset"] == {"type": "DIV2K", "name": "DIV2K", "config": "bicubic_x2", "split": "validation"}
    psnr, ssim = result["metrics"]
    assert psnr["type"] == "psnr" and psnr["value"] == 34.5679 and ssim["type"] == "ssim" and ssim["value"] == 0.9346
    assert psnr["name"] == "PSNR x2 (div2k protocol: RGB, 8 px border crop)"
    assert psnr["args"] == ssim["args"] == {"protocol": "div2k", "scale": 2, "channel": "RGB", "border_crop": 8}
    # The usage snippet runs as written, from the folder that holds the export.
    snippet = _snippet(body)
    assert f'srnas.load_exported("{cfg.arch_id}")' in snippet and "net(lr)" in snippet
    monkeypatch.chdir(item.folder.parent)
    exec(compile(snippet, "model_card.md", "exec"), {})
    assert "torch.Size([1, 3, 96, 96])" in capsys.readouterr().out
    # And load_exported gives the retrained network: same outputs.
    import srnas

    ref = build_model(cfg).eval()
    ref.load_state_dict(state)
    x = torch.rand(2, 3, 11, 14, generator=torch.Generator().manual_seed(0)) * 255
    net = srnas.load_exported(item.folder)
    assert not net.training
    with torch.no_grad():
        assert torch.equal(net(x), ref(x))
    (item.folder / "model.safetensors").unlink()  # the .pt alone is enough
    with torch.no_grad():
        assert torch.equal(srnas.load_exported(str(item.folder))(x), ref(x))


def test_demo_card_has_no_dataset_and_names_the_benchmark_protocol(trials_dir: Path, tmp_path: Path) -> None:
    study = build_study(trials_dir, "hand")
    trial = _complete(study)[0]
    cfg = ArchConfig.from_dict(trial.user_attrs["config"])
    _fake_retrain(trials_dir, "hand", cfg)  # an older metrics.json: no per_scale
    [item] = export_study("hand", tmp_path / "out", trial=trial.number, formats="yaml,pt")
    meta, _ = _front_matter((item.folder / "model_card.md").read_text())
    assert "datasets" not in meta
    [result] = meta["model-index"][0]["results"]
    assert result["dataset"]["type"] == "srnas-demo" and result["dataset"]["name"] == "demo-val"
    assert [m["value"] for m in result["metrics"]] == [31.9, 0.91]
    assert result["metrics"][0]["name"] == "PSNR x2 (benchmark protocol: Y channel (BT.601), 2 px border crop)"
    assert result["metrics"][0]["args"]["border_crop"] == 2
    # A retrain that recorded how many images its score covers: the card's set name says so.
    import shutil

    shutil.rmtree(trials_dir / "hand" / "retrain")
    _fake_retrain(trials_dir, "hand", cfg, final={"psnr": 31.6, "ssim": 0.9, "protocol": "benchmark", "scale": 2,
                                                  "val_set": "demo-val", "val_images": 3})
    [item] = export_study("hand", tmp_path / "out2", trial=trial.number, formats="yaml,pt")
    meta, _ = _front_matter((item.folder / "model_card.md").read_text())
    assert meta["model-index"][0]["results"][0]["dataset"]["name"] == "demo-val (3 images)"


def test_untrained_card_has_no_model_index_and_a_runnable_snippet(trials_dir: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import srnas
    from srnas.results.export import ExportError as Err

    study = build_study(trials_dir, "hand")
    trial = _complete(study)[1]
    [item] = export_study("hand", tmp_path / "out", trial=trial.number, formats="yaml")
    meta, body = _front_matter((item.folder / "model_card.md").read_text())
    assert "model-index" not in meta and "untrained" in meta["tags"] and "datasets" not in meta
    assert "**Status: UNTRAINED.**" in body
    monkeypatch.chdir(item.folder.parent)
    exec(compile(_snippet(body), "model_card.md", "exec"), {})
    with pytest.raises(Err, match=r"holds no weights \(model\.safetensors or model\.pt\): an UNTRAINED export") as err:
        srnas.load_exported(item.folder)
    assert "\n" not in str(err.value)


def test_mdsr_card_has_one_result_per_scale(trials_dir: Path, tmp_path: Path) -> None:
    cfg = ArchConfig(family="mdsr", scales=(2, 3), n_resblocks=1, n_feats=8, head_blocks=1, head_kernel=3)
    _one_trial_study(trials_dir, "m", cfg)
    final = {"psnr": 31.0, "ssim": 0.9, "protocol": "benchmark", "scale": [2, 3], "scales": [2, 3], "val_set": "demo-val",
             "per_scale": {"2": {"psnr": 33.0, "ssim": 0.92}, "3": {"psnr": 29.0, "ssim": None}}}
    state = _fake_retrain(trials_dir, "m", cfg, final=final)
    [item] = export_study("m", tmp_path / "out", top=1, formats="json,safetensors")
    meta, body = _front_matter((item.folder / "model_card.md").read_text())
    assert "mdsr" in meta["tags"]
    results = meta["model-index"][0]["results"]
    assert [r["dataset"]["config"] for r in results] == ["bicubic_x2", "bicubic_x3"]
    assert [[m["type"] for m in r["metrics"]] for r in results] == [["psnr", "ssim"], ["psnr"]]
    assert results[1]["metrics"][0] == {"type": "psnr", "value": 29.0, "args": {
        "protocol": "benchmark", "scale": 3, "channel": "Y channel (BT.601)", "border_crop": 3},
        "name": "PSNR x3 (benchmark protocol: Y channel (BT.601), 3 px border crop)"}
    assert "net(lr, scale=3)" in _snippet(body)
    import srnas

    net = srnas.load_exported(item.folder)  # config.json and safetensors only
    got = net.state_dict()
    assert all(torch.equal(got[k], state[k]) for k in state)


def test_reparameterisable_net_exports_and_loads_its_fused_form(trials_dir: Path, tmp_path: Path) -> None:
    """Export, ONNX and `load_exported` use the inference form of a re-parameterisable net (one
    conv per RepConv); the weights files keep the training form, which ``fused=False`` returns."""
    pytest.importorskip("onnxruntime")
    import onnx

    import srnas
    from srnas.arch import fuse

    cfg = ArchConfig(n_resblocks=2, n_feats=8, kernel_sizes=(3, 5), block="repconv")
    _one_trial_study(trials_dir, "rep", cfg)
    state = _fake_retrain(trials_dir, "rep", cfg)
    [item] = export_study("rep", tmp_path / "out", top=1, formats="yaml,pt,onnx")
    meta = json.loads((item.folder / "metadata.json").read_text())
    assert meta["params"] == count_params(cfg) > meta["params_fused"] == count_params(cfg, fused=True)
    assert meta["mult_adds_fused"]["2"] == count_mult_adds(cfg, fused=True) < meta["mult_adds"]["2"]
    assert f"{meta['params_fused']:,} parameters" in (item.folder / "model_card.md").read_text()
    # The ONNX graph holds the fused convs: 2 per block (the training form has 4 per RepConv).
    ops = [n.op_type for n in onnx.load(str(item.folder / "model.onnx")).graph.node]
    assert ops.count("Conv") == 6 + 2 * 2
    # The weights file is the training form; load_exported fuses it unless asked not to.
    assert set(torch.load(item.folder / "model.pt", weights_only=True)) == set(state)
    training = srnas.load_exported(item.folder, fused=False)
    net = srnas.load_exported(item.folder)
    assert sum(p.numel() for p in training.parameters() if p.requires_grad) == count_params(cfg)
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == count_params(cfg, fused=True)
    x = torch.rand(1, 3, 13, 17, generator=torch.Generator().manual_seed(1)) * 255
    with torch.no_grad():
        assert torch.allclose(net(x), training(x), atol=1e-3)
        assert torch.equal(net(x), fuse(training)(x))


def test_load_exported_errors_are_one_line(trials_dir: Path, tmp_path: Path) -> None:
    import srnas
    from srnas.errors import ConfigError

    study = build_study(trials_dir, "hand")
    trial = _complete(study)[0]
    cfg = ArchConfig.from_dict(trial.user_attrs["config"])
    _fake_retrain(trials_dir, "hand", cfg)
    [item] = export_study("hand", tmp_path / "out", trial=trial.number, formats="yaml,pt")
    cases = []
    with pytest.raises(ExportError, match="no such export folder") as err:
        srnas.load_exported(tmp_path / "nowhere")
    cases.append(err)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ExportError, match="no config.yaml or config.json") as err:
        srnas.load_exported(empty)
    cases.append(err)
    (item.folder / "model.pt").write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match=r"model\.pt: not a PyTorch weights file") as err:
        srnas.load_exported(item.folder)
    cases.append(err)
    other = ArchConfig(n_resblocks=1, n_feats=4)
    (item.folder / "config.yaml").write_text(other.to_yaml())
    with pytest.raises(ExportError, match=f"architecture {other.arch_id}, but metadata.json records {cfg.arch_id}") as err:
        srnas.load_exported(item.folder)
    cases.append(err)
    assert all("\n" not in str(e.value) for e in cases)

