"""Image I/O: RGB conversion, atomic writes, clear errors, modcrop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srnas.data import load_image, modcrop, save_image
from srnas.errors import DataError


def _rgb(h: int = 7, w: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".ppm"])
def test_lossless_roundtrip(tmp_path: Path, suffix: str) -> None:
    img = _rgb()
    path = save_image(tmp_path / f"a{suffix}", img)
    out = load_image(path)
    assert out.dtype == np.uint8 and out.shape == (7, 5, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, img)


def test_jpeg_loads_as_rgb(tmp_path: Path) -> None:
    img = np.full((16, 16, 3), (200, 100, 50), np.uint8)
    out = load_image(save_image(tmp_path / "a.jpg", img))
    assert out.shape == (16, 16, 3)
    assert np.abs(out.astype(int) - img).max() <= 3


def test_grayscale_is_replicated(tmp_path: Path) -> None:
    gray = np.arange(35, dtype=np.uint8).reshape(7, 5)
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    assert out.shape == (7, 5, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)


def test_alpha_is_dropped(tmp_path: Path) -> None:
    rgba = np.concatenate([_rgb(), np.full((7, 5, 1), 17, np.uint8)], axis=2)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(load_image(tmp_path / "a.png"), rgba[:, :, :3])


def test_palette_image_is_expanded(tmp_path: Path) -> None:
    im = Image.new("P", (4, 3))
    im.putpalette([10, 20, 30, 200, 100, 0] + [0] * 762)
    im.putpixel((1, 1), 1)
    im.save(tmp_path / "p.png")
    out = load_image(tmp_path / "p.png")
    assert tuple(out[0, 0]) == (10, 20, 30)
    assert tuple(out[1, 1]) == (200, 100, 0)


def test_16bit_grayscale_is_scaled(tmp_path: Path) -> None:
    values = np.array([[0, 257, 65535, 32896]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "d.png")
    out = load_image(tmp_path / "d.png")
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 255, 128])
    np.testing.assert_array_equal(out[:, :, 0], out[:, :, 2])


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nothere\.png: no such image file"):
        load_image(tmp_path / "nothere.png")


def test_corrupt_files_name_the_path(tmp_path: Path) -> None:
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not a png at all")
    with pytest.raises(DataError, match=r"junk\.png: not a readable image") as err:
        load_image(junk)
    assert "\n" not in str(err.value)
    good = save_image(tmp_path / "good.png", _rgb(64, 64))
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(DataError, match=r"truncated\.png: not a readable image"):
        load_image(truncated)


def test_save_quantises_floats_and_accepts_gray(tmp_path: Path) -> None:
    arr = np.array([[[-3.0, 0.5, 254.6]]])
    out = load_image(save_image(tmp_path / "f.png", arr.repeat(2, 0).repeat(2, 1)))
    np.testing.assert_array_equal(out[0, 0], [0, 1, 255])  # clip, round half away from zero
    gray = np.full((3, 4), 9, np.uint8)
    np.testing.assert_array_equal(load_image(save_image(tmp_path / "g.png", gray))[:, :, 1], gray)


def test_save_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shape"):
        save_image(tmp_path / "x.png", np.zeros((2, 2, 4), np.uint8))
    with pytest.raises(DataError, match=r"x\.nope: unknown image format"):
        save_image(tmp_path / "x.nope", np.zeros((2, 2, 3), np.uint8))


def test_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = save_image(tmp_path / "sub" / "a.png", _rgb(seed=1))
    before = target.read_bytes()

    def broken_save(self: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
        fp.write(b"half a file")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(DataError, match=r"a\.png: cannot write image \(disk full\)"):
        save_image(target, _rgb(seed=2))
    assert target.read_bytes() == before  # the old file is untouched
    assert [p.name for p in target.parent.iterdir()] == ["a.png"]  # no temporary left behind


def test_modcrop_numpy_and_torch() -> None:
    img = _rgb(13, 10)
    cropped = modcrop(img, 4)
    assert cropped.shape == (12, 8, 3)
    assert np.shares_memory(cropped, img)
    np.testing.assert_array_equal(cropped, img[:12, :8])
    assert modcrop(np.zeros((13, 10)), 3).shape == (12, 9)
    assert modcrop(torch.zeros(2, 3, 13, 10), 3).shape == (2, 3, 12, 9)
    assert modcrop(img, 1).shape == img.shape
    with pytest.raises(ValueError, match="positive integer"):
        modcrop(img, 0)
