"""Layers of the efficient-SR block types (`srnas.arch.efficient_blocks`): information and
feature distillation, contrast-aware channel attention, enhanced spatial attention,
blueprint-separable convolution, re-parameterisable convolution and parameter-free attention.

Module attribute names follow the authors' code (IMDN's ``IMDModule``, RFDN's ``RFDB``, RLFN's
``RLFB``, SPAN's ``Conv3XC``/``SPAB``; docs/reference.md names the files and commits) so that their
state-dict keys carry over. The code is written here from the papers' definitions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from srnas.arch.blocks import activation, conv


def _scaled(res: torch.Tensor, res_scale: float) -> torch.Tensor:
    return res if res_scale == 1.0 else res * res_scale


# ---- attention -----------------------------------------------------------------------------------


class ContrastChannelAttention(nn.Module):
    """IMDN's contrast-aware channel attention (Hui et al. 2019):
    ``x * sigmoid(W2 relu(W1 (std(x) + mean(x))))``, std and mean over each channel's positions
    (population std, as IMDN's ``stdv_channels``); ``conv_du`` as IMDN's ``CCALayer``."""

    def __init__(self, n_feats: int, reduced_feats: int) -> None:
        super().__init__()
        self.conv_du = nn.Sequential(
            nn.Conv2d(n_feats, reduced_feats, 1), nn.ReLU(inplace=True),
            nn.Conv2d(reduced_feats, n_feats, 1), nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = (x - mean).pow(2).mean(dim=(2, 3), keepdim=True).pow(0.5)
        return x * self.conv_du(std + mean)


class EnhancedSpatialAttention(nn.Module):
    """Enhanced spatial attention (Liu et al. 2020, RFANet; as used by RFDN and RLFN).

    1x1 conv F->f (``conv1``); a 3x3 stride-2 conv without padding (``conv2``), 7x7 stride-3 max
    pool, ``range_convs`` 3x3 convs with ReLU between them (RFDN: ``conv_max``, ``conv3``,
    ``conv3_``; RLFN: ``conv3`` alone), bilinear upsampling back to the input size; plus a 1x1
    conv of the first map (``conv_f``); 1x1 conv f->F (``conv4``) -> sigmoid -> times ``x``.
    Needs inputs of at least 15x15 (`srnas.arch.efficient_blocks.ESA_MIN_SIZE`).
    """

    RANGE_NAMES = {1: ("conv3",), 3: ("conv_max", "conv3", "conv3_")}

    def __init__(self, n_feats: int, esa_feats: int, *, range_convs: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(n_feats, esa_feats, 1)
        self.conv_f = nn.Conv2d(esa_feats, esa_feats, 1)
        self.conv2 = nn.Conv2d(esa_feats, esa_feats, 3, stride=2, padding=0)
        self.range_names = self.RANGE_NAMES[range_convs]
        for name in self.range_names:
            setattr(self, name, nn.Conv2d(esa_feats, esa_feats, 3, padding=1))
        self.conv4 = nn.Conv2d(esa_feats, n_feats, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1_ = self.conv1(x)
        c = F.max_pool2d(self.conv2(c1_), kernel_size=7, stride=3)
        for i, name in enumerate(self.range_names):
            c = getattr(self, name)(c)
            if i < len(self.range_names) - 1:
                c = F.relu(c, inplace=True)
        c = F.interpolate(c, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return x * torch.sigmoid(self.conv4(c + self.conv_f(c1_)))


# ---- re-parameterisable convolution --------------------------------------------------------------


class RepConv(nn.Module):
    """A kxk conv trained as SPAN's ``Conv3XC`` (Wan et al. 2024): on the zero-padded input a
    1x1 expansion F->gF, a valid kxk conv gF->gF and a 1x1 reduction gF->F (``conv.{0,1,2}``),
    plus a 1x1 skip conv of the unpadded input (``sk``); all with biases.

    Every branch is linear and the padding comes before the first conv, so the sum equals one
    'same'-padded kxk conv exactly; `fuse` replaces the branches with it (``eval_conv``, SPAN's
    name). Unfused and fused outputs agree to float rounding.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, gain: int = 2) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.sk = nn.Conv2d(in_ch, out_ch, 1)
        self.conv = nn.Sequential(
            nn.Conv2d(in_ch, in_ch * gain, 1),
            nn.Conv2d(in_ch * gain, out_ch * gain, kernel_size),
            nn.Conv2d(out_ch * gain, out_ch, 1),
        )
        self.eval_conv: nn.Conv2d | None = None

    @property
    def fused(self) -> bool:
        return self.eval_conv is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.eval_conv is not None:
            return self.eval_conv(x)
        p = self.kernel_size // 2
        return self.conv(F.pad(x, (p, p, p, p))) + self.sk(x)

    @torch.no_grad()
    def fused_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) of the single kxk conv equal to the branches."""
        expand, spatial, reduce = (m for m in self.conv if isinstance(m, nn.Conv2d))
        assert expand.bias is not None and spatial.bias is not None and reduce.bias is not None
        assert self.sk.bias is not None
        w1, w3 = expand.weight[:, :, 0, 0], reduce.weight[:, :, 0, 0]
        weight = torch.einsum("oa,abuv,bi->oiuv", w3, spatial.weight, w1)
        # The expansion's bias is constant over the padded map, so the kxk conv sees it everywhere.
        b2 = spatial.weight.sum(dim=(2, 3)) @ expand.bias + spatial.bias
        bias = w3 @ b2 + reduce.bias + self.sk.bias
        p = self.kernel_size // 2
        weight = weight + F.pad(self.sk.weight, (p, p, p, p))
        return weight, bias

    def fuse(self) -> None:
        """Replace the training branches by the equal single conv (in place; idempotent)."""
        if self.eval_conv is not None:
            return
        weight, bias = self.fused_weights()
        fused = conv(weight.shape[1], weight.shape[0], self.kernel_size).to(weight.device, weight.dtype)
        assert fused.bias is not None
        with torch.no_grad():
            fused.weight.copy_(weight)
            fused.bias.copy_(bias)
        self.eval_conv = fused
        del self.sk, self.conv


# ---- blocks --------------------------------------------------------------------------------------


class InfoDistillationBlock(nn.Module):
    """IMDN's information multi-distillation block (IMDB; Hui et al. 2019).

    With ``d = n_feats // 4`` distilled and ``r = n_feats - d`` remaining channels: ``c1`` kxk
    F->F -> act, keep the first d channels and pass the other r on; ``c2``, ``c3`` kxk r->F ->
    act likewise; ``c4`` kxk r->d; the four d-channel pieces concatenated (4d channels) ->
    contrast-aware channel attention (``cca``, reduction 16) -> ``c5`` 1x1 4d->F; plus the input.
    """

    def __init__(self, n_feats: int, kernel_size: int, *, act: str, res_scale: float,
                 distilled: int, reduced: int) -> None:
        super().__init__()
        self.distilled, self.remaining = distilled, n_feats - distilled
        self.c1 = conv(n_feats, n_feats, kernel_size)
        self.c2 = conv(self.remaining, n_feats, kernel_size)
        self.c3 = conv(self.remaining, n_feats, kernel_size)
        self.c4 = conv(self.remaining, distilled, kernel_size)
        self.act = activation(act)
        self.c5 = conv(4 * distilled, n_feats, 1)
        self.cca = ContrastChannelAttention(4 * distilled, reduced)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pieces = []
        h = x
        for c in (self.c1, self.c2, self.c3):
            d, h = torch.split(self.act(c(h)), [self.distilled, self.remaining], dim=1)
            pieces.append(d)
        pieces.append(self.c4(h))
        return x + _scaled(self.c5(self.cca(torch.cat(pieces, dim=1))), self.res_scale)


class FeatureDistillationBlock(nn.Module):
    """RFDN's residual feature distillation block (RFDB; Liu et al. 2020).

    Three stages on the full F channels: a 1x1 distillation conv F->F/2 (``c{i}_d``) -> act, and
    a shallow residual unit act(h + res_scale * conv_kxk(h)) (``c{i}_r``) that feeds the next
    stage; then ``c4`` kxk F->F/2 -> act; the four F/2-channel outputs concatenated -> ``c5`` 1x1
    2F'->F -> enhanced spatial attention (``esa``, F/4 channels, RFDN's three range convs).
    As in RFDN the block has no skip around it: the residuals are inside.
    """

    def __init__(self, n_feats: int, kernel_size: int, *, act: str, res_scale: float,
                 distilled: int, esa_feats: int) -> None:
        super().__init__()
        for i in (1, 2, 3):
            setattr(self, f"c{i}_d", conv(n_feats, distilled, 1))
            setattr(self, f"c{i}_r", conv(n_feats, n_feats, kernel_size))
        self.c4 = conv(n_feats, distilled, kernel_size)
        self.act = activation(act)
        self.c5 = conv(4 * distilled, n_feats, 1)
        self.esa = EnhancedSpatialAttention(n_feats, esa_feats, range_convs=3)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pieces = []
        h = x
        for i in (1, 2, 3):
            pieces.append(self.act(getattr(self, f"c{i}_d")(h)))
            h = self.act(h + _scaled(getattr(self, f"c{i}_r")(h), self.res_scale))
        pieces.append(self.act(self.c4(h)))
        return self.esa(self.c5(torch.cat(pieces, dim=1)))


class LocalFeatureBlock(nn.Module):
    """RLFN's residual local feature block (RLFB; Kong et al. 2022): three kxk convs F->F each
    followed by act (``c{1,2,3}_r``), plus the input (scaled branch), -> ``c5`` 1x1 -> enhanced
    spatial attention (``esa``, RLFN's variant: ``esa_feats`` channels, one range conv). As in
    RLFN there is no skip around the attention."""

    def __init__(self, n_feats: int, kernel_size: int, *, act: str, res_scale: float, esa_feats: int) -> None:
        super().__init__()
        self.c1_r = conv(n_feats, n_feats, kernel_size)
        self.c2_r = conv(n_feats, n_feats, kernel_size)
        self.c3_r = conv(n_feats, n_feats, kernel_size)
        self.c5 = conv(n_feats, n_feats, 1)
        self.esa = EnhancedSpatialAttention(n_feats, esa_feats, range_convs=1)
        self.act = activation(act)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.c3_r(self.act(self.c2_r(self.act(self.c1_r(x))))))
        return self.esa(self.c5(x + _scaled(h, self.res_scale)))


class BlueprintSeparableConv(nn.Sequential):
    """BSRN's blueprint-separable conv BSConv-U (Haase & Amthor 2020; Li et al. 2022): a 1x1
    pointwise conv without bias (``pw``) then a kxk depthwise conv with bias (``dw``); large
    kernels (up to 13) cost k*k per channel, not per channel pair."""

    def __init__(self, n_feats: int, kernel_size: int) -> None:
        super().__init__()
        self.pw = conv(n_feats, n_feats, 1, bias=False)
        self.dw = conv(n_feats, n_feats, kernel_size, groups=n_feats)


class BSConvBlock(nn.Module):
    """Residual block of two blueprint-separable convs: x + res_scale * bs(act(bs(x)))."""

    def __init__(self, n_feats: int, kernel_size: int, *, act: str, res_scale: float) -> None:
        super().__init__()
        self.body = nn.Sequential(BlueprintSeparableConv(n_feats, kernel_size), activation(act),
                                  BlueprintSeparableConv(n_feats, kernel_size))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + _scaled(self.body(x), self.res_scale)


class RepConvBlock(nn.Module):
    """Residual block of two re-parameterisable convs: x + res_scale * rep(act(rep(x)));
    `fuse` turns each into one kxk conv."""

    def __init__(self, n_feats: int, kernel_size: int, *, act: str, res_scale: float) -> None:
        super().__init__()
        self.body = nn.Sequential(RepConv(n_feats, n_feats, kernel_size), activation(act),
                                  RepConv(n_feats, n_feats, kernel_size))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + _scaled(self.body(x), self.res_scale)

    def fuse(self) -> None:
        for m in self.body:
            if isinstance(m, RepConv):
                m.fuse()


class ParameterFreeAttentionBlock(nn.Module):
    """SPAN's block (SPAB; Wan et al. 2024): three re-parameterisable kxk convs with act between
    them (``c{1,2,3}_r``) give ``h``; the attention has no parameters of its own:
    ``(x + res_scale * h) * (sigmoid(h) - 0.5)``."""

    def __init__(self, n_feats: int, kernel_size: int, *, act: str, res_scale: float) -> None:
        super().__init__()
        self.c1_r = RepConv(n_feats, n_feats, kernel_size)
        self.c2_r = RepConv(n_feats, n_feats, kernel_size)
        self.c3_r = RepConv(n_feats, n_feats, kernel_size)
        self.act1 = activation(act)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_first(x)[0]

    def forward_with_first(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The block's output and its first activated conv output (SPAN's trunk reads both)."""
        first = self.act1(self.c1_r(x))
        h = self.c3_r(self.act1(self.c2_r(first)))
        return (x + _scaled(h, self.res_scale)) * (torch.sigmoid(h) - 0.5), first

    def fuse(self) -> None:
        for m in (self.c1_r, self.c2_r, self.c3_r):
            m.fuse()


def fuse(model: nn.Module) -> nn.Module:
    """Turn ``model`` into its inference form in place and return it: every submodule with a
    ``fuse()`` (each `RepConv`, and any block type's module that defines one) is fused."""
    for m in list(model.modules()):
        fuse_method = getattr(m, "fuse", None)
        if callable(fuse_method):
            fuse_method()
    return model
