"""Block types of today's efficient SR nets, registered beside ``res``/``rcab``/``dwsep``
(`srnas.arch.registry`; their layers: `srnas.arch.efficient_layers`). Torch-free, as the registry.

- ``imdb``: IMDN's information multi-distillation block with contrast-aware channel attention.
- ``rfdb``: RFDN's residual feature distillation block with enhanced spatial attention (ESA).
- ``rlfb``: RLFN's residual local feature block with RLFN's lighter ESA.
- ``bsconv``: two blueprint-separable convs (BSRN's BSConv-U: 1x1 then depthwise kxk); the
  large-kernel depthwise option is the kernel size (up to 13).
- ``repconv``: two re-parameterisable kxk convs (SPAN's Conv3XC manner); ``fuse()`` turns each
  into one conv.
- ``spab``: SPAN's block: three re-parameterisable convs and the parameter-free attention.

How ``n_feats`` (F) maps onto blocks that split channels: F is the width of the block's input
and output (the trunk), always. ``imdb`` distils ``d = F // 4`` channels at each of its three
splits and passes ``r = F - d`` on (IMDN at F=64: 16 and 48); its attention and 1x1 fusion see
``4d`` channels (F when 4 divides F). ``rfdb`` distils ``F // 2`` channels at each stage (1x1
convs) while its residual path keeps all F; its ESA works on ``F // 4`` channels. ``rlfb`` keeps
F throughout; its ESA works on 16 channels whatever F (RLFN's constant). Hence the smallest
widths: imdb 4, rfdb 4.

Differences from the base conventions (`srnas.arch.registry`), each stated by the class:
- ``batch_norm``: none of these blocks has a batch-norm variant (none of the source nets uses
  one); `ArchConfig` refuses the combination (``batch_norm_ok = False``).
- ``rfdb``/``rlfb`` end in ESA with no skip around the block, as in RFDN and RLFN; their
  ``res_scale`` scales the residual branches inside. ESA needs LR inputs of at least 15x15
  (``min_size``), and its Mult-Adds and saved elements depend on the height and width, not only
  their product: those blocks need ``size=``.
- ``repconv``/``spab``: ``fusable``; ``params``/``mult_adds`` are the training (unfused) form,
  ``fused_params``/``fused_mult_adds`` the inference form after `fuse`. The training form's
  1x1 expansion runs on the zero-padded map, so its Mult-Adds need ``size=`` too.
- Max-pool indices (int64) are counted as two fp32 elements each in ``saved_elements``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from srnas.arch.block_type import ACTS_SAVING_INPUT, BlockType, _conv_params, register_block

if TYPE_CHECKING:
    from torch import nn


def _need_size(name: str, size: tuple[int, int] | None) -> tuple[int, int]:
    """``size`` as two ints; block types with ``needs_size`` cannot count without it."""
    if size is None:
        raise ValueError(f"block type {name!r}: its costs depend on the feature map's height and width; pass size=(h, w)")
    return int(size[0]), int(size[1])


def _act_extra(act: str) -> int:
    """Feature maps an activation saves beyond its output (silu/gelu keep their input)."""
    return 1 if act in ACTS_SAVING_INPUT else 0


#: ESA's pooled branch (3x3 stride-2 conv without padding, 7x7 stride-3 max pool) needs this.
ESA_MIN_SIZE = 15


class _EfficientBlock(BlockType):
    """Shared refusals of the efficient block types (no batch-norm variant)."""

    batch_norm_ok = False


# ---- distillation --------------------------------------------------------------------------------


@register_block
class IMDB(_EfficientBlock):
    """IMDN's information multi-distillation block; names ``c1``..``c5``, ``cca.conv_du.{0,2}``."""

    name = "imdb"
    min_feats = 4
    #: IMDN's contrast-aware channel attention reduction.
    reduction = 16

    @classmethod
    def widths(cls, n_feats: int) -> tuple[int, int, int]:
        """(distilled d, remaining r, attention bottleneck) channels: F//4, F-d, max(1, 4d//16)."""
        d = n_feats // 4
        return d, n_feats - d, max(1, 4 * d // cls.reduction)

    @classmethod
    def build(cls, n_feats: int, kernel_size: int, *, batch_norm: bool = False, act: str = "relu",
              res_scale: float = 1.0) -> "nn.Module":
        from srnas.arch.efficient_layers import InfoDistillationBlock  # lazy: torch (start-up)

        cls.check(n_feats, batch_norm=batch_norm)
        d, _, red = cls.widths(n_feats)
        return InfoDistillationBlock(n_feats, kernel_size, act=act, res_scale=res_scale, distilled=d, reduced=red)

    @classmethod
    def params(cls, n_feats: int, kernel_size: int, *, batch_norm: bool = False) -> int:
        f, k = n_feats, kernel_size
        d, r, red = cls.widths(f)
        return (_conv_params(f, f, k) + 2 * _conv_params(r, f, k) + _conv_params(r, d, k)
                + _conv_params(4 * d, f, 1) + _conv_params(4 * d, red, 1) + _conv_params(red, 4 * d, 1))

    @classmethod
    def mult_adds(cls, n_feats: int, kernel_size: int, *, pixels: int, size: tuple[int, int] | None = None) -> int:
        f, k = n_feats, kernel_size
        d, r, red = cls.widths(f)
        per_pixel = k * k * (f * f + 2 * r * f + r * d) + 4 * d * f
        return per_pixel * pixels + 2 * 4 * d * red  # the attention's 1x1 convs: once per image

    @classmethod
    def saved_elements(cls, n_feats: int, kernel_size: int, *, batch_norm: bool = False, act: str = "relu",
                       pixels: int, size: tuple[int, int] | None = None) -> int:
        f = n_feats
        d, r, red = cls.widths(f)
        c = 4 * d
        # c1 input; each act's result (F; ReLU-like acts keep their output, silu/gelu their
        # input, and no other saver reads the whole output: the same count); the remaining-
        # channel views that c2, c3, c4 read (3 x r); attention: x - mean (pow's input), x, the
        # product's output (c5's input). Per image: pow(0.5)'s input, the pooled sum (conv_du's
        # input), the ReLU and sigmoid outputs.
        per_pixel = f + 3 * f + 3 * r + 3 * c
        return per_pixel * pixels + 3 * c + red


@register_block
class RFDB(_EfficientBlock):
    """RFDN's residual feature distillation block; names ``c{1,2,3}_d``, ``c{1,2,3}_r``, ``c4``,
    ``c5``, ``esa.{conv1,conv_f,conv2,conv_max,conv3,conv3_,conv4}``."""

    name = "rfdb"
    min_feats = 4
    min_size = ESA_MIN_SIZE
    needs_size = True
    range_convs = 3

    @classmethod
    def widths(cls, n_feats: int) -> tuple[int, int]:
        """(distilled, ESA) channels: F//2, F//4."""
        return n_feats // 2, n_feats // 4

    @classmethod
    def build(cls, n_feats: int, kernel_size: int, *, batch_norm: bool = False, act: str = "relu",
              res_scale: float = 1.0) -> "nn.Module":
        from srnas.arch.efficient_layers import FeatureDistillationBlock  # lazy: torch (start-up)

        cls.check(n_feats, batch_norm=batch_norm)
        dc, e = cls.widths(n_feats)
        return FeatureDistillationBlock(n_feats, kernel_size, act=act, res_scale=res_scale, distilled=dc, esa_feats=e)

    @classmethod
    def params(cls, n_feats: int, kernel_size: int, *, batch_norm: bool = False) -> int:
        f, k = n_feats, kernel_size
        dc, e = cls.widths(f)
        return (3 * (_conv_params(f, dc, 1) + _conv_params(f, f, k)) + _conv_params(f, dc, k)
                + _conv_params(4 * dc, f, 1) + esa_params(f, e, cls.range_convs))

    @classmethod
    def mult_adds(cls, n_feats: int, kernel_size: int, *, pixels: int, size: tuple[int, int] | None = None) -> int:
        f, k = n_feats, kernel_size
        dc, e = cls.widths(f)
        per_pixel = 3 * (f * dc + k * k * f * f) + k * k * f * dc + 4 * dc * f
        return per_pixel * pixels + esa_mult_adds(f, e, cls.range_convs, _need_size(cls.name, size))

    @classmethod
    def saved_elements(cls, n_feats: int, kernel_size: int, *, batch_norm: bool = False, act: str = "relu",
                       pixels: int, size: tuple[int, int] | None = None) -> int:
        f = n_feats
        dc, e = cls.widths(f)
        # Block input; per stage the distilled act's result, the residual act's output (the
        # next stage's input); c4's act result; c5's input (the concatenation). silu/gelu keep
        # their input, which adds a map only where the output is read by a saver too: the three
        # residual acts. Then ESA.
        per_pixel = f + 3 * dc + 3 * f + dc + 4 * dc + 3 * f * _act_extra(act)
        return per_pixel * pixels + esa_saved(f, e, cls.range_convs, _need_size(cls.name, size))


@register_block
class RLFB(_EfficientBlock):
    """RLFN's residual local feature block; names ``c{1,2,3}_r``, ``c5``,
    ``esa.{conv1,conv_f,conv2,conv3,conv4}``."""

    name = "rlfb"
    min_size = ESA_MIN_SIZE
    needs_size = True
    range_convs = 1
    #: RLFN's ESA width, the same for every trunk width.
    esa_feats = 16

    @classmethod
    def build(cls, n_feats: int, kernel_size: int, *, batch_norm: bool = False, act: str = "relu",
              res_scale: float = 1.0) -> "nn.Module":
        from srnas.arch.efficient_layers import LocalFeatureBlock  # lazy: torch (start-up)

        cls.check(n_feats, batch_norm=batch_norm)
        return LocalFeatureBlock(n_feats, kernel_size, act=act, res_scale=res_scale, esa_feats=cls.esa_feats)

    @classmethod
    def params(cls, n_feats: int, kernel_size: int, *, batch_norm: bool = False) -> int:
        f = n_feats
        return 3 * _conv_params(f, f, kernel_size) + _conv_params(f, f, 1) + esa_params(f, cls.esa_feats, cls.range_convs)

    @classmethod
    def mult_adds(cls, n_feats: int, kernel_size: int, *, pixels: int, size: tuple[int, int] | None = None) -> int:
        f, k = n_feats, kernel_size
        return ((3 * k * k + 1) * f * f * pixels
                + esa_mult_adds(f, cls.esa_feats, cls.range_convs, _need_size(cls.name, size)))

    @classmethod
    def saved_elements(cls, n_feats: int, kernel_size: int, *, batch_norm: bool = False, act: str = "relu",
                       pixels: int, size: tuple[int, int] | None = None) -> int:
        f = n_feats
        # Block input, three act results, c5's input (the sum); silu/gelu: the input of the two
        # acts whose output a conv reads (the third's goes to the sum).
        per_pixel = f + 3 * f + f + 2 * f * _act_extra(act)
        return per_pixel * pixels + esa_saved(f, cls.esa_feats, cls.range_convs, _need_size(cls.name, size))


def esa_sizes(size: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """ESA's map sizes: the input's, after the 3x3 stride-2 conv without padding, after the 7x7
    stride-3 max pool. An input under 15x15 leaves nothing to pool: a `ValueError`."""
    h, w = size
    if min(h, w) < ESA_MIN_SIZE:
        raise ValueError(f"enhanced spatial attention needs feature maps of at least {ESA_MIN_SIZE}x{ESA_MIN_SIZE}, "
                         f"not {h}x{w}")
    strided = tuple((n - 3) // 2 + 1 for n in (h, w))
    pooled = tuple((n - 7) // 3 + 1 for n in strided)
    return (h, w), strided, pooled  # type: ignore[return-value]


def esa_params(n_feats: int, esa_feats: int, range_convs: int) -> int:
    f, e = n_feats, esa_feats
    return (_conv_params(f, e, 1) + _conv_params(e, e, 1) + (1 + range_convs) * _conv_params(e, e, 3)
            + _conv_params(e, f, 1))


def esa_mult_adds(n_feats: int, esa_feats: int, range_convs: int, size: tuple[int, int]) -> int:
    (h, w), (h2, w2), (h3, w3) = esa_sizes(size)
    f, e = n_feats, esa_feats
    return (h * w * (f * e + e * e + e * f)          # conv1, conv_f, conv4
            + h2 * w2 * 9 * e * e                    # stride-2 conv
            + range_convs * h3 * w3 * 9 * e * e)     # convs on the pooled map


def esa_saved(n_feats: int, esa_feats: int, range_convs: int, size: tuple[int, int]) -> int:
    (h, w), (h2, w2), (h3, w3) = esa_sizes(size)
    f, e = n_feats, esa_feats
    # Full size: x (the attention product's input; also conv1's), conv1's output (conv2's and
    # conv_f's input), conv4's input (the sum), the sigmoid's output. Strided: the max pool's
    # input. Pooled: the pool's output and its int64 indices (2 elements each); each range
    # conv's input; between range convs the ReLU outputs are those inputs.
    return h * w * (f + e + e + f) + h2 * w2 * e + h3 * w3 * e * (1 + 2) + (range_convs - 1) * h3 * w3 * e


# ---- separable, re-parameterisable, parameter-free attention -------------------------------------


@register_block
class BSConvBlockType(_EfficientBlock):
    """Two blueprint-separable convs with act between, plus the input; names
    ``body.{0,2}.{pw,dw}``. The kernel is the depthwise conv's: 3 to 13 (large-kernel option)."""

    name = "bsconv"

    @classmethod
    def build(cls, n_feats: int, kernel_size: int, *, batch_norm: bool = False, act: str = "relu",
              res_scale: float = 1.0) -> "nn.Module":
        from srnas.arch.efficient_layers import BSConvBlock  # lazy: torch (start-up)

        cls.check(n_feats, batch_norm=batch_norm)
        return BSConvBlock(n_feats, kernel_size, act=act, res_scale=res_scale)

    @classmethod
    def params(cls, n_feats: int, kernel_size: int, *, batch_norm: bool = False) -> int:
        f = n_feats
        return 2 * (_conv_params(f, f, 1, bias=False) + _conv_params(f, f, kernel_size, groups=f))

    @classmethod
    def mult_adds(cls, n_feats: int, kernel_size: int, *, pixels: int, size: tuple[int, int] | None = None) -> int:
        return 2 * (n_feats * n_feats + kernel_size * kernel_size * n_feats) * pixels

    @classmethod
    def saved_elements(cls, n_feats: int, kernel_size: int, *, batch_norm: bool = False, act: str = "relu",
                       pixels: int, size: tuple[int, int] | None = None) -> int:
        # Each pointwise and each depthwise conv's input (the act output is the second pw's
        # input); silu/gelu: the act's input.
        return (4 + _act_extra(act)) * n_feats * pixels


#: SPAN's expansion of the re-parameterisable conv's hidden width (``gain1``).
REP_GAIN = 2


def rep_params(in_ch: int, out_ch: int, k: int, *, fused: bool = False) -> int:
    """Parameters of one `RepConv` in its training form, or fused into one kxk conv."""
    if fused:
        return _conv_params(in_ch, out_ch, k)
    g = REP_GAIN
    return (_conv_params(in_ch, g * in_ch, 1) + _conv_params(g * in_ch, g * out_ch, k)
            + _conv_params(g * out_ch, out_ch, 1) + _conv_params(in_ch, out_ch, 1))


def rep_mult_adds(in_ch: int, out_ch: int, k: int, size: tuple[int, int], *, fused: bool = False) -> int:
    """Mult-Adds of one `RepConv` on an ``h x w`` map; training form: the 1x1 expansion runs on
    the zero-padded map, ``(h + k - 1) x (w + k - 1)``."""
    h, w = size
    if fused:
        return h * w * k * k * in_ch * out_ch
    g = REP_GAIN
    return ((h + k - 1) * (w + k - 1) * g * in_ch * in_ch
            + h * w * (k * k * g * in_ch * g * out_ch + g * out_ch * out_ch + in_ch * out_ch))


def rep_saved(in_ch: int, out_ch: int, k: int, size: tuple[int, int]) -> int:
    """Elements one `RepConv` in its training form saves: its input (the skip's), the padded
    input (the expansion's), the expansion's output (the kxk conv's input) and the reduction's
    input."""
    h, w = size
    g, padded = REP_GAIN, (h + k - 1) * (w + k - 1)
    return h * w * in_ch + padded * in_ch + padded * g * in_ch + h * w * g * out_ch


class _RepBlock(_EfficientBlock):
    """Blocks of re-parameterisable convs: ``convs`` of them, F->F, kxk."""

    fusable = True
    needs_size = True
    convs: ClassVar[int]

    @classmethod
    def params(cls, n_feats: int, kernel_size: int, *, batch_norm: bool = False) -> int:
        return cls.convs * rep_params(n_feats, n_feats, kernel_size)

    @classmethod
    def fused_params(cls, n_feats: int, kernel_size: int, *, batch_norm: bool = False) -> int:
        return cls.convs * rep_params(n_feats, n_feats, kernel_size, fused=True)

    @classmethod
    def mult_adds(cls, n_feats: int, kernel_size: int, *, pixels: int, size: tuple[int, int] | None = None) -> int:
        return cls.convs * rep_mult_adds(n_feats, n_feats, kernel_size, _need_size(cls.name, size))

    @classmethod
    def fused_mult_adds(cls, n_feats: int, kernel_size: int, *, pixels: int,
                        size: tuple[int, int] | None = None) -> int:
        return cls.convs * kernel_size * kernel_size * n_feats * n_feats * pixels

    @classmethod
    def _rep_saved(cls, n_feats: int, kernel_size: int, size: tuple[int, int]) -> int:
        return cls.convs * rep_saved(n_feats, n_feats, kernel_size, size)


@register_block
class RepConvBlockType(_RepBlock):
    """Two re-parameterisable kxk convs with act between, plus the input; names
    ``body.{0,2}.{sk,conv.{0,1,2}}``, fused ``body.{0,2}.eval_conv``."""

    name = "repconv"
    convs = 2

    @classmethod
    def build(cls, n_feats: int, kernel_size: int, *, batch_norm: bool = False, act: str = "relu",
              res_scale: float = 1.0) -> "nn.Module":
        from srnas.arch.efficient_layers import RepConvBlock  # lazy: torch (start-up)

        cls.check(n_feats, batch_norm=batch_norm)
        return RepConvBlock(n_feats, kernel_size, act=act, res_scale=res_scale)

    @classmethod
    def saved_elements(cls, n_feats: int, kernel_size: int, *, batch_norm: bool = False, act: str = "relu",
                       pixels: int, size: tuple[int, int] | None = None) -> int:
        h, w = _need_size(cls.name, size)
        # The second conv's input is the act output; silu/gelu also keep the act's input.
        return cls._rep_saved(n_feats, kernel_size, (h, w)) + _act_extra(act) * n_feats * h * w


@register_block
class SPAB(_RepBlock):
    """SPAN's block; names ``c{1,2,3}_r.{sk,conv.{0,1,2}}``, fused ``c{1,2,3}_r.eval_conv``."""

    name = "spab"
    convs = 3

    @classmethod
    def build(cls, n_feats: int, kernel_size: int, *, batch_norm: bool = False, act: str = "relu",
              res_scale: float = 1.0) -> "nn.Module":
        from srnas.arch.efficient_layers import ParameterFreeAttentionBlock  # lazy: torch (start-up)

        cls.check(n_feats, batch_norm=batch_norm)
        return ParameterFreeAttentionBlock(n_feats, kernel_size, act=act, res_scale=res_scale)

    @classmethod
    def saved_elements(cls, n_feats: int, kernel_size: int, *, batch_norm: bool = False, act: str = "relu",
                       pixels: int, size: tuple[int, int] | None = None) -> int:
        h, w = _need_size(cls.name, size)
        # Convs, silu/gelu's act inputs, then the attention: the sigmoid's output and both
        # operands of the product.
        return (cls._rep_saved(n_feats, kernel_size, (h, w))
                + (2 * _act_extra(act) + 3) * n_feats * h * w)
