"""The Optuna engine: one study in ``trials/<study>/``, workers that pull trials until the study
holds ``budget`` finished (complete or pruned) trials, pruning, constraints, de-duplication.

Budget accounting: a trial counts once it is COMPLETE, or PRUNED by the pruner. Trials that
violate the space's constraints are recorded as PRUNED with the user attribute ``infeasible``
(never trained) and do not count, nor do FAILED ones (a killed worker's trial is failed and
retried).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from srnas.errors import ConfigError, SrnasError
from srnas.search.objective import OBJECTIVES, Objective, parse_objectives
from srnas.search.storage import (HEARTBEAT_INTERVAL, StudyError, artifact_dir, open_storage,
                                  study_dir)
from srnas.search.trial import TrialRunner

SAMPLERS = ("tpe", "random", "nsga2", "gp")
PRUNERS = ("hyperband", "median", "none")
ENGINES = ("optuna", "nni")
NNI_STRATEGIES = ("evolution", "random", "tpe")
#: Stop when this many infeasible configs were drawn per finished trial (constraints too tight).
MAX_INFEASIBLE_PER_BUDGET = 20


@dataclasses.dataclass
class SearchSettings:
    """Everything a worker needs; JSON-serialisable so worker processes receive it whole."""

    study: str | None = None
    space: str = "tiny"
    budget: int = 200
    data: str = "demo"
    proxy: str | None = None
    engine: str = "optuna"
    sampler: str = "tpe"
    pruner: str | None = None
    objectives: tuple[str, ...] = ("psnr",)
    storage: str | None = None
    workers: int | str = 1
    devices: tuple[str, ...] = ("auto",)
    timeout: float | None = None
    seed: int | None = None
    max_params: float | None = None
    max_mult_adds: float | None = None
    max_activation_mb: float | None = None
    heartbeat: int = HEARTBEAT_INTERVAL
    nni_strategy: str = "evolution"
    nni_webui: int | None = None
    root: str | None = None

    def __post_init__(self) -> None:
        self.objectives = parse_objectives(self.objectives)
        self.devices = tuple(self.devices)
        if isinstance(self.budget, bool) or not isinstance(self.budget, int) or self.budget < 1:
            raise ConfigError(f"--budget must be a positive integer, got {self.budget!r}")
        if self.workers == "auto":
            self.workers, self.devices = auto_workers(self.devices, engine=self.engine)
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise ConfigError(f"--workers must be a positive integer or auto, got {self.workers!r}")
        if self.engine not in ENGINES:
            raise ConfigError(f"--engine: unknown engine {self.engine!r}; allowed: {', '.join(ENGINES)}")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"--sampler: unknown sampler {self.sampler!r}; allowed: {', '.join(SAMPLERS)}")
        if self.pruner is not None and self.pruner not in PRUNERS:
            raise ConfigError(f"--pruner: unknown pruner {self.pruner!r}; allowed: {', '.join(PRUNERS)}")
        if self.multi_objective and self.pruner not in (None, "none"):
            raise ConfigError("pruning is not available for multi-objective searches (Optuna raises "
                              "there); drop --pruner or use --objectives psnr")
        if self.engine == "nni":
            if self.multi_objective:
                raise ConfigError("--engine nni optimises one objective (NNI strategies are single-objective); use --objectives psnr")
            if self.workers > 1:
                raise ConfigError("--engine nni runs one trial at a time in-process; use --workers 1 (or the Optuna engine)")
            if self.nni_strategy not in NNI_STRATEGIES:
                raise ConfigError(f"--nni-strategy: unknown strategy {self.nni_strategy!r}; allowed: {', '.join(NNI_STRATEGIES)}")
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigError(f"--timeout must be positive seconds, got {self.timeout}")

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def effective_pruner(self) -> str:
        if self.multi_objective:
            return "none"
        return self.pruner or "hyperband"

    def resolved_study(self, space_name: str) -> str:
        if self.study:
            return self.study
        data = "demo" if self.data == "demo" else Path(self.data).name or "data"
        name = f"{space_name}-{data}"
        if self.multi_objective:
            name += "-" + "-".join(self.objectives)
        return name

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "SearchSettings":
        return cls(**json.loads(text))

    def root_path(self) -> Path | None:
        return Path(self.root) if self.root else None


# ---- pieces shared by workers and the coordinator ---------------------------------------------


#: Most CPU worker processes ``--workers auto`` starts.
MAX_AUTO_CPU_WORKERS = 8


def auto_workers(devices: Sequence[str], *, engine: str = "optuna") -> tuple[int, tuple[str, ...]]:
    """``--workers auto``: one worker per visible GPU, else one single-threaded worker per CPU
    core (up to 8): short proxies of small nets train ~1.4x faster in total that way than one
    worker using every core (measured on 2 cores, benchmarks/README.md)."""
    if engine == "nni":
        return 1, tuple(devices)
    if tuple(devices) == ("auto",):
        import torch

        if torch.cuda.is_available():
            n = torch.cuda.device_count()
            return n, tuple(f"cuda:{i}" for i in range(n))
        return max(1, min(MAX_AUTO_CPU_WORKERS, os.cpu_count() or 1)), ("cpu",)
    if all(d.startswith("cuda") for d in devices):
        return len(devices), tuple(devices)
    return max(1, min(MAX_AUTO_CPU_WORKERS, os.cpu_count() or 1)), tuple(devices)


def load_space(settings: SearchSettings) -> Any:
    from srnas.space import SearchSpace

    space = SearchSpace.load(settings.space)
    return space.constrained(max_params=settings.max_params, max_mult_adds=settings.max_mult_adds,
                             max_activation_mb=settings.max_activation_mb)


def proxy_name(settings: SearchSettings, space: Any) -> str:
    return settings.proxy or space.proxy or "tiny"


def resolve_schedule(name: str) -> Any:
    """The proxy schedule of a search (``NAME``, ``NAME@N``, ``NAME*F``; see `get_schedule`)."""
    from srnas.train.schedules import get_schedule

    return get_schedule(name)


def make_sampler(settings: SearchSettings) -> Any:
    import optuna

    seed = settings.seed
    if settings.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if settings.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, settings.budget // 4)))
    return optuna.samplers.GPSampler(seed=seed)


def make_pruner(settings: SearchSettings, schedule: Any) -> Any:
    import optuna

    kind = settings.effective_pruner
    if kind == "none":
        return optuna.pruners.NopPruner()
    points = schedule.eval_points()
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=points[0])
    return optuna.pruners.HyperbandPruner(min_resource=points[0], max_resource=schedule.updates,
                                          reduction_factor=3)


def finished_count(study: Any) -> tuple[int, int, int, int]:
    """(finished, running, failed, infeasible): finished = COMPLETE + PRUNED by the pruner."""
    from optuna.trial import TrialState

    finished = running = failed = infeasible = 0
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.COMPLETE:
            finished += 1
        elif t.state == TrialState.PRUNED:
            if "infeasible" in t.user_attrs:
                infeasible += 1
            else:
                finished += 1
        elif t.state == TrialState.RUNNING:
            running += 1
        elif t.state == TrialState.FAIL:
            failed += 1
    return finished, running, failed, infeasible


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_dead_local_trials(study: Any) -> list[int]:
    """Fail RUNNING trials whose worker process on this host is gone (and re-enqueue them).

    The local counterpart of the RDB heartbeat: immediate, and it also covers the journal
    storage, which has no heartbeat.
    """
    import optuna
    from optuna.trial import TrialState

    host = socket.gethostname()
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker")
        if not isinstance(worker, str) or ":" not in worker:
            continue
        w_host, _, w_pid = worker.rpartition(":")
        if w_host != host or not w_pid.isdigit() or _pid_alive(int(w_pid)):
            continue
        try:
            study._storage.set_trial_user_attr(t._trial_id, "error", f"worker {worker} died (killed?)")
            ok = study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        except Exception:  # another worker failed it first
            continue
        if ok:
            failed.append(t.number)
            optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2)(study, study._storage.get_trial(t._trial_id))
    return failed


# ---- study creation ---------------------------------------------------------------------------


def prepare_study(settings: SearchSettings) -> tuple[Any, Any, Any]:
    """Create or resume the study (checking that a resumed one searched the same thing) and
    enqueue the space's presets idempotently. Returns (study, space, schedule)."""
    import optuna

    space = load_space(settings)
    schedule = resolve_schedule(proxy_name(settings, space))
    name = settings.resolved_study(space.name)
    # Bad data fails here, before a study is created or touched.
    Objective(space, schedule, data=settings.data).load_data()
    root = settings.root_path()
    storage = open_storage(settings.storage, name, heartbeat=settings.heartbeat, root=root)
    directions = [OBJECTIVES[o] for o in settings.objectives]
    expected = {"space": space.name, "objectives": list(settings.objectives),
                "fidelity": schedule.fidelity_id, "data": settings.data}
    try:
        study = optuna.create_study(study_name=name, storage=storage, directions=directions,
                                    sampler=make_sampler(settings), pruner=make_pruner(settings, schedule),
                                    load_if_exists=True)
    except Exception as exc:
        raise StudyError(f"study {name!r}: cannot create or open ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    known = study.user_attrs
    if known.get("srnas"):
        for key, value in expected.items():
            if known.get(key) != value:
                raise StudyError(f"study {name!r} exists with {key} = {known.get(key)!r}, not {value!r}: "
                                 "re-run with the same settings to resume, or pass --study NEW")
    else:
        if [d.name.lower() for d in study.directions] != directions:
            raise StudyError(f"study {name!r} exists with other objectives; pass --study NEW")
        for key, value in expected.items():
            study.set_user_attr(key, value)
        study.set_user_attr("protocol", None)
        study.set_user_attr("scales", list(space.scales))
        study.set_user_attr("schedule", schedule.to_dict())
        study.set_user_attr("space_file", str(space.source))
        study.set_user_attr("srnas", 1)
        study.set_metric_names([{"psnr": "PSNR (dB)", "params": "params", "macs": "Mult-Adds",
                                 "latency": "latency (ms)"}[o] for o in settings.objectives])
    for label, params in space.preset_assignments():
        study.enqueue_trial(params, user_attrs={"preset": label}, skip_if_exists=True)
    return study, space, schedule


# ---- the worker loop --------------------------------------------------------------------------


class Worker:
    """Pulls trials from the study until the budget is met, the timeout passes or it is stopped."""

    def __init__(self, settings: SearchSettings, *, worker_id: int = 0,
                 on_trial_end: Callable[[Any], None] | None = None) -> None:
        import optuna

        from srnas.train.device import resolve_device

        self.settings = settings
        self.worker_id = worker_id
        self.space = load_space(settings)
        self.schedule = resolve_schedule(proxy_name(settings, self.space))
        self.study_name = settings.resolved_study(self.space.name)
        root = settings.root_path()
        self.storage = open_storage(settings.storage, self.study_name, heartbeat=settings.heartbeat, root=root)
        self.study = optuna.load_study(study_name=self.study_name, storage=self.storage,
                                       sampler=make_sampler_for_worker(settings, worker_id),
                                       pruner=make_pruner(settings, self.schedule))
        self.device = resolve_device(settings.devices[worker_id % len(settings.devices)])
        self.dir = study_dir(self.study_name, root)
        self.artifacts = artifact_dir(self.study_name, root)
        # Several CPU workers share the cores instead of each taking all of them.
        threads = None
        if self.device.type == "cpu" and settings.workers > 1:
            threads = max(1, (os.cpu_count() or 1) // settings.workers)
        self.objective = Objective(self.space, self.schedule, data=settings.data,
                                   objectives=settings.objectives, device=str(self.device),
                                   seed=settings.seed or 0, engine=settings.engine,
                                   sample_dir=self.dir / "tmp", threads=threads)
        self.on_trial_end = on_trial_end
        self.worker_tag = f"{socket.gethostname()}:{os.getpid()}"
        self.runner = TrialRunner(self.study, self.space, self.objective, artifacts=self.artifacts,
                                  seed=settings.seed, device=str(self.device), worker_tag=self.worker_tag)
        self._deadline = time.monotonic() + settings.timeout if settings.timeout else math.inf

    # ---- budget -------------------------------------------------------------------------

    def _claim(self) -> Any | None:
        """Ask for a trial if the budget leaves room (atomic across local workers)."""
        import optuna
        from filelock import FileLock

        self.dir.mkdir(parents=True, exist_ok=True)
        while True:
            if time.monotonic() >= self._deadline:
                return None
            fail_dead_local_trials(self.study)
            try:
                optuna.storages.fail_stale_trials(self.study)
            except Exception:
                pass
            with FileLock(str(self.dir / ".budget.lock")):
                finished, running, _failed, infeasible = finished_count(self.study)
                if infeasible > MAX_INFEASIBLE_PER_BUDGET * max(self.settings.budget, 1):
                    raise SrnasError(f"study {self.study_name!r}: {infeasible} sampled configs violated the "
                                     "constraints; loosen --max-params/--max-mult-adds or the space's constraints")
                if finished >= self.settings.budget:
                    return None
                if finished + running < self.settings.budget:
                    trial = self.study.ask()
                    trial.set_user_attr("worker", self.worker_tag)
                    if self._within_budget(trial):
                        return trial
                    return None
            time.sleep(1.0)  # others hold the remaining slots; take one if they fail

    def _within_budget(self, trial: Any) -> bool:
        """Workers on other machines are not serialised by the local lock: the storage's trial
        numbers decide. A trial asked for when earlier-numbered ones already fill the budget is
        closed at once (FAIL, "over budget") and never trained."""
        from optuna.trial import TrialState

        earlier = 0
        for t in self.study.get_trials(deepcopy=False):
            if t.number >= trial.number:
                continue
            if t.state in (TrialState.COMPLETE, TrialState.RUNNING) or \
                    (t.state == TrialState.PRUNED and "infeasible" not in t.user_attrs):
                earlier += 1
        if earlier < self.settings.budget:
            return True
        self.runner.fail(trial, "over budget: other workers filled the budget first (not trained)")
        return False

    # ---- the loop -----------------------------------------------------------------------

    def run(self) -> int:
        """Run trials until done; returns how many this worker finished."""
        done = 0
        prune = not self.settings.multi_objective
        while True:
            trial = self._claim()
            if trial is None:
                return done
            outcome = self.runner.run(trial, self.space.sample(trial), prune=prune)
            if outcome.state in ("complete", "pruned"):
                done += 1
            if self.on_trial_end is not None:
                self.on_trial_end(self.study._storage.get_trial(trial._trial_id))


def run_search(settings: SearchSettings, *, console: Any = None, progress: bool = True) -> Any:
    """Create or resume the study, run the workers until the budget is met, return the study.

    One worker runs in this process; with ``workers > 1`` each runs in its own process (pinned
    to ``devices[i % len(devices)]``) and this process shows the progress of all of them.
    """
    import subprocess

    from rich.console import Console

    from srnas.search.progress import SearchProgress

    console = console or Console(stderr=True)
    study, space, schedule = prepare_study(settings)
    if settings.engine == "nni":
        from srnas.search.nni_engine import run_nni

        run_nni(settings, study=study, space=space, schedule=schedule, console=console, progress=progress)
        return study
    console.print(f"study [bold]{study.study_name}[/bold]: space {space.name} ({space.size():,} configs), "
                  f"proxy {schedule.name}, objectives {','.join(settings.objectives)}, "
                  f"sampler {settings.sampler}, pruner {settings.effective_pruner}"
                  + (" (pruning is off for multi-objective searches)" if settings.multi_objective else "")
                  + f", budget {settings.budget}, workers {settings.workers}")
    monitor = SearchProgress(study, settings.budget, console=console) if progress else None
    procs: list[subprocess.Popen] = []
    try:
        if monitor is not None:
            monitor.__enter__()
        if settings.workers == 1:
            Worker(settings, worker_id=0).run()
        else:
            # Settings must name the study explicitly so that workers open the same one.
            payload = dataclasses.replace(settings, study=study.study_name).to_json()
            for i in range(settings.workers):
                procs.append(subprocess.Popen([sys.executable, "-m", "srnas.search", payload, str(i)]))
            codes = [p.wait() for p in procs]
            bad = [c for c in codes if c != 0]
            if bad:
                raise SrnasError(f"{len(bad)} of {len(procs)} workers exited with an error (codes {bad}); "
                                 "finished trials are kept, re-run the same command to resume")
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        raise
    finally:
        if monitor is not None:
            monitor.__exit__(None, None, None)
    return study


def make_sampler_for_worker(settings: SearchSettings, worker_id: int) -> Any:
    """Each worker's sampler gets its own seed (same seeds would propose the same configs)."""
    if settings.seed is None or worker_id == 0:
        return make_sampler(settings)
    return make_sampler(dataclasses.replace(settings, seed=settings.seed + 7919 * worker_id))


def worker_main(argv: Sequence[str]) -> int:
    """Entry of a worker process (``python -m srnas.search SETTINGS_JSON WORKER_ID``)."""
    import signal

    settings = SearchSettings.from_json(argv[0])
    worker_id = int(argv[1])
    # SIGTERM from the coordinator: fail the running trial cleanly, then exit.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        Worker(settings, worker_id=worker_id).run()
    except KeyboardInterrupt:
        return 130
    except SrnasError as exc:
        print(f"srnas: error: worker {worker_id}: {exc}", file=sys.stderr)
        return 2
    return 0
