"""``srnas worker``: one machine's share of a search whose study exists already (the entry point
of cluster jobs).

A cluster search is: create the study once (``srnas search ... --create-only``: the settings are
recorded in the study, nothing trains), then start ``srnas worker --study NAME --storage URL``
on any number of machines, at any time (a SLURM job array, submitit, a Kubernetes Indexed Job;
recipes in ``examples/cluster/``). A worker

- takes every setting from the study (``run_settings``: space, data, proxy, budget, seed ...),
  and refuses, before it trains, a study it cannot join as it was searched: created by another
  srnas version, or a space or proxy that is defined differently on this machine;
- uses the devices its scheduler gave it: one worker process per visible GPU
  (``CUDA_VISIBLE_DEVICES``, set by SLURM's ``--gres``/``--gpus`` and by Kubernetes), else one
  on the CPU with the cores it was given (``SLURM_CPUS_PER_TASK``, the affinity mask);
- pulls trials until the study holds its budget, takes its part in confirming the winners, and
  exits 0 (also when it finds the budget met: a late array task is not an error);
- on SIGTERM, SIGUSR1 or SIGUSR2 (a scheduler's pre-emption or pre-timeout signal, SLURM's
  ``--signal=USR1@120``, submitit's USR2) fails its running trial and enqueues it again, so that another worker
  trains it (nothing lost: a stopped trial counts nothing), and exits `REQUEUE_EXIT` (75, as
  ``srnas retrain`` does), which the recipes turn into a requeue of the job.
"""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from srnas._version import __version__
from srnas.errors import ConfigError, SrnasError, StudyError
from srnas.optuna_seams import storage_of
from srnas.search.entry import resolve_search
from srnas.search.progress import SearchProgress
from srnas.search.processes import RESIGNAL_S, stop_as_interrupt  # noqa: F401  (RESIGNAL_S: the tests read it here)
from srnas.search.session import Session
from srnas.storages import redact, refuse_network_sqlite, storage_errors
from srnas.studies import StudyHome, check_study_name

if TYPE_CHECKING:
    from srnas.search.settings import SearchSettings

#: Exit code of a worker stopped by its scheduler: "requeue me" (EX_TEMPFAIL, as retrain's).
REQUEUE_EXIT = 75
#: Exit code after Ctrl-C (the running trial is requeued too).
INTERRUPT_EXIT = 130
#: Signals that stop a worker cleanly: its trial is requeued and it exits `REQUEUE_EXIT`
#: (SIGUSR2: what submitit asks SLURM to send before the time limit).
STOP_SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2")
#: Environment variables that number the tasks of a job (SLURM arrays and steps, Kubernetes
#: Indexed Jobs), in the order they are read: each task's samplers get their own seed.
TASK_INDEX_VARS = ("SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX", "SLURM_PROCID")
#: Seconds between two looks at the study for the worker's progress lines.
PROGRESS_INTERVAL_S = 10.0


class WorkerStopped(SrnasError):
    """The worker was stopped by a signal; its running trial was enqueued again."""

    EXIT_CODE = REQUEUE_EXIT


def task_index() -> int | None:
    """This task's index in its job (`TASK_INDEX_VARS`), or None outside a job array."""
    for name in TASK_INDEX_VARS:
        value = os.environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return None


def allotted_cpus() -> int:
    """The cores this task may use: ``SLURM_CPUS_PER_TASK`` when set, else the affinity mask."""
    from srnas.train.device import cpu_count  # lazy: torch (start-up)

    given = os.environ.get("SLURM_CPUS_PER_TASK", "").strip()
    return min(int(given), cpu_count()) if given.isdigit() and int(given) > 0 else cpu_count()


def scheduler_devices(devices: str | None = None) -> tuple[str, ...]:
    """The devices of this worker: ``devices`` (a comma list) when given, else every GPU this
    process sees (CUDA numbers the ones ``CUDA_VISIBLE_DEVICES`` names from 0), else the CPU."""
    if devices:
        names = tuple(d.strip() for d in devices.split(",") if d.strip())
        if not names:
            raise ConfigError(f"--devices {devices!r}: give a comma list such as cuda:0,cuda:1 or cpu")
        return names
    import torch  # lazy: torch (start-up)

    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        return tuple(f"cuda:{i}" for i in range(torch.cuda.device_count()))
    return ("cpu",)


def worker_settings(study: str, storage: str | None, *, root: str | Path | None = None,
                    devices: str | None = None) -> "SearchSettings":
    """The settings the study ``study`` recorded, with this machine's devices: one worker per
    device. One `StudyError` line when the storage cannot be reached or holds no such study."""
    import optuna  # lazy: optuna (start-up)

    home = StudyHome(check_study_name(study), root)
    create = f"create it first: srnas search --study {study} ... --create-only"
    if storage is None and not home.exists():
        raise StudyError(f"no study {study!r} in {home.root}/ ({create}; workers on other machines need the "
                         "shared --storage URL too)")
    shared = home.storage(storage, create=False)  # an unreachable storage: one line
    try:
        recorded = optuna.load_study(study_name=study, storage=shared).user_attrs
    except KeyError:
        raise StudyError(f"study {study!r} not found in storage {redact(storage or home.default_storage_url)} "
                         f"({create})") from None
    if not recorded.get("srnas") or not isinstance(recorded.get("run_settings"), dict):
        raise StudyError(f"study {study!r} was not created by srnas search (no recorded settings): create it with "
                         f"srnas search --study {study} ... --create-only")
    options: dict[str, Any] = {"study": study, **({"storage": storage} if storage else {})}
    settings, _ = resolve_search(root=root, **options)
    names = scheduler_devices(devices)
    return dataclasses.replace(settings, devices=names, workers=len(names), workers_per_device=1)


def check_joinable(session: "Session") -> None:
    """`StudyError` when this srnas cannot work on the session's study as it was searched:
    another srnas version, or a space, proxy or data that differ here (before any training)."""
    known = session.study.user_attrs
    version = known.get("srnas_version")
    if version is not None and version != __version__:
        raise StudyError(f"study {session.name!r} is searched with srnas {version}, this worker runs srnas "
                         f"{__version__}: install srnas {version} where the workers run (workers of other versions "
                         "could train or record trials differently)")
    changes = session.changes_from(known)
    if changes:
        raise StudyError(f"study {session.name!r} was created with another setup than this machine has: "
                         f"{'; '.join(changes)}; every worker needs the study's srnas, space file and data")


def run_worker(study: str, storage: str | None = None, *, root: str | Path | None = None,
               devices: str | None = None, console: "Console | None" = None, progress: bool = True) -> int:
    """Join the study ``study`` on ``storage`` and train its trials until its budget is met
    (see the module docstring); returns the exit code: 0 when the budget is met, `REQUEUE_EXIT`
    when a scheduler's signal stopped it, `INTERRUPT_EXIT` after Ctrl-C. Bad input (a missing
    study, an unreachable storage, another srnas version or setup) is one `SrnasError` line
    before anything trains."""
    # lazy: optuna (start-up)
    from srnas.search.optuna_engine import run_workers
    from srnas.search.sampling import make_pruner, make_sampler_for_worker

    console = console or Console(stderr=True)
    settings = worker_settings(study, storage, root=root, devices=devices)
    if settings.engine != "optuna":
        raise ConfigError(f"study {study!r} is searched with --engine {settings.engine}; srnas worker runs Optuna "
                          "workers only (NNI runs its strategy in one process: srnas search --study NAME)")
    session = Session.attach(settings)
    refuse_network_sqlite(settings.storage or session.home.default_storage_url)
    with storage_errors(storage_of(session.study)):
        check_joinable(session)
        if session.budget_left() == 0:  # a late task of an array: its job is done
            console.print(f"study {session.name!r}: nothing to do, {session.end_note()}")
            return 0
        index = task_index()
        # Tasks of one job get distinct sampler seeds (the same seed would propose the same configs).
        first_id = 1 + (index if index is not None else os.getpid() % 10_007) * int(settings.workers)
        session.study.sampler = make_sampler_for_worker(settings, first_id, session.space)
        session.study.pruner = make_pruner(settings, session.schedule)
        threads = allotted_cpus() if settings.workers == 1 and settings.devices[0] == "cpu" else None
        counts = session.counts()
        task = f"task {index}, " if index is not None else ""
        console.print(f"worker ({task}{settings.workers} on {','.join(settings.devices)}) joins "
                      + session.describe("optuna") + f": {counts.finished} of {settings.budget} architectures trained")
        monitor = SearchProgress(session.study, settings.budget, console=console, bar=progress,
                                 interval=PROGRESS_INTERVAL_S)
        with stop_as_interrupt((*STOP_SIGNALS, "SIGINT")) as got:
            try:
                with monitor:
                    bad = run_workers(session, first_id=first_id, threads=threads, requeue=True)
            except KeyboardInterrupt:
                got["taken"] = 1
                if got["signal"] in (getattr(signal, name, None) for name in STOP_SIGNALS):
                    console.print(f"worker stopped by {signal.Signals(got['signal']).name}: its running trials were "
                                  f"enqueued again for other workers; exit {REQUEUE_EXIT} (requeue this job)")
                    return REQUEUE_EXIT
                console.print("worker interrupted: its running trials were enqueued again for other workers")
                return INTERRUPT_EXIT
        if bad:
            session.fail_stale()  # their trials, retried by other workers (or by this one later)
            if session.budget_left() > 0:
                raise SrnasError(f"{len(bad)} of {settings.workers} worker processes exited with an error (codes "
                                 f"{bad}); their trials are retried by the other workers")
        console.print(session.end_note())
    return 0
