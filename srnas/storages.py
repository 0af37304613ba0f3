"""Optuna storages from URLs, with one-line errors: the layer every reader and writer of a
study opens its storage through (`srnas.studies.StudyHome.storage`, the worker, the report, the
dashboard, the gRPC proxy).

`open_storage` turns a URL into a storage by its kind (`STORAGES`, keyed by `storage_kind`):
SQLite, PostgreSQL and MySQL through Optuna's RDB storage (opened again while another process
creates the tables; a server's behind `srnas.retry.RetryingStorage`), ``journal:FILE`` through
`srnas.journal.JournalFile`, ``grpc://HOST:PORT`` as a client of Optuna's gRPC storage proxy.
SQLite on a network file system is refused (`refuse_network_sqlite`); creators of one study on
a shared storage are serialised (`storage_lock`); a full disk or a broken storage becomes one
line naming the file (`storage_errors`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import random
import re
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from srnas.errors import MissingExtraError, SrnasError, StorageFullError, StudyError, WriteError, first_line
from srnas.fileio import filesystem_of, write_error
from srnas.registry import Registry

#: OS errors that make a storage unwritable (a full disk or quota, a read-only or failing disk).
_WRITE_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EROFS, errno.EIO}
#: Attempts at opening an RDB storage whose tables another process is creating at that moment.
OPEN_ATTEMPTS = 6


def quiet_optuna() -> None:
    """Silence Optuna's experimental-feature warnings and per-trial log lines (srnas shows its
    own progress)."""
    import optuna  # lazy: optuna (start-up)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _driver_hint(url: str) -> str:
    if url.startswith("postgresql"):
        return "pip install 'srnas[postgres]' (psycopg 3), or write the URL as postgresql+psycopg2:// with psycopg2-binary"
    if url.startswith("mysql"):
        return "pip install PyMySQL and write the URL as mysql+pymysql://"
    return "install the database driver named in the URL"


def is_journal_url(url: str) -> bool:
    return url.startswith("journal:") or url.endswith((".log", ".jsonl"))


def journal_path(url: str) -> Path:
    return Path(url.removeprefix("journal:"))


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` URL (None for other storages and in-memory SQLite)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


#: File system types on which SQLite's file locks cannot be trusted: writers on several machines
#: (or several processes, on some) get "database is locked" or lose writes (optuna #820, #4994, #6036).
NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "9p", "ceph", "fuse.cephfs", "glusterfs",
    "fuse.glusterfs", "beegfs", "fuse.sshfs", "sshfs", "afs", "ocfs2", "gfs2", "panfs", "wekafs", "fuse.juicefs",
    "fuse.s3fs", "fuse.gcsfuse", "fuse.rclone", "davfs", "fuse.davfs2",
})
def refuse_network_sqlite(url: str) -> None:
    """`StudyError` (one line, naming the way out) when ``url`` is a SQLite file on a network
    file system (`NETWORK_FILESYSTEMS`): workers that write to it from several processes or
    machines get "database is locked" or lose trials. Other storages pass."""
    db = sqlite_path(url)
    if db is None:
        return
    found = filesystem_of(db)
    if found is None:
        return
    kind, point = found
    if kind in NETWORK_FILESYSTEMS or kind.startswith("nfs"):
        raise StudyError(f"{db} is on a network file system ({kind}, mounted at {point}): SQLite's locks do not "
                         "hold there (\"database is locked\", lost trials); use PostgreSQL (--storage "
                         "postgresql+psycopg://USER:PASS@HOST/DB), with srnas storage-proxy (--storage "
                         "grpc://HOST:PORT) in front of it for many workers, or keep study.db on a local disk "
                         "(SRNAS_TRIALS_DIR)")


#: Seconds a client waits for a gRPC storage proxy to answer before it counts as unreachable.
GRPC_CONNECT_TIMEOUT_S = 10.0


def is_grpc_url(url: str) -> bool:
    return url.startswith("grpc://")


def grpc_address(url: str) -> tuple[str, int]:
    """``grpc://HOST:PORT`` -> (HOST, PORT); `StudyError` naming the URL otherwise."""
    host, sep, port = url.removeprefix("grpc://").rstrip("/").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise StudyError(f"invalid storage URL {url!r}; expected grpc://HOST:PORT (what srnas storage-proxy serves)")
    return host.strip("[]"), int(port)


def _grpc_storage(url: str) -> Any:
    """A client of Optuna's gRPC storage proxy (`srnas.storage_proxy.serve_storage_proxy`) at ``url``, once it answers."""
    host, port = grpc_address(url)
    try:
        # lazy: optional grpc (the cluster extra)
        import grpc  # noqa: F401  (optuna imports it lazily, with a less helpful error)
    except ImportError:
        raise MissingExtraError("grpcio", "cluster", "a grpc:// storage (Optuna's gRPC storage proxy)") from None
    from optuna.storages import GrpcStorageProxy  # lazy: optuna (start-up)

    proxy = GrpcStorageProxy(host=host, port=port)
    try:
        proxy.wait_server_ready(timeout=GRPC_CONNECT_TIMEOUT_S)
    except Exception as exc:
        proxy.close()
        raise StudyError(f"storage {url}: no gRPC storage proxy answers there within {GRPC_CONNECT_TIMEOUT_S:.0f} s "
                         f"({type(exc).__name__}); start one with srnas storage-proxy --storage URL --host HOST "
                         "--port PORT") from None
    return proxy


def open_storage(url: str) -> Any:
    """An Optuna storage for ``url``.

    Journal files (``journal:PATH`` or a path ending in ``.log``/``.jsonl``) use `JournalFile`
    (torn records repaired, all-or-nothing writes). RDB URLs (SQLite, PostgreSQL, MySQL) are
    opened again when another process is creating their tables at that moment;
    ``grpc://HOST:PORT`` is a client of the gRPC storage proxy (`srnas.storage_proxy.serve_storage_proxy`). Every
    failure becomes one line naming the URL (its password hidden). Stale trials are srnas's
    business (``heartbeat_at``, `srnas.search.session`), not Optuna's RDB heartbeat.
    """
    quiet_optuna()
    kind = storage_kind(url)
    if kind is None:
        raise StudyError(f"invalid storage URL {url!r}; expected e.g. sqlite:///study.db, "
                         "postgresql://user:pass@host/db, grpc://host:port, or journal:FILE")
    if kind not in STORAGES:
        raise StudyError(f"storage {redact(url)}: {STORAGES.unknown(kind)}")
    return STORAGES.get(kind)(url)


def storage_kind(url: str) -> str | None:
    """The `STORAGES` name of ``url``: ``journal``, ``grpc``, or an RDB URL's dialect
    (``postgresql+psycopg://`` -> ``postgresql``); None for what is no storage URL at all."""
    if is_journal_url(url):
        return "journal"
    if "://" not in url:
        return None
    return url.split("://", 1)[0].split("+", 1)[0].lower()


def _journal_storage(url: str) -> Any:
    """Optuna's journal storage on `srnas.journal.JournalFile` (``journal:PATH``)."""
    # lazy: optuna (start-up), also under srnas.journal
    from optuna.storages import JournalStorage

    from srnas.journal import JournalFile

    path = journal_path(url)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFile(path))
    except OSError as exc:
        raise StudyError(f"journal storage {path}: {exc.strerror or exc}") from None


def _rdb_storage(url: str) -> Any:
    """Optuna's RDB storage (SQLite, PostgreSQL, MySQL), opened again while another process
    creates its tables; a server's behind `srnas.retry.RetryingStorage`."""
    import optuna  # lazy: optuna (start-up)

    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Several local workers share one file: wait for the lock instead of failing at once.
        engine_kwargs["connect_args"] = {"timeout": 60}
    else:
        engine_kwargs["pool_pre_ping"] = True
        if url.startswith("postgresql"):
            engine_kwargs["connect_args"] = {"connect_timeout": 10}
    for attempt in range(OPEN_ATTEMPTS):
        try:
            storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
            if url.startswith(("postgresql", "mysql")):  # a server: survive its restarts (srnas.retry)
                # lazy: optuna (start-up), also under srnas.retry
                from optuna.storages._cached_storage import _CachedStorage  # what optuna wraps an RDB in

                from srnas.retry import RetryingStorage

                # Its abstract methods are delegated when srnas.retry is imported (mypy cannot see it).
                return RetryingStorage(_CachedStorage(storage), location=redact(url))  # type: ignore[abstract]
            return storage
        except ImportError as exc:
            raise StudyError(f"storage {redact(url)}: database driver missing ({exc}); {_driver_hint(url)}") from None
        except Exception as exc:  # sqlalchemy.exc.ArgumentError, OperationalError, IntegrityError ...
            if _creation_race(exc) and attempt + 1 < OPEN_ATTEMPTS:
                time.sleep(0.1 * (attempt + 1) + random.random() * 0.2)
                continue
            failure = storage_failure(exc, sqlite_path(url) or redact(url))
            if failure is not None:
                raise failure from None
            first = first_line(exc)
            if "Failed to import DB access module" in first or "No module named" in first:
                raise StudyError(f"storage {redact(url)}: database driver missing; {_driver_hint(url)}") from None
            raise StudyError(f"storage {redact(url)}: cannot connect ({type(exc).__name__}: {first})") from None
    raise AssertionError("unreachable")  # the last attempt returns or raises


#: How each kind of storage URL opens (`storage_kind`): a new storage is one opener here.
STORAGES: Registry[Callable[[str], Any]] = Registry("storage", {
    "sqlite": _rdb_storage, "postgresql": _rdb_storage, "mysql": _rdb_storage,
    "journal": _journal_storage, "grpc": _grpc_storage})


def _creation_race(exc: BaseException) -> bool:
    """Whether ``exc`` comes from another process creating the same tables at the same time
    (Optuna creates them and stamps the alembic version on first use)."""
    text = first_line(exc).lower()
    return type(exc).__name__ == "IntegrityError" or "already exists" in text or "duplicate key" in text


def redact(url: str) -> str:
    """The URL without its password."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def _layers(storage: Any) -> Iterator[Any]:
    """``storage`` and what it wraps (Optuna's cache around an RDB storage, a journal backend)."""
    for _ in range(4):
        if storage is None:
            return
        yield storage
        storage = getattr(storage, "_backend", None)


def storage_location(storage: Any) -> str:
    """The file or URL (password hidden) behind an Optuna storage, for messages."""
    from srnas.journal import JournalFile  # lazy: optuna (start-up), under srnas.journal

    for layer in _layers(storage):
        if isinstance(layer, JournalFile):
            return str(layer.path)
        url = getattr(layer, "url", None)
        if isinstance(url, str):
            return str(sqlite_path(url) or redact(url))
        if type(layer).__name__ == "GrpcStorageProxy":
            return f"grpc://{layer._host}:{layer._port}"
    return type(storage).__name__


def storage_failure(exc: BaseException, where: str | Path) -> SrnasError | None:
    """The one-line error for ``exc`` when it says a disk is full or a database file is
    unusable (SQLite, PostgreSQL, an `OSError` anywhere in its chain), else None. The path an
    `OSError` names wins over ``where``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, WriteError):
            return current
        if isinstance(current, OSError) and current.errno in _WRITE_ERRNOS:
            return write_error(Path(str(current.filename or where)), current)
        orig = getattr(current, "orig", None)
        text = str(orig or current).strip().splitlines()[0] if str(orig or current).strip() else ""
        sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        if "database or disk is full" in text or sqlstate == "53100" or "No space left on device" in text:
            err = StorageFullError(f"{where}: disk full, the storage cannot record trials ({text}); free some "
                                   "space and re-run the same command to resume")
            err.errno = errno.ENOSPC
            return err
        if "database disk image is malformed" in text or "file is not a database" in text:
            return StudyError(f"{where}: not a readable SQLite study ({text}); restore it from a backup")
        if "disk I/O error" in text:
            code = getattr(orig, "sqlite_errorname", None)
            return StudyError(f"{where}: disk I/O error{f' ({code})' if code else ''} while reading or writing "
                              "the study; check the disk and re-run the same command")
        current = current.__cause__ or current.__context__
    return None


@contextlib.contextmanager
def storage_errors(storage: Any) -> Iterator[None]:
    """Turn a full disk or an unusable storage file raised inside the block into one line
    naming the file (`storage_failure`); other exceptions pass unchanged."""
    try:
        yield
    except (SrnasError, KeyboardInterrupt):
        raise
    except Exception as exc:
        failure = storage_failure(exc, storage_location(storage))
        if failure is None:
            raise
        raise failure from None


@contextlib.contextmanager
def storage_lock(storage: Any, name: str) -> Iterator[None]:
    """Serialise the creators of study ``name`` on a shared storage, across machines: a
    PostgreSQL advisory lock, a MySQL named lock, a lock file beside a journal file (NFS-safe).
    SQLite needs none beyond `StudyHome.creating` (one machine)."""
    from srnas.journal import JournalFile, JournalLock  # lazy: optuna (start-up), under srnas.journal

    layers = list(_layers(storage))
    journal = next((layer for layer in layers if isinstance(layer, JournalFile)), None)
    if journal is not None:
        with JournalLock(str(journal.path) + ".create", what="the creation lock of this journal's studies").held():
            yield
        return
    rdb = next((layer for layer in layers if isinstance(getattr(layer, "url", None), str)), None)
    url = rdb.url if rdb is not None else ""
    if not url.startswith(("postgresql", "mysql")):
        yield
        return
    storage = rdb
    from sqlalchemy import text  # lazy: sqlalchemy (0.2 s at start-up)

    key = int.from_bytes(hashlib.sha256(f"srnas-create:{name}".encode()).digest()[:8], "big", signed=True)
    postgres = url.startswith("postgresql")
    with storage.engine.connect() as conn:
        if postgres:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
        else:
            conn.execute(text("SELECT GET_LOCK(:k, 600)"), {"k": f"srnas-{key}"})
        conn.commit()
        try:
            yield
        finally:
            if postgres:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            else:
                conn.execute(text("SELECT RELEASE_LOCK(:k)"), {"k": f"srnas-{key}"})
            conn.commit()
