"""The base of the block-type table: `BlockType` (a block that builds itself and states its exact
costs), the table `BLOCKS` and its decorator `register_block`. Below both `srnas.arch.registry`
(the lookups and the EDSR-era types) and `srnas.arch.efficient_blocks` (the efficient-SR types),
so that each registers its types without importing the other; the cost conventions are in
`srnas.arch.registry`'s docstring. Torch-free.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from srnas.errors import ConfigError
from srnas.registry import Registry

if TYPE_CHECKING:
    from torch import nn


#: The block type of every EDSR/MDSR preset (and of MDSR's pre-processing heads).
DEFAULT_BLOCK = "res"
#: Activations whose backward needs their input (ReLU and LeakyReLU keep their output instead,
#: which is the next conv's input anyway): one more saved feature map per activation.
ACTS_SAVING_INPUT = frozenset({"silu", "gelu"})


class BlockType:
    """A residual block type: builds its module and states its exact costs (see the module doc).

    Subclasses set ``name`` and implement the four classmethods below; every method takes the
    same block hyper-parameters as `build` (``n_feats``, ``kernel_size``, keywords). ``size``
    is the feature map's (height, width), whose product is ``pixels``: block types whose costs
    depend on more than the product (strided or pooled branches, padded maps) need it.

    Class attributes a type may change: ``min_feats`` (narrowest trunk it can split),
    ``min_size`` (smallest LR height and width it runs on), ``needs_size`` (its Mult-Adds and
    saved elements read ``size``, not only ``pixels``), ``batch_norm_ok`` (whether it has a
    batch-norm variant) and ``fusable`` (training branches that `fuse` merges; then
    ``fused_params``/``fused_mult_adds`` give the inference form's costs).
    """

    name: ClassVar[str]
    min_feats: ClassVar[int] = 1
    min_size: ClassVar[int] = 1
    needs_size: ClassVar[bool] = False
    batch_norm_ok: ClassVar[bool] = True
    fusable: ClassVar[bool] = False

    @classmethod
    def build(cls, n_feats: int, kernel_size: int, *, batch_norm: bool = False, act: str = "relu",
              res_scale: float = 1.0) -> "nn.Module":
        """The block as an `nn.Module` mapping (N, F, H, W) to (N, F, H, W)."""
        raise NotImplementedError

    @classmethod
    def params(cls, n_feats: int, kernel_size: int, *, batch_norm: bool = False) -> int:
        """Trainable parameters (for a fusable type: of the training form)."""
        raise NotImplementedError

    @classmethod
    def mult_adds(cls, n_feats: int, kernel_size: int, *, pixels: int, size: tuple[int, int] | None = None) -> int:
        """Multiply-accumulates of one forward pass of one image of ``pixels`` positions."""
        raise NotImplementedError

    @classmethod
    def saved_elements(cls, n_feats: int, kernel_size: int, *, batch_norm: bool = False,
                       act: str = "relu", pixels: int, size: tuple[int, int] | None = None) -> int:
        """Elements autograd saves for backward, per image of ``pixels`` positions."""
        raise NotImplementedError

    @classmethod
    def fused_params(cls, n_feats: int, kernel_size: int, *, batch_norm: bool = False) -> int:
        """Parameters of the inference form (after `srnas.arch.fuse`); unfusable types: `params`."""
        return cls.params(n_feats, kernel_size, batch_norm=batch_norm)

    @classmethod
    def fused_mult_adds(cls, n_feats: int, kernel_size: int, *, pixels: int,
                        size: tuple[int, int] | None = None) -> int:
        """Mult-Adds of the inference form; unfusable types: `mult_adds`."""
        return cls.mult_adds(n_feats, kernel_size, pixels=pixels, size=size)

    @classmethod
    def check(cls, n_feats: int, *, batch_norm: bool = False) -> None:
        """A one-line `ConfigError` when the type cannot take these hyper-parameters."""
        if n_feats < cls.min_feats:
            raise ConfigError(f"block type {cls.name!r} needs n_feats >= {cls.min_feats}, not {n_feats}")
        if batch_norm and not cls.batch_norm_ok:
            raise ConfigError(f"block type {cls.name!r} has no batch-norm variant; allowed: batch_norm false")


#: Registered block types, name -> class, in registration order.
BLOCKS: Registry[type[BlockType]] = Registry("block type", sep=" | ")

#: What every block type states itself; a fusable type also states its inference form's costs.
_OWN_METHODS = ("build", "params", "mult_adds", "saved_elements")
_FUSED_METHODS = ("fused_params", "fused_mult_adds")


def register_block(cls: type[BlockType]) -> type[BlockType]:
    """Class decorator: add a `BlockType` subclass to `BLOCKS` under its ``name``, once it states
    its module and its costs (the classmethods it must override: a type that inherited the
    base's would fail only when a search first costs it)."""
    if not (isinstance(cls, type) and issubclass(cls, BlockType)):
        raise TypeError(f"register_block: {cls!r} is not a BlockType subclass")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"register_block: {cls.__name__} needs a non-empty string `name`")
    needed = _OWN_METHODS + (_FUSED_METHODS if cls.fusable else ())
    missing = [m for m in needed if getattr(cls, m).__func__ is getattr(BlockType, m).__func__]
    if missing:
        raise TypeError(f"register_block: {cls.__name__} ({name!r}) does not override {', '.join(missing)}"
                        + (" (a fusable type states its fused costs too)" if set(missing) & set(_FUSED_METHODS) else ""))
    try:
        return BLOCKS.register(name, cls)
    except ValueError as exc:
        raise ValueError(f"register_block: {exc}") from None


def _conv_params(in_ch: int, out_ch: int, k: int, *, groups: int = 1, bias: bool = True) -> int:
    return out_ch * (in_ch // groups) * k * k + (out_ch if bias else 0)
