"""One study trial of one config, the same for every engine: record costs and constraints,
reuse an earlier result of the same architecture at the same fidelity, otherwise train with a
heartbeat, then record the outcome (attributes, sample-image artifact, values or state).

One architecture is trained once per fidelity, also by concurrent workers: a trial *claims* its
architecture by recording ``arch_id`` and ``fidelity`` under a lock file shared by this
machine's workers; a trial that finds another RUNNING trial training the same architecture
waits for it (``waiting_for``, heartbeat going) and takes its result. Across machines, where no
lock is shared, the lower trial number keeps training: the other notices at its next
evaluation, stops and waits. A config whose training would not fit the device's memory is
recorded infeasible without building it (`srnas.search.memory`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from srnas.arch.config import ArchConfig
from srnas.errors import SrnasError, TrainingError
from srnas.search.memory import memory_shortfall
from srnas.search.objective import Objective
from srnas.space.search_space import SearchSpace
from srnas.studies import HEARTBEAT_INTERVAL
from srnas.storages import storage_failure, storage_location
from srnas.artifacts import open_artifact_store
from srnas.optuna_seams import storage_of, trial_id_of

if TYPE_CHECKING:
    import optuna

#: Stop a search after this many trials in a row failed with an unexpected error.
MAX_CONSECUTIVE_FAILURES = 5
#: Tries to store a trial's sample image, and the wait before the second (growing after).
UPLOAD_TRIES, UPLOAD_WAIT_S = 3, 1.0
#: Seconds between two looks at the trial a waiting trial waits for.
WAIT_POLL_S = 1.0
#: User attributes about a trial's own run, never copied from the trial whose result it reuses.
_OWN_ATTRS = frozenset({"worker", "worker_ns", "worker_start", "slurm_job", "heartbeat_at", "waiting_for", "preset",
                        "reused_from", "nni_trial", "engine", "seed", "device"})


#: Times a trial is retried after its worker died or was stopped by its scheduler (a new WAITING
#: trial with its parameters).
MAX_RETRIES = 2
#: User attributes a retried trial keeps (the rest belonged to the run that died).
RETRY_KEEPS = ("preset",)


def fail_and_retry(study: "optuna.Study", t: Any, reason: str) -> bool:
    """Fail the RUNNING trial ``t`` (a `FrozenTrial`: its worker died, or was stopped) with
    ``reason`` and enqueue it again (up to `MAX_RETRIES` times), so that the next worker that
    asks trains its architecture; False when another worker failed it first."""
    # lazy: optuna (start-up)
    import optuna
    from optuna.trial import TrialState

    storage = storage_of(study)
    try:
        storage.set_trial_user_attr(trial_id_of(t), "error", reason)
        if not storage.set_trial_state_values(trial_id_of(t), state=TrialState.FAIL):
            return False
    except Exception:  # finished meanwhile, or failed by another worker first
        return False
    history = [*t.system_attrs.get("retry_history", []), t.number]
    if len(history) <= MAX_RETRIES:
        study.add_trial(optuna.trial.create_trial(
            state=TrialState.WAITING, params=t.params, distributions=t.distributions,
            user_attrs={k: t.user_attrs[k] for k in RETRY_KEEPS if k in t.user_attrs},
            system_attrs={**t.system_attrs, "failed_trial": t.system_attrs.get("failed_trial", t.number),
                          "retry_history": history}))
    return True


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How a trial ended: ``state`` is complete | pruned | infeasible | failed; ``psnr`` the
    final (complete) or last reported (pruned) PSNR, None otherwise; ``reused`` whether an
    earlier trial's result was taken."""

    state: str
    psnr: float | None = None
    reused: bool = False


class Heartbeat:
    """Calls ``beat()`` now and every ``interval`` seconds in a thread while a trial trains or
    waits (`for_trial`: records ``heartbeat_at``, seconds since the epoch, in the trial, on every
    storage; `srnas.search.session.StaleTrials` reads it). A failing beat is skipped: the trial
    may have finished meanwhile, or the storage be briefly unreachable."""

    def __init__(self, beat: Callable[[], object], interval: float = HEARTBEAT_INTERVAL) -> None:
        self.beat = beat
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_trial(cls, storage: Any, trial_id: int, interval: float = HEARTBEAT_INTERVAL) -> "Heartbeat":
        return cls(lambda: storage.set_trial_user_attr(trial_id, "heartbeat_at", round(time.time(), 1)), interval)

    def __enter__(self) -> "Heartbeat":
        self.beat()
        self._thread = threading.Thread(target=self._run, name="srnas-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception:  # finished meanwhile, or the storage is briefly unreachable
                pass

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class _Superseded(Exception):
    """A lower-numbered trial on another machine trains the same architecture (raised from an
    evaluation callback to stop this training)."""

    def __init__(self, holder: Any) -> None:
        super().__init__(f"trial {holder.number} trains the same architecture")
        self.holder = holder


class TrialRunner:
    """Runs study trials for one worker (Optuna) or one NNI experiment."""

    def __init__(self, study: "optuna.Study", space: SearchSpace, objective: Objective, *, artifacts: str | Path,
                 seed: int | None, device: str, worker: dict[str, str], claim_lock: Path | None = None,
                 heartbeat: float = HEARTBEAT_INTERVAL, on_wait: Callable[[], object] | None = None,
                 requeue: bool = False) -> None:
        self.study = study
        self.space = space
        self.objective = objective
        #: The artifact store's location: a folder or ``s3://bucket/prefix`` (`open_artifact_store`).
        self.artifacts = str(artifacts)
        self.seed = seed
        self.device = device
        #: ``worker`` (host:pid) and ``worker_start``, recorded in every trial this runner runs.
        self.worker = dict(worker)
        self.claim_lock = claim_lock
        self.heartbeat = heartbeat
        #: Called at every look while waiting for another trial (the session fails stale ones there).
        self.on_wait = on_wait
        #: An interrupted trial (its worker stopped by a signal) is failed and enqueued again for
        #: another worker (`fail_and_retry`), instead of failed only ("interrupted").
        self.requeue = requeue
        self.consecutive_failures = 0

    @property
    def worker_tag(self) -> str:
        return self.worker["worker"]

    # ---- claims ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _claiming(self) -> Iterator[None]:
        if self.claim_lock is None:
            yield
            return
        self.claim_lock.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.claim_lock)):
            yield

    def _trainers(self, trial: Any, arch_id: str) -> list[Any]:
        """Other RUNNING trials training (not waiting for) ``arch_id`` at this fidelity."""
        from optuna.trial import TrialState  # lazy: optuna (start-up)

        fidelity = self.objective.schedule.fidelity_id
        return sorted((t for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                       if t.number != trial.number and t.user_attrs.get("arch_id") == arch_id
                       and t.user_attrs.get("fidelity") == fidelity and t.user_attrs.get("waiting_for") is None),
                      key=lambda t: t.number)

    def _holder(self, trial: Any, arch_id: str, *, waited: bool) -> Any | None:
        """Claim ``arch_id`` for ``trial`` (lock held by the caller): the trial training it
        already, or None when ``trial`` is to train it. A trial that waited shows as waiting
        until it has found no trainer (so that no trainer elsewhere yields to it meanwhile)."""
        trainers = self._trainers(trial, arch_id)
        if trainers:
            return trainers[0]
        if waited:
            trial.set_user_attr("waiting_for", None)
        return None

    def _wait_for(self, trial: Any, holder: Any) -> None:
        """Wait (heartbeat going) until ``holder`` is no longer RUNNING."""
        from optuna.trial import TrialState  # lazy: optuna (start-up)

        trial.set_user_attr("waiting_for", holder.number)
        while storage_of(self.study).get_trial(trial_id_of(holder)).state == TrialState.RUNNING:
            time.sleep(WAIT_POLL_S)
            if self.on_wait is not None:
                self.on_wait()

    def find_previous(self, arch_id: str) -> Any | None:
        """A trial that trained ``arch_id`` at this fidelity (complete, or pruned by the pruner)."""
        from optuna.trial import TrialState  # lazy: optuna (start-up)

        fidelity = self.objective.schedule.fidelity_id
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
            a = t.user_attrs
            if a.get("arch_id") == arch_id and a.get("fidelity") == fidelity and "reused_from" not in a \
                    and "infeasible" not in a:
                return t
        return None

    def run(self, trial: Any, cfg: ArchConfig, *, prune: bool = False,
            report: Callable[[int, float], None] | None = None) -> Outcome:
        """Evaluate ``cfg`` as ``trial`` (an `optuna.Trial` on the study) and tell the study.

        PSNR is reported to Optuna at every evaluation point (single-objective studies);
        ``prune``: stop when the pruner says so. ``report(step, psnr)`` also receives every evaluation (NNI's intermediate
        results). A `TrainingError` (non-finite loss ...) fails the trial and the search goes
        on; an interrupt or a user error (`SrnasError`: bad data ...) fails it and propagates;
        other errors fail it and propagate after `MAX_CONSECUTIVE_FAILURES` in a row.
        """
        # lazy: optuna (start-up)
        import optuna
        from optuna.trial import TrialState

        seed = (self.seed or 0) * 100_003 + trial.number  # one seeded CPU search is reproducible
        costs = self.space.costs(cfg)  # once per trial; the objective receives them
        violations = self.space.violations(costs)
        feasible = all(v <= 0 for v in violations.values())
        with self._claiming():
            for key, value in {**self.objective.describe(cfg, costs), "seed": seed, "device": self.device,
                               **self.worker}.items():
                trial.set_user_attr(key, value)
            holder = self._holder(trial, cfg.arch_id, waited=False) if feasible else None
        for key, value in violations.items():
            trial.set_constraint(key, float(value))

        curve: list[list[float]] = []
        final_step = self.objective.schedule.updates
        # Intermediate values feed the dashboard and report curves; Optuna refuses them in
        # multi-objective studies.
        record = len(self.study.directions) == 1

        def on_eval(step: int, psnr: float) -> None:
            # Another machine started this architecture first (no lock is shared with it).
            earlier = [t for t in self._trainers(trial, cfg.arch_id) if t.number < trial.number]
            if earlier:
                raise _Superseded(earlier[0])
            curve.append([int(step), float(psnr)])
            if not math.isfinite(psnr):
                return
            if report is not None:
                report(int(step), float(psnr))
            if record:
                trial.report(float(psnr), int(step))
                # Pruning stops a net at an intermediate rung only: one that reached its last
                # evaluation is trained to the full fidelity and COMPLETE whatever the pruner says.
                if prune and step < final_step and trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at update {step} with PSNR {psnr:.3f}")

        t0 = time.perf_counter()
        try:
            with Heartbeat.for_trial(storage_of(self.study), trial_id_of(trial), self.heartbeat):
                waited = False
                while True:
                    reuse = self.find_previous(cfg.arch_id)
                    if reuse is not None:
                        return self._reuse(trial, reuse)
                    if waited:  # the trial waited for failed or was stopped: claim again
                        with self._claiming():
                            holder = self._holder(trial, cfg.arch_id, waited=True)
                        waited = False
                    if holder is not None:
                        self._wait_for(trial, holder)
                        waited = True
                        continue
                    short = memory_shortfall(cfg, batch=self.objective.schedule.batch,
                                             patch=self.objective.schedule.patch, device=self.device) if feasible else None
                    if short is not None:
                        return self._infeasible(trial, cfg, costs, f"memory: {short}")
                    try:
                        evaluation = self.objective.evaluate(cfg, trial_seed=seed, costs=costs, on_eval=on_eval)
                    except _Superseded as exc:
                        holder, curve[:] = exc.holder, []
                        continue
                    break
        except optuna.TrialPruned:
            trial.set_user_attr("psnr_curve", curve)
            trial.set_user_attr("wall_time_s", round(time.perf_counter() - t0, 3))
            trial.set_user_attr("time_split", dict(self.objective.last_time_split))
            if curve:
                trial.set_user_attr("psnr", curve[-1][1])
            self.study.tell(trial, state=TrialState.PRUNED)
            self.consecutive_failures = 0
            return Outcome("pruned", curve[-1][1] if curve else None)
        except TrainingError as exc:
            self._remove_samples(cfg)
            trial.set_user_attr("psnr_curve", curve)
            self.fail(trial, str(exc))
            return Outcome("failed")
        except (KeyboardInterrupt, SystemExit):
            self._remove_samples(cfg)
            if self.requeue:
                self._requeue(trial)
            else:
                self.fail(trial, "interrupted")
            raise
        except SrnasError as exc:
            self._remove_samples(cfg)
            self.fail(trial, str(exc))
            raise
        except Exception as exc:
            self._remove_samples(cfg)
            failure = storage_failure(exc, storage_location(storage_of(self.study)))
            if failure is not None:  # a full disk: no later trial can be recorded either
                self.fail(trial, str(failure))
                raise failure from None
            self.fail(trial, f"{type(exc).__name__}: {exc}")
            print(f"srnas: trial {trial.number} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            self.consecutive_failures += 1
            if self.consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
                raise SrnasError(f"{self.consecutive_failures} trials in a row failed; last error: "
                                 f"{type(exc).__name__}: {exc}") from exc
            return Outcome("failed")
        self.consecutive_failures = 0
        if evaluation.values is None:
            return self._infeasible(trial, cfg, costs, evaluation.attrs["infeasible"])
        for key, value in evaluation.constraints.items():
            trial.set_constraint(key, float(value))
        try:
            for key, value in evaluation.attrs.items():
                trial.set_user_attr(key, value)
            if evaluation.sample_png is not None:
                self._store_sample(trial, evaluation.sample_png)
        finally:
            if evaluation.sample_png is not None:  # stored as the artifact, or not at all
                evaluation.sample_png.unlink(missing_ok=True)
        self.study.tell(trial, list(evaluation.values))
        return Outcome("complete", float(evaluation.values[0]))

    def _infeasible(self, trial: Any, cfg: ArchConfig, costs: Any, why: str) -> Outcome:
        """Record ``trial`` COMPLETE with ``infeasible`` = ``why``, never trained: its constraint
        values (set through Optuna's constraint API) make every constrained sampler treat it as
        infeasible, and its values are placeholders (`Objective.infeasible_values`) that no
        result, plot or ranking of srnas reads."""
        if why.startswith("memory:"):
            trial.set_constraint("memory", 1.0)
        trial.set_user_attr("infeasible", why)
        self.study.tell(trial, list(self.objective.infeasible_values(costs)))
        return Outcome("infeasible")

    def _remove_samples(self, cfg: ArchConfig) -> None:
        """Remove the sample image a failed trial may have left half written (the claim makes
        this worker the only one training ``cfg`` here)."""
        folder = self.objective.sample_dir
        if folder is not None and folder.is_dir():
            for leftover in folder.glob(f"sample-{cfg.arch_id}-*.png"):
                leftover.unlink(missing_ok=True)

    def _reuse(self, trial: Any, reuse: Any) -> Outcome:
        """Answer a proposal of an architecture already trained at this fidelity: the trial keeps
        the earlier result's attributes (``reused_from``) and ends FAIL, the one state no
        sampler learns from, so the history holds each architecture once. The outcome carries
        the known result (NNI's strategies are told it)."""
        from optuna.trial import TrialState  # lazy: optuna (start-up)

        for key, value in reuse.user_attrs.items():
            if key not in _OWN_ATTRS:
                trial.set_user_attr(key, value)
        trial.set_user_attr("reused_from", reuse.number)
        self.consecutive_failures = 0
        self.study.tell(trial, state=TrialState.FAIL)
        if reuse.state == TrialState.COMPLETE:
            return Outcome("complete", float(reuse.values[0]), reused=True)
        last = reuse.user_attrs.get("psnr")  # pruned at this fidelity before: it would be pruned again
        return Outcome("pruned", float(last) if last is not None else None, reused=True)

    def _store_sample(self, trial: Any, png: Path) -> None:
        """Upload the sample image, retried `UPLOAD_TRIES` times with a growing wait; an artifact
        store that stays down costs the image (``sample_missing`` says why), never the result."""
        for attempt in range(1, UPLOAD_TRIES + 1):
            try:
                self._upload(trial, png)
                return
            except Exception as exc:
                reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
                if attempt < UPLOAD_TRIES:
                    time.sleep(UPLOAD_WAIT_S * attempt)
                    continue
                trial.set_user_attr("sample_missing", reason)
                print(f"srnas: trial {trial.number}: its sample image could not be stored ({reason}); the result "
                      "is recorded without it", file=sys.stderr, flush=True)

    def _upload(self, trial: Any, png: Path) -> None:
        """Store the sample image as the trial's artifact; on any failure no artifact file is
        left that the study does not reference."""
        from optuna.artifacts import upload_artifact  # lazy: optuna (start-up)

        store = open_artifact_store(self.artifacts)
        try:
            artifact_id = upload_artifact(artifact_store=store, file_path=str(png), study_or_trial=trial,
                                          mimetype="image/png")
            trial.set_user_attr("sample_artifact", artifact_id)
        except BaseException:
            if store.written is not None:
                with contextlib.suppress(Exception):  # the store itself may be what failed
                    store.remove(store.written)
            raise

    def _requeue(self, trial: Any) -> None:
        """Fail the interrupted ``trial`` and enqueue its parameters again (best effort: a trial
        left RUNNING is failed and retried by the next worker that looks, `StaleTrials`)."""
        try:
            frozen = storage_of(self.study).get_trial(trial_id_of(trial))
            fail_and_retry(self.study, frozen, "interrupted: its worker was stopped (retried by another worker)")
        except Exception:
            pass

    def fail(self, trial: Any, reason: str) -> None:
        """Mark ``trial`` FAILED with ``reason`` (best effort: the storage may be the problem)."""
        from optuna.trial import TrialState  # lazy: optuna (start-up)

        try:
            trial.set_user_attr("error", reason[:500])
            self.study.tell(trial, state=TrialState.FAIL)
        except Exception:
            pass
