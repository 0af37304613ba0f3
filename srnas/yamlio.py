"""The one YAML reader of srnas (search spaces, architecture configs): safe, bounded, and with
line numbers for error messages.

Bounds, checked while parsing, before anything is built:

- no anchors or aliases (``&name``, ``*name``): a 1 KB file of nested aliases ("billion laughs")
  would otherwise expand to gigabytes in any walk over the data; srnas files never need them;
- at most :data:`MAX_YAML_BYTES` (1 MiB) of text and :data:`MAX_YAML_DEPTH` (32) nested levels;
- only the safe tags (no Python objects); duplicate keys are an error, not a silent overwrite.

Every failure is one `ConfigError` line ``FILE:LINE: ...``.

>>> data, lines = load_yaml_with_lines("name: tiny\\nparameters:\\n  n_feats: [8, 16]\\n", "s.yaml")
>>> data["parameters"], lines["parameters.n_feats"]
({'n_feats': [8, 16]}, 3)
>>> load_yaml_with_lines("a: &x [1]\\nb: *x\\n", "s.yaml")
Traceback (most recent call last):
...
srnas.errors.ConfigError: s.yaml:1: YAML anchors and aliases (&x) are not allowed; write the value out
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from srnas.errors import ConfigError

#: Largest YAML (or JSON config) text read, in bytes: real srnas files are a few KB.
MAX_YAML_BYTES = 1 << 20
#: Deepest nesting of mappings and lists (srnas files use 3 or 4 levels).
MAX_YAML_DEPTH = 32


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors, aliases, deep nesting and duplicate keys as it composes."""

    def __init__(self, text: str, source: str) -> None:
        super().__init__(text)
        self.source = source
        self.depth = 0

    def _where(self, mark: Any) -> str:
        return f"{self.source}:{mark.line + 1}"

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            sign = "*" if isinstance(event, yaml.AliasEvent) else "&"
            raise ConfigError(f"{self._where(event.start_mark)}: YAML anchors and aliases ({sign}{anchor}) "
                              "are not allowed; write the value out")
        if isinstance(event, yaml.ScalarEvent):
            return super().compose_node(parent, index)
        self.depth += 1  # a mapping or a list: one level deeper
        try:
            if self.depth > MAX_YAML_DEPTH:
                raise ConfigError(f"{self._where(event.start_mark)}: YAML nested deeper than "
                                  f"{MAX_YAML_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def compose_mapping_node(self, anchor: Any) -> Any:
        node = super().compose_mapping_node(anchor)
        seen: dict[tuple[str, str], int] = {}
        for key, _value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if (key.tag, key.value) in seen:
                    raise ConfigError(f"{self._where(key.start_mark)}: duplicate key {key.value!r} "
                                      f"(first on line {seen[key.tag, key.value]})")
                seen[key.tag, key.value] = key.start_mark.line + 1
        return node

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except ConfigError:
            raise
        except (ValueError, OverflowError) as exc:  # e.g. an int of 5000 digits, a 13th month
            raise ConfigError(f"{self._where(node.start_mark)}: not valid YAML "
                              f"({str(exc).splitlines()[0]})") from None


def _check_size(size: int, source: str) -> None:
    if size > MAX_YAML_BYTES:
        raise ConfigError(f"{source}: {size} bytes; the limit is {MAX_YAML_BYTES} bytes "
                          f"({MAX_YAML_BYTES >> 20} MiB) for a config or search-space file")


def load_yaml_with_lines(text: str, source: str) -> tuple[Any, dict[str, int]]:
    """Parse one YAML document under the module's bounds; return ``(data, lines)`` where
    ``lines`` maps each dotted key path (``"parameters.n_feats"``; list items by index,
    ``"presets.0.n_feats"``) to its 1-based line. ``source`` names the file in errors."""
    if len(text) > MAX_YAML_BYTES:  # chars <= bytes: no need to encode a huge text to refuse it
        _check_size(len(text), source)
    _check_size(len(text.encode("utf-8", "surrogatepass")), source)
    loader = None
    try:
        loader = _BoundedLoader(text, source)  # checks for control characters already
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{_yaml_error_where(exc, text, source)}: not valid YAML "
                          f"({_yaml_problem(exc)})") from None
    finally:
        if loader is not None:
            loader.dispose()
    lines: dict[str, int] = {}

    def walk(n: Any, path: str) -> None:
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                key = f"{path}.{k.value}" if path else str(k.value)
                lines.setdefault(key, k.start_mark.line + 1)
                walk(v, key)
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                key = f"{path}.{i}" if path else str(i)
                lines.setdefault(key, item.start_mark.line + 1)
                walk(item, key)

    walk(node, "")
    return data, lines


def _yaml_error_where(exc: yaml.YAMLError, text: str, source: str) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    position = getattr(exc, "position", None)  # yaml.reader.ReaderError (a control character)
    if mark is not None:
        line = mark.line + 1
    elif isinstance(position, int):
        line = text.count("\n", 0, position) + 1
    else:
        return source
    # "unexpected end of stream" points past the final newline: name the file's last line.
    return f"{source}:{max(1, min(line, len(text.splitlines())))}"


def _yaml_problem(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None)
    if problem:
        context = getattr(exc, "context", None)
        # "but found another document" only reads with its context ("expected a single document").
        return f"{context}, {problem}" if context and str(problem).startswith("but ") else str(problem)
    reason = getattr(exc, "reason", None)
    character = getattr(exc, "character", None)
    if reason:
        return f"{reason}: character #x{character:04x}" if isinstance(character, int) else str(reason)
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def read_config_text(path: str | Path, *, what: str = "config file") -> str:
    """The UTF-8 text of a config or search-space file (YAML or JSON), refused before reading
    when larger than :data:`MAX_YAML_BYTES`; missing, unreadable or not UTF-8: one
    `ConfigError` line naming ``path`` and ``what`` it should have been."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            size = _file_size(f)
            _check_size(size, str(p))
            raw = f.read(MAX_YAML_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{p}: {what} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{p}: is a folder, not a {what}") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read {what} ({exc.strerror or exc})") from None
    _check_size(len(raw), str(p))  # a pipe or /proc file has no size to stat
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{p}:{line}: {what} is not UTF-8 text (byte {raw[exc.start]:#04x})") from None


def _file_size(f: Any) -> int:
    st = os.fstat(f.fileno())
    return st.st_size if stat.S_ISREG(st.st_mode) else 0


def load_yaml_file(path: str | Path, *, what: str = "config file") -> tuple[Any, dict[str, int]]:
    """`read_config_text` + `load_yaml_with_lines`: ``(data, lines)`` of a YAML file."""
    return load_yaml_with_lines(read_config_text(path, what=what), str(path))
