"""PatchSampler: aligned crops, the 8 dihedral augmentations, scale choice, resumable RNG."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch

from srnas.data import PatchSampler, SRImageSet
from srnas.errors import DataError


def _blocky_set(scales: tuple[int, ...], lr_sizes: list[tuple[int, int]], seed: int = 0) -> SRImageSet:
    """HR = nearest-neighbour upsampling of a random base, so aligned LR/HR patches satisfy
    ``hr == lr.repeat_interleave(s)`` under any shared flip/transpose, and nothing else does."""
    rng = np.random.default_rng(seed)
    m = int(np.lcm.reduce(scales))
    bases = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in lr_sizes]  # grid of m-blocks
    hr = [np.kron(b, np.ones((m, m, 1), np.uint8)) for b in bases]
    lr = {s: [np.kron(b, np.ones((m // s, m // s, 1), np.uint8)) for b in bases] for s in scales}
    return SRImageSet("blocky", [f"img{i}" for i in range(len(bases))], hr, lr)


def _sampler(data: SRImageSet, scales: int | tuple[int, ...], batched: bool, **kwargs: object) -> PatchSampler:
    """A CPU sampler forced onto the one-by-one (CPU) or the gather (accelerator) path."""
    sampler = PatchSampler(data, scales, **kwargs)  # type: ignore[arg-type]
    sampler._batched = batched
    return sampler


PATHS = pytest.mark.parametrize("batched", [False, True], ids=["cpu-path", "gather-path"])


def _upsample(lr: torch.Tensor, s: int) -> torch.Tensor:
    return lr.repeat_interleave(s, dim=-2).repeat_interleave(s, dim=-1)


def test_shapes_dtype_and_range() -> None:
    data = _blocky_set((2,), [(30, 40), (26, 28)])
    lr, hr, scale = PatchSampler(data, 2, patch=12, batch=5).sample()
    assert scale == 2
    assert lr.shape == (5, 3, 12, 12) and hr.shape == (5, 3, 24, 24)
    assert lr.dtype == hr.dtype == torch.float32 and lr.is_contiguous() and hr.is_contiguous()
    assert float(lr.min()) >= 0 and float(hr.max()) <= 255 and float(hr.max()) > 1
    assert torch.equal(lr, lr.round())


@PATHS
@pytest.mark.parametrize("augment", [False, True])
def test_lr_and_hr_patches_are_aligned(augment: bool, batched: bool) -> None:
    data = _blocky_set((2, 3), [(20, 25), (18, 18), (30, 21)])
    sampler = _sampler(data, (2, 3), batched, patch=8, batch=16, augment=augment, seed=3)
    for _ in range(20):
        lr, hr, s = sampler.sample()
        assert torch.equal(hr, _upsample(lr, s))


def _dihedral_variants(a: np.ndarray) -> list[np.ndarray]:
    out = []
    for k in range(4):
        r = np.rot90(a, k, axes=(0, 1))
        out += [r, r[:, ::-1]]
    return out


@PATHS
def test_all_eight_dihedral_transforms_occur_and_nothing_else(batched: bool) -> None:
    # The LR image is exactly one patch, so the crop is fixed and only the augmentation varies.
    p = 6
    base = np.arange(p * p * 3, dtype=np.uint8).reshape(p, p, 3)
    data = SRImageSet("one", ["x"], [np.kron(base, np.ones((2, 2, 1), np.uint8))], {2: [base]})
    expected = {v.tobytes() for v in _dihedral_variants(base)}
    assert len(expected) == 8
    seen = set()
    lr, _, _ = _sampler(data, 2, batched, patch=p, batch=64, seed=0).sample()
    for patch in lr.permute(0, 2, 3, 1).to(torch.uint8).numpy():
        seen.add(np.ascontiguousarray(patch).tobytes())
    assert seen == expected
    plain, _, _ = _sampler(data, 2, batched, patch=p, batch=8, augment=False).sample()
    assert all(np.array_equal(x, base) for x in plain.permute(0, 2, 3, 1).to(torch.uint8).numpy())


@PATHS
def test_crops_cover_every_position_and_stay_inside(batched: bool) -> None:
    # LR pixel values encode (row, column, image): a crop reveals where it came from.
    h, w, p = 9, 11, 7
    images = []
    for k in range(2):
        yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        images.append(np.stack([yy, xx, np.full_like(yy, k)], axis=2).astype(np.uint8))
    hr = [np.kron(im, np.ones((2, 2, 1), np.uint8)) for im in images]
    data = SRImageSet("coords", ["a", "b"], hr, {2: images})
    sampler = _sampler(data, 2, batched, patch=p, batch=32, augment=False, seed=1)
    corners = set()
    for _ in range(10):
        lr, _, _ = sampler.sample()
        for patch in lr.to(torch.int64):
            y0, x0, k = (int(v) for v in patch[:, 0, 0])
            assert torch.equal(patch[0], (torch.arange(p) + y0).view(p, 1).expand(p, p))
            assert torch.equal(patch[1], (torch.arange(p) + x0).view(1, p).expand(p, p))
            corners.add((k, y0, x0))
    assert corners == {(k, y, x) for k in range(2) for y in range(h - p + 1) for x in range(w - p + 1)}


def test_both_paths_draw_identical_minibatches() -> None:
    data = _blocky_set((2, 4), [(30, 30), (25, 40), (22, 22)], seed=5)
    one, gather = _sampler(data, (2, 4), False, patch=10, batch=8, seed=2), _sampler(data, (2, 4), True, patch=10, batch=8, seed=2)
    for _ in range(10):
        (lr, hr, s), (lr2, hr2, s2) = one.sample(), gather.sample()
        assert s == s2 and torch.equal(lr, lr2) and torch.equal(hr, hr2)
        assert lr2.is_contiguous() and hr2.dtype == torch.float32


def test_one_random_scale_per_minibatch() -> None:
    data = _blocky_set((2, 3, 4), [(20, 20)])
    sampler = PatchSampler(data, (2, 3, 4), patch=6, batch=4)
    seen = set()
    for _ in range(40):
        lr, hr, s = sampler.sample()
        assert hr.shape[-1] == 6 * s
        seen.add(s)
    assert seen == {2, 3, 4}
    only_three = PatchSampler(data, 3, patch=6, batch=2)
    assert {only_three.sample()[2] for _ in range(5)} == {3}


def test_same_seed_same_batches_and_global_rng_untouched() -> None:
    data = _blocky_set((2,), [(30, 30), (25, 40)])
    a, b = PatchSampler(data, 2, patch=8, seed=7), PatchSampler(data, 2, patch=8, seed=7)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    for _ in range(3):
        assert torch.equal(a.sample()[1], b.sample()[1])
    assert torch.equal(torch.rand(3), expected)
    c = PatchSampler(data, 2, patch=8, seed=8)
    assert not torch.equal(c.sample()[1], PatchSampler(data, 2, patch=8, seed=7).sample()[1])


def test_state_dict_resumes_the_same_batches() -> None:
    data = _blocky_set((2, 3), [(30, 30), (25, 40)])
    first = PatchSampler(data, (2, 3), patch=8, batch=4, seed=11)
    for _ in range(3):
        first.sample()
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)  # as a training checkpoint would
    expected = [first.sample() for _ in range(4)]
    resumed = PatchSampler(data, (2, 3), patch=8, batch=4, seed=0)
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    for (lr, hr, s), (lr2, hr2, s2) in zip(expected, (resumed.sample() for _ in range(4))):
        assert s == s2 and torch.equal(lr, lr2) and torch.equal(hr, hr2)


def test_load_state_dict_refuses_other_settings() -> None:
    data = _blocky_set((2,), [(30, 30)])
    state = PatchSampler(data, 2, patch=8, batch=4).state_dict()
    with pytest.raises(ValueError, match="patch=8 but this sampler has patch=10"):
        PatchSampler(data, 2, patch=10, batch=4).load_state_dict(state)
    with pytest.raises(ValueError, match="lacks 'generator'"):
        PatchSampler(data, 2, patch=8, batch=4).load_state_dict({k: v for k, v in state.items() if k != "generator"})


def test_images_smaller_than_the_patch_are_named() -> None:
    data = _blocky_set((2,), [(30, 30), (10, 30)])
    with pytest.raises(DataError, match=r"blocky/img1: image of 20x60 is smaller than the x2 HR patch 24x24"):
        PatchSampler(data, 2, patch=12)
    with pytest.raises(DataError, match="no x3 LR images"):
        PatchSampler(data, 3, patch=4)


def test_read_only_arrays_need_no_copy_warning() -> None:
    data = _blocky_set((2,), [(20, 20)])
    for arr in data.hr + data.lr[2]:
        arr.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PatchSampler(data, 2, patch=8).sample()
