"""Search-space files: the YAML format, the shipped spaces, and parsing a file into the fields
of a `SearchSpace` (`SearchSpace.load` and `from_dict` call these).

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

Parse errors name the file, the line and the key that is wrong, and what would be right.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from srnas.arch.config import FAMILIES
from srnas.arch.cost import CONSTRAINTS
from srnas.errors import ConfigError
from srnas.space.dimensions import DIMENSIONS, DIMENSIONS_BY_NAME, KERNEL_MODES, PARAMETERS, Dimension, ParamSpec, probe_config

TOP_KEYS = ("name", "description", "family", "scales", "proxy", "parameters", "constraints", "presets")
#: Most values one parameter may offer (an integer range is sized before any list is built).
MAX_CHOICES = 4096

SPACES_DIR = Path(__file__).resolve().parent.parent / "spaces"


def available_spaces() -> list[str]:
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


def space_file(name_or_path: str | Path) -> Path:
    """The file of a shipped space (by name: `available_spaces`) or the file given."""
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
    return p


def located_errors(source: str, lines: Mapping[str, int] | None = None) -> Callable[[str, str], ConfigError]:
    """``err(key, message)``: a `ConfigError` reading ``SOURCE:LINE: KEY: MESSAGE`` (the key's
    line where ``lines`` knows it)."""
    known = lines or {}

    def err(key: str, msg: str) -> ConfigError:
        line = known.get(key)
        where = f"{source}:{line}" if line else source
        return ConfigError(f"{where}: {key}: {msg}")

    return err


def parse_space(data: Any, *, source: str, err: Callable[[str, str], ConfigError]) -> dict[str, Any]:
    """The `SearchSpace` fields a file's mapping gives, each checked (whether the presets lie
    inside the space is checked on the space built from them, by `SearchSpace.from_dict`)."""
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
        scales = probe_config(family, tuple(scales_list)).scales
    except ConfigError as exc:
        raise err("scales", str(exc).split(": ", 1)[1]) from None
    specs = _parse_params(data.get("parameters"), family, scales, err)
    constraints = _parse_constraints(data.get("constraints") or {}, err)
    presets_raw = data.get("presets") or []
    if not isinstance(presets_raw, list):
        raise err("presets", "expected a list of preset names or parameter mappings")
    return {"name": str(data.get("name") or Path(source).stem), "family": family, "scales": scales,
            "params": specs, "constraints": constraints, "presets": tuple(presets_raw),
            "description": str(data.get("description") or ""),
            "proxy": (str(data["proxy"]) if data.get("proxy") is not None else None), "source": source}


def _parse_params(params_raw: Any, family: str, scales: tuple[int, ...],
                  err: Callable[[str, str], ConfigError]) -> dict[str, ParamSpec]:
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
                probe_config(family, scales, {**dict(dim.probe), dim.field: choice})
            except ConfigError as exc:
                raise err(path, str(exc).split(": ", 1)[1]) from None
        specs[key] = spec
    for dim in DIMENSIONS:
        if dim.required and dim.name not in specs:
            raise err("parameters", f"missing required parameter {dim.name!r}")
    return specs


def _parse_constraints(constraints_raw: Any, err: Callable[[str, str], ConfigError]) -> dict[str, float]:
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
    return constraints


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

