"""Storage outages survived: a database server that restarts, a network that drops for a while.

`RetryingStorage` wraps an Optuna storage on a database server (PostgreSQL, MySQL): every call
that fails with a transient error (the connection refused, lost or reset, the server shutting
down or starting up) is retried with a growing wait, for up to ``patience`` seconds, with one
line when it starts waiting and one when the server answers again. Other errors pass unchanged
at once (a finished trial cannot be updated, a unique key exists, ...). RDB writes are
transactions: a write that failed was rolled back, so retrying it is safe.

Imported by `srnas.storages.open_storage` only (it imports Optuna).
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from optuna.storages import BaseStorage

#: Seconds a storage call keeps retrying through an outage before the error stands.
STORAGE_PATIENCE_S = 180.0
#: First wait between tries (doubled each time, at most `MAX_WAIT_S`).
FIRST_WAIT_S, MAX_WAIT_S = 0.5, 10.0

#: What a database driver says when the server is away for a while (lower case).
_TRANSIENT_TEXT = ("connection refused", "could not connect", "server closed the connection", "connection reset",
                   "terminating connection", "the database system is starting up",
                   "the database system is shutting down", "connection is closed", "connection timed out",
                   "server has gone away", "lost connection", "broken pipe", "ssl syscall error",
                   "connection not open", "no connection to the server", "consuming input failed")


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) says the database server is away for now."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        name = type(current).__name__
        text = str(current).lower()
        if name in ("OperationalError", "InterfaceError", "DisconnectionError", "StorageInternalError") and \
                any(t in text for t in _TRANSIENT_TEXT):
            return True
        if getattr(current, "connection_invalidated", False):
            return True
        current = current.__cause__ or current.__context__ or getattr(current, "orig", None)
    return False


class _OutageFallbackFilter(logging.Filter):
    """Drops Optuna's RDB warning "Caught an error from sqlalchemy: ... Falling back to a slower
    alternative" when the error is an outage: it dumps the SQL statement over several lines and
    blames a query size, while `RetryingStorage` already says in one line what happens."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Caught an error from sqlalchemy")
                    and any(t in message.lower() for t in _TRANSIENT_TEXT))


#: The Optuna logger that warns of that fallback (optuna/storages/_rdb/storage.py).
_RDB_LOGGER = "optuna.storages._rdb.storage"


def _quiet_outage_fallback() -> None:
    logger = logging.getLogger(_RDB_LOGGER)
    if not any(isinstance(f, _OutageFallbackFilter) for f in logger.filters):
        logger.addFilter(_OutageFallbackFilter())


def _note(message: str) -> None:
    print(f"srnas: {message}", file=sys.stderr, flush=True)


class RetryingStorage(BaseStorage):
    """``inner`` with every public storage call retried through outages (see the module
    docstring). Other attributes are ``inner``'s; ``_backend`` is ``inner`` (what
    `srnas.storages.storage_location` and `storage_lock` look through)."""

    def __init__(self, inner: BaseStorage, *, location: str, patience: float = STORAGE_PATIENCE_S,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._backend = inner
        self._location = location
        _quiet_outage_fallback()
        self._patience = patience
        self._sleep = sleep

    def __getattr__(self, name: str) -> Any:
        if name == "_backend":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self._backend, name)

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        method = getattr(self._backend, name)
        waited, wait, told = 0.0, FIRST_WAIT_S, False
        while True:
            try:
                result = method(*args, **kwargs)
            except Exception as exc:
                if not transient(exc):
                    if told:  # the server answered (with an error for the caller: a trial finished meanwhile, ...)
                        _note(f"storage {self._location} answers again after {waited:.0f} s")
                    raise
                if waited >= self._patience:
                    if told:
                        _note(f"storage {self._location}: still unreachable after {waited:.0f} s; giving up")
                    raise
                if not told:
                    _note(f"storage {self._location} is unreachable ({type(exc).__name__}); retrying for up to "
                          f"{self._patience:.0f} s")
                    told = True
                self._sleep(wait)
                waited += wait
                wait = min(MAX_WAIT_S, wait * 2)
                continue
            if told:
                _note(f"storage {self._location} answers again after {waited:.0f} s")
            return result


def _delegate(name: str) -> Callable[..., Any]:
    def method(self: RetryingStorage, *args: Any, **kwargs: Any) -> Any:
        return self._call(name, *args, **kwargs)

    return functools.update_wrapper(method, getattr(BaseStorage, name))


for _name, _ in inspect.getmembers(BaseStorage, inspect.isfunction):
    if not _name.startswith("_"):
        setattr(RetryingStorage, _name, _delegate(_name))
RetryingStorage.__abstractmethods__ = frozenset()
