"""One small name -> item table behind every named choice of srnas: block types, search engines,
proxy fidelities, presets, objectives, storages' URL schemes.

A `Registry` keeps its items in registration order, refuses a second item under a taken name,
and answers an unknown name with one line in one format: what was asked for, the names allowed,
and the nearest name when one is close (a typo)::

    --engine: unknown engine 'optnua'; allowed: optuna, nni (did you mean 'optuna'?)

The error (`UnknownName`) is a `ConfigError` (the CLI prints it as one line, exit 2) and a
`KeyError` (code that looks names up with ``[]`` catches it as a missing key).

>>> engines = Registry("engine", flag="--engine")
>>> engines.register("optuna", 1)
1
>>> engines.register("nni", 2)
2
>>> engines.names()
('optuna', 'nni')
>>> engines.get("nni")
2
>>> try:
...     engines.get("optnua")
... except UnknownName as exc:
...     print(exc)
--engine: unknown engine 'optnua'; allowed: optuna, nni (did you mean 'optuna'?)
"""

from __future__ import annotations

import difflib
from collections.abc import ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from typing import Generic, TypeVar

from srnas.errors import ConfigError

T = TypeVar("T")


class UnknownName(ConfigError, KeyError):
    """A name no registry entry has: one line naming it, the allowed names and the nearest one."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """Named items of one kind (``kind``: the word used in errors, e.g. ``"block type"``).

    ``flag``: the command-line flag or key that takes the name, put before the error (e.g.
    ``--engine``); ``sep``: how the allowed names are joined in the error.
    Reads like a read-only mapping (``name in r``, ``r[name]``, iteration in registration
    order, ``keys``/``values``/``items``); ``get(name)`` is the lookup with the one-line error.
    """

    def __init__(self, kind: str, entries: Mapping[str, T] | Iterable[tuple[str, T]] = (), *,
                 flag: str | None = None, sep: str = ", ") -> None:
        self.kind, self.flag, self.sep = kind, flag, sep
        self._items: dict[str, T] = {}
        for name, item in (entries.items() if isinstance(entries, Mapping) else entries):
            self.register(name, item)

    # ---- changing --------------------------------------------------------------------------

    def register(self, name: str, item: T, *, replace: bool = False) -> T:
        """Add ``item`` under ``name`` and return it; a taken name is a `ValueError` unless
        ``replace`` (or it is the same item again)."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"{self.kind}: a name must be a non-empty string, got {name!r}")
        if name in self._items and self._items[name] is not item and not replace:
            raise ValueError(f"{self.kind} {name!r} is already registered ({_label(self._items[name])})")
        self._items[name] = item
        return item

    def unregister(self, name: str) -> T:
        """Remove ``name`` (tests that register a toy item clean up with this)."""
        return self._items.pop(name)

    # ---- reading ---------------------------------------------------------------------------

    def get(self, name: str) -> T:
        """The item registered as ``name``; anything else is an `UnknownName` (one line)."""
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise self.unknown(name) from None

    def unknown(self, name: object) -> UnknownName:
        """The one-line error for ``name`` (`unknown_name`)."""
        return unknown_name(self.kind, name, self._items, flag=self.flag, sep=self.sep)

    def names(self) -> tuple[str, ...]:
        return tuple(self._items)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def keys(self) -> KeysView[str]:
        return self._items.keys()

    def values(self) -> ValuesView[T]:
        return self._items.values()

    def items(self) -> ItemsView[str, T]:
        return self._items.items()

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._items)})"


def unknown_name(kind: str, name: object, allowed: Iterable[str], *, flag: str | None = None,
                 sep: str = ", ") -> UnknownName:
    """The one error format for a name that is not one of ``allowed``: the flag, the kind, the
    name, the allowed names and the nearest one when one is close. For lookups that accept
    more than a registry's names (``NAME@N`` schedules); a `Registry` uses it for its own."""
    names = list(allowed)
    close = difflib.get_close_matches(name, names, n=1) if isinstance(name, str) else []
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    where = f"{flag}: " if flag else ""
    return UnknownName(f"{where}unknown {kind} {name!r}; allowed: {sep.join(names)}{hint}")


def _label(item: object) -> str:
    return getattr(item, "__name__", None) or repr(item)
