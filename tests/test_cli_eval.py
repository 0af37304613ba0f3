"""`srnas eval` on benchmark roots (complete and incomplete sets), on a folder of one's own HR
images, and the inputs it refuses with one line (ONNX files, pickled objects)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from srnas.arch import ArchConfig, build_model
from srnas.cli import main
from srnas.data import demo_split, save_image


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained net (bicubic skip: it scores like bicubic) with its config.yaml."""
    folder = tmp_path_factory.mktemp("model")
    cfg = ArchConfig(n_resblocks=1, n_feats=4, global_skip="bicubic")
    torch.save(build_model(cfg).state_dict(), folder / "model.pt")
    (folder / "config.yaml").write_text(cfg.to_yaml())
    return folder


def _crops(n: int) -> list[np.ndarray]:
    """``n`` small distinct crops of the demo photographs."""
    train, _ = demo_split((2,))
    out = []
    for i in range(n):
        img = train.hr[i % len(train.hr)]
        y = 40 * (i // len(train.hr))
        out.append(np.ascontiguousarray(img[y:y + 40, :48]))
    return out


def _benchmark_root(tmp_path: Path, set_name: str, n: int) -> Path:
    hr = tmp_path / "bench" / "benchmark" / set_name / "HR"
    hr.mkdir(parents=True)
    for i, img in enumerate(_crops(n)):
        save_image(hr / f"img{i}.png", img)
    return tmp_path / "bench"


def _eval(model_dir: Path, *argv: str) -> int:
    return main(["eval", "--model", str(model_dir), "--device", "cpu", "--scale", "2", *argv])


def test_incomplete_set_is_marked_and_shown_without_published_numbers(
        model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _benchmark_root(tmp_path, "Set5", 2)
    assert _eval(model_dir, "--data", str(root), "--sets", "Set5") == 0
    out = capsys.readouterr().out
    assert "Set5 (2 of 5 images)" in out
    assert "(published)" not in out and "37.99" not in out and "33.66" not in out
    assert "Set5: incomplete" in " ".join(out.split())


def test_complete_set_shows_published_numbers_with_their_ssim_place(
        model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _benchmark_root(tmp_path, "Set5", 5)
    assert _eval(model_dir, "--data", str(root), "--json", str(tmp_path / "e.json")) == 0  # default sets
    out = capsys.readouterr().out
    assert "EDSR-baseline (published)" in out and "37.99 / -" in out and "33.66 / -" in out
    assert "(5 of 5" not in out and "Set14" not in out.split("note:")[0]  # only the set that is there
    assert "note: Set14, B100, Urban100 not found under" in out
    assert "published SSIM '-': not on record" in " ".join(out.split())
    import json

    assert json.loads((tmp_path / "e.json").read_text())["images"] == {"Set5": {"found": 5, "official": 5}}


def test_a_folder_of_ones_own_hr_images_is_one_set(model_dir: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    photos = tmp_path / "my-photos"
    photos.mkdir()
    for i, img in enumerate(_crops(3)):
        save_image(photos / f"p{i}.png", img)
    assert _eval(model_dir, "--data", str(photos), "--json", str(tmp_path / "e.json")) == 0
    out = capsys.readouterr().out
    assert "my-photos" in out and "Bicubic (measured)" in out and "(published)" not in out
    import json

    result = json.loads((tmp_path / "e.json").read_text())
    assert result["results"]["my-photos"]["n_images"] == 3  # every image: nothing held out
    # LR images made with the MATLAB-compatible bicubic: bicubic's score is recomputed here by hand.
    from srnas.data import imresize, modcrop
    from srnas.metrics import psnr

    hrs = [modcrop(img, 2) for img in _crops(3)]
    by_hand = np.mean([psnr(imresize(imresize(hr, 1 / 2), 2), hr, scale=2) for hr in hrs])
    assert result["bicubic"]["my-photos"]["psnr"] == pytest.approx(by_hand, abs=1e-6)
    assert _eval(model_dir, "--data", str(photos), "--sets", "Set5") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is one folder of images, scored as the set 'my-photos'; drop --sets" in err


def test_onnx_and_pickled_objects_are_one_line(model_dir: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    onnx = tmp_path / "export" / "model.onnx"
    onnx.parent.mkdir()
    onnx.write_bytes(b"\x08\x07\x12\x07pytorch")  # the first bytes of an ONNX protobuf
    (onnx.parent / "config.yaml").write_text((model_dir / "config.yaml").read_text())
    evil = tmp_path / "objects.pt"
    evil.write_bytes(pickle.dumps({"head.0.weight": Path("x")}))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not weights at all")
    for path, message in ((onnx, "an ONNX file; srnas reads a PyTorch state dict"),
                          (evil, "holds pickled Python objects, not only tensors"),
                          (junk, "not a PyTorch weights file")):
        assert main(["eval", "--model", str(path), "--config", str(model_dir / "config.yaml"), "--device", "cpu"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("srnas: error: ") and err.count("\n") == 1 and message in err, err
        assert "weights_only=False" not in err and "Traceback" not in err
