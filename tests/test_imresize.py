"""MATLAB-compatible bicubic: values derived by hand from MATLAB's imresize.m algorithm."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from srnas.data import imresize
from srnas.data.imresize import contributions, output_size, weight_matrix

# Keys' cubic (a = -0.5) at the distances that occur at x2 / x1/2 (all exact binary fractions):
# cubic(0.25) = 111/128, cubic(0.75) = 29/128, cubic(1.25) = -9/128, cubic(1.75) = -3/128.
HALF = np.array([-3, -9, 29, 111, 111, 29, -9, -3]) / 256  # x1/2: 0.5 * cubic(0.5 * d), d = +-0.5..3.5
# x1/3: (1/3) * cubic(d/3) for d = 0, +-1, +-2, +-4, +-5 is 1/3, 7/27, 1/9, -2/81, -1/81;
# d = +-3 and +-6 give 0 and MATLAB drops those all-zero columns.
THIRD = np.array([-1, -2, 9, 21, 27, 21, 9, -2, -1]) / 81


def test_kernel_weights_at_half_interior() -> None:
    weights, indices = contributions(20, 10, 0.5)
    # Output 5 (0-based 4) samples input coordinate u = 2*5 - 0.5 = 9.5 (1-based).
    np.testing.assert_array_equal(weights[4], HALF)
    np.testing.assert_array_equal(indices[4], np.arange(5, 13))
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=0, atol=1e-15)


def test_kernel_weights_at_half_border_are_mirrored() -> None:
    weights, indices = contributions(20, 10, 0.5)
    # u = 1.5: taps at 1-based -2..5 mirror to 3 2 1 1 2 3 4 5 (symmetric padding).
    np.testing.assert_array_equal(indices[0], [2, 1, 0, 0, 1, 2, 3, 4])
    np.testing.assert_array_equal(weights[0], HALF)
    row = weight_matrix(20, 10, 0.5)[0]
    expected = np.zeros(20)
    expected[:5] = [0.546875, 0.3984375, 0.1015625, -0.03515625, -0.01171875]
    np.testing.assert_array_equal(row, expected)


def test_kernel_weights_at_third() -> None:
    weights, indices = contributions(30, 10, 1 / 3)
    # Output 5: u = 3*5 - 1 = 14 (1-based) = input 13 (0-based), exactly on a pixel.
    np.testing.assert_allclose(weights[4], THIRD, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(indices[4], [8, 9, 11, 12, 13, 14, 15, 17, 18])


def test_upscale_weights_at_two() -> None:
    weights, indices = contributions(10, 20, 2.0)
    # Output 11 (0-based 10): u = 11/2 + 0.25 = 5.75 -> distances 1.75 0.75 -0.25 -1.25.
    np.testing.assert_array_equal(weights[10], np.array([-3, 29, 111, -9]) / 128)
    np.testing.assert_array_equal(indices[10], [3, 4, 5, 6])


@pytest.mark.parametrize(("shape", "scale", "expected"), [
    ((7, 5), 1 / 2, (4, 3)),
    ((7, 5), 1 / 3, (3, 2)),
    ((9, 11), 1 / 4, (3, 3)),
    ((13, 1), 1 / 2, (7, 1)),
    ((7, 5), 2, (14, 10)),
    ((7, 5), 3, (21, 15)),
    ((1356, 2040), 1 / 3, (452, 680)),
])
def test_output_size_is_ceil(shape: tuple[int, int], scale: float, expected: tuple[int, int]) -> None:
    assert imresize(np.zeros(shape), scale).shape == expected
    assert imresize(np.zeros(shape + (3,), np.uint8), scale).shape == expected + (3,)


def test_output_size_ignores_float_noise() -> None:
    assert 50 * 1.1 != 55  # the float product is 55.00000000000001
    assert output_size(50, 1.1) == 55
    assert output_size(51, 1.1) == 57
    assert output_size(7, 1 / 3) == 3


def test_output_shape_argument() -> None:
    out = imresize(np.random.default_rng(0).random((10, 12, 3)), output_shape=(5, 7))
    assert out.shape == (5, 7, 3)
    with pytest.raises(ValueError, match="exactly one"):
        imresize(np.zeros((4, 4)), 0.5, output_shape=(2, 2))
    with pytest.raises(ValueError, match="exactly one"):
        imresize(np.zeros((4, 4)))


@pytest.mark.parametrize("scale", [1 / 2, 1 / 3, 1 / 4, 2, 3, 4])
def test_constant_image_stays_constant(scale: float) -> None:
    img = np.full((11, 9, 3), 0.37)
    np.testing.assert_allclose(imresize(img, scale), 0.37, rtol=0, atol=1e-12)
    img8 = np.full((11, 9, 3), 200, np.uint8)
    np.testing.assert_array_equal(imresize(img8, scale), 200)


@pytest.mark.parametrize("scale", [1 / 2, 1 / 3, 1 / 4, 2, 3])
def test_linear_ramp_stays_linear_away_from_borders(scale: float) -> None:
    h, w = 48, 60
    i, j = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    img = 0.5 * i - 0.25 * j + 3.0
    out = imresize(img, scale)
    oh, ow = out.shape
    # 0-based input coordinate of 0-based output k: (k + 1)/scale + (1 - 1/scale)/2 - 1.
    ui = (np.arange(oh) + 1) / scale + 0.5 * (1 - 1 / scale) - 1
    uj = (np.arange(ow) + 1) / scale + 0.5 * (1 - 1 / scale) - 1
    expected = 0.5 * ui[:, None] - 0.25 * uj[None, :] + 3.0
    # Kernel support is 2/scale (down) or 2 (up) input pixels; stay that far from the borders.
    margin_in = 2 / min(scale, 1) + 1
    rows = (ui > margin_in) & (ui < h - 1 - margin_in)
    cols = (uj > margin_in) & (uj < w - 1 - margin_in)
    assert rows.sum() > 3 and cols.sum() > 3
    np.testing.assert_allclose(out[np.ix_(rows, cols)], expected[np.ix_(rows, cols)], rtol=0, atol=1e-12)
    # At the border symmetric padding bends the ramp: MATLAB is not linear there either.
    assert not np.allclose(out[0], expected[0], atol=1e-6)


def test_uint8_rounds_half_away_from_zero_and_clips() -> None:
    # Rows are constant, so only the width pass acts. At x2, output 11 reads inputs 5 and 6 with
    # weights 111/128 and 29/128: (111*1 + 29*69)/128 = 16.5 exactly, which MATLAB rounds to 17
    # (numpy's round-half-even would give 16). Output 10: (111*1 - 9*69)/128 < 0 -> clipped to 0.
    row = np.zeros(12)
    row[5], row[6] = 1, 69
    img = np.repeat(row[None, :], 4, axis=0)
    exact = imresize(img, 2)
    assert exact[0, 11] == 16.5
    assert exact[0, 10] < 0
    out = imresize(img.astype(np.uint8), 2)
    assert out.dtype == np.uint8
    assert out[0, 11] == 17
    assert out[0, 10] == 0
    bright = np.full((4, 12), 255.0)
    bright[:, 6] = 0
    assert imresize(bright, 2).max() > 255  # bicubic overshoots...
    assert imresize(bright.astype(np.uint8), 2).max() == 255  # ...and uint8 saturates


def test_uint8_is_rounded_after_each_dimension() -> None:
    # MATLAB's class-preserving imresizemex returns uint8 after the first dimension too.
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (23, 17), dtype=np.uint8)
    mh, mw = weight_matrix(23, 12, 0.5), weight_matrix(17, 9, 0.5)
    first = np.floor(np.clip(mh @ img.astype(np.float64), 0, 255) + 0.5)
    second = np.floor(np.clip(first @ mw.T, 0, 255) + 0.5)
    np.testing.assert_array_equal(imresize(img, 0.5), second.astype(np.uint8))
    float_then_round = np.floor(np.clip(mh @ img @ mw.T, 0, 255) + 0.5)
    assert not np.array_equal(second, float_then_round)  # the intermediate rounding matters


def test_gather_path_equals_dense_weight_matrices() -> None:
    rng = np.random.default_rng(2)
    img = rng.random((31, 26))
    for scale in (1 / 2, 1 / 3, 1 / 4, 2, 3):
        oh, ow = output_size(31, scale), output_size(26, scale)
        dense = weight_matrix(31, oh, scale) @ img @ weight_matrix(26, ow, scale).T
        np.testing.assert_allclose(imresize(img, scale), dense, rtol=0, atol=1e-12)


def test_float_dtypes_are_kept() -> None:
    img = np.random.default_rng(3).random((8, 8, 3))
    assert imresize(img, 0.5).dtype == np.float64
    assert imresize(img.astype(np.float32), 0.5).dtype == np.float32
    with pytest.raises(TypeError, match="int8"):
        imresize(np.zeros((4, 4), np.int8), 0.5)
    with pytest.raises(ValueError, match="shape"):
        imresize(np.zeros((2, 4, 4, 3)), 0.5)


@pytest.mark.parametrize("scale", [1 / 2, 1 / 3, 1 / 4, 2, 3, 4])
def test_numpy_and_torch_paths_agree(scale: float) -> None:
    rng = np.random.default_rng(4)
    img = rng.random((19, 14, 3)) * 255
    ref = imresize(img, scale)
    t64 = imresize(torch.from_numpy(img).permute(2, 0, 1), scale)
    np.testing.assert_allclose(t64.permute(1, 2, 0).numpy(), ref, rtol=0, atol=1e-9)
    batch = torch.from_numpy(img).permute(2, 0, 1).float()[None].repeat(2, 1, 1, 1)
    t32 = imresize(batch, scale)
    assert t32.dtype == torch.float32 and t32.shape[:2] == (2, 3)
    np.testing.assert_allclose(t32[1].permute(1, 2, 0).numpy(), ref, rtol=0, atol=2e-3)
    img8 = img.astype(np.uint8)
    t8 = imresize(torch.from_numpy(img8).permute(2, 0, 1).contiguous(), scale)
    assert t8.dtype == torch.uint8
    np.testing.assert_array_equal(t8.permute(1, 2, 0).numpy(), imresize(img8, scale))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_upsample_module_equals_imresize(scale: int) -> None:
    from srnas.arch.blocks import BicubicUpsample

    x = torch.rand(2, 3, 13, 10, generator=torch.Generator().manual_seed(scale)) * 255
    out = BicubicUpsample(scale)(x)
    assert out.shape == (2, 3, 13 * scale, 10 * scale)
    # float32 kernels on 0..255 values: agreement to float32 precision.
    np.testing.assert_allclose(out.numpy(), imresize(x.double(), scale).numpy(), rtol=0, atol=2e-4)


def test_div2k_sized_image() -> None:
    # Speed is measured in benchmarks/data_throughput.py, not here.
    img = np.random.default_rng(5).integers(0, 256, (1356, 2040, 3), dtype=np.uint8)
    out = imresize(img, 1 / 2)
    assert out.shape == (678, 1020, 3) and out.dtype == np.uint8
    assert np.array_equal(out[339:341, 509:511], imresize(img[670:690, 1010:1030], 1 / 2)[4:6, 4:6])


def test_numpy_imresize_does_not_import_torch() -> None:
    # A fresh interpreter: this test process has torch imported already.
    code = ("import sys, numpy as np; from srnas.data.imresize import imresize; "
            "import srnas.data; out = imresize(np.zeros((8, 8, 3), np.uint8), 0.5); "
            "print(out.shape, sorted(m for m in ('torch', 'srnas.arch') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "(4, 4, 3) []"


def test_bicubic_kernel_lives_once_below_data_and_arch() -> None:
    import importlib

    from srnas.arch import blocks
    from srnas.cubic import bicubic_upsample_kernel, matlab_cubic

    imresize_module = importlib.import_module("srnas.data.imresize")  # the package attribute is the function
    assert imresize_module.matlab_cubic is matlab_cubic and blocks.bicubic_upsample_kernel is bicubic_upsample_kernel
    # Each output phase's taps sum to one, and phase p of x2 samples at offset (p + 0.5) / 2 - 0.5.
    kernel = bicubic_upsample_kernel(2)
    assert np.allclose(kernel.sum(axis=(1, 2)), 1.0)
    assert np.allclose(kernel[0].sum(axis=0), matlab_cubic(-0.25 - np.arange(-2, 3)) / matlab_cubic(-0.25 - np.arange(-2, 3)).sum())
