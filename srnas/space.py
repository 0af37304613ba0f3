"""Search spaces: YAML files that parameterise EDSR/MDSR/efficient configs.

Format (see README, "Search-space files")::

    name: tiny
    description: free text
    family: edsr                 # edsr | mdsr | efficient
    scales: [2]
    proxy: tiny                  # default proxy fidelity of a search in this space (optional)
    parameters:
      n_resblocks: [1, 2, 3, 4]  # a list: one of these values
      n_feats: {low: 8, high: 32, step: 8}   # an integer range
      kernel_size: {choices: [3, 5], per: block}   # per: global | stage (with stages: N) | block
      block: [res, rcab]         # block types (srnas.arch.registry.block_names()); per: as kernels
      trunk: [imdn, rlfn, span]  # efficient only: how the blocks' features are joined
      batch_norm: false          # a scalar: fixed
      res_scale: [0.1, 0.5, 1.0]
      global_skip: [none, bicubic]
      head_blocks: [0, 1, 2]     # mdsr only; head_kernel is sampled only when head_blocks > 0
      head_kernel: [3, 5]
    constraints: {max_params: 1400000, max_mult_adds: 1.0e11, max_activation_mb: 2000}
    presets: [edsr-baseline, {name: small, n_resblocks: 4, n_feats: 32}]   # enqueued first when inside the space

Every searchable field is declared once, as a `Dimension` in `DIMENSIONS` (its YAML key, the
`ArchConfig` field it sets, the families it applies to, its condition and whether it can be
chosen per block or per stage). Sampling, counting, enumeration, membership (`params_of`) and
the flat choices an NNI model space needs all derive from those declarations: a new searchable
field is one more `Dimension`.

`SearchSpace.sample(trial)` draws a config from anything with Optuna's ``suggest_categorical``
(an Optuna trial, or `RandomChooser` for plain random sampling); conditional parameters are
only drawn when they apply, and only parameters the space file declares are drawn (the others
keep `ArchConfig`'s defaults).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from srnas.arch.config import FAMILIES, ArchConfig
from srnas.arch.cost import cost_of, count_mult_adds, count_params
from srnas.errors import ConfigError
from srnas.yamlio import load_yaml_file

TOP_KEYS = ("name", "description", "family", "scales", "proxy", "parameters", "constraints", "presets")
KERNEL_MODES = ("global", "stage", "block")
#: The batch and LR patch at which ``max_activation_mb`` is evaluated (the paper's schedule).
ACTIVATION_BATCH, ACTIVATION_PATCH = 16, 48
ENUMERATION_LIMIT = 200_000
#: Most values one parameter may offer (an integer range is sized before any list is built).
MAX_CHOICES = 4096

SPACES_DIR = Path(__file__).resolve().parent / "spaces"


class Chooser(Protocol):
    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...


class RandomChooser:
    """Uniform random choices from a seeded RNG (stands in for an Optuna trial)."""

    def __init__(self, seed: int | None = None) -> None:
        self.rng = random.Random(seed)
        self.params: dict[str, Any] = {}

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        value = self.rng.choice(list(choices))
        self.params[name] = value
        return value


class FixedChooser:
    """Replays a dict of parameter values (raises KeyError naming a missing parameter)."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params = dict(params)

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        value = self.params[name]
        if value not in choices:
            raise ValueError(f"{name}={value!r} not among {list(choices)}")
        return value


# ---- costs and constraints ----------------------------------------------------------------

#: Constraint key -> the `ConfigCosts` field it limits.
CONSTRAINTS = {"max_params": "params", "max_mult_adds": "mult_adds", "max_activation_mb": "activation_mb"}


@dataclasses.dataclass(frozen=True)
class ConfigCosts:
    """What a search records and constrains for one config, computed once: trainable
    parameters (all scales), Mult-Adds at the worst scale (720p convention) and training
    activation memory at the worst scale (batch 16, LR patch 48, fp32). Parameters and
    Mult-Adds are those of the inference form, re-parameterisable blocks fused (what papers and
    the NTIRE challenge count; the same numbers for every net without such blocks); activation
    memory is the training form's."""

    params: int
    mult_adds: int
    activation_mb: float

    @classmethod
    def of(cls, cfg: ArchConfig) -> "ConfigCosts":
        per_scale = [cost_of(cfg, scale=s, batch=ACTIVATION_BATCH, patch=ACTIVATION_PATCH) for s in cfg.scales]
        return cls(params=count_params(cfg, fused=True),
                   mult_adds=max(count_mult_adds(cfg, scale=s, fused=True) for s in cfg.scales),
                   activation_mb=max(c.activation_bytes for c in per_scale) / 2**20)

    def limited(self, constraint: str) -> float:
        """The measured value that constraint ``constraint`` (e.g. ``max_params``) limits."""
        return float(getattr(self, CONSTRAINTS[constraint]))

    def to_attrs(self) -> dict[str, Any]:
        """The trial user attributes (``params``, ``mult_adds``, ``activation_mb``)."""
        return {"params": self.params, "mult_adds": self.mult_adds, "activation_mb": round(self.activation_mb, 2)}


# ---- parameter specs and dimensions ------------------------------------------------------


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


#: The searchable fields, in the order a trial draws them.
DIMENSIONS: tuple[Dimension, ...] = (
    Dimension("n_resblocks", "n_resblocks", keyed=True, required=True),
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


@functools.lru_cache(maxsize=64)
def default_value(dim: Dimension, family: str, scales: tuple[int, ...]) -> Any:
    """The value `ArchConfig` gives a field that the space does not search (per block: one)."""
    cfg = ArchConfig(family=family, scales=scales, n_resblocks=1, n_feats=8, **dict(dim.probe))
    value = getattr(cfg, dim.field)
    return value[0] if dim.per_block else value


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """A validated search space. Build with `SearchSpace.load(name_or_path)` or `from_dict`."""

    name: str
    family: str
    scales: tuple[int, ...]
    params: dict[str, ParamSpec]
    constraints: dict[str, float]
    presets: tuple[Any, ...] = ()
    description: str = ""
    proxy: str | None = None
    source: str = "<dict>"

    # ---- loading ------------------------------------------------------------------------

    @classmethod
    def load(cls, name_or_path: str | Path) -> "SearchSpace":
        """Load a shipped space by name (`available_spaces`: ``tiny``, ``edsr``, ``efficient``, ...) or a file."""
        p = Path(name_or_path)
        if not p.is_file():
            shipped = SPACES_DIR / f"{name_or_path}.yaml"
            if shipped.is_file() and p.suffix == "":
                p = shipped
            elif p.suffix in (".yaml", ".yml") or "/" in str(name_or_path):
                raise ConfigError(f"{p}: search-space file not found")
            else:
                raise ConfigError(f"unknown search space {str(name_or_path)!r}; shipped spaces: "
                                  f"{', '.join(available_spaces())} (or give a YAML file)")
        # Bounded YAML: no anchors/aliases, size and depth capped, errors with FILE:LINE.
        data, lines = load_yaml_file(p, what="search-space file")
        return cls.from_dict(data, source=str(p), lines=lines)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<dict>", lines: Mapping[str, int] | None = None) -> "SearchSpace":
        lines = lines or {}

        def err(key: str, msg: str) -> ConfigError:
            line = lines.get(key)
            where = f"{source}:{line}" if line else source
            return ConfigError(f"{where}: {key}: {msg}")

        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: a search space must be a YAML mapping with keys {', '.join(TOP_KEYS)}")
        for key in data:
            if key not in TOP_KEYS:
                raise err(str(key), f"unknown key; allowed: {', '.join(TOP_KEYS)}")
        family = data.get("family", "edsr")
        if family not in FAMILIES:
            raise err("family", f"invalid value {family!r}; allowed: {' | '.join(FAMILIES)}")
        scales_raw = data.get("scales", [2])
        scales_list = scales_raw if isinstance(scales_raw, list) else [scales_raw]
        try:
            scales = ArchConfig(family=family, scales=tuple(scales_list), n_resblocks=1, n_feats=8).scales
        except ConfigError as exc:
            raise err("scales", str(exc).split(": ", 1)[1]) from None
        params_raw = data.get("parameters")
        if not isinstance(params_raw, Mapping) or not params_raw:
            raise err("parameters", "missing or empty; give a mapping of parameter -> value(s)")

        specs: dict[str, ParamSpec] = {}
        for key, raw in params_raw.items():
            path = f"parameters.{key}"
            dim = DIMENSIONS_BY_NAME.get(key)
            if dim is None:
                raise err(path, f"unknown parameter; allowed: {', '.join(PARAMETERS)}")
            if family not in dim.families:
                raise err(path, f"applies to family {' | '.join(repr(f) for f in dim.families)} only")
            spec = _parse_param(dim, raw, functools.partial(err, path))
            for choice in spec.choices:
                try:
                    ArchConfig(**{"family": family, "scales": scales, "n_resblocks": 1, "n_feats": 8,
                                  **dict(dim.probe), dim.field: choice})
                except ConfigError as exc:
                    raise err(path, str(exc).split(": ", 1)[1]) from None
            specs[key] = spec
        for dim in DIMENSIONS:
            if dim.required and dim.name not in specs:
                raise err("parameters", f"missing required parameter {dim.name!r}")

        constraints_raw = data.get("constraints") or {}
        if not isinstance(constraints_raw, Mapping):
            raise err("constraints", f"expected a mapping with keys {', '.join(CONSTRAINTS)}")
        constraints: dict[str, float] = {}
        for key, value in constraints_raw.items():
            if key not in CONSTRAINTS:
                raise err(f"constraints.{key}", f"unknown constraint; allowed: {', '.join(CONSTRAINTS)}")
            if value is None:
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = float("nan")
            if isinstance(value, bool) or not number > 0 or not math.isfinite(number):
                raise err(f"constraints.{key}", f"invalid value {value!r}; allowed: a positive number")
            constraints[key] = number

        presets_raw = data.get("presets") or []
        if not isinstance(presets_raw, list):
            raise err("presets", "expected a list of preset names or parameter mappings")
        name = str(data.get("name") or Path(source).stem)
        space = cls(name=name, family=family, scales=scales, params=specs,
                    constraints=constraints, presets=tuple(presets_raw),
                    description=str(data.get("description") or ""),
                    proxy=(str(data["proxy"]) if data.get("proxy") is not None else None), source=source)
        for i, preset in enumerate(presets_raw):
            if not isinstance(preset, (str, Mapping)):
                raise err("presets", f"entry {i}: expected a preset name or a mapping, got {preset!r}")
            try:
                space.preset_params(preset)
            except ConfigError as exc:
                raise err("presets", f"entry {i}: {exc}") from None
        return space

    # ---- identity -----------------------------------------------------------------------

    def canonical(self) -> dict[str, Any]:
        """What decides which configs this space holds and which are feasible, in a plain form
        that compares equal exactly when two spaces search the same thing (name, description,
        presets and key order excluded)."""
        params = {}
        for dim, spec in self.dimensions():
            if dim.name in self.params:
                entry: dict[str, Any] = {"choices": list(spec.choices)}
                if dim.per_block and spec.per != "global":
                    entry["per"] = spec.per
                    if spec.per == "stage":
                        entry["stages"] = spec.stages
                params[dim.name] = entry
        return {"family": self.family, "scales": list(self.scales), "parameters": params,
                "constraints": {k: self.constraints[k] for k in sorted(self.constraints)}}

    # ---- dimensions ---------------------------------------------------------------------

    def dimensions(self) -> list[tuple[Dimension, ParamSpec]]:
        """The declared dimensions of this space's family with their specs, in draw order;
        a dimension the file does not give is fixed at `ArchConfig`'s default."""
        out = []
        for dim in DIMENSIONS:
            if self.family not in dim.families:
                continue
            spec = self.params.get(dim.name)
            if spec is None:
                spec = ParamSpec(dim.name, (default_value(dim, self.family, self.scales),))
            out.append((dim, spec))
        return out

    def _config(self, values: Values) -> ArchConfig:
        kw = {dim.field: values[dim.name] for dim, _ in self.dimensions() if dim.name in values}
        return ArchConfig(family=self.family, scales=self.scales, **kw)

    # ---- sampling -----------------------------------------------------------------------

    def sample(self, trial: Chooser) -> ArchConfig:
        """Draw one config; the declared parameters are suggested in `DIMENSIONS` order,
        conditionals only when they apply (per-block values only for existing blocks,
        head_kernel only with heads)."""
        values: dict[str, Any] = {}
        for dim, spec in self.dimensions():
            if not dim.applies(self.family, values):
                continue
            if dim.name in self.params:
                values[dim.name] = dim.suggest(trial, spec, values.get("n_resblocks", 1))
            else:
                values[dim.name] = spec.choices[0]
        return self._config(values)

    def sample_random(self, n: int, *, seed: int = 0) -> list[ArchConfig]:
        """``n`` configs drawn uniformly (each parameter independently) with a fixed seed."""
        chooser = RandomChooser(seed)
        return [self.sample(chooser) for _ in range(n)]

    # ---- constraints --------------------------------------------------------------------

    @staticmethod
    def costs(cfg: ArchConfig) -> ConfigCosts:
        """The costs that constraints limit (compute once per config and pass them on)."""
        return ConfigCosts.of(cfg)

    def violations(self, cfg: ArchConfig | ConfigCosts) -> dict[str, float]:
        """For each constraint, measured minus limit (feasible when <= 0), as Optuna expects."""
        costs = cfg if isinstance(cfg, ConfigCosts) else ConfigCosts.of(cfg)
        return {key: costs.limited(key) - limit for key, limit in self.constraints.items()}

    def satisfies(self, cfg: ArchConfig | ConfigCosts) -> bool:
        return all(v <= 0 for v in self.violations(cfg).values())

    def constrained(self, **limits: float | None) -> "SearchSpace":
        """A copy with extra or tighter constraints (``max_params=...``, ``max_mult_adds=...``)."""
        merged = dict(self.constraints)
        for key, value in limits.items():
            if key not in CONSTRAINTS:
                raise ConfigError(f"unknown constraint {key!r}; allowed: {', '.join(CONSTRAINTS)}")
            if value is not None:
                merged[key] = min(float(value), merged.get(key, math.inf))
        return dataclasses.replace(self, constraints=merged)

    # ---- membership, presets ------------------------------------------------------------

    def params_of(self, cfg: ArchConfig) -> dict[str, Any] | None:
        """The parameter assignment that samples exactly ``cfg``, or None if it is not in the space."""
        if cfg.family != self.family or cfg.scales != self.scales:
            return None
        out: dict[str, Any] = {}
        values: dict[str, Any] = {}
        for dim, spec in self.dimensions():
            if not dim.applies(self.family, values):
                continue
            value = getattr(cfg, dim.field)
            values[dim.name] = value
            if dim.name not in self.params:
                if (set(value) if dim.per_block else {value}) != {spec.choices[0]}:
                    return None
                continue
            params = dim.params_for(spec, value)
            if params is None:
                return None
            out.update(params)
        try:
            if self.sample(FixedChooser(out)) != cfg:
                return None
        except (KeyError, ValueError):
            return None
        return out

    def preset_params(self, preset: Any) -> dict[str, Any]:
        """Parameter assignment of a ``presets:`` entry (a preset name or a mapping of values)."""
        if isinstance(preset, str):
            from srnas.arch.presets import preset_config

            cfg = preset_config(preset) if self.family == "mdsr" else preset_config(preset, scale=self.scales[0])
        else:
            unknown = [k for k in preset if k not in DIMENSIONS_BY_NAME and k != "name"]
            if unknown:
                raise ConfigError(f"unknown parameter {unknown[0]!r}; allowed: name, {', '.join(PARAMETERS)}")
            if "name" in preset and (not isinstance(preset["name"], str) or not preset["name"].strip()):
                raise ConfigError(f"preset name must be a non-empty string, got {preset['name']!r}")
            kw = {DIMENSIONS_BY_NAME[k].field: v for k, v in preset.items() if k != "name"}
            cfg = ArchConfig(family=self.family, scales=self.scales, **kw)
        params = self.params_of(cfg)
        if params is None:
            raise ConfigError(f"preset {preset!r} ({cfg.describe()}) is not inside space {self.name!r}")
        return params

    def preset_assignments(self) -> list[tuple[str, dict[str, Any]]]:
        """(label, params) of the space's presets (validated at load to lie inside the space): a
        preset's name, a mapping's ``name``, else ``<space> preset <i>``."""
        return [(p if isinstance(p, str) else str(p.get("name") or f"{self.name} preset {i + 1}"),
                 self.preset_params(p)) for i, p in enumerate(self.presets)]

    # ---- NNI: the same dimensions without conditionals ----------------------------------

    def flat_choices(self) -> dict[str, tuple[Any, ...]]:
        """Every parameter `sample` may ask for, with its choices, at its largest extent.

        Conditional parameters are listed whatever their condition (a value per possible
        block or stage, ``head_kernel`` whenever heads are possible); only declared
        parameters appear. This is the NNI model space (NNI spaces have no conditionals).
        """
        max_blocks = max(self.dimension_spec("n_resblocks").choices)
        out: dict[str, tuple[Any, ...]] = {}
        for dim, spec in self.dimensions():
            if dim.name in self.params:
                out.update(dim.flat_choices(spec, max_blocks))
        return out

    def searchable_choices(self) -> dict[str, tuple[Any, ...]]:
        """The `flat_choices` with more than one choice (the mutables of an NNI model space)."""
        return {name: choices for name, choices in self.flat_choices().items() if len(choices) > 1}

    def config_from_flat(self, sample: Mapping[str, Any]) -> ArchConfig:
        """The config a flat sample (`flat_choices` names) stands for; unused conditional
        values are ignored and fixed parameters filled in.

        >>> space = SearchSpace.load("tiny")
        >>> cfg = space.config_from_flat({"n_resblocks": 2, "n_feats": 8, "res_scale": 1.0,
        ...     "global_skip": "bicubic", "kernel_size_b0": 5, "kernel_size_b1": 3,
        ...     "kernel_size_b2": 5, "kernel_size_b3": 5})
        >>> cfg.kernel_sizes
        (5, 3)
        """
        values = {name: choices[0] for name, choices in self.flat_choices().items() if len(choices) == 1}
        values.update(sample)
        try:
            return self.sample(FixedChooser(values))
        except KeyError as exc:
            raise ConfigError(f"sample {dict(sample)} lacks parameter {exc.args[0]!r} of space {self.name!r}") from None

    def dimension_spec(self, name: str) -> ParamSpec:
        """The spec of dimension ``name`` (declared, or fixed at the default)."""
        for dim, spec in self.dimensions():
            if dim.name == name:
                return spec
        raise KeyError(name)

    # ---- counting and enumeration -------------------------------------------------------

    def _walk(self, index: int, values: dict[str, Any]) -> Iterator[dict[str, Any]]:
        dims = self.dimensions()
        if index == len(dims):
            yield dict(values)
            return
        dim, spec = dims[index]
        if not dim.applies(self.family, values):
            yield from self._walk(index + 1, values)
            return
        for value in dim.variants(spec, values.get("n_resblocks", 1)):
            values[dim.name] = value
            yield from self._walk(index + 1, values)
        values.pop(dim.name, None)

    def _count(self, index: int, values: dict[str, Any]) -> int:
        dims = self.dimensions()
        if index == len(dims):
            return 1
        dim, spec = dims[index]
        if not dim.applies(self.family, values):
            return self._count(index + 1, values)
        if not dim.keyed:
            return dim.count(spec, values.get("n_resblocks", 1)) * self._count(index + 1, values)
        return sum(self._count(index + 1, {**values, dim.name: v}) for v in dim.variants(spec, 1))

    def size(self) -> int:
        """Number of distinct configs in the space (constraints ignored)."""
        return self._count(0, {})

    def enumerate(self, *, limit: int | None = None) -> Iterator[ArchConfig]:
        """Every config of the space (constraints ignored), in a fixed order."""
        for count, values in enumerate(self._walk(0, {}), 1):
            yield self._config(values)
            if limit is not None and count >= limit:
                return

    def summary(self, *, samples: int = 2000, seed: int = 0) -> dict[str, Any]:
        """Size, feasible count, and min/max params and Mult-Adds (x the first scale's 720p).

        Exact when the space has at most ENUMERATION_LIMIT configs; otherwise estimated from
        ``samples`` random configs plus the extreme configs (``exact`` says which)."""
        size = self.size()
        exact = size <= ENUMERATION_LIMIT
        if exact:
            configs: Iterator[ArchConfig] | list[ArchConfig] = self.enumerate()
        else:
            configs = self.sample_random(samples, seed=seed) + self.extremes()
        n_feasible = n_seen = 0
        lo_p = lo_m = math.inf
        hi_p = hi_m = 0
        for cfg in configs:
            n_seen += 1
            costs = ConfigCosts.of(cfg)
            if not self.satisfies(costs):
                continue
            n_feasible += 1
            p, m = costs.params, count_mult_adds(cfg, fused=True)
            lo_p, hi_p, lo_m, hi_m = min(lo_p, p), max(hi_p, p), min(lo_m, m), max(hi_m, m)
        feasible = n_feasible if exact else round(size * n_feasible / max(n_seen, 1))
        return {
            "name": self.name, "family": self.family, "scales": list(self.scales), "size": size,
            "feasible": feasible, "exact": exact,
            "params": (int(lo_p), int(hi_p)) if n_feasible else None,
            "mult_adds": (int(lo_m), int(hi_m)) if n_feasible else None,
        }

    def extremes(self) -> list[ArchConfig]:
        """The smallest and the largest config: every numeric dimension at its minimum (maximum)."""
        out = []
        for pick in (min, max):
            values: dict[str, Any] = {}
            for dim, spec in self.dimensions():
                if not dim.applies(self.family, values):
                    continue
                numeric = all(isinstance(c, (int, float)) for c in spec.choices)  # bools too: BN adds parameters
                choice = pick(spec.choices) if numeric else spec.choices[0]
                values[dim.name] = (choice,) * values.get("n_resblocks", 1) if dim.per_block else choice
            out.append(self._config(values))
        return out

    def cheapest(self, cost: Callable[[ArchConfig], float]) -> ArchConfig:
        """The config of least ``cost`` (parameters, Mult-Adds, training memory): numeric
        dimensions at their minimum, then each other dimension (block type, skip, activation)
        at its cheapest choice, one dimension at a time. Exact for costs that grow with every
        numeric field and add up over blocks, as the cost model's do; constraints ignored."""
        values: dict[str, Any] = {}
        others = []
        for dim, spec in self.dimensions():
            if not dim.applies(self.family, values):
                continue
            numeric = all(isinstance(c, (int, float)) for c in spec.choices)
            choice = min(spec.choices) if numeric else spec.choices[0]
            values[dim.name] = (choice,) * values.get("n_resblocks", 1) if dim.per_block else choice
            if not numeric:
                others.append((dim, spec))
        best = self._config(values)
        best_cost = cost(best)
        for dim, spec in others:
            for choice in spec.choices[1:]:
                candidate = {**values, dim.name: (choice,) * values.get("n_resblocks", 1) if dim.per_block else choice}
                try:
                    cfg = self._config(candidate)
                except ConfigError:
                    continue
                if cost(cfg) < best_cost:
                    best, best_cost, values = cfg, cost(cfg), candidate
        return best

    def describe_params(self) -> list[tuple[str, str]]:
        """(parameter, choices) rows for display."""
        return [(dim.name, dim.describe(spec)) for dim, spec in self.dimensions() if dim.name in self.params]


def _parse_param(dim: Dimension, raw: Any, err: Callable[[str], ConfigError]) -> ParamSpec:
    key = dim.name
    per, stages = "global", 1
    if isinstance(raw, Mapping):
        allowed = {"choices", "low", "high", "step", "per", "stages"}
        unknown = set(raw) - allowed
        if unknown:
            raise err(f"unknown field {sorted(unknown)[0]!r}; allowed: choices, or low/high/step"
                      + (", per, stages" if dim.per_block else ""))
        if ("per" in raw or "stages" in raw) and not dim.per_block:
            raise err(f"'per'/'stages' apply to {', '.join(d.name for d in DIMENSIONS if d.per_block)} only")
        if "choices" in raw:
            if {"low", "high", "step"} & set(raw):
                raise err("give either choices or low/high/step, not both")
            choices = raw["choices"]
            if not isinstance(choices, list):
                raise err(f"choices must be a list, got {choices!r}")
        elif "low" in raw and "high" in raw:
            low, high, step = raw["low"], raw["high"], raw.get("step", 1)
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high, step)) or step <= 0 or high < low:
                raise err(f"integer range needs integers low <= high and step > 0, got low={low!r} high={high!r} step={step!r}")
            n = (high - low) // step + 1  # sized before any list is built
            if n > MAX_CHOICES:
                raise err(f"range low={low} high={high} step={step} has {n:,} values; at most {MAX_CHOICES:,}")
            choices = list(range(low, high + 1, step))
        else:
            raise err("a mapping needs 'choices' or 'low' and 'high'")
        per = raw.get("per", "global")
        if per not in KERNEL_MODES:
            raise err(f"per: invalid value {per!r}; allowed: {' | '.join(KERNEL_MODES)}")
        stages = raw.get("stages", 1 if per != "stage" else None)
        if per == "stage" and (not isinstance(stages, int) or isinstance(stages, bool) or stages < 1):
            raise err(f"per: stage needs 'stages' as a positive integer, got {stages!r}")
        if per != "stage" and "stages" in raw:
            raise err("'stages' applies only with per: stage")
    elif isinstance(raw, list):
        choices = raw
    else:
        choices = [raw]
    if not choices:
        raise err("no choices given")
    if len(choices) > MAX_CHOICES:
        raise err(f"{len(choices):,} choices; at most {MAX_CHOICES:,}")
    if len(set(map(repr, choices))) != len(choices):
        raise err(f"duplicate choices in {choices!r}")
    for c in choices:
        if not isinstance(c, (bool, int, float, str)):
            raise err(f"invalid choice {c!r}; allowed: numbers, strings, booleans")
    return ParamSpec(key, tuple(choices), per, stages or 1)


def available_spaces() -> list[str]:
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


def canonical_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What differs between two `SearchSpace.canonical` forms, one phrase per key
    (``parameters.n_feats [8, 16, 32] (now [8, 16])``)."""
    out = []
    for key in ("family", "scales"):
        if old.get(key) != new.get(key):
            out.append(f"{key} {old.get(key)} (now {new.get(key)})")
    old_p, new_p = old.get("parameters") or {}, new.get("parameters") or {}
    for name in [*old_p, *[n for n in new_p if n not in old_p]]:
        a, b = old_p.get(name), new_p.get(name)
        if a != b:
            show = lambda e: "not searched" if e is None else (  # noqa: E731
                str(e["choices"]) + (f" per {e['per']}" if "per" in e else "") + (f" ({e['stages']} stages)" if "stages" in e else ""))
            out.append(f"parameters.{name} {show(a)} (now {show(b)})")
    old_c, new_c = old.get("constraints") or {}, new.get("constraints") or {}
    for name in sorted(set(old_c) | set(new_c)):
        if old_c.get(name) != new_c.get(name):
            out.append(f"constraints.{name} {old_c.get(name, 'none')} (now {new_c.get(name, 'none')})")
    return out
