"""`SearchSpace`: a validated search space (read from a file by `srnas.space.loading`) and what
is asked of it: its identity, sampling, constraints, membership and presets, the flat choices an
NNI model space needs, counting and enumeration. All of it derives from the `Dimension`s of
`srnas.space.dimensions`; costs and the constraint keys are the cost model's (`ConfigCosts`).

`SearchSpace.sample(trial)` draws a config from anything with Optuna's ``suggest_categorical``
(an Optuna trial, or `RandomChooser` for plain random sampling); conditional parameters are
only drawn when they apply, and only parameters the space file declares are drawn (the others
keep `ArchConfig`'s defaults).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from srnas.arch.config import ArchConfig
from srnas.arch.cost import CONSTRAINTS, ConfigCosts, count_mult_adds
from srnas.arch.presets import preset_config
from srnas.errors import ConfigError
from srnas.space.choosers import Chooser, FixedChooser, RandomChooser
from srnas.space.dimensions import (
    BLOCKS, DIMENSIONS, DIMENSIONS_BY_NAME, PARAMETERS, Dimension, ParamSpec, Values, assignments, blocks_drawn,
    count_assignments, default_value,
)
from srnas.space.loading import located_errors, parse_space, space_file
from srnas.yamlio import load_yaml_file

ENUMERATION_LIMIT = 200_000


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
        path = space_file(name_or_path)
        # Bounded YAML: no anchors/aliases, size and depth capped, errors with FILE:LINE.
        data, lines = load_yaml_file(path, what="search-space file")
        return cls.from_dict(data, source=str(path), lines=lines)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<dict>", lines: Mapping[str, int] | None = None) -> "SearchSpace":
        err = located_errors(source, lines)
        space = cls(**parse_space(data, source=source, err=err))
        for i, preset in enumerate(space.presets):
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
                values[dim.name] = dim.suggest(trial, spec, blocks_drawn(values))
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
        return costs.violations(self.constraints)

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
        max_blocks = max(self.dimension_spec(BLOCKS.name).choices)
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

    def size(self) -> int:
        """Number of distinct configs in the space (constraints ignored)."""
        return count_assignments(self.dimensions(), self.family)

    def enumerate(self, *, limit: int | None = None) -> Iterator[ArchConfig]:
        """Every config of the space (constraints ignored), in a fixed order."""
        for count, values in enumerate(assignments(self.dimensions(), self.family), 1):
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
                values[dim.name] = (choice,) * blocks_drawn(values) if dim.per_block else choice
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
            values[dim.name] = (choice,) * blocks_drawn(values) if dim.per_block else choice
            if not numeric:
                others.append((dim, spec))
        best = self._config(values)
        best_cost = cost(best)
        for dim, spec in others:
            for choice in spec.choices[1:]:
                candidate = {**values, dim.name: (choice,) * blocks_drawn(values) if dim.per_block else choice}
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
