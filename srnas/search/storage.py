"""Where a study lives: ``trials/<study>/`` with an SQLite storage and an artifact folder by
default, or any Optuna storage URL (PostgreSQL, MySQL, a journal file)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from srnas.errors import SrnasError

DEFAULT_ROOT = Path("trials")
STUDY_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
#: Seconds between heartbeats of a running trial on RDB storages; a trial whose heartbeat is
#: older than twice this is failed by the next worker that looks (and retried).
HEARTBEAT_INTERVAL = 20


class StudyError(SrnasError):
    """A study or its storage cannot be used."""


def trials_root() -> Path:
    return Path(os.environ.get("SRNAS_TRIALS_DIR", DEFAULT_ROOT))


def study_dir(study: str, root: Path | None = None) -> Path:
    if not STUDY_NAME_RE.match(study):
        raise StudyError(f"invalid study name {study!r}: use letters, digits, '.', '_' or '-' (max 100)")
    return (root or trials_root()) / study


def default_storage_url(study: str, root: Path | None = None) -> str:
    return f"sqlite:///{(study_dir(study, root) / 'study.db').resolve()}"


def artifact_dir(study: str, root: Path | None = None) -> Path:
    return study_dir(study, root) / "artifacts"


def quiet_optuna() -> None:
    """Silence Optuna's experimental-feature warnings and per-trial log lines (srnas shows its
    own progress); our use of heartbeats outside study.optimize is deliberate."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")


def _driver_hint(url: str) -> str:
    if url.startswith("postgresql"):
        return "pip install 'srnas[postgres]' (psycopg 3), or write the URL as postgresql+psycopg2:// with psycopg2-binary"
    if url.startswith("mysql"):
        return "pip install PyMySQL and write the URL as mysql+pymysql://"
    return "install the database driver named in the URL"


def open_storage(url: str | None, study: str, *, heartbeat: int | None = HEARTBEAT_INTERVAL,
                 root: Path | None = None, create_dir: bool = True) -> Any:
    """An Optuna storage for ``url`` (default: ``trials/<study>/study.db``).

    Journal files (``journal:PATH`` or a path ending in ``.log``/``.jsonl``) use Optuna's
    JournalFileBackend; RDB URLs get a heartbeat so that trials of killed workers are failed.
    Every failure becomes one line naming the URL.
    """
    import optuna

    quiet_optuna()
    if url is None:
        d = study_dir(study, root)
        if create_dir:
            d.mkdir(parents=True, exist_ok=True)
        url = default_storage_url(study, root)
    if url.startswith("journal:") or url.endswith((".log", ".jsonl")):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        path = Path(url.removeprefix("journal:"))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        except OSError as exc:
            raise StudyError(f"journal storage {path}: {exc.strerror or exc}") from None
    if "://" not in url:
        raise StudyError(f"invalid storage URL {url!r}; expected e.g. sqlite:///study.db, "
                         "postgresql://user:pass@host/db, or journal:FILE")
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Several local workers share one file: wait for the lock instead of failing at once.
        engine_kwargs["connect_args"] = {"timeout": 60}
    else:
        engine_kwargs["pool_pre_ping"] = True
        if url.startswith("postgresql"):
            engine_kwargs["connect_args"] = {"connect_timeout": 10}
    try:
        return optuna.storages.RDBStorage(
            url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat,
            grace_period=None if heartbeat is None else 2 * heartbeat,
            heartbeat_stale_trial_callback=(optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2)
                                            if heartbeat else None),
        )
    except ImportError as exc:
        raise StudyError(f"storage {_redact(url)}: database driver missing ({exc}); {_driver_hint(url)}") from None
    except Exception as exc:  # sqlalchemy.exc.ArgumentError, OperationalError, ...
        msg = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        first = msg[0] if msg else type(exc).__name__
        if "Failed to import DB access module" in first or "No module named" in first:
            raise StudyError(f"storage {_redact(url)}: database driver missing; {_driver_hint(url)}") from None
        raise StudyError(f"storage {_redact(url)}: cannot connect ({type(exc).__name__}: {first})") from None


def _redact(url: str) -> str:
    """The URL without its password."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def load_study(study: str, storage: str | None = None, *, root: Path | None = None) -> Any:
    """An existing study (one clear line when it does not exist)."""
    import optuna

    if storage is None and not (study_dir(study, root) / "study.db").is_file():
        known = sorted(p.name for p in (root or trials_root()).glob("*/study.db") for p in [p.parent])
        hint = f"; studies here: {', '.join(known)}" if known else ""
        raise StudyError(f"no study {study!r} in {(root or trials_root())}/{hint}")
    st = open_storage(storage, study, heartbeat=None, root=root, create_dir=False)
    try:
        return optuna.load_study(study_name=study, storage=st)
    except KeyError:
        raise StudyError(f"study {study!r} not found in storage {_redact(storage or default_storage_url(study, root))}") from None
