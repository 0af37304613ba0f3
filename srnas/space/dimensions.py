"""The searchable fields of a space, each declared once as a `Dimension` in `DIMENSIONS` (its
YAML key, the `ArchConfig` field it sets, the families it applies to, its condition and whether
it can be chosen per block or per stage), with `ParamSpec`, what a space file gives for one.

Sampling, counting, enumeration, membership (`SearchSpace.params_of`) and the flat choices an
NNI model space needs all derive from these declarations: a new searchable field is one more
`Dimension`. Counting and enumerating walk a space's table of (dimension, spec) pairs here.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from srnas.arch.config import FAMILIES, ArchConfig
from srnas.space.choosers import Chooser

KERNEL_MODES = ("global", "stage", "block")


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """What a space file gives for one dimension: its choices and, for per-block dimensions,
    whether one value serves every block (``global``), each of ``stages`` stages or each block."""

    name: str
    choices: tuple[Any, ...]
    per: str = "global"
    stages: int = 1

    @property
    def fixed(self) -> bool:
        return len(self.choices) == 1


def _stage_bounds(n_blocks: int, stages: int) -> list[tuple[int, int]]:
    return [(i * n_blocks // stages, (i + 1) * n_blocks // stages) for i in range(stages)]


Values = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Dimension:
    """One searchable `ArchConfig` field, declared once.

    ``name`` is the YAML key and the Optuna parameter name (per-block dimensions add ``_s{i}``
    or ``_b{i}``); ``field`` the `ArchConfig` field; ``families`` where it applies;
    ``when(values)`` whether it applies given the dimensions drawn before it; ``per_block``:
    one value per residual block (``per: global | stage | block`` in the file); ``keyed``:
    later dimensions depend on its value (counting then branches on it); ``probe``: fields
    that make it apply when a choice is validated alone; ``required``: the file must give it;
    ``condition``: ``when`` in words, for display.
    """

    name: str
    field: str
    families: tuple[str, ...] = FAMILIES
    when: Callable[[Values], bool] | None = None
    per_block: bool = False
    keyed: bool = False
    probe: tuple[tuple[str, Any], ...] = ()
    required: bool = False
    condition: str = ""

    def applies(self, family: str, values: Values) -> bool:
        return family in self.families and (self.when is None or self.when(values))

    # ---- the Optuna parameters of one config --------------------------------------------

    def groups(self, spec: ParamSpec, n_blocks: int) -> list[tuple[str, int]]:
        """(parameter name, blocks it covers) in block order."""
        if not self.per_block or spec.per == "global":
            return [(self.name, n_blocks)]
        if spec.per == "stage":
            return [(f"{self.name}_s{i}", hi - lo)
                    for i, (lo, hi) in enumerate(_stage_bounds(n_blocks, spec.stages)) if hi > lo]
        return [(f"{self.name}_b{i}", 1) for i in range(n_blocks)]

    def suggest(self, trial: Chooser, spec: ParamSpec, n_blocks: int) -> Any:
        choices = list(spec.choices)
        if not self.per_block:
            return trial.suggest_categorical(self.name, choices)
        out: list[Any] = []
        for param, width in self.groups(spec, n_blocks):
            out += [trial.suggest_categorical(param, choices)] * width
        return tuple(out)

    def params_for(self, spec: ParamSpec, value: Any) -> dict[str, Any] | None:
        """The parameters that make `suggest` return ``value``, or None if none can."""
        if not self.per_block:
            same = [c for c in spec.choices if c == value]
            return {self.name: same[0]} if same else None
        values = tuple(value)
        out: dict[str, Any] = {}
        start = 0
        for param, width in self.groups(spec, len(values)):
            part = values[start:start + width]
            start += width
            if len(set(part)) != 1 or part[0] not in spec.choices:
                return None
            out[param] = part[0]
        return out

    def variants(self, spec: ParamSpec, n_blocks: int) -> Iterator[Any]:
        """Every value this dimension can take (a tuple per block for per-block dimensions)."""
        if not self.per_block:
            yield from spec.choices
            return
        groups = self.groups(spec, n_blocks)
        for combo in itertools.product(spec.choices, repeat=len(groups)):
            yield tuple(v for v, (_, width) in zip(combo, groups) for _ in range(width))

    def count(self, spec: ParamSpec, n_blocks: int) -> int:
        return len(spec.choices) ** len(self.groups(spec, n_blocks)) if self.per_block else len(spec.choices)

    def flat_choices(self, spec: ParamSpec, max_blocks: int) -> dict[str, tuple[Any, ...]]:
        """Every parameter this dimension may ask for at its largest extent (NNI has no
        conditionals: a kernel per possible block, per stage, or one)."""
        if not self.per_block or spec.per == "global":
            return {self.name: spec.choices}
        if spec.per == "stage":
            return {f"{self.name}_s{i}": spec.choices for i in range(spec.stages)}
        return {f"{self.name}_b{i}": spec.choices for i in range(max_blocks)}

    def describe(self, spec: ParamSpec) -> str:
        text = ", ".join(str(c) for c in spec.choices)
        if self.per_block and spec.per != "global":
            text += f"  (per {spec.per}{f', {spec.stages} stages' if spec.per == 'stage' else ''})"
        if self.condition:
            text += f"  ({self.condition})"
        return text


def _has_heads(values: Values) -> bool:
    return bool(values.get("head_blocks"))


#: The number of residual blocks: per-block dimensions draw a value per block (or stage) of it.
BLOCKS = Dimension("n_resblocks", "n_resblocks", keyed=True, required=True)

#: The searchable fields, in the order a trial draws them.
DIMENSIONS: tuple[Dimension, ...] = (
    BLOCKS,
    Dimension("n_feats", "n_feats", required=True),
    Dimension("batch_norm", "batch_norm"),
    Dimension("res_scale", "res_scale"),
    Dimension("act", "act"),
    Dimension("global_skip", "global_skip"),
    Dimension("rgb_range", "rgb_range"),
    Dimension("n_colors", "n_colors"),
    Dimension("kernel_size", "kernel_sizes", per_block=True),
    Dimension("block", "block", per_block=True),
    Dimension("trunk", "trunk", families=("efficient",)),
    Dimension("head_blocks", "head_blocks", families=("mdsr",), keyed=True),
    Dimension("head_kernel", "head_kernel", families=("mdsr",), when=_has_heads, probe=(("head_blocks", 1),),
              condition="when head_blocks > 0"),
)
DIMENSIONS_BY_NAME = {d.name: d for d in DIMENSIONS}
#: Every key of ``parameters:`` (and of a preset mapping).
PARAMETERS = tuple(DIMENSIONS_BY_NAME)


def blocks_drawn(values: Values) -> int:
    """The residual blocks of the config being drawn (1 until `BLOCKS` is drawn)."""
    return values.get(BLOCKS.name, 1)


def probe_config(family: str, scales: tuple[int, ...], fields: Mapping[str, Any] | None = None) -> ArchConfig:
    """The smallest config of ``family`` (one block of 8 features) with ``fields`` set: to check
    one value alone or to read a default."""
    return ArchConfig(**{"family": family, "scales": scales, "n_resblocks": 1, "n_feats": 8, **(fields or {})})


@functools.lru_cache(maxsize=64)
def default_value(dim: Dimension, family: str, scales: tuple[int, ...]) -> Any:
    """The value `ArchConfig` gives a field that the space does not search (per block: one)."""
    value = getattr(probe_config(family, scales, dict(dim.probe)), dim.field)
    return value[0] if dim.per_block else value


# ---- walking a space's table: its (dimension, spec) pairs in draw order ----------------------

Table = Sequence[tuple[Dimension, ParamSpec]]


def assignments(table: Table, family: str) -> Iterator[dict[str, Any]]:
    """Every assignment of values to the dimensions that apply, in a fixed order."""
    return _walk(table, family, 0, {})


def count_assignments(table: Table, family: str) -> int:
    """How many `assignments` there are, counted without listing them."""
    return _count(table, family, 0, {})


def _walk(table: Table, family: str, index: int, values: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if index == len(table):
        yield dict(values)
        return
    dim, spec = table[index]
    if not dim.applies(family, values):
        yield from _walk(table, family, index + 1, values)
        return
    for value in dim.variants(spec, blocks_drawn(values)):
        values[dim.name] = value
        yield from _walk(table, family, index + 1, values)
    values.pop(dim.name, None)


def _count(table: Table, family: str, index: int, values: dict[str, Any]) -> int:
    if index == len(table):
        return 1
    dim, spec = table[index]
    if not dim.applies(family, values):
        return _count(table, family, index + 1, values)
    if not dim.keyed:
        return dim.count(spec, blocks_drawn(values)) * _count(table, family, index + 1, values)
    return sum(_count(table, family, index + 1, {**values, dim.name: v}) for v in dim.variants(spec, 1))
