"""Run files: a command's flags as one YAML mapping (``srnas search --run run.yaml``), the way
BasicSR keeps an experiment in one options file. Below every layer.

Every flag is a key, spelt as the flag without its dashes (``max-params`` or ``max_params``); a
value is checked against the type of the setting it fills (`options_schema` reads a settings
dataclass's type hints). An unknown key or a wrong type is one `ConfigError` line naming the
file and line (``run.yaml:3: budget: expected an integer, got 'ten'``). The same check applies
to keyword arguments of the Python API (`check_options`), so a file and a call accept the same
things.

>>> schema = {"budget": int, "proxy": str | None, "devices": tuple[str, ...]}
>>> check_options({"budget": 6, "devices": "cuda:0,cuda:1"}, schema)
{'budget': 6, 'devices': ('cuda:0', 'cuda:1')}
>>> check_options({"budgte": 6}, schema, source="run.yaml", lines={"budgte": 2})
Traceback (most recent call last):
...
srnas.errors.ConfigError: run.yaml:2: unknown key 'budgte' (did you mean budget?); known keys: budget, devices, proxy
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from srnas.errors import ConfigError


def key_name(key: str) -> str:
    """A flag or key as its settings name: ``--max-params`` and ``max-params`` -> ``max_params``."""
    return str(key).lstrip("-").replace("-", "_")


def options_schema(settings_class: type, *, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """``{field: type hint}`` of a settings dataclass (the keys its run file accepts)."""
    hints = typing.get_type_hints(settings_class)
    skip = set(exclude)
    return {f.name: hints[f.name] for f in dataclasses.fields(settings_class) if f.name not in skip}


def _arms(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def describe_type(hint: Any) -> str:
    """``int | None`` -> ``an integer or null`` (for messages)."""
    names = []
    for arm in _arms(hint):
        if arm is type(None):
            names.append("null")
        elif arm is bool:
            names.append("true or false")
        elif arm is int:
            names.append("an integer")
        elif arm is float:
            names.append("a number")
        elif arm in (str, Path):
            names.append("text")
        elif typing.get_origin(arm) in (tuple, list):
            names.append("a list (or a comma-separated text)")
        else:
            names.append(getattr(arm, "__name__", str(arm)))
    return " or ".join(names)


_MISMATCH = object()


def _coerce_arm(value: Any, arm: Any) -> Any:
    """``value`` as type ``arm``, or `_MISMATCH`."""
    if arm is type(None):
        return None if value is None else _MISMATCH
    if arm is bool:
        return value if isinstance(value, bool) else _MISMATCH
    if arm is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _MISMATCH
    if arm is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return value if ok else _MISMATCH
    if arm in (str, Path):
        return os.fspath(value) if isinstance(value, (str, os.PathLike)) else _MISMATCH
    if typing.get_origin(arm) in (tuple, list):
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            return _MISMATCH
        items = [i.strip() if isinstance(i, str) else i for i in items]
        if not all(isinstance(i, str) and i for i in items):
            return _MISMATCH
        return tuple(items)
    return value  # a type this checker does not know: the settings validate it


def coerce(value: Any, hint: Any) -> Any:
    """``value`` checked against ``hint`` (tuples also from comma-separated text); `ValueError`
    when it does not fit."""
    for arm in _arms(hint):
        out = _coerce_arm(value, arm)
        if out is not _MISMATCH:
            return out
    raise ValueError(f"expected {describe_type(hint)}, got {value!r}")


def check_options(values: Mapping[str, Any], schema: Mapping[str, Any], *, source: str | None = None,
                  lines: Mapping[str, int] | None = None) -> dict[str, Any]:
    """``values`` with their keys as settings names (`key_name`) and checked against
    ``schema`` (``{name: type hint}``); an unknown key or a wrong type is one `ConfigError`
    naming ``source`` (a file, with ``lines`` from `srnas.yamlio`) or the key."""
    out: dict[str, Any] = {}
    for raw, value in values.items():
        key = key_name(raw)
        where = f"{source}:{(lines or {}).get(str(raw), 1)}: " if source else ""
        if key not in schema:
            close = difflib.get_close_matches(key, list(schema), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"{where}unknown key {raw!r}{hint}; known keys: {', '.join(sorted(schema))}")
        if key in out:
            raise ConfigError(f"{where}{raw!r}: {key} is given twice")
        try:
            out[key] = coerce(value, schema[key])
        except ValueError as exc:
            raise ConfigError(f"{where}{key}: {exc}") from None
    return out


def read_run_file(path: str | Path, schema: Mapping[str, Any]) -> dict[str, Any]:
    """The checked options of a run file (YAML mapping of flag names to values; empty: none)."""
    from srnas.yamlio import load_yaml_file  # lazy: keeps srnas --help off yaml

    data, lines = load_yaml_file(path, what="run file")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: a run file is a mapping of flag names to values "
                          f"(budget: 200), not {type(data).__name__}")
    return check_options(data, schema, source=str(path), lines={str(k): v for k, v in lines.items()})


def dump_run_file(values: Mapping[str, Any], *, header: str = "") -> str:
    """``values`` as run-file YAML (keys in the given order, tuples as lists), after ``header``
    lines written as comments."""
    import yaml  # lazy: keeps srnas --help off yaml

    plain = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    def inline(value: Any) -> str:  # a scalar or a flow list, without YAML's end-of-document mark
        text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=float("inf"))
        return text.strip().removesuffix("...").strip()

    # One key per line whatever its value (keys are flag names: plain words).
    return comment + "".join(f"{key}: {inline(value)}\n" for key, value in plain.items())
