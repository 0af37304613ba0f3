"""The Optuna internals srnas relies on, in one place, each with why no public API serves.

Optuna 5 gives a `Study` and a `Trial` no public handle on their storage or their storage ids,
yet srnas must reach the storage directly where the study object cannot act:

- heartbeats and stale-trial recovery write a RUNNING trial's attributes from another thread or
  fail another worker's trial (`optuna.Study.tell` only finishes trials of this process);
- storage errors are told in one line naming the storage (`srnas.storages.storage_errors`);
- the confirmation claims and heartbeats are study attributes written by id.

`study._storage`, `study._study_id` and `trial._trial_id` have been stable since Optuna 1.x; a
change shows here, in one file, and in the tests of every caller.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optuna.storages import BaseStorage


def storage_of(study: Any) -> "BaseStorage":
    """The storage behind an `optuna.Study`."""
    return study._storage


def study_id_of(study: Any) -> int:
    """The storage's id of an `optuna.Study`."""
    return study._study_id


def trial_id_of(trial: Any) -> int:
    """The storage's id of an `optuna.Trial` or `optuna.trial.FrozenTrial` (not its ``number``)."""
    return trial._trial_id
