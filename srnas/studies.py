"""Where studies live, below every layer that reads or writes them (search, results, CLI).

A `StudyHome` is one study's folder, ``trials/<study>/`` by default (``SRNAS_TRIALS_DIR`` or a
``root`` moves it): the SQLite storage ``study.db`` (unless a storage URL is given), the
artifact folder, the retrain runs, the report and the logs. Every path of a study is composed
here and nowhere else. `open_storage` turns a storage URL (SQLite, PostgreSQL, MySQL, a journal
file) into an Optuna storage with one-line errors; `load_study` opens an existing study.

>>> home = StudyHome("tiny-demo", root=Path("trials"))
>>> str(home.artifacts), str(home.report)
('trials/tiny-demo/artifacts', 'trials/tiny-demo/report.html')
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from srnas.errors import SrnasError

if TYPE_CHECKING:
    import optuna

DEFAULT_ROOT = Path("trials")
STUDY_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
#: Seconds between heartbeats of a running trial on RDB storages; a trial whose heartbeat is
#: older than twice this is failed by the next worker that looks (and retried).
HEARTBEAT_INTERVAL = 20


class StudyError(SrnasError):
    """A study or its storage cannot be used."""


def trials_root() -> Path:
    """The folder that holds the study folders (``SRNAS_TRIALS_DIR``, default ``trials``)."""
    return Path(os.environ.get("SRNAS_TRIALS_DIR", DEFAULT_ROOT))


def check_study_name(name: str) -> str:
    """``name`` if it is a valid study name (it becomes a folder name), else `StudyError`."""
    if not isinstance(name, str) or not STUDY_NAME_RE.match(name) or name in (".", ".."):
        raise StudyError(f"invalid study name {name!r}: use letters, digits, '.', '_' or '-' (max 100), "
                         "starting with a letter or digit")
    return name


def safe_study_name(text: str) -> str:
    """A valid study name made from free text (``my photos`` -> ``my-photos``)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-._")[:100] or "study"
    return check_study_name(name if name[0].isalnum() else f"s{name}"[:100])


def path_slug(text: str) -> str:
    """``text`` as one safe path component (schedule names: ``tiny*10@20`` -> ``tinyx10-at20``)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", text.replace("*", "x").replace("@", "-at")).strip("._")
    return slug or "_"


class StudyHome:
    """The folder of one study and every path in it."""

    def __init__(self, name: str, root: Path | str | None = None) -> None:
        self.name = check_study_name(name)
        self.root = Path(root) if root is not None else trials_root()

    def __repr__(self) -> str:
        return f"StudyHome({self.name!r}, root={str(self.root)!r})"

    @property
    def dir(self) -> Path:
        return self.root / self.name

    @property
    def db(self) -> Path:
        """The default SQLite storage file."""
        return self.dir / "study.db"

    @property
    def default_storage_url(self) -> str:
        return f"sqlite:///{self.db.resolve()}"

    @property
    def artifacts(self) -> Path:
        """Trial artifacts (the LR | SR | HR sample images)."""
        return self.dir / "artifacts"

    @property
    def tmp(self) -> Path:
        """Scratch files of running trials (removed when they finish)."""
        return self.dir / "tmp"

    @property
    def retrain(self) -> Path:
        """Retrain runs: ``retrain/<arch_id>/<schedule>/``."""
        return self.dir / "retrain"

    @property
    def report(self) -> Path:
        return self.dir / "report.html"

    @property
    def search_log(self) -> Path:
        return self.dir / "search.log"

    @property
    def budget_lock(self) -> Path:
        """The lock that serialises budget claims of the workers on this machine."""
        return self.dir / ".budget.lock"

    def exists(self) -> bool:
        return self.db.is_file()

    def storage(self, url: str | None = None, *, heartbeat: int | None = HEARTBEAT_INTERVAL,
                create: bool = True) -> Any:
        """The Optuna storage of this study: ``url``, or the default SQLite file (its folder is
        created unless ``create`` is false)."""
        if url is None and create:
            self.dir.mkdir(parents=True, exist_ok=True)
        return open_storage(url or self.default_storage_url, heartbeat=heartbeat)

    def load(self, url: str | None = None) -> "optuna.Study":
        """The existing study (one clear line when it does not exist)."""
        import optuna

        if url is None and not self.exists():
            known = list_study_names(self.root)
            hint = f"; studies here: {', '.join(known)}" if known else ""
            raise StudyError(f"no study {self.name!r} in {self.root}/{hint}")
        storage = self.storage(url, heartbeat=None, create=False)
        try:
            return optuna.load_study(study_name=self.name, storage=storage)
        except KeyError:
            raise StudyError(f"study {self.name!r} not found in storage {redact(url or self.default_storage_url)}") from None


def list_study_names(root: Path | None = None) -> list[str]:
    """Names of the studies with a default SQLite storage under ``root``."""
    base = root if root is not None else trials_root()
    return sorted(p.parent.name for p in base.glob("*/study.db"))


def load_study(study: str, storage: str | None = None, *, root: Path | None = None) -> "optuna.Study":
    """An existing study by name (see `StudyHome.load`)."""
    return StudyHome(study, root).load(storage)


# ---- storages -----------------------------------------------------------------------------


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


def is_journal_url(url: str) -> bool:
    return url.startswith("journal:") or url.endswith((".log", ".jsonl"))


def open_storage(url: str, *, heartbeat: int | None = HEARTBEAT_INTERVAL) -> Any:
    """An Optuna storage for ``url``.

    Journal files (``journal:PATH`` or a path ending in ``.log``/``.jsonl``) use Optuna's
    JournalFileBackend; RDB URLs get a heartbeat so that trials of killed workers are failed.
    Every failure becomes one line naming the URL (its password hidden).
    """
    import optuna

    quiet_optuna()
    if is_journal_url(url):
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
        raise StudyError(f"storage {redact(url)}: database driver missing ({exc}); {_driver_hint(url)}") from None
    except Exception as exc:  # sqlalchemy.exc.ArgumentError, OperationalError, ...
        msg = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        first = msg[0] if msg else type(exc).__name__
        if "Failed to import DB access module" in first or "No module named" in first:
            raise StudyError(f"storage {redact(url)}: database driver missing; {_driver_hint(url)}") from None
        raise StudyError(f"storage {redact(url)}: cannot connect ({type(exc).__name__}: {first})") from None


def redact(url: str) -> str:
    """The URL without its password."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)
