"""`StudiesStorage`: every study under ``trials/`` (or of several storage URLs) read as one
Optuna storage, so that one dashboard lists and compares them side by side.

Every study keeps its own storage (``trials/<study>/study.db``); the studies and trials of all of
them get global ids, ``local id * STRIDE + member index``, and every call goes to the storage
that holds the study or trial. Each study's artifact store is found from its folder or from the
store it recorded (`StudiesStorage.artifact_store`).

>>> from srnas.results.dashboard_storage import STRIDE
>>> divmod(3 * STRIDE + 1, STRIDE)  # (local id, member index)
(3, 1)
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna.storages import BaseStorage

from srnas.artifacts import artifact_location, open_artifact_store
from srnas.errors import SrnasError
from srnas.storages import open_storage
from srnas.studies import StudyHome, list_study_names, trials_root

if TYPE_CHECKING:
    from srnas.artifacts import ArtifactStore


class DashboardError(SrnasError):
    """The dashboard cannot be served (port in use, host not on this machine, ...)."""


#: Global ids of studies and trials in `StudiesStorage`: ``local id * STRIDE + member index``.
STRIDE = 1024


class _Member:
    """One storage read by `StudiesStorage`; ``home`` is the study folder its file lives in
    (None: a shared storage, whose studies' folders are found by name)."""

    def __init__(self, storage: Any, home: "StudyHome | None") -> None:
        self.storage = storage
        self.home = home


class StudiesStorage(BaseStorage):
    """Several Optuna storages read as one: every study under ``root`` (default ``trials/``;
    one SQLite file per study folder, rescanned at each listing so new studies appear), or
    every study of the storage URLs ``storages``. Study and trial ids are made unique across
    them (`STRIDE`); every call goes to the storage that holds the study or trial. Creating
    studies is refused (``srnas search`` creates them)."""

    def __init__(self, root: Path | None = None, storages: Sequence[str] = ()) -> None:
        self.root = Path(root) if root is not None else trials_root()
        self.scan_root = not storages
        self._members: list[_Member] = [_Member(open_storage(url), None) for url in storages]
        self._keys: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stores: dict[str, "ArtifactStore"] = {}
        #: Study folders whose storage could not be opened (an empty or broken file), by name.
        self.skipped: dict[str, str] = {}
        self.refresh()

    # ---- members --------------------------------------------------------------------------

    def refresh(self) -> None:
        """Open the studies under ``root`` not opened yet (when no storages were given)."""
        if not self.scan_root:
            return
        for name in list_study_names(self.root):
            home = StudyHome(name, self.root)
            key = str(home.db)
            if key in self._keys or name in self.skipped:
                continue
            try:
                storage = home.storage(create=False)
            except SrnasError as exc:
                self.skipped[name] = str(exc)
                continue
            with self._lock:
                if len(self._members) >= STRIDE:
                    raise DashboardError(f"more than {STRIDE} studies under {self.root}; pass --study NAME")
                self._keys[key] = len(self._members)
                self._members.append(_Member(storage, home))

    def _local(self, gid: int) -> tuple[Any, int, int]:
        """(storage, local id, member index) of a global id."""
        index, local = gid % STRIDE, gid // STRIDE
        if index >= len(self._members):
            raise KeyError(f"no study or trial with id {gid}")
        return self._members[index].storage, local, index

    def _trial(self, t: Any, index: int) -> Any:
        out = copy.copy(t)  # storages may cache the object they return
        out._trial_id = t._trial_id * STRIDE + index
        return out

    def home_of(self, study_id: int) -> "StudyHome | None":
        """The folder of a study: its storage's, or ``root/<study name>`` for a shared one."""
        storage, local, index = self._local(study_id)
        member = self._members[index]
        if member.home is not None:
            return member.home
        try:
            return StudyHome(storage.get_study_name_from_id(local), self.root)
        except SrnasError:  # a study name that is no folder name: it has no default folder
            return None

    def artifact_store(self, study_id: int) -> "ArtifactStore | None":
        """The artifact store of a study (`srnas.artifacts.artifact_location`)."""
        home = self.home_of(study_id)
        attrs = self.get_study_user_attrs(study_id)
        if home is None and not attrs.get("artifacts"):
            return None
        location = artifact_location(attrs, home) if home is not None else str(attrs["artifacts"])
        with self._lock:
            if location not in self._stores:
                self._stores[location] = open_artifact_store(location)
            return self._stores[location]

    # ---- studies --------------------------------------------------------------------------

    def create_new_study(self, directions: Sequence[Any], study_name: str | None = None) -> int:
        raise DashboardError("this dashboard shows several storages and creates no study; "
                             "srnas search creates studies")

    def delete_study(self, study_id: int) -> None:
        storage, local, _ = self._local(study_id)
        storage.delete_study(local)

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        storage, local, _ = self._local(study_id)
        storage.set_study_user_attr(local, key, value)

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        storage, local, _ = self._local(study_id)
        storage.set_study_system_attr(local, key, value)

    def get_study_id_from_name(self, study_name: str) -> int:
        for index, member in enumerate(list(self._members)):
            try:
                return member.storage.get_study_id_from_name(study_name) * STRIDE + index
            except KeyError:
                continue
        raise KeyError(f"no study named {study_name!r}")

    def get_study_name_from_id(self, study_id: int) -> str:
        storage, local, _ = self._local(study_id)
        return storage.get_study_name_from_id(local)

    def get_study_directions(self, study_id: int) -> list[Any]:
        storage, local, _ = self._local(study_id)
        return storage.get_study_directions(local)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        storage, local, _ = self._local(study_id)
        return storage.get_study_user_attrs(local)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        storage, local, _ = self._local(study_id)
        return storage.get_study_system_attrs(local)

    def get_all_studies(self) -> list[Any]:
        self.refresh()
        out = []
        for index, member in enumerate(list(self._members)):
            for frozen in member.storage.get_all_studies():
                mine = copy.copy(frozen)
                mine._study_id = frozen._study_id * STRIDE + index
                out.append(mine)
        return sorted(out, key=lambda f: (f.study_name, f._study_id))

    # ---- trials ---------------------------------------------------------------------------

    def create_new_trial(self, study_id: int, template_trial: Any | None = None) -> int:
        storage, local, index = self._local(study_id)
        return storage.create_new_trial(local, template_trial) * STRIDE + index

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                        distribution: Any) -> None:
        storage, local, _ = self._local(trial_id)
        storage.set_trial_param(local, param_name, param_value_internal, distribution)

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        storage, local, index = self._local(study_id)
        return storage.get_trial_id_from_study_id_trial_number(local, trial_number) * STRIDE + index

    def set_trial_state_values(self, trial_id: int, state: Any, values: Sequence[float] | None = None) -> bool:
        storage, local, _ = self._local(trial_id)
        return storage.set_trial_state_values(local, state, values)

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        storage, local, _ = self._local(trial_id)
        storage.set_trial_intermediate_value(local, step, intermediate_value)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        storage, local, _ = self._local(trial_id)
        storage.set_trial_user_attr(local, key, value)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        storage, local, _ = self._local(trial_id)
        storage.set_trial_system_attr(local, key, value)

    def get_trial(self, trial_id: int) -> Any:
        storage, local, index = self._local(trial_id)
        return self._trial(storage.get_trial(local), index)

    def get_all_trials(self, study_id: int, deepcopy: bool = True, states: Any = None) -> list[Any]:
        storage, local, index = self._local(study_id)
        return [self._trial(t, index) for t in storage.get_all_trials(local, deepcopy=deepcopy, states=states)]
