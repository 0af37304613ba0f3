"""The offline demo split built from photographs shipped with scikit-image and scikit-learn."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from srnas.data import demo_split, imresize, load_eval_set, load_train_set, modcrop
from srnas.data import demo as demo_module
from srnas.metrics import psnr, ssim


def test_fixed_split_keeps_the_stereo_pair_together() -> None:
    train, val = demo_split()
    assert train.names == ["astronaut", "rocket", "chelsea", "motorcycle"]
    assert val.names == ["coffee", "china", "flower"]  # coffee first: val_images 1 scores on it alone
    assert train.name == "demo-train" and val.name == "demo-val"
    assert train.protocol == val.protocol == "benchmark"
    everything = set(train.names) | set(val.names)
    assert not everything & {"hubble_deep_field", "retina", "immunohistochemistry", "cat"}
    # Only one view of the motorcycle scene, and it is in training.
    assert "motorcycle" not in val.names


def test_same_split_every_time() -> None:
    first_train, first_val = demo_split((2, 3))
    demo_module._photo.cache_clear()
    demo_module._lr.cache_clear()
    second_train, second_val = demo_split((2, 3))
    for a, b in zip(first_train.hr + first_val.hr, second_train.hr + second_val.hr):
        np.testing.assert_array_equal(a, b)
    for s in (2, 3):
        for a, b in zip(first_train.lr[s], second_train.lr[s]):
            np.testing.assert_array_equal(a, b)


def test_shapes_and_lr_for_all_scales() -> None:
    train, _ = demo_split()
    assert train.scales == (2, 3, 4)
    shapes = [h.shape for h in train.hr]
    assert shapes == [(504, 504, 3), (420, 636, 3), (300, 444, 3), (492, 732, 3)]  # multiples of 12
    for s in (2, 3, 4):
        for hr, lr in zip(train.hr, train.lr[s]):
            assert lr.shape == (hr.shape[0] // s, hr.shape[1] // s, 3) and lr.dtype == np.uint8
    # LR is MATLAB bicubic of the x-modcropped photograph (cropped to the common size).
    from skimage import data

    rocket = data.rocket()
    np.testing.assert_array_equal(train.lr[3][1], imresize(np.ascontiguousarray(modcrop(rocket, 3)), 1 / 3)[:140, :212])
    assert not train.hr[0].flags.writeable


def test_loaders_return_the_demo_split() -> None:
    train = load_train_set("demo", [2, 4])
    assert train.names == ["astronaut", "rocket", "chelsea", "motorcycle"] and train.scales == (2, 4)
    val = load_eval_set("demo", 3)
    assert val.names == ["coffee", "china", "flower"]
    assert val.hr[0].shape == (399, 600, 3) and val.lr[3][0].shape == (133, 200, 3)
    assert val.hr[1].shape == val.hr[2].shape == (426, 639, 3) and val.lr[3][2].shape == (142, 213, 3)
    assert load_train_set("demo", 2, max_images=2).names == ["astronaut", "rocket"]


def test_bicubic_baseline_on_the_validation_image() -> None:
    val = load_eval_set("demo", 2)
    hr, lr = val.hr[0], val.lr[2][0]
    assert hr.shape == (400, 600, 3)
    # Bicubic x2 of the MATLAB-made LR (uint8, rounded after each pass as MATLAB does):
    assert psnr(imresize(lr, 2), hr, scale=2) == pytest.approx(30.5924, abs=5e-4)
    # What a network's bicubic skip gives (float upscaling, quantised by psnr):
    assert psnr(imresize(lr.astype(np.float64), 2), hr, scale=2) == pytest.approx(30.5939, abs=5e-4)
    assert ssim(imresize(lr, 2), hr, scale=2) == pytest.approx(0.8859, abs=5e-4)
    # The 30.60 dB of docs/reference.md section 6 used an LR image rounded only once (float passes, then 8 bit):
    lr_once = np.floor(np.clip(imresize(hr.astype(np.float64), 1 / 2), 0, 255) + 0.5)
    assert round(psnr(imresize(lr_once, 2), hr, scale=2), 2) == 30.60


def test_scikit_learn_photographs_are_read_from_the_package_files() -> None:
    from sklearn.datasets import load_sample_image

    val = load_eval_set("demo", 2)
    for i, name in enumerate(["china", "flower"], 1):
        photo = load_sample_image(f"{name}.jpg")  # sklearn's own reader, for comparison
        assert photo.shape == (427, 640, 3)
        np.testing.assert_array_equal(val.hr[i], photo[:426, :640])
    # Bicubic x2 per photograph (Y, crop 2): a dark detailed scene, a soft close-up, coffee between.
    scores = [psnr(imresize(lr, 2), hr, scale=2) for hr, lr in zip(val.hr, val.lr[2])]
    assert scores == pytest.approx([30.592, 24.349, 35.181], abs=2e-3)


def test_a_missing_photograph_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from srnas.errors import DataError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name, *a))
    demo_module._photo.cache_clear()
    try:
        with pytest.raises(DataError) as err:
            demo_split(2)
        msg = str(err.value)
        assert "sklearn/datasets/images/china.jpg" in msg and "scikit-learn" in msg and "\n" not in msg
    finally:
        demo_module._photo.cache_clear()


def test_demo_loads_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    demo_module._photo.cache_clear()
    demo_module._lr.cache_clear()
    train, val = demo_split(2)
    assert len(train) == 4 and len(val) == 3
