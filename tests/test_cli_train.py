"""End to end: `srnas retrain`, `srnas eval` and `srnas upscale` on the demo data (in-process)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from srnas.arch import ArchConfig, build_model
from srnas.cli import main
from srnas.data import demo_split, load_image, save_image


@pytest.fixture(scope="module")
def edsr_baseline_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`srnas retrain --preset edsr-baseline --schedule proxy-tiny --data demo`, cut to 2 updates."""
    root = tmp_path_factory.mktemp("trials")
    rc = main(["retrain", "--preset", "edsr-baseline", "--schedule", "proxy-tiny", "--data", "demo",
               "--device", "cpu", "--out", str(root), "--max-updates", "2", "--no-progress"])
    assert rc == 0
    (arch,) = (root / "manual" / "retrain").iterdir()
    (out,) = arch.iterdir()  # retrain/<arch_id>/<schedule>/
    return out


def test_retrain_writes_config_checkpoint_weights_and_metrics(edsr_baseline_run: Path) -> None:
    from srnas.arch import preset_config

    cfg = preset_config("edsr-baseline", scale=2)
    assert edsr_baseline_run.parent.name == cfg.arch_id and edsr_baseline_run.name == "tiny-at2"
    assert ArchConfig.load(edsr_baseline_run / "config.yaml") == cfg
    state = torch.load(edsr_baseline_run / "model.pt", weights_only=True)
    assert set(state) == set(build_model(cfg).state_dict())
    metrics = json.loads((edsr_baseline_run / "metrics.json").read_text())
    assert metrics["final"]["protocol"] == "benchmark" and metrics["final"]["scale"] == 2
    assert metrics["schedule"]["name"] == "tiny@2" and metrics["updates"] == 2
    assert [u for u, _ in metrics["psnr_curve"]] == [2]
    # A full training's result covers the whole validation set with SSIM, whatever the schedule
    # (the proxy scores coffee alone while it trains): demo-val is coffee, china and flower.
    assert metrics["final"]["val_images"] == 3 and metrics["final"]["ssim"] is not None
    assert metrics["bicubic_psnr"] == pytest.approx(30.04, abs=0.02)
    assert (edsr_baseline_run / "checkpoint.pt").is_file()


def test_retrain_resume_of_a_finished_run(edsr_baseline_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = json.loads((edsr_baseline_run / "metrics.json").read_text())
    rc = main(["retrain", "--preset", "edsr-baseline", "--schedule", "proxy-tiny", "--data", "demo", "--device", "cpu",
               "--out", str(edsr_baseline_run.parents[3]), "--max-updates", "2", "--resume", "--no-progress"])
    assert rc == 0
    after = json.loads((edsr_baseline_run / "metrics.json").read_text())
    assert after["final"]["psnr"] == before["final"]["psnr"] and after["psnr_curve"] == before["psnr_curve"]


def test_eval_prints_the_table_and_writes_json(edsr_baseline_run: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["eval", "--model", str(edsr_baseline_run), "--data", "demo", "--device", "cpu",
               "--json", str(tmp_path / "eval.json"), "--per-image"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "benchmark protocol" in out and "Bicubic (measured)" in out and "demo-val" in out
    result = json.loads((tmp_path / "eval.json").read_text())
    metrics = json.loads((edsr_baseline_run / "metrics.json").read_text())
    ours = result["results"]["demo-val"]
    assert ours["protocol"] == "benchmark" and ours["n_images"] == 3
    # --per-image: a row per image beside bicubic.
    assert "per image, x2" in out and all(n in out for n in ("coffee", "china", "flower"))
    # Same weights, same protocol, same images: one set name, one number (retrain and eval agree).
    assert metrics["final"]["val_images"] == 3 and ours["rows"][0]["name"] == "coffee"
    assert ours["psnr"] == pytest.approx(metrics["final"]["psnr"], abs=1e-6)
    assert ours["ssim"] == pytest.approx(metrics["final"]["ssim"], abs=1e-6)
    assert result["bicubic"]["demo-val"]["psnr"] == pytest.approx(30.04, abs=0.02)


def _benchmark_root(tmp_path: Path) -> Path:
    """A Set5 folder in the authors' layout, from demo crops (HR only: LR made with imresize)."""
    train, _ = demo_split((2,))
    hr_dir = tmp_path / "benchmark" / "Set5" / "HR"
    hr_dir.mkdir(parents=True)
    for name, img in zip(train.names[:2], train.hr[:2]):
        save_image(hr_dir / f"{name}.png", np.ascontiguousarray(img[:64, :80]))
    return tmp_path


def test_eval_on_a_benchmark_folder_with_self_ensemble_and_tiles(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    cfg = ArchConfig(n_resblocks=1, n_feats=4, global_skip="bicubic")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    torch.save(build_model(cfg).state_dict(), model_dir / "model.pt")
    (model_dir / "config.yaml").write_text(cfg.to_yaml())
    rc = main(["eval", "--model", str(model_dir / "model.pt"), "--data", str(_benchmark_root(tmp_path)),
               "--sets", "Set5", "--scale", "2", "--device", "cpu", "--self-ensemble", "--tile", "16"])
    assert rc == 0
    out = capsys.readouterr().out
    # 2 of Set5's 5 images: marked, with no published numbers beside them (tests/test_cli_eval.py).
    assert "Set5 (2 of 5 images)" in out and "37.99" not in out
    assert "self-ensemble" in out


def test_upscale_writes_bigger_images(edsr_baseline_run: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    inputs = []
    for i, shape in enumerate([(20, 30, 3), (17, 11, 3)]):
        inputs.append(save_image(tmp_path / f"in{i}.png", (rng.random(shape) * 255).astype(np.uint8)))
    out = tmp_path / "out"
    rc = main(["upscale", *map(str, inputs), "-o", str(out), "--model", str(edsr_baseline_run / "model.pt"),
               "--device", "cpu", "--tile", "8"])
    assert rc == 0
    assert load_image(out / "in0_x2.png").shape == (40, 60, 3)
    assert load_image(out / "in1_x2.png").shape == (34, 22, 3)
    # Existing outputs are refused (one line), replaced with --overwrite.
    before = (out / "in0_x2.png").read_bytes()
    assert main(["upscale", str(inputs[0]), "-o", str(out), "--model", str(edsr_baseline_run / "model.pt"),
                 "--device", "cpu"]) == 2
    assert (out / "in0_x2.png").read_bytes() == before
    assert main(["upscale", str(inputs[0]), "-o", str(out), "--model", str(edsr_baseline_run / "model.pt"),
                 "--device", "cpu", "--overwrite"]) == 0


def test_upscale_keeps_grayscale_and_alpha(edsr_baseline_run: Path, tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(1)
    grey = tmp_path / "grey.png"
    Image.fromarray((rng.random((12, 14)) * 255).astype(np.uint8), mode="L").save(grey)
    rgba = tmp_path / "rgba.png"
    pixels = (rng.random((12, 14, 4)) * 255).astype(np.uint8)
    pixels[..., 3] = np.where(np.arange(14) < 7, 0, 255)[None, :]  # left half transparent
    Image.fromarray(pixels, mode="RGBA").save(rgba)
    out = tmp_path / "out"
    assert main(["upscale", str(grey), str(rgba), "-o", str(out), "--model", str(edsr_baseline_run / "model.pt"),
                 "--device", "cpu"]) == 0
    with Image.open(out / "grey_x2.png") as im:
        assert im.mode == "L" and im.size == (28, 24)
    with Image.open(out / "rgba_x2.png") as im:
        assert im.mode == "RGBA" and im.size == (28, 24)
        alpha = np.asarray(im.getchannel("A"))
    assert alpha[:, :12].max() < 20 and alpha[:, 16:].min() > 235  # the transparent half stays transparent


def test_retrain_top_k_of_a_study(tmp_path: Path) -> None:
    import optuna

    from srnas.studies import StudyHome

    storage = StudyHome("demo-study", tmp_path).storage()
    study = optuna.create_study(study_name="demo-study", storage=storage, direction="maximize")
    configs = [ArchConfig(n_resblocks=b, n_feats=4, global_skip="bicubic") for b in (1, 2, 3)]
    for value, cfg in zip((31.0, 32.0, 30.0), configs):
        study.add_trial(optuna.trial.create_trial(value=value, user_attrs={"config": cfg.to_dict()}))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL,
                                              user_attrs={"config": configs[2].to_dict()}))
    rc = main(["retrain", "--study", "demo-study", "--top", "2", "--schedule", "proxy-tiny", "--data", "demo",
               "--device", "cpu", "--out", str(tmp_path), "--max-updates", "2", "--no-progress"])
    assert rc == 0
    done = sorted(p.name for p in (tmp_path / "demo-study" / "retrain").iterdir())
    assert done == sorted([configs[1].arch_id, configs[0].arch_id])


def test_one_architecture_with_two_schedules_keeps_two_runs(tmp_path: Path) -> None:
    from srnas.train.retrain import find_runs

    base = ["retrain", "--config", "-", "--device", "cpu", "--out", str(tmp_path), "--no-progress"]
    cfg_file = tmp_path / "tiny.yaml"
    cfg_file.write_text(ArchConfig(n_resblocks=1, n_feats=4).to_yaml())
    base[2] = str(cfg_file)
    assert main([*base, "--schedule", "proxy-tiny", "--max-updates", "2"]) == 0
    assert main([*base, "--schedule", "proxy-tiny", "--max-updates", "3"]) == 0
    arch = ArchConfig(n_resblocks=1, n_feats=4).arch_id
    assert sorted(p.name for p in (tmp_path / "manual" / "retrain" / arch).iterdir()) == ["tiny-at2", "tiny-at3"]
    (run,) = find_runs(tmp_path / "manual" / "retrain").values()  # the longest training represents it
    assert run["updates"] == 3 and run["schedule"] == "tiny@3"


def test_missing_study_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["retrain", "--study", "nothing-here", "--top", "3", "--data", "demo", "--out", str(tmp_path)])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("srnas: error:") and "nothing-here" in err and "\n" not in err


def test_bad_arguments_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["retrain", "--preset", "edsr-baseline", "--schedule", "paper-short", "--out", str(tmp_path)]) == 2
    assert "unknown schedule 'paper-short'" in capsys.readouterr().err
    assert main(["retrain", "--top", "2", "--out", str(tmp_path)]) == 2
    assert "--study" in capsys.readouterr().err
    assert main(["eval", "--model", str(tmp_path / "none"), "--data", "demo"]) == 2
    assert "not found" in capsys.readouterr().err


def test_upscale_out_of_memory_is_one_line_with_the_tiling_hint(edsr_baseline_run: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import srnas.train.evaluate as evaluate

    big = save_image(tmp_path / "big.png", np.zeros((40, 40, 3), np.uint8))

    def no_memory(*args, **kwargs):  # what an allocation past the limit raises
        raise RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 123456789 bytes.")

    monkeypatch.setattr(evaluate, "super_resolve", no_memory)
    assert main(["upscale", str(big), "-o", str(tmp_path / "out"), "--model", str(edsr_baseline_run / "model.pt"),
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not enough memory to upscale 40x40 at once" in err and "--tile 256" in err
