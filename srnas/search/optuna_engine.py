"""The Optuna engine: workers that pull trials from the session's study until it holds the
budget, with Optuna's samplers (TPE, random, NSGA-II, GP) and pruners (Hyperband, median).

One worker runs in the coordinating process when ``workers == 1``; otherwise each worker is a
process of its own (``python -m srnas.search SETTINGS_JSON WORKER_ID``), pinned to
``devices[i % len(devices)]``, and the coordinator shows the progress of all of them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from filelock import FileLock
from optuna.exceptions import UpdateFinishedTrialError

from srnas.errors import ConfigError, SrnasError
from srnas.outcomes import arch_of, is_trained
from srnas.search.confirm import Confirmation
from srnas.search.processes import die_with_parent, terminate_as_interrupt
from srnas.search.progress import SearchProgress
from srnas.search.sampling import make_pruner, make_sampler, make_sampler_for_worker
from srnas.search.session import Session
from srnas.search.settings import SearchSettings, auto_workers, expand_devices
from srnas.storages import storage_errors
from srnas.optuna_seams import storage_of, trial_id_of

if TYPE_CHECKING:
    from rich.console import Console


#: A worker stops after this many proposals in a row of architectures already trained.
MAX_REPEATS_IN_A_ROW = 100


class Worker:
    """Pulls trials from the study until the budget is met, the timeout passes or it is stopped."""

    def __init__(self, session: Session, *, worker_id: int = 0, device: str | None = None,
                 on_trial_end: Callable[[Any], None] | None = None, threads: int | None = None,
                 requeue: bool = False) -> None:
        """``device``: the worker's own device name (a process bound with `bind_device` sees
        its GPU as ``cuda:0``); default ``devices[worker_id % len(devices)]``. ``threads``: CPU
        threads (default: the cores shared among the settings' workers, at most `cpu_threads`).
        ``requeue``: a trial interrupted by a signal is enqueued again for another worker
        (`srnas worker`)."""
        # lazy: torch (start-up)
        import torch

        from srnas.train.device import cpu_threads, resolve_device

        settings = session.settings
        self.session = session
        self.settings = settings
        self.worker_id = worker_id
        self.study = session.study
        self.device = resolve_device(device or worker_device(settings, worker_id))
        # Several workers share the CPU cores instead of each taking all of them (GPU workers too:
        # their host-side work would otherwise oversubscribe the cores).
        if threads is None and isinstance(settings.workers, int) and settings.workers > 1:
            threads = max(1, min(cpu_threads(), (os.cpu_count() or 1) // settings.workers))
            if self.device.type != "cpu":
                torch.set_num_threads(threads)
        self.threads = threads
        self.runner = session.trial_runner(device=str(self.device), engine="optuna", threads=threads,
                                           requeue=requeue)
        self.on_trial_end = on_trial_end
        self._deadline = time.monotonic() + settings.timeout if settings.timeout else math.inf

    @classmethod
    def attach(cls, settings: SearchSettings, worker_id: int, device: str | None = None, *,
               requeue: bool = False) -> "Worker":
        """A worker of its own process on the study that the coordinator prepared."""
        session = Session.attach(settings)
        session.study.sampler = make_sampler_for_worker(settings, worker_id, session.space)
        session.study.pruner = make_pruner(settings, session.schedule)
        return cls(session, worker_id=worker_id, device=device, requeue=requeue)

    # ---- budget -------------------------------------------------------------------------

    def _claim(self) -> Any | None:
        """Ask for a trial if the budget leaves room (atomic across local workers)."""
        self.session.home.dir.mkdir(parents=True, exist_ok=True)
        while True:
            if time.monotonic() >= self._deadline:
                return None
            self.session.fail_stale()
            with FileLock(str(self.session.home.budget_lock)):
                counts = self.session.counts()
                if self.session.budget_left(counts) == 0:
                    return None
                if counts.finished + counts.running < self.settings.budget and not self.session.compute_spent(counts):
                    trial = self.study.ask()
                    for key, value in self.runner.worker.items():  # who runs it, before anything else
                        trial.set_user_attr(key, value)
                    return trial if self._within_budget(trial) else None
            time.sleep(1.0)  # others hold the remaining slots; take one if they fail

    def _within_budget(self, trial: Any) -> bool:
        """Workers on other machines are not serialised by the local lock: the storage's trial
        numbers decide. A trial asked for when earlier-numbered ones already fill the budget is
        closed at once (FAIL, "over budget") and never trained."""
        earlier = {arch_of(t) for t in self.study.get_trials(deepcopy=False)
                   if t.number < trial.number and (is_trained(t) or t.state.name == "RUNNING")}
        if len(earlier) < self.settings.budget:
            return True
        self.runner.fail(trial, "over budget: other workers filled the budget first (not trained)")
        return False

    # ---- the loop -----------------------------------------------------------------------

    def run(self) -> int:
        """Run trials until done, then take part in the confirmation of the winners
        (`srnas.search.confirm`) once the search is over; returns how many trials this worker
        finished. A full disk or an unusable storage ends it with one line naming the file
        (`storage_errors`)."""
        with storage_errors(storage_of(self.study)):
            done = self._run()
            if self.settings.confirm and self._search_over():
                Confirmation(self.session, top=self.settings.confirm, seeds=self.settings.confirm_seeds,
                             device=str(self.device), threads=self.threads).run()
            return done

    def _search_over(self) -> bool:
        """Whether the search met its budget and no trial is still running (waits for the
        running ones of other workers); False after a timeout."""
        while time.monotonic() < self._deadline:
            self.session.fail_stale()
            counts = self.session.counts()
            if self.session.budget_left(counts) > 0:
                return False
            if counts.running == 0:
                return True
            time.sleep(1.0)
        return False

    def _run(self) -> int:
        done = repeats = 0
        prune = not self.settings.multi_objective
        while True:
            trial = self._claim()
            if trial is None:
                return done
            try:
                outcome = self.runner.run(trial, self.session.space.sample(trial), prune=prune)
            except UpdateFinishedTrialError:
                # Another worker failed this trial as stale while it ran (its heartbeat lapsed: a
                # stalled or overloaded machine) and enqueued it again: the retry counts, not this run.
                print(f"srnas: worker {self.worker_id}: trial {trial.number} was failed by another worker while it "
                      "ran (no heartbeat within the grace period); its result is dropped, the trial was retried",
                      file=sys.stderr)
                continue
            repeats = repeats + 1 if outcome.reused else 0
            if outcome.state in ("complete", "pruned") and not outcome.reused:
                done += 1
            if repeats >= MAX_REPEATS_IN_A_ROW:
                print(f"srnas: worker {self.worker_id}: the sampler proposed {repeats} known architectures in a row; "
                      "stopping (the space looks exhausted for this sampler; try --sampler random)", file=sys.stderr)
                return done
            if self.on_trial_end is not None:
                self.on_trial_end(storage_of(self.study).get_trial(trial_id_of(trial)))


class OptunaEngine:
    """``--engine optuna`` (the default): local worker processes, any Optuna storage."""

    name: ClassVar[str] = "optuna"

    def validate(self, settings: SearchSettings) -> SearchSettings:
        if settings.workers == "auto":
            workers, devices = auto_workers(settings.devices, settings.workers_per_device)
            return dataclasses.replace(settings, workers=workers, devices=devices)
        return dataclasses.replace(settings, devices=expand_devices(settings.devices))

    def run(self, session: Session, *, console: "Console", progress: bool) -> None:
        settings = session.settings
        if not isinstance(settings.workers, int):
            raise ConfigError("OptunaEngine.run: settings.workers must be resolved by validate()")
        session.study.sampler = make_sampler(settings, session.space)
        session.study.pruner = make_pruner(settings, session.schedule)
        counts = session.counts()
        resuming = counts.finished or counts.repeats or counts.infeasible
        console.print(("resuming " if resuming else "") + session.describe(self.name)
                      + (f" ({counts.finished} of {settings.budget} architectures trained so far)" if resuming else "")
                      + f", sampler {settings.sampler}, pruner {settings.effective_pruner}"
                      + (" (pruning is off for multi-objective searches)" if settings.multi_objective else "")
                      + f", budget {settings.budget} distinct architectures, workers {settings.workers}")
        done = session.already_done_note()
        if done is not None:
            console.print(done)
            return

        monitor = SearchProgress(session.study, settings.budget, console=console, bar=progress)
        try:
            if monitor is not None:
                monitor.__enter__()
            bad = run_workers(session)
            if bad:
                session.fail_stale()  # a killed worker's trial, retried by the others or now
                counts = session.counts()
                if session.budget_left(counts) > 0 or counts.running:
                    raise SrnasError(f"{len(bad)} of {settings.workers} workers exited with an error (codes {bad}); "
                                     "finished trials are kept, re-run the same command to resume")
                console.print(f"note: {len(bad)} of {settings.workers} workers ended abnormally (codes {bad}); the "
                              "others finished the budget (a killed worker's trial was retried)")
        finally:
            if monitor is not None:
                monitor.__exit__(None, None, None)
        console.print(session.end_note())


def run_workers(session: Session, *, first_id: int = 0, threads: int | None = None, requeue: bool = False) -> list[int]:
    """Run ``settings.workers`` workers on the session's study until its budget is met: in this
    process when there is one, else one process each (``python -m srnas.search``), pinned to the
    settings' devices in turn and ending with this process however it ends. Returns the exit
    codes of the worker processes that failed (empty: all ended well). ``first_id``: the worker
    id of the first (seeds its sampler); ``threads``, ``requeue``: see `Worker`. An interrupt
    (Ctrl-C, a signal turned into one) stops the worker processes, then propagates."""
    settings = session.settings
    if settings.workers == 1:
        Worker(session, worker_id=first_id, threads=threads, requeue=requeue).run()
        return []
    from srnas.train.device import bind_device  # lazy: torch (start-up)

    # Settings name the study explicitly so that workers open the same one.
    payload = dataclasses.replace(settings, study=session.name).to_json()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(int(settings.workers)):  # resolved from "auto" by Engine.validate
            # Each worker sees only its own GPU (CUDA_VISIBLE_DEVICES): every allocation, stream
            # and graph capture lands there. Workers end with this process however it ends (its
            # PID: `die_with_parent`).
            env, device = bind_device(worker_device(settings, i))
            argv = [sys.executable, "-m", "srnas.search", payload, str(first_id + i), str(os.getpid()), device]
            procs.append(subprocess.Popen(argv + (["requeue"] if requeue else []), env={**os.environ, **env}))
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        _stop(procs)
        raise
    return [c for c in codes if c != 0]


def worker_device(settings: SearchSettings, worker_id: int) -> str:
    """The device of worker ``worker_id``: the devices in turn."""
    return settings.devices[worker_id % len(settings.devices)]


def _stop(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()


def worker_main(argv: Sequence[str]) -> int:
    """Entry of a worker process (``python -m srnas.search SETTINGS_JSON WORKER_ID [PARENT_PID
    [DEVICE [requeue]]]``).

    SIGTERM (from the coordinator, or sent when the coordinator dies) and SIGINT fail the
    running trial ("interrupted"; with ``requeue`` it is enqueued again for another worker)
    and end the worker with 130. With ``requeue`` (a process of ``srnas worker``) SIGUSR1 and
    SIGUSR2 are ignored: a scheduler sends them to every process of the job, and the
    coordinator that receives them stops its workers with SIGTERM.
    """
    settings = SearchSettings.from_json(argv[0])
    worker_id = int(argv[1])
    device = argv[3] if len(argv) > 3 else None
    requeue = len(argv) > 4 and argv[4] == "requeue"
    if requeue:
        for name in ("SIGUSR1", "SIGUSR2"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), signal.SIG_IGN)
    with terminate_as_interrupt(once=True):
        try:
            if len(argv) > 2:
                die_with_parent(int(argv[2]))
            Worker.attach(settings, worker_id, device, requeue=requeue).run()
        except KeyboardInterrupt:
            return 130
        except SrnasError as exc:
            print(f"srnas: error: worker {worker_id}: {exc}", file=sys.stderr)
            return 2
    return 0
