"""Layers of the EDSR family (mean shift, residual skip, channel attention, upsamplers, bicubic
skip) with the authors' state-dict names; block types compose them in `srnas.arch.registry`."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from srnas.cubic import bicubic_upsample_kernel

#: DIV2K mean RGB (docs/reference.md section 1), as a fraction of rgb_range.
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


def conv(in_ch: int, out_ch: int, kernel_size: int, bias: bool = True, groups: int = 1) -> nn.Conv2d:
    """A 'same'-padded convolution (odd kernel sizes)."""
    return nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=bias, groups=groups)


def activation(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "lrelu":
        return nn.LeakyReLU(0.2, inplace=True)
    if name == "silu":
        return nn.SiLU(inplace=True)
    if name == "gelu":
        return nn.GELU()
    raise ValueError(f"unknown activation {name!r}")


class MeanShift(nn.Conv2d):
    """Frozen 1x1 conv that subtracts (sign=-1) or adds (sign=+1) the DIV2K mean.

    A conv (not a buffer add) so that the authors' ``sub_mean.*``/``add_mean.*`` keys load.
    """

    def __init__(self, rgb_range: float, n_colors: int = 3, sign: int = -1) -> None:
        super().__init__(n_colors, n_colors, kernel_size=1)
        mean = DIV2K_RGB_MEAN if n_colors == 3 else (sum(DIV2K_RGB_MEAN) / 3,)
        assert self.bias is not None  # nn.Conv2d's default: with bias
        with torch.no_grad():
            self.weight.copy_(torch.eye(n_colors).view(n_colors, n_colors, 1, 1))
            self.bias.copy_(sign * rgb_range * torch.tensor(mean))
        for p in self.parameters():
            p.requires_grad = False


class Residual(nn.Module):
    """``x + body(x) * res_scale``: the skip of every registered block type
    (`srnas.arch.registry`); ``body`` keeps the EDSR authors' state-dict names ``body.{i}.*``."""

    def __init__(self, body: nn.Sequential, res_scale: float = 1.0) -> None:
        super().__init__()
        self.body = body
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.body(x)
        if self.res_scale != 1.0:
            res = res * self.res_scale
        return x + res


class ChannelAttention(nn.Module):
    """RCAN's channel attention (Zhang et al. 2018): ``x * sigmoid(W2 relu(W1 avgpool(x)))``.

    ``avg_pool``/``conv_du`` are the names of RCAN's ``CALayer``; the 1x1 convs carry biases.
    """

    def __init__(self, n_feats: int, reduced_feats: int) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_du = nn.Sequential(
            nn.Conv2d(n_feats, reduced_feats, 1), nn.ReLU(inplace=True),
            nn.Conv2d(reduced_feats, n_feats, 1), nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv_du(self.avg_pool(x))


class Upsampler(nn.Sequential):
    """PixelShuffle upsampler: n x [conv F->4F, shuffle 2] for 2^n, or [conv F->9F, shuffle 3]."""

    def __init__(self, scale: int, n_feats: int) -> None:
        layers: list[nn.Module] = []
        if scale & (scale - 1) == 0:
            for _ in range(int(math.log2(scale))):
                layers += [conv(n_feats, 4 * n_feats, 3), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [conv(n_feats, 9 * n_feats, 3), nn.PixelShuffle(3)]
        else:
            raise ValueError(f"unsupported scale {scale}")
        super().__init__(*layers)


class BicubicUpsample(nn.Module):
    """Fixed MATLAB-compatible bicubic upsampling by an integer scale (symmetric borders).

    Used as a VDSR-style global skip: with a zero-initialised tail conv an untrained network
    outputs exactly this bicubic upsampling.
    """

    weight: torch.Tensor  # a buffer (the interpolation taps), not a parameter

    def __init__(self, scale: int, n_colors: int = 3) -> None:
        super().__init__()
        self.scale = scale
        self.n_colors = n_colors
        k = torch.from_numpy(bicubic_upsample_kernel(scale)).float()
        # A dense (block-diagonal) conv: CPU grouped convs with few channels are ~8x slower.
        weight = torch.zeros(n_colors * scale * scale, n_colors, 5, 5)
        for c in range(n_colors):
            weight[c * scale * scale:(c + 1) * scale * scale, c] = k
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # MATLAB's symmetric padding repeats the edge pixel: [x1, x0 | x0 x1 ... xn | xn, xn-1].
        # Written with slices so that an ONNX graph traced at one size works at any other.
        h, w = x.shape[-2:]
        r0, r1 = x[..., 0:1, :], (x[..., 1:2, :] if h > 1 else x[..., 0:1, :])
        rn, rn1 = x[..., -1:, :], (x[..., -2:-1, :] if h > 1 else x[..., -1:, :])
        rows = torch.cat([r1, r0, x, rn, rn1], dim=-2)
        c0, c1 = rows[..., 0:1], (rows[..., 1:2] if w > 1 else rows[..., 0:1])
        cn, cn1 = rows[..., -1:], (rows[..., -2:-1] if w > 1 else rows[..., -1:])
        padded = torch.cat([c1, c0, rows, cn, cn1], dim=-1)
        out = F.conv2d(padded, self.weight.to(dtype=x.dtype))
        return F.pixel_shuffle(out, self.scale)
