"""Random aligned LR/HR training patches, cut from images held on the training device.

All images of a set are packed into one flat uint8 tensor per resolution (HR and each LR scale)
on the target device. A minibatch is drawn as a handful of random integers on the CPU (scale,
image, corner, augmentation); the pixels are then cut out without any DataLoader, worker process
or host-to-device copy of pixels:

- on an accelerator, with one ``torch.take`` per resolution and whole-batch flips on uint8
  (a dozen kernel launches per minibatch, whatever the batch size);
- on the CPU, by slicing each patch as a view and copying it (flipped/transposed) straight into
  the float output, which avoids the large index tensors that make gathers slow there.

Both paths give identical minibatches for the same generator state.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from srnas.data.imageset import SRImageSet
from srnas.errors import DataError

__all__ = ["PatchSampler"]


def _dihedral(x: torch.Tensor, hflip: torch.Tensor, vflip: torch.Tensor, transpose: torch.Tensor) -> torch.Tensor:
    """Apply per-sample transpose, then v-flip, then h-flip to ``N x P x P x C`` patches.

    The three boolean masks (``N``) together select one of the 8 dihedral transforms per
    sample (bit 0 of the augmentation code = h-flip, bit 1 = v-flip, bit 2 = transpose).
    """
    x = torch.where(transpose.view(-1, 1, 1, 1), x.transpose(1, 2), x)
    x = torch.where(vflip.view(-1, 1, 1, 1), x.flip(1), x)
    return torch.where(hflip.view(-1, 1, 1, 1), x.flip(2), x)


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
        self.views = [self.flat[off:off + size].view(im.shape[0], im.shape[1], 3)
                      for off, size, im in zip(offsets.tolist(), sizes, images, strict=True)]

    def crops(self, img: torch.Tensor, y0: torch.Tensor, x0: torch.Tensor, size: int) -> torch.Tensor:
        """Un-augmented crops ``N x size x size x 3`` (uint8) at corners ``(y0, x0)`` of ``img``."""
        device = self.flat.device
        row_bytes = self.row_bytes[img]
        start = self.offsets[img] + y0 * row_bytes + x0 * 3  # N
        rows = start.view(-1, 1, 1) + torch.arange(size, device=device).view(1, -1, 1) * row_bytes.view(-1, 1, 1)
        index = rows + torch.arange(size * 3, device=device).view(1, 1, -1)  # N x size x 3*size
        return torch.take(self.flat, index).view(-1, size, size, 3)

    def crops_one_by_one(self, img: list[int], y0: list[int], x0: list[int], size: int,
                         aug: list[int]) -> torch.Tensor:
        """Augmented crops as float32 ``N x 3 x size x size``, one slice-and-copy per patch."""
        out = torch.empty((len(img), 3, size, size), dtype=torch.float32, device=self.flat.device)
        for k, (i, y, x, a) in enumerate(zip(img, y0, x0, aug, strict=True)):
            patch = self.views[i][y:y + size, x:x + size]
            if a & 4:
                patch = patch.transpose(0, 1)
            dims = [d for d, bit in ((0, 2), (1, 1)) if a & bit]
            if dims:
                patch = patch.flip(dims)
            out[k].copy_(patch.permute(2, 0, 1))
        return out


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
    `state_dict` / `load_state_dict` save and restore the generator, so a resumed training draws
    the same batches as an uninterrupted one.

    Raises:
        DataError: the set is empty, lacks a scale, or an image is smaller than the patch (the
            message names the image).
    """

    def __init__(self, data: SRImageSet, scales: Sequence[int] | int, *, patch: int = 48, batch: int = 16,
                 augment: bool = True, device: str | torch.device = "cpu", seed: int = 0) -> None:
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
        self._generator = torch.Generator(device="cpu").manual_seed(self.seed)
        self._hr = _Packed(data.hr, self.device)
        self._lr = {s: _Packed(data.lr[s], self.device) for s in self.scales}
        self._batched = self.device.type != "cpu"  # see the module docstring

    def sample(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        """One minibatch ``(lr, hr, scale)`` (see the class docstring)."""
        g, n, p = self._generator, self.batch, self.patch
        scale = self.scales[int(torch.randint(len(self.scales), (1,), generator=g))] if len(self.scales) > 1 else self.scales[0]
        lr_store = self._lr[scale]
        img = torch.randint(self.num_images, (n,), generator=g)
        room_y = lr_store.heights[img] - p + 1
        room_x = lr_store.widths[img] - p + 1
        y0 = (torch.rand(n, generator=g, dtype=torch.float64) * room_y).long().clamp_(max=room_y - 1)
        x0 = (torch.rand(n, generator=g, dtype=torch.float64) * room_x).long().clamp_(max=room_x - 1)
        aug = torch.randint(8, (n,), generator=g) if self.augment else torch.zeros(n, dtype=torch.int64)
        if not self._batched:
            i, y, x, a = img.tolist(), y0.tolist(), x0.tolist(), aug.tolist()
            ys, xs = [v * scale for v in y], [v * scale for v in x]
            return (lr_store.crops_one_by_one(i, y, x, p, a),
                    self._hr.crops_one_by_one(i, ys, xs, p * scale, a), scale)
        img, y0, x0, aug = (t.to(self.device, non_blocking=True) for t in (img, y0, x0, aug))
        masks = ((aug & 1).bool(), (aug & 2).bool(), (aug & 4).bool())
        lr = _dihedral(lr_store.crops(img, y0, x0, p), *masks)
        hr = _dihedral(self._hr.crops(img, y0 * scale, x0 * scale, p * scale), *masks)
        return self._to_float(lr), self._to_float(hr), scale

    @staticmethod
    def _to_float(x: torch.Tensor) -> torch.Tensor:
        # N x P x P x 3 uint8 -> contiguous N x 3 x P x P float32 in one copy.
        return x.permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.contiguous_format)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        """Endless minibatches (``sample()`` in a loop)."""
        while True:
            yield self.sample()

    def state_dict(self) -> dict[str, Any]:
        """The generator state and the settings it depends on (for checkpoints)."""
        return {
            "generator": self._generator.get_state(),
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
