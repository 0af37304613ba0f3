"""Random aligned LR/HR training patches, cut from images held on the training device.

All images of a set are packed into one flat uint8 tensor per resolution (HR and each LR scale)
on the target device (`PatchStore`, kept for the next training on the same data and device). The
random numbers of a minibatch (scale, image, corner, augmentation) are drawn on the CPU for a
block of `DRAW_BLOCK` minibatches at once; the pixels are then cut out without any DataLoader,
worker process or host-to-device copy of pixels:

- on an accelerator, the block's numbers go to the device in one copy and are turned there, once
  per block, into each patch's affine index form (a start byte and one step per output row and
  column that already apply its dihedral transform); a minibatch is then, per resolution, one
  index built from those (four small arithmetic kernels), one ``torch.take`` and one cast to
  float: about 14 kernel launches per minibatch, whatever the batch size;
- on the CPU, by slicing each patch as a view and copying it (flipped/transposed) straight into
  the float output, which avoids the large index tensors that make gathers slow there.

Both paths give identical minibatches for the same generator state, returned in channels_last
memory order when asked (what the network's convolutions want on CPU and GPU).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from srnas.data.imageset import SRImageSet
from srnas.errors import DataError

__all__ = ["DRAW_BLOCK", "PatchSampler", "PatchStore"]

#: Minibatches whose random numbers are drawn (and sent to the device) at once.
DRAW_BLOCK = 32


def _affine(start: torch.Tensor, row_bytes: torch.Tensor, aug: torch.Tensor, size: int) -> tuple[torch.Tensor, ...]:
    """Each patch's index form ``base + i * di + j * dj`` (output pixel (i, j), channel added by
    the caller) under its dihedral transform: transpose, then v-flip, then h-flip (bits 2, 1, 0
    of ``aug``), for patches of ``size`` x ``size`` starting at byte ``start`` of images whose
    rows are ``row_bytes`` long."""
    hflip, vflip, transpose = (aug & 1).bool(), (aug & 2).bool(), (aug & 4).bool()
    last = size - 1
    # Untransposed: source row from i (v-flip reverses it), column from j (h-flip reverses it);
    # transposed: source row from j (h-flip), column from i (v-flip).
    row_step = torch.where(vflip, -row_bytes, row_bytes)
    col_step = torch.where(hflip, -3, 3)
    t_row_step = torch.where(vflip, -3, 3)
    t_col_step = torch.where(hflip, -row_bytes, row_bytes)
    base = start + torch.where(vflip, last * torch.where(transpose, 3, row_bytes), 0) \
        + torch.where(hflip, last * torch.where(transpose, row_bytes, 3), 0)
    di = torch.where(transpose, t_row_step, row_step)
    dj = torch.where(transpose, t_col_step, col_step)
    return base, di, dj


class _Packed:
    """The images of one resolution packed into a flat uint8 tensor (HWC order) on a device."""

    def __init__(self, images: Sequence[np.ndarray], device: torch.device) -> None:
        sizes = [int(im.size) for im in images]
        self.heights = torch.tensor([im.shape[0] for im in images], dtype=torch.int64)
        self.widths = torch.tensor([im.shape[1] for im in images], dtype=torch.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.flat = torch.empty(int(sum(sizes)), dtype=torch.uint8, device=device)
        for off, size, im in zip(offsets, sizes, images, strict=True):
            # One image at a time: a private writable copy (cache arrays are read-only maps).
            host = torch.from_numpy(np.array(im, dtype=np.uint8, order="C", copy=True).reshape(-1))
            self.flat[off:off + size].copy_(host)
        self.offsets = torch.from_numpy(offsets).to(device)
        self.row_bytes = (self.widths * 3).to(device)
        self.channel = torch.arange(3, device=device).view(1, 1, 1, 3)
        self._grid: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.views = [self.flat[off:off + size].view(im.shape[0], im.shape[1], 3)
                      for off, size, im in zip(offsets.tolist(), sizes, images, strict=True)]

    def affine(self, img: torch.Tensor, y0: torch.Tensor, x0: torch.Tensor, aug: torch.Tensor,
               size: int) -> tuple[torch.Tensor, ...]:
        """`_affine` of crops at corners ``(y0, x0)`` of images ``img`` (any shape of patches)."""
        row_bytes = self.row_bytes[img]
        return _affine(self.offsets[img] + y0 * row_bytes + x0 * 3, row_bytes, aug, size)

    def crops(self, base: torch.Tensor, di: torch.Tensor, dj: torch.Tensor, size: int) -> torch.Tensor:
        """Augmented crops ``N x size x size x 3`` (uint8) of patches in `affine` form: one
        gather whose index applies the transform."""
        grid = self._grid.get(size)
        if grid is None:
            ramp = torch.arange(size, device=self.flat.device)
            grid = self._grid[size] = (ramp.view(1, -1, 1, 1), ramp.view(1, 1, -1, 1))
        index = (base.view(-1, 1, 1, 1) + self.channel) + grid[0] * di.view(-1, 1, 1, 1) \
            + grid[1] * dj.view(-1, 1, 1, 1)
        return torch.take(self.flat, index)

    def crops_one_by_one(self, img: list[int], y0: list[int], x0: list[int], size: int,
                         aug: list[int]) -> torch.Tensor:
        """Augmented crops as float32 ``N x size x size x 3``, one slice-and-copy per patch."""
        out = torch.empty((len(img), size, size, 3), dtype=torch.float32, device=self.flat.device)
        for k, (i, y, x, a) in enumerate(zip(img, y0, x0, aug, strict=True)):
            patch = self.views[i][y:y + size, x:x + size]
            if a & 4:
                patch = patch.transpose(0, 1)
            dims = [d for d, bit in ((0, 2), (1, 1)) if a & bit]
            if dims:
                patch = patch.flip(dims)
            out[k].copy_(patch)
        return out


class PatchStore:
    """A training set's images packed on one device (HR and the LR images of ``scales``).

    `PatchStore.shared` keeps the last few stores, so that a search worker uploads its training
    set once (DIV2K x2 is about 8 GB on a GPU) instead of at every trial.
    """

    _shared: dict[tuple[Any, ...], "PatchStore"] = {}
    SHARED_STORES = 2

    def __init__(self, data: SRImageSet, scales: Sequence[int], device: torch.device) -> None:
        self.data = data
        self.scales = tuple(scales)
        self.device = torch.device(device)
        self.hr = _Packed(data.hr, self.device)
        self.lr = {s: _Packed(data.lr[s], self.device) for s in self.scales}

    @classmethod
    def shared(cls, data: SRImageSet, scales: Sequence[int], device: torch.device) -> "PatchStore":
        key = (id(data), tuple(scales), str(torch.device(device)))
        hit = cls._shared.get(key)
        if hit is not None and hit.data is data:
            return hit
        while len(cls._shared) >= cls.SHARED_STORES:
            cls._shared.pop(next(iter(cls._shared)))
        store = cls._shared[key] = cls(data, scales, device)
        return store


class PatchSampler:
    """Draws training minibatches of aligned random LR/HR crops, augmented, from an `SRImageSet`.

    Args:
        data: the training images; must hold LR images for every scale in ``scales``.
        scales: one scale or several (MDSR): each minibatch uses one scale drawn at random.
        patch: LR patch size; the HR patch is ``patch * scale``.
        batch: patches per minibatch.
        augment: apply a random one of the 8 dihedral transforms (h-flip, v-flip, transpose)
            to each patch (the same to its LR and HR halves).
        device: where the images are kept and the patches are returned.
        seed: seed of the sampler's own generator (the global torch RNG is not touched).

    Images are drawn uniformly (each image equally likely, as the EDSR authors' code), then a
    uniform corner on the LR grid. ``sample()`` returns ``(lr, hr, scale)``: float32 tensors
    ``N x 3 x patch x patch`` and ``N x 3 x patch*scale x patch*scale`` in 0..255, on ``device``.
    ``channels_last``: return the batches in channels_last memory order (no copy). The packed
    images come from `PatchStore.shared` unless ``shared_store`` is false.
    `state_dict` / `load_state_dict` save and restore the generator (at the start of the current
    block of draws, and the position in it), so a resumed training draws the same batches as an
    uninterrupted one.

    Raises:
        DataError: the set is empty, lacks a scale, or an image is smaller than the patch (the
            message names the image).
    """

    def __init__(self, data: SRImageSet, scales: Sequence[int] | int, *, patch: int = 48, batch: int = 16,
                 augment: bool = True, device: str | torch.device = "cpu", seed: int = 0,
                 channels_last: bool = False, shared_store: bool = True) -> None:
        self.scales = (int(scales),) if isinstance(scales, (int, np.integer)) else tuple(int(s) for s in scales)
        if not self.scales:
            raise ValueError("PatchSampler: scales must not be empty")
        if patch < 1 or batch < 1:
            raise ValueError(f"PatchSampler: patch and batch must be positive, got patch={patch}, batch={batch}")
        if len(data) == 0:
            raise DataError(f"data set {data.name!r} has no images")
        for s in self.scales:
            if s not in data.lr:
                raise DataError(f"data set {data.name!r} has no x{s} LR images (scales {list(data.scales)})")
            for name, lr, hr in zip(data.names, data.lr[s], data.hr, strict=True):
                if lr.shape[0] < patch or lr.shape[1] < patch:
                    raise DataError(
                        f"{data.name}/{name}: image of {hr.shape[0]}x{hr.shape[1]} is smaller than the "
                        f"x{s} HR patch {patch * s}x{patch * s} (LR {lr.shape[0]}x{lr.shape[1]} < {patch}x{patch})")
        self.data_name = data.name
        self.num_images = len(data)
        self.patch = int(patch)
        self.batch = int(batch)
        self.augment = bool(augment)
        self.device = torch.device(device)
        self.seed = int(seed)
        self.channels_last = bool(channels_last)
        self._generator = torch.Generator(device="cpu").manual_seed(self.seed)
        store = (PatchStore.shared if shared_store else PatchStore)(data, self.scales, self.device)
        self._hr, self._lr = store.hr, store.lr
        self._batched = self.device.type != "cpu"  # see the module docstring
        self._block_state: torch.Tensor = self._generator.get_state()
        self._block: dict[str, Any] | None = None
        self._position = 0

    def _draw_block(self) -> None:
        """The random numbers of the next `DRAW_BLOCK` minibatches (one generator sequence)."""
        g, n, p, k = self._generator, self.batch, self.patch, DRAW_BLOCK
        self._block_state = g.get_state()
        scale_pick = torch.randint(len(self.scales), (k,), generator=g)
        img = torch.randint(self.num_images, (k, n), generator=g)
        fy = torch.rand(k, n, generator=g, dtype=torch.float64)
        fx = torch.rand(k, n, generator=g, dtype=torch.float64)
        aug = torch.randint(8, (k, n), generator=g) if self.augment else torch.zeros(k, n, dtype=torch.int64)
        y0 = torch.empty(k, n, dtype=torch.int64)
        x0 = torch.empty(k, n, dtype=torch.int64)
        for s_index, s in enumerate(self.scales):
            rows = scale_pick == s_index
            store = self._lr[s]
            room_y = store.heights[img[rows]] - p + 1
            room_x = store.widths[img[rows]] - p + 1
            y0[rows] = (fy[rows] * room_y).long().clamp_(max=room_y - 1)
            x0[rows] = (fx[rows] * room_x).long().clamp_(max=room_x - 1)
        block: dict[str, Any] = {"scale": scale_pick.tolist(), "img": img, "y0": y0, "x0": x0, "aug": aug}
        if self._batched:  # one copy to the device, then every patch's index form, for the whole block
            d_img, d_y0, d_x0, d_aug = torch.stack([img, y0, x0, aug]).to(self.device, non_blocking=True)
            p = self.patch
            block["affine"] = {
                s: (self._lr[s].affine(d_img, d_y0, d_x0, d_aug, p),
                    self._hr.affine(d_img, d_y0 * s, d_x0 * s, d_aug, p * s)) for s in self.scales}
        self._block = block
        self._position = 0

    def sample(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        """One minibatch ``(lr, hr, scale)`` (see the class docstring)."""
        if self._block is None or self._position >= DRAW_BLOCK:
            self._draw_block()
        assert self._block is not None
        b, k, p = self._block, self._position, self.patch
        self._position += 1
        scale = self.scales[b["scale"][k]]
        lr_store = self._lr[scale]
        if not self._batched:
            i, y, x, a = b["img"][k].tolist(), b["y0"][k].tolist(), b["x0"][k].tolist(), b["aug"][k].tolist()
            ys, xs = [v * scale for v in y], [v * scale for v in x]
            lr = lr_store.crops_one_by_one(i, y, x, p, a)
            hr = self._hr.crops_one_by_one(i, ys, xs, p * scale, a)
            return self._layout(lr), self._layout(hr), scale
        lr_form, hr_form = b["affine"][scale]
        lr_base, lr_di, lr_dj = (t[k] for t in lr_form)
        hr_base, hr_di, hr_dj = (t[k] for t in hr_form)
        lr = lr_store.crops(lr_base, lr_di, lr_dj, p).to(torch.float32)
        hr = self._hr.crops(hr_base, hr_di, hr_dj, p * scale).to(torch.float32)
        return self._layout(lr), self._layout(hr), scale

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        # N x P x P x 3 float -> N x 3 x P x P: channels_last as it is, or one copy to contiguous.
        x = x.permute(0, 3, 1, 2)
        return x if self.channels_last else x.contiguous()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        """Endless minibatches (``sample()`` in a loop)."""
        while True:
            yield self.sample()

    def state_dict(self) -> dict[str, Any]:
        """The generator state and the settings it depends on (for checkpoints)."""
        return {
            "generator": self._block_state if self._block is not None else self._generator.get_state(),
            "position": self._position if self._block is not None else 0,
            "scales": list(self.scales),
            "patch": self.patch,
            "batch": self.batch,
            "augment": self.augment,
            "num_images": self.num_images,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict` output; the settings must match this sampler's.

        Raises:
            ValueError: a setting differs (the message names it and both values) or the state
                lacks a key.
        """
        mine = self.state_dict()
        for key in ("scales", "patch", "batch", "augment", "num_images"):
            if key not in state:
                raise ValueError(f"PatchSampler state lacks {key!r}")
            theirs = list(state[key]) if key == "scales" else state[key]
            if theirs != mine[key]:
                raise ValueError(f"PatchSampler state has {key}={theirs!r} but this sampler has {key}={mine[key]!r}")
        if "generator" not in state:
            raise ValueError("PatchSampler state lacks 'generator'")
        self._generator.set_state(state["generator"])
        self._block = None
        position = int(state.get("position", 0))
        if position:  # the block that was being drawn from, at the same minibatch
            self._draw_block()
            self._position = position
