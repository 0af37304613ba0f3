"""Block types of the residual body: a name -> class table (timm's ``block=`` seam).

Each class builds its `nn.Module` and states its own exact costs, so that the network builder,
the cost model (`srnas.arch.cost`) and `ArchConfig` validation read one table and no other
module has a per-block formula. This module is torch-free (``build`` imports torch), so names
validate and costs compute without torch.

Registered types (`block_names()`):

- ``res``: EDSR's residual block (Lim et al. 2017), conv -> act -> conv, the authors'
  state-dict names ``body.{i}.*``; the default.
- ``rcab``: RCAN's residual channel-attention block (Zhang et al. 2018), conv -> act -> conv ->
  channel attention (global average pool -> 1x1 conv F->r -> ReLU -> 1x1 conv r->F -> sigmoid,
  times the features) with reduction ``r = max(1, F // 16)`` (RCAN's ratio 16, at least one
  channel so that narrow nets work).
- ``dwsep``: depthwise-separable residual block, [depthwise kxk (no bias) -> pointwise 1x1] ->
  act -> [depthwise kxk -> pointwise 1x1].
- ``imdb``, ``rfdb``, ``rlfb``, ``bsconv``, ``repconv``, ``spab``: the efficient-SR types
  (IMDN, RFDN, RLFN, BSRN, SPAN), in `srnas.arch.efficient_blocks`, which states how each maps
  ``n_feats`` onto its channel splits and where it departs from the conventions below.

Every block returns ``x + res_scale * body(x)``; with ``batch_norm`` a BN follows each kxk conv
(``dwsep``: each pointwise conv).

Cost conventions (the measured counterparts in `srnas.arch.cost` count the same things):

- ``params``: trainable parameters (BN weight and bias; running statistics are buffers).
- ``mult_adds``: multiply-accumulates of the block's convolutions for ONE image whose feature
  map has ``pixels`` positions; a conv counts out_elements * in_channels/groups * kh * kw.
  Pooling, BN, activations, the attention product and the residual add are not counted. Convs
  on pooled 1x1 tensors count once per image, not per pixel: hence the pixel count argument
  rather than a per-pixel rate. Block types with strided or padded branches also read
  ``size`` (height, width).
- ``saved_elements``: elements per image of the unique tensors autograd keeps for backward in
  training (the block input included; tensors of fewer than 3 dims such as BN's per-channel
  statistics and scalars are not counted, nor are parameters).

A new block type is one `BlockType` subclass decorated with `register_block` (its ``build``
composing layers from `srnas.arch.blocks`); `ArchConfig`, `build_model`, the cost model and the
search-space key ``block`` then accept its name. A type with training-only branches sets
``fusable``, gives its module a ``fuse()`` (or builds from `srnas.arch.efficient_layers.RepConv`)
and states ``fused_params``/``fused_mult_adds`` (docs/blocks.md, "Adding a block type").

>>> block_names()
('res', 'rcab', 'dwsep', 'imdb', 'rfdb', 'rlfb', 'bsconv', 'repconv', 'spab')
>>> get_block("rcab").params(64, 3)
74436
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from srnas.arch.block_type import (  # noqa: F401  (re-exported: the registry's public names)
    ACTS_SAVING_INPUT,
    BLOCKS,
    DEFAULT_BLOCK,
    BlockType,
    _conv_params,
    register_block,
)

if TYPE_CHECKING:
    from torch import nn


def block_names() -> tuple[str, ...]:
    """Names of the registered block types, ``res`` first."""
    return tuple(BLOCKS)


def get_block(name: str) -> type[BlockType]:
    """The block type registered as ``name``; an unknown name is a one-line `ConfigError`."""
    return BLOCKS.get(name)


# ---- the registered types ----------------------------------------------------------------------


@register_block
class ResBlock(BlockType):
    """EDSR's block: conv -> [BN] -> act -> conv -> [BN]; ``body.{0,2}`` (BN: ``{0,1,3,4}``)."""

    name = "res"

    @classmethod
    def build(cls, n_feats: int, kernel_size: int, *, batch_norm: bool = False, act: str = "relu",
              res_scale: float = 1.0) -> "nn.Module":
        # lazy: torch (start-up), also under srnas.arch.blocks
        from torch import nn

        from srnas.arch.blocks import Residual, activation, conv

        layers: list[nn.Module] = []
        for i in range(2):
            layers.append(conv(n_feats, n_feats, kernel_size))
            if batch_norm:
                layers.append(nn.BatchNorm2d(n_feats))
            if i == 0:
                layers.append(activation(act))
        return Residual(nn.Sequential(*layers), res_scale)

    @classmethod
    def params(cls, n_feats: int, kernel_size: int, *, batch_norm: bool = False) -> int:
        return 2 * _conv_params(n_feats, n_feats, kernel_size) + (4 * n_feats if batch_norm else 0)

    @classmethod
    def mult_adds(cls, n_feats: int, kernel_size: int, *, pixels: int, size: tuple[int, int] | None = None) -> int:
        return 2 * kernel_size * kernel_size * n_feats * n_feats * pixels

    @classmethod
    def saved_elements(cls, n_feats: int, kernel_size: int, *, batch_norm: bool = False,
                       act: str = "relu", pixels: int, size: tuple[int, int] | None = None) -> int:
        # conv1 input, act output (= conv2 input); with BN the two conv outputs (BN inputs);
        # silu/gelu keep their input too.
        maps = 2 + 2 * batch_norm + (act in ACTS_SAVING_INPUT)
        return maps * n_feats * pixels


@register_block
class RCAB(BlockType):
    """RCAN's residual channel-attention block: conv -> [BN] -> act -> conv -> [BN] -> CA.

    State-dict names follow RCAN's code: ``body.{0,2}`` convs, ``body.3.conv_du.{0,2}`` the
    attention's 1x1 convs (BN shifts the indices as in ``res``).
    """

    name = "rcab"
    #: RCAN's channel reduction ratio.
    reduction = 16

    @classmethod
    def reduced_feats(cls, n_feats: int) -> int:
        """Channels of the attention bottleneck: ``max(1, n_feats // 16)``."""
        return max(1, n_feats // cls.reduction)

    @classmethod
    def build(cls, n_feats: int, kernel_size: int, *, batch_norm: bool = False, act: str = "relu",
              res_scale: float = 1.0) -> "nn.Module":
        # lazy: torch (start-up), also under srnas.arch.blocks
        from torch import nn

        from srnas.arch.blocks import ChannelAttention, Residual, activation, conv

        layers: list[nn.Module] = []
        for i in range(2):
            layers.append(conv(n_feats, n_feats, kernel_size))
            if batch_norm:
                layers.append(nn.BatchNorm2d(n_feats))
            if i == 0:
                layers.append(activation(act))
        layers.append(ChannelAttention(n_feats, cls.reduced_feats(n_feats)))
        return Residual(nn.Sequential(*layers), res_scale)

    @classmethod
    def params(cls, n_feats: int, kernel_size: int, *, batch_norm: bool = False) -> int:
        r = cls.reduced_feats(n_feats)
        return (ResBlock.params(n_feats, kernel_size, batch_norm=batch_norm)
                + _conv_params(n_feats, r, 1) + _conv_params(r, n_feats, 1))

    @classmethod
    def mult_adds(cls, n_feats: int, kernel_size: int, *, pixels: int, size: tuple[int, int] | None = None) -> int:
        # The attention's two 1x1 convs run once per image on the pooled 1x1 map.
        return ResBlock.mult_adds(n_feats, kernel_size, pixels=pixels) + 2 * n_feats * cls.reduced_feats(n_feats)

    @classmethod
    def saved_elements(cls, n_feats: int, kernel_size: int, *, batch_norm: bool = False,
                       act: str = "relu", pixels: int, size: tuple[int, int] | None = None) -> int:
        # As ``res`` plus the attention product's feature input (the last conv's or BN's
        # output); per image the pooled map, the ReLU output and the sigmoid output.
        r = cls.reduced_feats(n_feats)
        per_pixel = ResBlock.saved_elements(n_feats, kernel_size, batch_norm=batch_norm, act=act, pixels=1) + n_feats
        return per_pixel * pixels + 2 * n_feats + r


@register_block
class DWSepBlock(BlockType):
    """Depthwise-separable residual block: [dw kxk -> pw 1x1 -> [BN]] -> act -> [dw -> pw -> [BN]].

    The depthwise convs carry no bias (the pointwise conv's bias absorbs it).
    """

    name = "dwsep"

    @classmethod
    def build(cls, n_feats: int, kernel_size: int, *, batch_norm: bool = False, act: str = "relu",
              res_scale: float = 1.0) -> "nn.Module":
        # lazy: torch (start-up), also under srnas.arch.blocks
        from torch import nn

        from srnas.arch.blocks import Residual, activation, conv

        layers: list[nn.Module] = []
        for i in range(2):
            layers.append(conv(n_feats, n_feats, kernel_size, bias=False, groups=n_feats))
            layers.append(conv(n_feats, n_feats, 1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(n_feats))
            if i == 0:
                layers.append(activation(act))
        return Residual(nn.Sequential(*layers), res_scale)

    @classmethod
    def params(cls, n_feats: int, kernel_size: int, *, batch_norm: bool = False) -> int:
        half = (_conv_params(n_feats, n_feats, kernel_size, groups=n_feats, bias=False)
                + _conv_params(n_feats, n_feats, 1))
        return 2 * half + (4 * n_feats if batch_norm else 0)

    @classmethod
    def mult_adds(cls, n_feats: int, kernel_size: int, *, pixels: int, size: tuple[int, int] | None = None) -> int:
        return 2 * (kernel_size * kernel_size * n_feats + n_feats * n_feats) * pixels

    @classmethod
    def saved_elements(cls, n_feats: int, kernel_size: int, *, batch_norm: bool = False,
                       act: str = "relu", pixels: int, size: tuple[int, int] | None = None) -> int:
        # Both depthwise inputs and both pointwise inputs; with BN the pointwise outputs;
        # silu/gelu keep their input too.
        maps = 4 + 2 * batch_norm + (act in ACTS_SAVING_INPUT)
        return maps * n_feats * pixels


# The efficient-SR types register themselves on import (their module builds on srnas.arch.block_type).
from srnas.arch import efficient_blocks as _efficient_blocks  # noqa: E402,F401
