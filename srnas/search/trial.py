"""One study trial of one config, the same for every engine: record costs and constraints,
reuse an earlier result of the same architecture at the same fidelity, otherwise train with a
heartbeat, then record the outcome (attributes, sample-image artifact, values or state)."""

from __future__ import annotations

import dataclasses
import math
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from srnas.arch.config import ArchConfig
from srnas.errors import SrnasError, TrainingError
from srnas.outcomes import pruned_at_last_step
from srnas.search.objective import Objective
from srnas.space import SearchSpace

if TYPE_CHECKING:
    import optuna

#: Stop a search after this many trials in a row failed with an unexpected error.
MAX_CONSECUTIVE_FAILURES = 5


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How a trial ended: ``state`` is complete | pruned | infeasible | failed; ``psnr`` the
    final (complete) or last reported (pruned) PSNR, None otherwise; ``reused`` whether an
    earlier trial's result was taken."""

    state: str
    psnr: float | None = None
    reused: bool = False


class Heartbeat:
    """Records a trial's heartbeat on RDB storages while it trains (Optuna's own thread is
    tied to study.optimize, which cannot enforce a global budget across workers)."""

    def __init__(self, storage: Any, trial_id: int) -> None:
        self.storage = storage
        self.trial_id = trial_id
        self.interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "Heartbeat":
        if self.interval:
            self.storage.record_heartbeat(self.trial_id)
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception:
                pass

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class TrialRunner:
    """Runs study trials for one worker (Optuna) or one NNI experiment."""

    def __init__(self, study: "optuna.Study", space: SearchSpace, objective: Objective, *, artifacts: Path,
                 seed: int | None, device: str, worker_tag: str) -> None:
        self.study = study
        self.space = space
        self.objective = objective
        self.artifacts = artifacts
        self.seed = seed
        self.device = device
        self.worker_tag = worker_tag
        self.consecutive_failures = 0

    def find_previous(self, arch_id: str) -> Any | None:
        """A trial that trained ``arch_id`` at this fidelity (complete, or pruned by the pruner)."""
        from optuna.trial import TrialState

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
        import optuna
        from optuna.trial import TrialState

        seed = (self.seed or 0) * 100_003 + trial.number  # one seeded CPU search is reproducible
        costs = self.space.costs(cfg)  # once per trial; the objective receives them
        for key, value in {**self.objective.describe(cfg, costs), "seed": seed, "device": self.device,
                           "worker": self.worker_tag}.items():
            trial.set_user_attr(key, value)
        for key, value in self.space.violations(costs).items():
            trial.set_constraint(key, float(value))

        reuse = self.find_previous(cfg.arch_id)
        if reuse is not None:
            return self._reuse(trial, reuse)

        curve: list[list[float]] = []
        final_step = self.objective.schedule.updates
        # Intermediate values feed the dashboard and report curves; Optuna refuses them in
        # multi-objective studies.
        record = len(self.study.directions) == 1

        def on_eval(step: int, psnr: float) -> None:
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
            with Heartbeat(self.study._storage, trial._trial_id):
                evaluation = self.objective.evaluate(cfg, trial_seed=seed, costs=costs, on_eval=on_eval)
        except optuna.TrialPruned:
            trial.set_user_attr("psnr_curve", curve)
            trial.set_user_attr("wall_time_s", round(time.perf_counter() - t0, 3))
            if curve:
                trial.set_user_attr("psnr", curve[-1][1])
            self.study.tell(trial, state=TrialState.PRUNED)
            self.consecutive_failures = 0
            return Outcome("pruned", curve[-1][1] if curve else None)
        except TrainingError as exc:
            trial.set_user_attr("psnr_curve", curve)
            self.fail(trial, str(exc))
            return Outcome("failed")
        except (KeyboardInterrupt, SystemExit):
            self.fail(trial, "interrupted")
            raise
        except SrnasError as exc:
            self.fail(trial, str(exc))
            raise
        except Exception as exc:
            self.fail(trial, f"{type(exc).__name__}: {exc}")
            print(f"srnas: trial {trial.number} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            self.consecutive_failures += 1
            if self.consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
                raise SrnasError(f"{self.consecutive_failures} trials in a row failed; last error: "
                                 f"{type(exc).__name__}: {exc}") from exc
            return Outcome("failed")
        self.consecutive_failures = 0
        if evaluation.values is None:
            trial.set_user_attr("infeasible", evaluation.attrs["infeasible"])
            self.study.tell(trial, state=TrialState.PRUNED)
            return Outcome("infeasible")
        for key, value in evaluation.attrs.items():
            trial.set_user_attr(key, value)
        if evaluation.sample_png is not None:
            self._upload(trial, evaluation.sample_png)
        self.study.tell(trial, list(evaluation.values))
        return Outcome("complete", float(evaluation.values[0]))

    def _reuse(self, trial: Any, reuse: Any) -> Outcome:
        from optuna.trial import TrialState

        for key, value in reuse.user_attrs.items():
            if key not in ("worker", "preset", "reused_from", "repaired_from", "nni_trial", "engine", "seed", "device"):
                trial.set_user_attr(key, value)
        trial.set_user_attr("reused_from", reuse.number)
        self.consecutive_failures = 0
        if reuse.state == TrialState.COMPLETE:
            self.study.tell(trial, list(reuse.values))
            return Outcome("complete", float(reuse.values[0]), reused=True)
        if pruned_at_last_step(reuse, self.objective.schedule.updates) and len(self.study.directions) == 1:
            # Trained to the last evaluation, but recorded PRUNED by an older srnas: a full result.
            for step, value in reuse.intermediate_values.items():
                trial.report(value, step)
            psnr = float(reuse.user_attrs["psnr"])
            self.study.tell(trial, [psnr])
            return Outcome("complete", psnr, reused=True)
        # Pruned at this fidelity before: it would be pruned again.
        for step, value in reuse.intermediate_values.items():
            trial.report(value, step)
        self.study.tell(trial, state=TrialState.PRUNED)
        last = reuse.user_attrs.get("psnr")
        return Outcome("pruned", float(last) if last is not None else None, reused=True)

    def _upload(self, trial: Any, png: Path) -> None:
        from optuna.artifacts import FileSystemArtifactStore, upload_artifact

        try:
            self.artifacts.mkdir(parents=True, exist_ok=True)
            artifact_id = upload_artifact(artifact_store=FileSystemArtifactStore(str(self.artifacts)),
                                          file_path=str(png), study_or_trial=trial, mimetype="image/png")
            trial.set_user_attr("sample_artifact", artifact_id)
        finally:
            png.unlink(missing_ok=True)

    def fail(self, trial: Any, reason: str) -> None:
        """Mark ``trial`` FAILED with ``reason`` (best effort: the storage may be the problem)."""
        from optuna.trial import TrialState

        try:
            trial.set_user_attr("error", reason[:500])
            self.study.tell(trial, state=TrialState.FAIL)
        except Exception:
            pass
