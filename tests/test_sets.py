"""Data set readers on tiny fixtures in the exact official layouts, and the decoded-image cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from srnas.data import (
    SRImageSet, describe_data_root, imresize, load_benchmark_sets, load_eval_set, load_image,
    load_train_set, modcrop, save_image,
)
from srnas.data.cache import ImageCache, default_cache_dir
from srnas.data.layout import held_out_indices
from srnas.errors import DataError


def _img(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _bicubic_lr(hr: np.ndarray, s: int) -> np.ndarray:
    return imresize(np.ascontiguousarray(modcrop(hr, s)), 1 / s)


@pytest.fixture()
def div2k(tmp_path: Path) -> Path:
    """DIV2K layout: 3 train images (one with a provided x2 LR), 2 valid + 1 valid in train/."""
    root = tmp_path / "DIV2K"
    sizes = {"0001": (25, 37), "0002": (24, 36), "0003": (30, 31), "0801": (26, 38), "0802": (24, 24)}
    for i, (name, (h, w)) in enumerate(sizes.items()):
        split = "train" if int(name) <= 800 else "valid"
        save_image(root / f"DIV2K_{split}_HR" / f"{name}.png", _img(h, w, i))
    # EDSR's layout keeps validation images in the train folder: 0803 must count as validation.
    save_image(root / "DIV2K_train_HR" / "0803.png", _img(24, 30, 9))
    # Provided LR of 0001: constant 7, so a test can tell it from a generated one.
    save_image(root / "DIV2K_train_LR_bicubic" / "X2" / "0001x2.png", np.full((12, 18, 3), 7, np.uint8))
    save_image(root / "DIV2K_valid_LR_bicubic" / "X2" / "0801x2.png", np.full((13, 19, 3), 9, np.uint8))
    return root


@pytest.fixture()
def bench(tmp_path: Path) -> Path:
    """benchmark.tar layout: Set5 with provided LR x2, Set14 with HR only."""
    root = tmp_path / "data"
    base = root / "benchmark"
    save_image(base / "Set5" / "HR" / "baby.png", _img(26, 30, 1))
    save_image(base / "Set5" / "HR" / "bird.png", _img(24, 24, 2))
    save_image(base / "Set5" / "LR_bicubic" / "X2" / "babyx2.png", np.full((13, 15, 3), 5, np.uint8))
    save_image(base / "Set5" / "LR_bicubic" / "X2" / "birdx2.png", _bicubic_lr(_img(24, 24, 2), 2))
    save_image(base / "Set14" / "HR" / "zebra.png", _img(27, 33, 3))
    return root


def test_div2k_train_split_uses_provided_lr_and_generates_missing(div2k: Path, tmp_path: Path) -> None:
    data = load_train_set(div2k, 2, cache_dir=tmp_path / "cache")
    assert data.name == "DIV2K-train" and data.protocol == "div2k"
    assert data.names == ["0001", "0002", "0003"]
    assert [h.shape for h in data.hr] == [(24, 36, 3), (24, 36, 3), (30, 30, 3)]
    np.testing.assert_array_equal(data.lr[2][0], 7)  # provided file
    hr2 = load_image(div2k / "DIV2K_train_HR" / "0002.png")
    np.testing.assert_array_equal(data.lr[2][1], _bicubic_lr(hr2, 2))  # generated with imresize


def test_div2k_multi_scale_crops_hr_to_the_common_multiple(div2k: Path) -> None:
    data = load_train_set(div2k, [3, 2], cache=False)
    assert data.scales == (2, 3)
    full = load_image(div2k / "DIV2K_train_HR" / "0002.png")  # 24 x 36: multiple of 6 already
    np.testing.assert_array_equal(data.hr[1], full)
    first = data.hr[0]
    assert first.shape == (24, 36, 3)  # 25 x 37 -> multiple of 6
    assert data.lr[3][0].shape == (8, 12, 3)
    # LR x3 is made from the x3-modcropped original (24 x 36), then cropped to the common size.
    full1 = load_image(div2k / "DIV2K_train_HR" / "0001.png")
    np.testing.assert_array_equal(data.lr[3][0], _bicubic_lr(full1, 3)[:8, :12])
    np.testing.assert_array_equal(data.lr[2][0], 7)


def test_div2k_validation_split(div2k: Path) -> None:
    val = load_eval_set(div2k, 2, cache=False)
    assert val.name == "DIV2K" and val.protocol == "div2k"
    assert val.names == ["0801", "0802", "0803"]
    np.testing.assert_array_equal(val.lr[2][0], 9)
    assert load_eval_set(div2k.parent, 2, cache=False).names == val.names  # root/DIV2K found too
    assert load_eval_set(div2k, 2, max_images=1, cache=False).names == ["0801"]
    assert "0803" not in load_train_set(div2k, 2, cache=False).names


def test_lr_hr_size_mismatch_names_the_lr_file(div2k: Path) -> None:
    save_image(div2k / "DIV2K_train_LR_bicubic" / "X2" / "0002x2.png", np.zeros((11, 18, 3), np.uint8))
    with pytest.raises(DataError, match=r"0002x2\.png: LR image is 11x18 but x2 of HR 0002\.png \(24x36\) must be 12x18"):
        load_train_set(div2k, 2, cache=False)


def test_corrupt_image_names_the_path(div2k: Path) -> None:
    (div2k / "DIV2K_train_HR" / "0003.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match=r"0003\.png: not a readable image"):
        load_train_set(div2k, 2, cache=False)


def test_missing_or_wrong_folders(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere: no such folder"):
        load_train_set(tmp_path / "nowhere", 2)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DataError, match=r"file\.txt: is a file"):
        load_eval_set(tmp_path / "file.txt", 2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no images"):
        load_train_set(tmp_path / "empty", 2)
    (tmp_path / "d2" / "DIV2K_valid_HR").mkdir(parents=True)
    with pytest.raises(DataError, match=r"d2: no DIV2K train images \(expected DIV2K_train_HR/0001\.png"):
        load_train_set(tmp_path / "d2", 2)
    with pytest.raises(ValueError, match="invalid scale 0"):
        load_train_set(tmp_path / "d2", [2, 0])


def test_benchmark_sets(bench: Path) -> None:
    set5, set14 = load_benchmark_sets(bench, ["Set5", "set14"], 2, cache=False)
    assert (set5.name, set5.names, set5.protocol) == ("Set5", ["baby", "bird"], "benchmark")
    np.testing.assert_array_equal(set5.lr[2][0], 5)  # provided LR used
    assert set5.hr[0].shape == (26, 30, 3)
    assert set14.name == "Set14" and set14.hr[0].shape == (26, 32, 3)
    np.testing.assert_array_equal(set14.lr[2][0], _bicubic_lr(_img(27, 33, 3), 2))
    # benchmark/ itself works as the root too, and x3 LR is generated when not provided.
    (x3,) = load_benchmark_sets(bench / "benchmark", ["Set5"], 3, cache=False)
    assert x3.hr[0].shape == (24, 30, 3) and x3.lr[3][0].shape == (8, 10, 3)


def test_benchmark_set_errors(bench: Path) -> None:
    with pytest.raises(DataError, match=r"no set 'Urban100' \(found: Set14, Set5\)"):
        load_benchmark_sets(bench, ["Urban100"], 2)
    with pytest.raises(DataError, match=r"no set 'Manga109'.*srnas data download manga109"):
        load_benchmark_sets(bench, ["Manga109"], 2)
    with pytest.raises(DataError, match=r"benchmark root; pass name= \(one of Set14, Set5\)"):
        load_eval_set(bench, 2)
    with pytest.raises(DataError, match="evaluation only"):
        load_train_set(bench, 2)
    with pytest.raises(DataError, match="evaluation only"):
        load_train_set(bench / "benchmark" / "Set5", 2)


def test_eval_set_from_benchmark_root_and_set_folder(bench: Path) -> None:
    assert load_eval_set(bench, 2, name="set5", cache=False).names == ["baby", "bird"]
    folder = load_eval_set(bench / "benchmark" / "Set5", 2, cache=False)
    assert folder.name == "Set5" and folder.names == ["baby", "bird"]


def test_div2k_as_a_benchmark_name(div2k: Path) -> None:
    (val,) = load_benchmark_sets(div2k.parent, ["DIV2K"], 2, cache=False)
    assert val.protocol == "div2k" and val.names == ["0801", "0802", "0803"]


def test_plain_folder_holds_out_every_tenth_image(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    for i in range(12):
        save_image(folder / f"img{i:02d}.png", _img(20, 22, i))
    (folder / "notes.txt").write_text("not an image")
    save_image(folder / ".hidden.png", _img(20, 22, 99))
    train = load_train_set(folder, 2, cache=False)
    val = load_eval_set(folder, 2, cache=False)
    assert held_out_indices(12) == [9]
    assert val.names == ["img09"] and val.name == "mine-val" and val.protocol == "benchmark"
    assert len(train) == 11 and "img09" not in train.names and train.name == "mine"
    np.testing.assert_array_equal(val.lr[2][0], _bicubic_lr(_img(20, 22, 9), 2))
    # A folder of test images scored as a whole: load_benchmark_sets takes every image.
    (whole,) = load_benchmark_sets(tmp_path, ["mine"], 2, cache=False)
    assert len(whole) == 12


def test_small_folders_split(tmp_path: Path) -> None:
    assert held_out_indices(3) == [2]
    assert held_out_indices(25) == [9, 19]
    folder = tmp_path / "one"
    save_image(folder / "a.png", _img(20, 20, 0))
    with pytest.raises(DataError, match=r"one: a folder used for training needs at least 2 images"):
        load_train_set(folder, 2)
    # A corrupt file is named, not counted as an image.
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError, match=r"found 0 \(c\.png: not a readable image\)"):
        load_train_set(corrupt, 2)
    (folder / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")  # held out: named when it is read
    with pytest.raises(DataError, match=r"c\.png: not a readable image"):
        load_eval_set(folder, 2)


def test_cache_reuses_and_invalidates(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    for i in range(3):
        save_image(folder / f"{i}.png", _img(20, 20, i))
    cache_dir = tmp_path / "cache"
    first = load_train_set(folder, 2, cache_dir=cache_dir)
    entries = sorted(cache_dir.rglob("*.npy"))
    assert len(entries) == 4  # 2 decoded HR + 2 generated LR (the held-out image is not loaded)
    second = load_train_set(folder, 2, cache_dir=cache_dir)
    assert isinstance(second.hr[0].base, np.memmap) or isinstance(second.hr[0], np.memmap)
    np.testing.assert_array_equal(first.hr[0], second.hr[0])
    # Same size, new content and a new mtime: decoded again.
    path = folder / "0.png"
    save_image(path, _img(20, 20, 50))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    third = load_train_set(folder, 2, cache_dir=cache_dir)
    np.testing.assert_array_equal(third.hr[0], _img(20, 20, 50))
    np.testing.assert_array_equal(third.lr[2][0], _bicubic_lr(_img(20, 20, 50), 2))


def test_damaged_cache_entry_is_rebuilt(tmp_path: Path) -> None:
    path = save_image(tmp_path / "a.png", _img(8, 8, 1))
    cache = ImageCache(tmp_path / "cache")
    cache.image(path)
    (entry,) = (tmp_path / "cache").rglob("*.npy")
    entry.write_bytes(b"garbage")
    np.testing.assert_array_equal(ImageCache(tmp_path / "cache").image(path), _img(8, 8, 1))


def test_cache_location_and_disabling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SRNAS_CACHE_DIR", str(tmp_path / "envcache"))
    assert default_cache_dir() == tmp_path / "envcache"
    folder = tmp_path / "imgs"
    for i in range(2):
        save_image(folder / f"{i}.png", _img(20, 20, i))
    load_train_set(folder, 2, cache=False)
    assert not (tmp_path / "envcache").exists()
    load_train_set(folder, 2)
    assert any((tmp_path / "envcache").rglob("*.npy"))
    monkeypatch.delenv("SRNAS_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "srnas"


def test_unwritable_cache_warns_once_and_still_loads(tmp_path: Path) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    folder = tmp_path / "imgs"
    for i in range(3):
        save_image(folder / f"{i}.png", _img(20, 20, i))
    with pytest.warns(RuntimeWarning, match="cannot write the image cache") as record:
        data = load_train_set(folder, 2, cache_dir=blocker)
    assert len(data) == 2
    assert len([w for w in record if "image cache" in str(w.message)]) == 1


def test_srimageset_validates_alignment() -> None:
    hr = [np.zeros((8, 8, 3), np.uint8)]
    with pytest.raises(ValueError, match="not aligned"):
        SRImageSet("x", ["a"], hr, {2: [np.zeros((3, 4, 3), np.uint8)]})
    with pytest.raises(ValueError, match="unknown protocol 'rgb'"):
        SRImageSet("x", ["a"], hr, {}, protocol="rgb")
    with pytest.raises(ValueError, match="1 names for 2 HR images"):
        SRImageSet("x", ["a"], hr * 2)
    data = SRImageSet("x", ["a", "b"], hr * 2, {2: [np.zeros((4, 4, 3), np.uint8)] * 2})
    assert len(data.subset([1])) == 1 and data.subset([1]).names == ["b"]
    assert [n for n, _, _ in data.pairs(2)] == ["a", "b"]
    with pytest.raises(DataError, match="no x3 images"):
        list(data.pairs(3))


def test_describe_data_root(div2k: Path, bench: Path) -> None:
    found = {s.name: s for s in describe_data_root(div2k)}
    assert found["DIV2K train"].hr_count == 3 and found["DIV2K train"].expected == 800
    assert found["DIV2K train"].lr_counts == {2: 1, 3: 0, 4: 0}
    assert found["DIV2K valid"].hr_count == 3 and not found["DIV2K valid"].complete
    sets = {s.name: s for s in describe_data_root(bench)}
    assert sets["Set5"].hr_count == 2 and sets["Set5"].lr_counts[2] == 2
    assert sets["Manga109"].hr_count == 0
    assert sets["Set14"].lr_counts == {2: 0, 3: 0, 4: 0}


def test_folder_with_images_wins_over_set_like_subfolders(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    for i in range(3):
        save_image(folder / f"{i}.png", _img(20, 20, i))
    save_image(folder / "extra" / "HR" / "x.png", _img(20, 20, 9))
    assert load_train_set(folder, 2, cache=False).names == ["0", "1"]
    assert load_eval_set(folder, 2, cache=False).names == ["2"]
