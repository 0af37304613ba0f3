"""PSNR/SSIM under the named protocols, on images with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from srnas.metrics import PROTOCOLS, border_crop, evaluate_pair, psnr, quantize, rgb_to_y, ssim


def _img(h: int = 32, w: int = 40, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(20, 236, (h, w, 3)).astype(np.float64)


def test_quantize_clips_and_rounds_half_away_from_zero() -> None:
    x = np.array([-4.0, 0.49, 0.5, 2.5, 254.5, 300.0])
    np.testing.assert_array_equal(quantize(x), [0, 0, 1, 3, 255, 255])
    np.testing.assert_array_equal(quantize(torch.tensor(x)).numpy(), [0, 0, 1, 3, 255, 255])
    u8 = np.array([1, 2], np.uint8)
    assert quantize(u8) is u8


def test_bt601_luma() -> None:
    px = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], dtype=np.float64)
    np.testing.assert_allclose(rgb_to_y(px)[0], [16, 235, 16 + 65.481, 16 + 128.553, 16 + 24.966])
    t = torch.tensor(px).permute(2, 0, 1)[None]
    np.testing.assert_allclose(rgb_to_y(t)[0].numpy(), rgb_to_y(px), atol=1e-12)
    with pytest.raises(ValueError, match="H x W x 3"):
        rgb_to_y(np.zeros((4, 4)))


def test_one_grey_level_of_y_is_48_13_db() -> None:
    hr = np.full((20, 20, 1), 100.0)  # one channel: already Y
    assert psnr(hr + 1, hr, scale=2) == pytest.approx(20 * math.log10(255), abs=1e-9)
    assert round(psnr(hr + 1, hr, scale=2), 2) == 48.13


def test_rgb_error_goes_through_the_y_formula() -> None:
    hr = _img()
    # +1 on R, G and B moves Y by (65.481 + 128.553 + 24.966)/255 = 219/255.
    expected = 10 * math.log10(255**2 / (219 / 255) ** 2)
    assert psnr(hr + 1, hr, scale=2) == pytest.approx(expected, abs=1e-9)
    assert round(expected, 2) == 49.45
    # Only the blue channel: dY = 24.966/255.
    sr = hr.copy()
    sr[:, :, 2] += 10
    assert psnr(sr, hr, scale=2) == pytest.approx(20 * math.log10(255 / (249.66 / 255)), abs=1e-9)


def test_div2k_protocol_is_rgb() -> None:
    hr = _img()
    sr = hr.copy()
    sr[:, :, 0] += 1  # R only: RGB MSE = 1/3
    assert psnr(sr, hr, scale=2, protocol="div2k") == pytest.approx(10 * math.log10(3 * 255**2), abs=1e-9)
    assert psnr(sr, hr, scale=2, protocol="benchmark") == pytest.approx(
        20 * math.log10(255 / (65.481 / 255)), abs=1e-9)


@pytest.mark.parametrize(("protocol", "crop"), [("benchmark", 3), ("div2k", 9)])
def test_border_crop(protocol: str, crop: int) -> None:
    assert border_crop(3, protocol) == crop
    hr = _img(40, 44)
    sr = hr.copy()
    sr[:crop] = 0
    sr[:, -crop:] = 255
    assert psnr(sr, hr, scale=3, protocol=protocol) == math.inf  # damage only inside the crop
    sr[crop, crop + 1] += 30  # one pixel just inside the scored region
    assert math.isfinite(psnr(sr, hr, scale=3, protocol=protocol))


def test_quantisation_comes_first() -> None:
    hr = _img()
    assert psnr(hr + 0.49, hr, scale=2) == math.inf
    assert psnr(hr + 0.5, hr, scale=2) == pytest.approx(psnr(hr + 1, hr, scale=2))
    over = np.full((16, 16, 3), 255.0)
    assert psnr(over + 40, over, scale=2) == math.inf  # clipped to 255 first


def test_torch_layouts_match_numpy() -> None:
    hr, sr = _img(seed=1), _img(seed=2)
    ref = psnr(sr, hr, scale=4)
    t_sr, t_hr = (torch.tensor(a).permute(2, 0, 1).float() for a in (sr, hr))
    assert psnr(t_sr, t_hr, scale=4) == pytest.approx(ref, abs=1e-9)
    assert psnr(t_sr[None], t_hr[None], scale=4) == pytest.approx(ref, abs=1e-9)
    assert ssim(t_sr[None], hr, scale=4) == pytest.approx(ssim(sr, hr, scale=4), abs=1e-12)
    with pytest.raises(ValueError, match="batch"):
        psnr(t_sr[None].repeat(2, 1, 1, 1), t_hr[None].repeat(2, 1, 1, 1), scale=4)


def test_bad_arguments() -> None:
    hr = _img()
    with pytest.raises(ValueError, match="unknown evaluation protocol 'rgb'; use one of benchmark, div2k"):
        psnr(hr, hr, scale=2, protocol="rgb")
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(hr[:-1], hr, scale=2)
    with pytest.raises(ValueError, match="too small"):
        psnr(hr[:10, :10], hr[:10, :10], scale=4, protocol="div2k")
    assert PROTOCOLS == ("benchmark", "div2k")


def test_ssim_of_constant_images_has_closed_form() -> None:
    a, b = np.full((30, 30, 1), 100.0), np.full((30, 30, 1), 110.0)
    c1 = (0.01 * 255) ** 2
    expected = (2 * 100 * 110 + c1) / (100**2 + 110**2 + c1)  # variances 0: contrast term is 1
    assert ssim(b, a, scale=2) == pytest.approx(expected, abs=1e-12)
    assert ssim(a, a, scale=2) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_ssim_matches_scikit_image_wang_settings(protocol: str) -> None:
    from skimage.metrics import structural_similarity

    hr = _img(48, 50, seed=3)
    sr = np.clip(hr + np.random.default_rng(4).normal(0, 40, hr.shape), 0, 255).round()
    c = border_crop(2, protocol)
    if protocol == "benchmark":
        a, b = rgb_to_y(sr)[c:-c, c:-c], rgb_to_y(hr)[c:-c, c:-c]
        ref = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    else:
        a, b = sr[c:-c, c:-c], hr[c:-c, c:-c]
        ref = np.mean([structural_similarity(a[..., k], b[..., k], gaussian_weights=True, sigma=1.5,
                                             use_sample_covariance=False, data_range=255) for k in range(3)])
    assert ssim(sr, hr, scale=2, protocol=protocol) == pytest.approx(ref, abs=1e-9)
    assert 0.3 < ref < 0.99  # a non-trivial value


def test_evaluate_pair_carries_its_protocol() -> None:
    hr = _img()
    sr = np.clip(hr + 3, 0, 255)
    result = evaluate_pair(sr, hr, 2, "div2k")
    assert set(result) == {"psnr", "ssim", "protocol"}
    assert result["protocol"] == "div2k"
    assert result["psnr"] == pytest.approx(psnr(sr, hr, scale=2, protocol="div2k"))
    assert result["ssim"] == pytest.approx(ssim(sr, hr, scale=2, protocol="div2k"))
