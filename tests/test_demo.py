"""The offline demo split built from scikit-image's photographs."""

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
    assert val.names == ["coffee"]
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
    assert val.names == ["coffee"] and val.hr[0].shape == (399, 600, 3) and val.lr[3][0].shape == (133, 200, 3)
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


def test_demo_loads_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    demo_module._photo.cache_clear()
    demo_module._lr.cache_clear()
    train, val = demo_split(2)
    assert len(train) == 4 and len(val) == 1
