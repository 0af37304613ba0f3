"""Search spaces: YAML files that parameterise EDSR/MDSR configs.

Format (see README, "Search-space files")::

    name: tiny
    description: free text
    family: edsr                 # edsr | mdsr
    scales: [2]
    proxy: tiny                  # default proxy fidelity of a search in this space (optional)
    parameters:
      n_resblocks: [1, 2, 3, 4]  # a list: one of these values
      n_feats: {low: 8, high: 32, step: 8}   # an integer range
      kernel_size: {choices: [3, 5], per: block}   # per: global | stage (with stages: N) | block
      batch_norm: false          # a scalar: fixed
      res_scale: [0.1, 0.5, 1.0]
      global_skip: [none, bicubic]
      head_blocks: [0, 1, 2]     # mdsr only; head_kernel is sampled only when head_blocks > 0
      head_kernel: [3, 5]
    constraints: {max_params: 1400000, max_mult_adds: 1.0e11, max_activation_mb: 2000}
    presets: [edsr-baseline, {n_resblocks: 4, n_feats: 32}]   # enqueued first when inside the space

`SearchSpace.sample(trial)` draws a config from anything with Optuna's ``suggest_categorical``
(an Optuna trial, or `RandomChooser` for plain random sampling); conditional parameters are
only drawn when they apply.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from srnas.arch.config import ArchConfig
from srnas.arch.cost import activation_memory, count_mult_adds, count_params
from srnas.errors import ConfigError

PARAMETERS = ("n_resblocks", "n_feats", "kernel_size", "batch_norm", "res_scale", "act",
              "global_skip", "head_blocks", "head_kernel", "rgb_range", "n_colors")
TOP_KEYS = ("name", "description", "family", "scales", "proxy", "parameters", "constraints", "presets")
CONSTRAINTS = ("max_params", "max_mult_adds", "max_activation_mb")
KERNEL_MODES = ("global", "stage", "block")
#: The batch and LR patch at which ``max_activation_mb`` is evaluated (the paper's schedule).
ACTIVATION_BATCH, ACTIVATION_PATCH = 16, 48
ENUMERATION_LIMIT = 200_000

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


# ---- YAML with line numbers -------------------------------------------------------------


def _load_yaml_with_lines(text: str, source: str) -> tuple[Any, dict[str, int]]:
    """Parse YAML; also return a map from dotted key path to its 1-based line."""
    import yaml

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: not valid YAML ({problem})") from None
    lines: dict[str, int] = {}

    def walk(n: Any, path: str) -> None:
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                key = f"{path}.{k.value}" if path else str(k.value)
                lines[key] = k.start_mark.line + 1
                walk(v, key)

    if node is not None:
        walk(node, "")
    return data, lines


# ---- parameter specs ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    name: str
    choices: tuple[Any, ...]
    per: str = "global"   # kernel_size only
    stages: int = 1

    @property
    def fixed(self) -> bool:
        return len(self.choices) == 1


def _stage_bounds(n_blocks: int, stages: int) -> list[tuple[int, int]]:
    return [(i * n_blocks // stages, (i + 1) * n_blocks // stages) for i in range(stages)]


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
        """Load a shipped space by name (``tiny``, ``edsr``, ``mdsr``, ``lightweight``) or a file."""
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
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{p}: cannot read search-space file ({exc})") from None
        data, lines = _load_yaml_with_lines(text, str(p))
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
        if family not in ("edsr", "mdsr"):
            raise err("family", f"invalid value {family!r}; allowed: edsr | mdsr")
        scales_raw = data.get("scales", [2])
        scales_list = scales_raw if isinstance(scales_raw, list) else [scales_raw]
        params_raw = data.get("parameters")
        if not isinstance(params_raw, Mapping) or not params_raw:
            raise err("parameters", "missing or empty; give a mapping of parameter -> value(s)")

        specs: dict[str, ParamSpec] = {}
        for key, raw in params_raw.items():
            path = f"parameters.{key}"
            if key not in PARAMETERS:
                raise err(path, f"unknown parameter; allowed: {', '.join(PARAMETERS)}")
            if family == "edsr" and key in ("head_blocks", "head_kernel"):
                raise err(path, "applies to family 'mdsr' only")
            specs[key] = _parse_param(key, raw, lambda m, p=path: err(p, m))
        for key in ("n_resblocks", "n_feats"):
            if key not in specs:
                raise err("parameters", f"missing required parameter {key!r}")

        base = _base_config_kwargs(family, scales_list)
        try:
            ArchConfig(**base)
        except ConfigError as exc:
            raise err("scales", str(exc).split(": ", 1)[1]) from None
        for key, spec in specs.items():
            for choice in spec.choices:
                kw = dict(base)
                kw["kernel_sizes" if key == "kernel_size" else key] = choice
                if key == "head_kernel":
                    kw["head_blocks"] = 1
                try:
                    ArchConfig(**kw)
                except ConfigError as exc:
                    detail = str(exc).split(": ", 1)[1]
                    raise err(f"parameters.{key}", detail) from None

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
        space = cls(name=name, family=family, scales=tuple(int(s) for s in scales_list), params=specs,
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

    # ---- sampling -----------------------------------------------------------------------

    def choices_of(self, key: str, default: Any) -> ParamSpec:
        """The spec of ``key``, or a fixed spec of ``default`` when the space does not set it."""
        return self.params.get(key) or ParamSpec(key, (default,))

    def sample(self, trial: Chooser) -> ArchConfig:
        """Draw one config; parameters are suggested in a fixed order, conditionals only when
        they apply (per-block kernels only for existing blocks, head_kernel only with heads)."""
        values: dict[str, Any] = {}
        for key in ("n_resblocks", "n_feats", "batch_norm", "res_scale", "act", "global_skip",
                    "rgb_range", "n_colors"):
            spec = self.params.get(key)
            if spec is not None:
                values[key] = trial.suggest_categorical(key, list(spec.choices))
        b = values["n_resblocks"]
        values["kernel_sizes"] = self._sample_kernels(trial, b)
        if self.family == "mdsr":
            hb = trial.suggest_categorical("head_blocks", list(self.choices_of("head_blocks", 2).choices))
            values["head_blocks"] = hb
            if hb > 0:
                values["head_kernel"] = trial.suggest_categorical(
                    "head_kernel", list(self.choices_of("head_kernel", 5).choices))
        return ArchConfig(family=self.family, scales=self.scales, **values)

    def _sample_kernels(self, trial: Chooser, n_blocks: int) -> list[int]:
        spec = self.choices_of("kernel_size", 3)
        choices = list(spec.choices)
        if spec.per == "global":
            return [trial.suggest_categorical("kernel_size", choices)] * n_blocks
        if spec.per == "stage":
            ks: list[int] = []
            for i, (lo, hi) in enumerate(_stage_bounds(n_blocks, spec.stages)):
                if hi > lo:
                    ks += [trial.suggest_categorical(f"kernel_size_s{i}", choices)] * (hi - lo)
            return ks
        return [trial.suggest_categorical(f"kernel_size_b{i}", choices) for i in range(n_blocks)]

    def sample_random(self, n: int, *, seed: int = 0) -> list[ArchConfig]:
        """``n`` configs drawn uniformly (each parameter independently) with a fixed seed."""
        chooser = RandomChooser(seed)
        return [self.sample(chooser) for _ in range(n)]

    # ---- constraints --------------------------------------------------------------------

    def violations(self, cfg: ArchConfig) -> dict[str, float]:
        """For each constraint, measured minus limit (feasible when <= 0), as Optuna expects."""
        out: dict[str, float] = {}
        for key, limit in self.constraints.items():
            out[key] = self.measure(cfg, key) - limit
        return out

    @staticmethod
    def measure(cfg: ArchConfig, key: str) -> float:
        if key == "max_params":
            return float(count_params(cfg))
        if key == "max_mult_adds":
            return float(max(count_mult_adds(cfg, scale=s) for s in cfg.scales))
        if key == "max_activation_mb":
            return max(activation_memory(cfg, batch=ACTIVATION_BATCH, patch=ACTIVATION_PATCH, scale=s)
                       for s in cfg.scales) / 2**20
        raise KeyError(key)

    def satisfies(self, cfg: ArchConfig) -> bool:
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
        for key in ("n_resblocks", "n_feats", "batch_norm", "res_scale", "act", "global_skip",
                    "rgb_range", "n_colors"):
            value = getattr(cfg, key)
            spec = self.params.get(key)
            if spec is None:
                if value != getattr(ArchConfig(family=self.family, scales=self.scales), key):
                    return None
                continue
            if value not in spec.choices:
                return None
            out[key] = next(c for c in spec.choices if c == value)
        spec = self.choices_of("kernel_size", 3)
        ks = cfg.kernel_sizes
        if spec.per == "global":
            if len(set(ks)) != 1:
                return None
            if spec.name in self.params:
                out["kernel_size"] = ks[0]
        elif spec.per == "stage":
            for i, (lo, hi) in enumerate(_stage_bounds(len(ks), spec.stages)):
                if hi > lo:
                    if len(set(ks[lo:hi])) != 1:
                        return None
                    out[f"kernel_size_s{i}"] = ks[lo]
        else:
            out.update({f"kernel_size_b{i}": k for i, k in enumerate(ks)})
        if any(k not in spec.choices for k in ks):
            return None
        if self.family == "mdsr":
            hb_spec = self.choices_of("head_blocks", 2)
            if cfg.head_blocks not in hb_spec.choices:
                return None
            out["head_blocks"] = cfg.head_blocks
            if cfg.head_blocks > 0:
                if cfg.head_kernel not in self.choices_of("head_kernel", 5).choices:
                    return None
                out["head_kernel"] = cfg.head_kernel
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

            cfg = preset_config(preset, scale=self.scales[0]) if self.family == "edsr" else preset_config(preset)
        else:
            kw = {k: v for k, v in preset.items()}
            unknown = [k for k in kw if k not in PARAMETERS]
            if unknown:
                raise ConfigError(f"unknown parameter {unknown[0]!r}; allowed: {', '.join(PARAMETERS)}")
            if "kernel_size" in kw:
                kw["kernel_sizes"] = kw.pop("kernel_size")
            cfg = ArchConfig(family=self.family, scales=self.scales, **kw)
        params = self.params_of(cfg)
        if params is None:
            raise ConfigError(f"preset {preset!r} ({cfg.describe()}) is not inside space {self.name!r}")
        return params

    def preset_assignments(self) -> list[tuple[str, dict[str, Any]]]:
        """(label, params) of the space's presets (validated at load to lie inside the space)."""
        return [(p if isinstance(p, str) else "custom", self.preset_params(p)) for p in self.presets]

    # ---- counting and enumeration -------------------------------------------------------

    def _other_keys(self) -> list[ParamSpec]:
        return [self.params[k] for k in ("n_feats", "batch_norm", "res_scale", "act", "global_skip",
                                         "rgb_range", "n_colors") if k in self.params]

    def _kernel_variants(self, n_blocks: int) -> int:
        spec = self.choices_of("kernel_size", 3)
        k = len(spec.choices)
        if spec.per == "global":
            return k
        if spec.per == "stage":
            return k ** sum(1 for lo, hi in _stage_bounds(n_blocks, spec.stages) if hi > lo)
        return k ** n_blocks

    def _head_variants(self) -> int:
        if self.family != "mdsr":
            return 1
        hk = len(self.choices_of("head_kernel", 5).choices)
        return sum(hk if hb > 0 else 1 for hb in self.choices_of("head_blocks", 2).choices)

    def size(self) -> int:
        """Number of distinct configs in the space (constraints ignored)."""
        rest = math.prod(len(s.choices) for s in self._other_keys())
        kernels = sum(self._kernel_variants(b) for b in self.params["n_resblocks"].choices)
        return rest * kernels * self._head_variants()

    def enumerate(self, *, limit: int | None = None) -> Iterator[ArchConfig]:
        """Every config of the space (constraints ignored), in a fixed order."""
        spec = self.choices_of("kernel_size", 3)
        others = self._other_keys()
        heads: list[tuple[int | None, int | None]] = [(None, None)]
        if self.family == "mdsr":
            heads = [(hb, hk) for hb in self.choices_of("head_blocks", 2).choices
                     for hk in (self.choices_of("head_kernel", 5).choices if hb > 0 else (None,))]
        count = 0
        for b in self.params["n_resblocks"].choices:
            if spec.per == "global":
                kernel_sets = [[k] * b for k in spec.choices]
            elif spec.per == "stage":
                bounds = [(lo, hi) for lo, hi in _stage_bounds(b, spec.stages) if hi > lo]
                kernel_sets = [[k for (lo, hi), k in zip(bounds, combo) for _ in range(hi - lo)]
                               for combo in itertools.product(spec.choices, repeat=len(bounds))]
            else:
                kernel_sets = (list(c) for c in itertools.product(spec.choices, repeat=b))
            for ks in kernel_sets:
                for combo in itertools.product(*(s.choices for s in others)):
                    for hb, hk in heads:
                        kw = {s.name: v for s, v in zip(others, combo)}
                        if self.family == "mdsr":
                            kw["head_blocks"], kw["head_kernel"] = hb, hk
                        yield ArchConfig(family=self.family, scales=self.scales, n_resblocks=b,
                                         kernel_sizes=ks, **kw)
                        count += 1
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
            configs = self.sample_random(samples, seed=seed) + self._extremes()
        n_feasible = n_seen = 0
        lo_p = lo_m = math.inf
        hi_p = hi_m = 0
        for cfg in configs:
            n_seen += 1
            if not self.satisfies(cfg):
                continue
            n_feasible += 1
            p, m = count_params(cfg), count_mult_adds(cfg)
            lo_p, hi_p, lo_m, hi_m = min(lo_p, p), max(hi_p, p), min(lo_m, m), max(hi_m, m)
        feasible = n_feasible if exact else round(size * n_feasible / max(n_seen, 1))
        return {
            "name": self.name, "family": self.family, "scales": list(self.scales), "size": size,
            "feasible": feasible, "exact": exact,
            "params": (int(lo_p), int(hi_p)) if n_feasible else None,
            "mult_adds": (int(lo_m), int(hi_m)) if n_feasible else None,
        }

    def _extremes(self) -> list[ArchConfig]:
        out = []
        for pick in (min, max):
            kw: dict[str, Any] = {}
            for s in self._other_keys():
                kw[s.name] = pick(s.choices) if all(isinstance(c, (int, float)) for c in s.choices) else s.choices[0]
            b = pick(self.params["n_resblocks"].choices)
            k = pick(self.choices_of("kernel_size", 3).choices)
            if self.family == "mdsr":
                hb = pick(self.choices_of("head_blocks", 2).choices)
                kw["head_blocks"] = hb
                kw["head_kernel"] = pick(self.choices_of("head_kernel", 5).choices) if hb else None
            out.append(ArchConfig(family=self.family, scales=self.scales, n_resblocks=b, kernel_sizes=k, **kw))
        return out

    def describe_params(self) -> list[tuple[str, str]]:
        """(parameter, choices) rows for display."""
        rows = []
        for key, spec in self.params.items():
            text = ", ".join(str(c) for c in spec.choices)
            if key == "kernel_size" and spec.per != "global":
                text += f"  (per {spec.per}{f', {spec.stages} stages' if spec.per == 'stage' else ''})"
            if key == "head_kernel":
                text += "  (when head_blocks > 0)"
            rows.append((key, text))
        return rows


def _base_config_kwargs(family: str, scales: list[Any]) -> dict[str, Any]:
    return {"family": family, "scales": scales, "n_resblocks": 1, "n_feats": 8}


def _parse_param(key: str, raw: Any, err: Any) -> ParamSpec:
    per, stages = "global", 1
    if isinstance(raw, Mapping):
        allowed = {"choices", "low", "high", "step", "per", "stages"}
        unknown = set(raw) - allowed
        if unknown:
            raise err(f"unknown field {sorted(unknown)[0]!r}; allowed: choices, or low/high/step"
                      + (", per, stages" if key == "kernel_size" else ""))
        if ("per" in raw or "stages" in raw) and key != "kernel_size":
            raise err("'per'/'stages' apply to kernel_size only")
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
    if len(set(map(repr, choices))) != len(choices):
        raise err(f"duplicate choices in {choices!r}")
    for c in choices:
        if not isinstance(c, (bool, int, float, str)):
            raise err(f"invalid choice {c!r}; allowed: numbers, strings, booleans")
    return ParamSpec(key, tuple(choices), per, stages or 1)


def available_spaces() -> list[str]:
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))
