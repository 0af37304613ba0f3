"""Where studies live, below every layer that reads or writes them (search, results, CLI).

A `StudyHome` is one study's folder, ``trials/<study>/`` by default (``SRNAS_TRIALS_DIR`` or a
``root`` moves it): the SQLite storage ``study.db`` (unless a storage URL is given), the
artifact folder, the retrain runs, the report and the logs. Every path of a study is composed
here and nowhere else. Its storage opens through `srnas.storages.open_storage` (SQLite,
PostgreSQL, MySQL, a journal file, the gRPC proxy) with one-line errors; `load_study` opens an
existing study.

Reliability (the same on every storage): creators of one study are serialised
(`StudyHome.creating` on this machine, `srnas.storages.storage_lock` across machines); a journal
file's torn last record is repaired (`srnas.journal.JournalFile`); a full disk or a broken
storage becomes one line naming the file (`srnas.storages.storage_errors`).

>>> home = StudyHome("tiny-demo", root=Path("trials"))
>>> str(home.artifacts), str(home.report)
('trials/tiny-demo/artifacts', 'trials/tiny-demo/report.html')
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from srnas.errors import StudyError
from srnas.fileio import atomic_write_bytes
from srnas.storages import open_storage, redact, sqlite_path

if TYPE_CHECKING:
    import optuna

DEFAULT_ROOT = Path("trials")
STUDY_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
#: Seconds between the heartbeats a running trial records (``heartbeat_at``, every storage); a
#: RUNNING trial of another machine whose heartbeat has not moved for twice this (the grace
#: period) is failed by the next worker that looks, and retried.
HEARTBEAT_INTERVAL = 20


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

    @property
    def claim_lock(self) -> Path:
        """The lock under which a worker of this machine claims an architecture to train."""
        return self.dir / ".claim.lock"

    @property
    def creation_marker(self) -> Path:
        """Present while a command creates this study's SQLite file (a crash then leaves an
        empty file that the next command may take over)."""
        return self.dir / ".creating"

    def exists(self) -> bool:
        return self.db.is_file()

    def storage(self, url: str | None = None, *, create: bool = True) -> Any:
        """The Optuna storage of this study: ``url``, or the default SQLite file (its folder is
        created unless ``create`` is false). An empty (0-byte) SQLite file is refused unless a
        creation of this study was interrupted (`creating`)."""
        url = url or self.default_storage_url
        if url == self.default_storage_url and create:
            self.dir.mkdir(parents=True, exist_ok=True)
        db = sqlite_path(url)
        if db is not None and db.is_file() and db.stat().st_size == 0 \
                and not (create and self.creation_marker.is_file()):
            raise StudyError(f"{db} is empty (0 bytes), not a study: restore it from a backup, or remove it "
                             "to start a new study")
        return open_storage(url)

    @contextlib.contextmanager
    def creating(self, url: str | None = None) -> Iterator[None]:
        """Serialise the commands of this machine that create or resume this study on storage
        ``url`` (a file lock in its folder); while a SQLite file is new, a creation marker
        stays until the body succeeds."""
        from filelock import FileLock  # lazy: keeps srnas --help off filelock

        self.dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.dir / ".create.lock")):
            db = sqlite_path(url or self.default_storage_url)
            if db is not None and not db.exists():  # an empty file found later is this creation's
                atomic_write_bytes(self.creation_marker, b"")
            yield
            self.creation_marker.unlink(missing_ok=True)

    def load(self, url: str | None = None) -> "optuna.Study":
        """The existing study (one clear line when it does not exist)."""
        import optuna  # lazy: optuna (start-up)

        if url is None and not self.exists():
            known = list_study_names(self.root)
            hint = f"; studies here: {', '.join(known)}" if known else ""
            raise StudyError(f"no study {self.name!r} in {self.root}/{hint}")
        storage = self.storage(url, create=False)
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
