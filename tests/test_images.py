"""Image I/O: RGB conversion, atomic writes, clear errors, modcrop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srnas.data import load_image, modcrop, save_image
from srnas.errors import DataError, WriteError


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
    for shape in [(2, 2, 5), (2, 2, 3, 1), (4,)]:
        with pytest.raises(ValueError, match="shape"):
            save_image(tmp_path / "x.png", np.zeros(shape, np.uint8))
    with pytest.raises(ValueError, match="dtype"):
        save_image(tmp_path / "x.png", np.zeros((2, 2, 3), bool))
    with pytest.raises(DataError, match=r"x\.nope: unknown image format"):
        save_image(tmp_path / "x.nope", np.zeros((2, 2, 3), np.uint8))


def test_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = save_image(tmp_path / "sub" / "a.png", _rgb(seed=1))
    before = target.read_bytes()

    def broken_save(self: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
        fp.write(b"half a file")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(WriteError, match=r"a\.png: cannot write \(disk full\)"):
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


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A ~100-byte PNG whose header claims ``width x height`` (1-bit grey) with a token IDAT: what
    a decompression bomb looks like to Image.open, at no cost to write."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def test_decoded_size_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from srnas.data.images import DEFAULT_MAX_IMAGE_PIXELS

    monkeypatch.delenv("SRNAS_MAX_IMAGE_PIXELS", raising=False)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", int(1024 * 1024 * 1024 // 4 // 3))  # Pillow's default
    # 20000 x 20000 = 400 MP: over the default 200 MP cap (and Pillow's own bomb error before).
    bomb = _png_header_only(tmp_path / "bomb.png", 20000, 20000)
    assert bomb.stat().st_size < 200
    with pytest.raises(DataError) as exc:
        load_image(bomb)
    assert str(exc.value) == (f"{bomb}: image of 20000x20000 pixels is over the cap of {DEFAULT_MAX_IMAGE_PIXELS} "
                              "pixels (200 MP; a decompression bomb?); raise it with SRNAS_MAX_IMAGE_PIXELS=N")
    # Far over twice the cap Pillow refuses inside open(); still the same one line.
    huge = _png_header_only(tmp_path / "huge.png", 60000, 60000)
    with pytest.raises(DataError, match=r"huge\.png: image of 3600000000 pixels is over the cap of 200000000"):
        load_image(huge)

    # The cap is an environment setting; a real (small) image over a lowered cap is refused too.
    img = tmp_path / "small.png"
    Image.fromarray(_rgb(40, 30)).save(img)
    monkeypatch.setenv("SRNAS_MAX_IMAGE_PIXELS", "1_000")
    with pytest.raises(DataError, match=r"small\.png: image of 30x40 pixels is over the cap of 1000 pixels \(0\.001 MP"):
        load_image(img)
    monkeypatch.setenv("SRNAS_MAX_IMAGE_PIXELS", "1200")
    assert load_image(img).shape == (40, 30, 3)
    monkeypatch.setenv("SRNAS_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(DataError, match=r"SRNAS_MAX_IMAGE_PIXELS='lots': expected a positive integer"):
        load_image(img)
    # Over twice Pillow's default limit (2 x 89 MP) but under the cap: Pillow does not refuse it,
    # the decoder runs (and fails on the token pixel data).
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", int(1024 * 1024 * 1024 // 4 // 3))
    monkeypatch.setenv("SRNAS_MAX_IMAGE_PIXELS", str(300_000_000))
    with pytest.raises(DataError, match=r"mid\.png: not a readable image"):
        load_image(_png_header_only(tmp_path / "mid.png", 15000, 15000))


def test_most_detailed_window_finds_the_detail() -> None:
    from srnas.data.images import most_detailed_window

    img = np.full((100, 120, 3), 128, np.uint8)
    img[60:70, 80:90] = 255  # the only detail: a small bright square
    y, x = most_detailed_window(img, 20)
    assert y <= 60 and y + 20 >= 70 and x <= 80 and x + 20 >= 90
    assert most_detailed_window(img[..., 0], 200) == (0, 0)  # a window larger than the image: all of it
