"""The NNI engine: the YAML space as an NNI 3.0 model space, NNI's multi-trial strategies
(regularized evolution, random, TPE) choosing configs, and the objective shared with the Optuna
engine scoring them.

Optuna stays the system of record: every NNI trial is written into the study with the params
``SearchSpace.params_of(config)`` (the same names and distributions an Optuna trial has), the
same user attributes (`TRIAL_ATTRS`, ``engine = "nni"``) and the same sample-image artifact, so
dashboard, report, retrain and export work unchanged. A trial appears in the study as RUNNING
while it trains and ends COMPLETE, FAIL, or PRUNED with ``infeasible`` (constraints violated,
never trained), exactly as an Optuna worker's trial would.

Conditional parameters: NNI spaces have no conditionals, so the model space holds one kernel
choice per *possible* block (or stage) and ``head_kernel`` whatever ``head_blocks`` is; the
config is built from the sample the way `SearchSpace.sample` reads it, so unused choices are
ignored and the recorded params are those of the config that was trained.

Execution: in-process by default (NNI's sequential engine: no Node.js, no port). With
``--nni-webui PORT`` NNI's training-service engine starts its bundled Node manager and web UI
on PORT and runs each trial in a subprocess, which writes into the study the same way.

NNI is imported only inside the functions that need it; without it `run_nni` raises
`MissingExtraError`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import socket
import time
import uuid
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from srnas.arch.config import ArchConfig
from srnas.errors import ConfigError, MissingExtraError, SrnasError
from srnas.search.trial import MAX_CONSECUTIVE_FAILURES, TrialRunner
from srnas.space import FixedChooser, SearchSpace

#: ``--nni-strategy`` values and the NNI strategies they name.
STRATEGIES = {"evolution": "RegularizedEvolution", "random": "Random", "tpe": "TPE"}
#: The score NNI's strategy sees for a config that violates the constraints (never trained):
#: below any real PSNR, so evolution and TPE steer away from it.
INFEASIBLE_SCORE = 0.0
#: Name under which the model-space class is importable from this module (NNI's subprocess
#: trials import it by name); the class is created on first use so that importing this module
#: does not import NNI.
MODEL_SPACE_NAME = "SRArchSpace"


# ---- the model space --------------------------------------------------------------------------


def nni_choices(space: SearchSpace) -> dict[str, tuple[Any, ...]]:
    """Every parameter name `SearchSpace.sample` may ask for, with its choices.

    Conditional parameters are listed for their largest extent: a kernel per possible block
    (``kernel_size_b0`` .. up to the largest ``n_resblocks``) or per stage, and ``head_kernel``
    when any ``head_blocks`` choice is positive. Fixed parameters have one choice.
    """
    out: dict[str, tuple[Any, ...]] = {}
    for key in ("n_resblocks", "n_feats", "batch_norm", "res_scale", "act", "global_skip",
                "rgb_range", "n_colors"):
        if key in space.params:
            out[key] = space.params[key].choices
    kernel = space.choices_of("kernel_size", 3)
    if kernel.per == "global":
        out["kernel_size"] = kernel.choices
    elif kernel.per == "stage":
        out.update({f"kernel_size_s{i}": kernel.choices for i in range(kernel.stages)})
    else:
        out.update({f"kernel_size_b{i}": kernel.choices for i in range(max(space.params["n_resblocks"].choices))})
    if space.family == "mdsr":
        heads = space.choices_of("head_blocks", 2).choices
        out["head_blocks"] = heads
        if any(hb > 0 for hb in heads):
            out["head_kernel"] = space.choices_of("head_kernel", 5).choices
    return out


def searchable_choices(space: SearchSpace) -> dict[str, tuple[Any, ...]]:
    """The `nni_choices` with more than one choice: the mutables of the NNI model space."""
    return {name: choices for name, choices in nni_choices(space).items() if len(choices) > 1}


def config_from_sample(space: SearchSpace, sample: Mapping[str, Any]) -> ArchConfig:
    """The config an NNI sample stands for (unused conditional choices are ignored).

    ``sample`` needs a value for every searchable parameter; fixed ones are filled in.

    >>> space = SearchSpace.load("tiny")
    >>> cfg = config_from_sample(space, {"n_resblocks": 2, "n_feats": 8, "res_scale": 1.0,
    ...     "global_skip": "bicubic", "kernel_size_b0": 5, "kernel_size_b1": 3,
    ...     "kernel_size_b2": 5, "kernel_size_b3": 5})
    >>> cfg.kernel_sizes, sorted(space.params_of(cfg))[:3]
    ((5, 3), ['act', 'batch_norm', 'global_skip'])
    """
    values = {name: choices[0] for name, choices in nni_choices(space).items() if len(choices) == 1}
    values.update(sample)
    try:
        return space.sample(FixedChooser(values))
    except KeyError as exc:
        raise ConfigError(f"NNI sample {dict(sample)} lacks parameter {exc.args[0]!r} of space {space.name!r}") from None


def optuna_distributions(space: SearchSpace, params: Mapping[str, Any]) -> dict[str, Any]:
    """Optuna distributions of ``params`` (names from `SearchSpace.params_of`), the same an
    Optuna trial's ``suggest_categorical`` records."""
    from optuna.distributions import CategoricalDistribution

    choices = nni_choices(space)
    return {name: CategoricalDistribution(list(choices[name])) for name in params}


@functools.lru_cache(maxsize=8)
def _load_space(source: str) -> SearchSpace:
    return SearchSpace.load(source)


def _import_nni() -> Any:
    """``nni`` with its NAS API loaded, or `MissingExtraError` (also when NNI is broken)."""
    try:
        with warnings.catch_warnings():
            # NNI 3.0 predates the installed torch and warns about torch.nn names it does not know.
            warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"nni\.")
            import nni
            import nni.nas.evaluator  # noqa: F401
            import nni.nas.experiment  # noqa: F401
            import nni.nas.nn.pytorch  # noqa: F401
            import nni.nas.strategy  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install (missing pytorch-lightning ...)
        raise MissingExtraError("nni", "nni", "the NNI engine") from exc
    return nni


def _create_model_space_class() -> type:
    """Define the NNI model-space class (needs NNI, hence created on first use)."""
    import nni
    from nni.mutable import ensure_frozen
    from nni.nas.nn.pytorch import ModelSpace
    from nni.nas.space import model_context

    class SRArchSpace(ModelSpace):
        """NNI model space of a YAML search space: one categorical mutable per searchable
        parameter (labels = the Optuna parameter names).

        A frozen instance (an NNI trial) carries the sampled ``config``; the network is built
        from it on first use (``forward``), so that trials which only need the config (the
        objective builds and trains its own network) pay nothing for it.
        """

        def __init__(self, space: str) -> None:
            super().__init__()
            self.space_source = space
            search_space = _load_space(space)
            sample = {}
            for label, choices in searchable_choices(search_space).items():
                mutable = self.add_mutable(nni.choice(label, list(choices)))
                sample[label] = ensure_frozen(mutable)
            self.sample = sample
            self.config = config_from_sample(search_space, sample)
            self._network = None

        def network(self) -> Any:
            """The EDSR/MDSR network of ``config`` (built once)."""
            if self._network is None:
                from srnas.arch.networks import build_model

                self._network = build_model(self.config)
            return self._network

        def forward(self, x: Any, scale: int | None = None) -> Any:
            return self.network()(x, scale=scale)

        def freeze(self, sample: dict[str, Any]) -> "SRArchSpace":
            with model_context(sample):
                return SRArchSpace(space=self.space_source)

    SRArchSpace.__module__ = __name__
    SRArchSpace.__qualname__ = MODEL_SPACE_NAME
    return SRArchSpace


def __getattr__(name: str) -> Any:
    """``SRArchSpace`` is created lazily (NNI imports it by name in subprocess trials)."""
    if name == MODEL_SPACE_NAME:
        _import_nni()
        cls = _create_model_space_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_strategy(name: str, *, budget: int, seed: int | None, n_mutables: int) -> Any:
    """The NNI strategy for ``--nni-strategy NAME`` (seeded when ``seed`` is given).

    Regularized evolution keeps a population of a quarter of the budget (2 to 100) and runs
    tournaments of a quarter of the population; each child changes one parameter on average.
    TPE maximises the reported PSNR.
    """
    from nni.nas import strategy

    if name == "evolution":
        population = max(2, min(100, budget // 4))
        return strategy.RegularizedEvolution(population_size=population, sample_size=max(1, population // 4),
                                             mutation_prob=1.0 / max(n_mutables, 1), dedup=True, seed=seed)
    if name == "random":
        return strategy.Random(dedup=True, seed=seed)
    if name == "tpe":
        return strategy.TPE(optimize_mode="maximize", seed=seed)
    raise ConfigError(f"--nni-strategy: unknown strategy {name!r}; allowed: {', '.join(STRATEGIES)}")


# ---- one trial: evaluate and record in the Optuna study ----------------------------------------


class TrialRecorder:
    """Evaluates NNI's configs with the shared `Objective` and writes each as an Optuna trial.

    One per process: in-process runs register theirs (`run_nni`); a subprocess trial of the
    web-UI mode builds one from the settings (`for_settings`).
    """

    def __init__(self, settings: Any, *, study: Any, space: SearchSpace, schedule: Any,
                 device: str | None = None, root: Path | None = None) -> None:
        from srnas.search.objective import Objective
        from srnas.search.storage import artifact_dir, study_dir
        from srnas.train.device import resolve_device

        self.settings = settings
        self.study = study
        self.space = space
        self.schedule = schedule
        self.device = str(resolve_device(device or settings.devices[0]))
        self.dir = study_dir(study.study_name, root)
        self.artifacts = artifact_dir(study.study_name, root)
        self.objective = Objective(space, schedule, data=settings.data, objectives=settings.objectives,
                                   device=self.device, seed=settings.seed or 0, engine="nni",
                                   sample_dir=self.dir / "tmp")
        self.worker_tag = f"{socket.gethostname()}:{os.getpid()}"
        self.runner = TrialRunner(study, space, self.objective, artifacts=self.artifacts, seed=settings.seed,
                                  device=self.device, worker_tag=self.worker_tag)
        self.interrupted = False
        #: In-process runs: the NNI experiment id and how many of its trials ran (trial labels).
        self.experiment_id: str | None = None
        self.count = 0

    @classmethod
    def for_settings(cls, settings_json: str) -> "TrialRecorder":
        """Open the study named in the settings (a subprocess trial of the web-UI mode)."""
        import optuna

        from srnas.search.engine import SearchSettings, load_space, proxy_name, resolve_schedule
        from srnas.search.storage import open_storage

        settings = SearchSettings.from_json(settings_json)
        space = load_space(settings)
        schedule = resolve_schedule(proxy_name(settings, space))
        storage = open_storage(settings.storage, settings.study, heartbeat=settings.heartbeat,
                               root=settings.root_path())
        study = optuna.load_study(study_name=settings.study, storage=storage)
        return cls(settings, study=study, space=space, schedule=schedule, root=settings.root_path())

    # ---- the study ------------------------------------------------------------------------

    def _open_trial(self, cfg: ArchConfig, attrs: dict[str, Any]) -> Any:
        """Add a RUNNING trial with the config's params and return a live `optuna.Trial` on it
        (found again by its unique ``nni_trial`` label)."""
        import optuna
        from optuna.trial import TrialState

        params = self.space.params_of(cfg)
        if params is None:  # config_from_sample only builds configs of the space
            raise SrnasError(f"NNI proposed {cfg.describe()}, which is not inside space {self.space.name!r}")
        self.study.add_trial(optuna.trial.create_trial(
            state=TrialState.RUNNING, params=params, distributions=optuna_distributions(self.space, params),
            user_attrs=attrs))
        for t in reversed(self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))):
            if t.user_attrs.get("nni_trial") == attrs["nni_trial"]:
                return optuna.trial.Trial(self.study, t._trial_id)
        raise SrnasError(f"study {self.study.study_name!r}: the trial just added for {cfg.arch_id} is gone")

    def next_label(self) -> str:
        """A unique label of the NNI trial now running: ``<experiment id>/<trial>``."""
        import nni

        self.count += 1
        if self.experiment_id is not None:
            return f"{self.experiment_id}/{self.count}"
        trial_id = nni.get_trial_id()  # a subprocess trial of the web-UI mode
        if not trial_id or trial_id == "STANDALONE":
            trial_id = uuid.uuid4().hex[:8]
        return f"{nni.get_experiment_id()}/{trial_id}"

    def run_waiting(self, budget: "_StudyBudget") -> int:
        """Evaluate the trials waiting in the study (the space's presets, enqueued when the
        study was prepared) before NNI proposes its own, as the Optuna engine does; returns
        how many ran. NNI's strategy does not see them."""
        from optuna.trial import TrialState

        done = 0
        while budget.available() and self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            with warnings.catch_warnings():
                # Optuna warns that heartbeats belong to study.optimize; `evaluate` records them.
                warnings.filterwarnings("ignore", message="Heartbeat of storage", category=UserWarning)
                trial = self.study.ask()  # pops the oldest waiting trial; its params are fixed
            cfg = self.space.sample(trial)
            self.evaluate(cfg, trial=trial)
            done += 1
        return done

    # ---- one NNI trial --------------------------------------------------------------------

    def evaluate(self, cfg: ArchConfig, *, trial: Any = None,
                 report_intermediate: Callable[[float], None] = lambda psnr: None,
                 report_final: Callable[[float], None] = lambda psnr: None) -> None:
        """Evaluate ``cfg`` as one study trial (a new one, or ``trial`` when given) with the
        engines' shared `TrialRunner`, and report its PSNR to NNI through
        ``report_intermediate`` / ``report_final``; a failed trial reports nothing."""
        if trial is None:
            trial = self._open_trial(cfg, {"nni_trial": self.next_label()})
        try:
            outcome = self.runner.run(trial, cfg, report=lambda step, psnr: report_intermediate(psnr))
        except (KeyboardInterrupt, SystemExit):
            self.interrupted = True
            raise
        if outcome.state == "infeasible":
            report_final(INFEASIBLE_SCORE)
        elif outcome.psnr is not None:
            report_final(outcome.psnr)


#: Recorders of in-process searches, by their settings (JSON); subprocess trials build their own.
_RECORDERS: dict[str, TrialRecorder] = {}


def evaluate_model(model: Any, settings: str) -> None:
    """The function of NNI's `FunctionalEvaluator`: evaluate one frozen `SRArchSpace`.

    ``settings`` is the search's `SearchSettings` as JSON (with the study named), so that a
    trial subprocess of the web-UI mode can open the study itself.
    """
    import nni

    recorder = _RECORDERS.get(settings)
    if recorder is None:
        recorder = _RECORDERS[settings] = TrialRecorder.for_settings(settings)
    recorder.evaluate(model.config,
                      report_intermediate=lambda psnr: nni.report_intermediate_result(psnr),
                      report_final=lambda psnr: nni.report_final_result(psnr))


# ---- the search ------------------------------------------------------------------------------


class _StudyBudget:
    """Whether NNI may start another trial: the study, not NNI's trial count, holds the budget
    (an infeasible config is recorded but does not count, as with the Optuna engine)."""

    def __init__(self, study: Any, budget: int, *, timeout: float | None, recorder: TrialRecorder) -> None:
        self.study = study
        self.budget = budget
        self.deadline = time.monotonic() + timeout if timeout else math.inf
        self.recorder = recorder
        self.error: SrnasError | None = None
        self.failures_in_a_row = 0
        self.experiment_id = ""  # set once the NNI experiment exists

    def on_training_end(self, event: Any) -> None:
        """Subprocess trials (web-UI mode): stop after `MAX_CONSECUTIVE_FAILURES` failed in a
        row (in-process trials count their own failures in `TrialRecorder.evaluate`)."""
        from nni.nas.space import ModelStatus

        if event.status != ModelStatus.Failed:
            self.failures_in_a_row = 0
            return
        self.failures_in_a_row += 1
        if self.failures_in_a_row >= MAX_CONSECUTIVE_FAILURES and self.error is None:
            self.error = SrnasError(f"{self.failures_in_a_row} NNI trials in a row failed; their logs are in "
                                    f"nni-experiments/{self.experiment_id}/trials under HOME")

    def available(self) -> bool:
        from srnas.search.engine import MAX_INFEASIBLE_PER_BUDGET, finished_count

        if self.error is not None or self.recorder.interrupted or time.monotonic() >= self.deadline:
            return False
        finished, _running, _failed, infeasible = finished_count(self.study)
        if infeasible > MAX_INFEASIBLE_PER_BUDGET * max(self.budget, 1):
            self.error = SrnasError(
                f"study {self.study.study_name!r}: {infeasible} sampled configs violated the constraints; "
                "loosen --max-params/--max-mult-adds or the space's constraints")
            return False
        return finished < self.budget


def _experiment_class() -> type:
    """`NasExperiment` whose execution engines ask a `_StudyBudget` before each trial."""
    from nni.nas.execution import SequentialExecutionEngine, TrainingServiceExecutionEngine
    from nni.nas.execution.event import ModelEventType
    from nni.nas.experiment import NasExperiment
    from nni.nas.experiment.config import SequentialEngineConfig, TrainingServiceEngineConfig

    class StudyBudgetSequentialEngine(SequentialExecutionEngine):
        def __init__(self, budget: _StudyBudget) -> None:
            super().__init__(continue_on_failure=False)
            self.study_budget = budget

        def budget_available(self) -> bool:
            return self.study_budget.available()

    class StudyBudgetTrainingServiceEngine(TrainingServiceExecutionEngine):
        def __init__(self, experiment: Any, budget: _StudyBudget) -> None:
            super().__init__(experiment)
            self.study_budget = budget
            self.register_model_event_callback(ModelEventType.TrainingEnd, budget.on_training_end)

        def budget_available(self) -> bool:
            return super().budget_available() and self.study_budget.available()

    class StudyExperiment(NasExperiment):
        study_budget: _StudyBudget

        def execution_engine_factory(self, config: Any) -> Any:
            if isinstance(config, SequentialEngineConfig):
                return StudyBudgetSequentialEngine(self.study_budget)
            if isinstance(config, TrainingServiceEngineConfig):
                return StudyBudgetTrainingServiceEngine(self, self.study_budget)
            return super().execution_engine_factory(config)

    return StudyExperiment


def run_nni(settings: Any, *, study: Any, space: SearchSpace, schedule: Any, console: Any = None,
            progress: bool = True) -> None:
    """Search ``space`` with NNI until ``study`` holds ``settings.budget`` finished trials.

    Trials waiting in the study (the space's presets) run first; then NNI's strategy proposes
    configs. Runs in this process (NNI's sequential engine) unless ``settings.nni_webui`` names
    a port, where NNI's Node manager and web UI serve the experiment and trials run as
    subprocesses. Every trial lands in ``study`` (see the module docstring). Raises
    `MissingExtraError` without NNI, and `ConfigError` for a multi-objective search (NNI
    strategies optimise one objective), several workers, or an unknown ``settings.nni_strategy``.
    """
    from rich.console import Console

    from srnas.search.engine import fail_dead_local_trials, finished_count

    console = console or Console(stderr=True)
    if settings.multi_objective:
        raise ConfigError(f"--engine nni optimises one objective (NNI strategies are single-objective), "
                          f"not {','.join(settings.objectives)}; use --engine optuna for a Pareto search")
    if settings.nni_strategy not in STRATEGIES:
        raise ConfigError(f"--nni-strategy: unknown strategy {settings.nni_strategy!r}; "
                          f"allowed: {', '.join(STRATEGIES)}")
    if settings.workers > 1:
        raise ConfigError(f"--engine nni runs one trial at a time, not --workers {settings.workers}; "
                          "use --engine optuna for parallel workers")
    _import_nni()
    import nni.runtime.log as nni_log

    fail_dead_local_trials(study)
    finished = finished_count(study)[0]
    if finished >= settings.budget:
        console.print(f"study [bold]{study.study_name}[/bold] already holds {finished} finished trials "
                      f"(budget {settings.budget}); nothing to do")
        return
    # NNI logs to stdout by default; its log file (~/nni-experiments/<id>/log) keeps everything.
    stdout_handler = nni_log._handlers.get("_stdout_")
    nni_log.silence_stdout()
    try:
        _search(dataclasses.replace(settings, study=study.study_name), study=study, space=space,
                schedule=schedule, console=console, progress=progress, remaining=settings.budget - finished)
    finally:
        if stdout_handler is not None:
            nni_log.start_stdout_logging()


def _search(settings: Any, *, study: Any, space: SearchSpace, schedule: Any, console: Any,
            progress: bool, remaining: int) -> None:
    """`run_nni` once NNI is loaded and there is budget left."""
    from nni.nas.evaluator import FunctionalEvaluator
    from nni.nas.experiment import NasExperimentConfig

    from srnas.search.engine import finished_count
    from srnas.search.progress import SearchProgress

    settings_json = settings.to_json()
    recorder = TrialRecorder(settings, study=study, space=space, schedule=schedule, root=settings.root_path())
    budget = _StudyBudget(study, settings.budget, timeout=settings.timeout, recorder=recorder)
    model_space = __getattr__(MODEL_SPACE_NAME)(space=str(space.source))
    n_mutables = len(searchable_choices(space))
    strategy = make_strategy(settings.nni_strategy, budget=settings.budget, seed=settings.seed,
                             n_mutables=n_mutables)
    evaluator = FunctionalEvaluator(evaluate_model, settings=settings_json)
    webui = settings.nni_webui is not None
    if webui:
        config = NasExperimentConfig("ts", "simplified", "local")
        config.trial_concurrency = 1
        on_gpu = recorder.device.startswith("cuda")
        config.trial_gpu_number = 1 if on_gpu else 0
        config.training_service.use_active_gpu = on_gpu
        if settings.timeout:
            config.max_experiment_duration = f"{int(math.ceil(settings.timeout))}s"
    else:
        # The sequential engine runs trials in this process; NNI implies (and warns about an
        # explicit) local training service here.
        config = NasExperimentConfig("sequential", "simplified")
    config.experiment_name = f"srnas-{study.study_name}"
    experiment = _experiment_class()(model_space, evaluator, strategy, config=config)
    experiment.study_budget = budget
    budget.experiment_id = experiment.id
    if not webui:
        recorder.experiment_id = experiment.id

    console.print(f"study [bold]{study.study_name}[/bold]: space {space.name} ({space.size():,} configs, "
                  f"{n_mutables} NNI choices), proxy {schedule.name}, engine nni, strategy "
                  f"{settings.nni_strategy} ({STRATEGIES[settings.nni_strategy]}), budget {settings.budget} "
                  f"({remaining} to go), NNI experiment {experiment.id} "
                  + (f"with its web UI on http://localhost:{settings.nni_webui}" if webui else "in-process")
                  + "; NNI strategies do not prune")
    _RECORDERS[settings_json] = recorder
    monitor = SearchProgress(study, settings.budget, console=console) if progress else None
    state = "idle"
    try:
        if monitor is not None:
            monitor.__enter__()
        recorder.run_waiting(budget)
        if budget.available():
            state = "running"
            # run() returns None when interrupted: NNI catches Ctrl-C and stops the experiment.
            state = "interrupted" if experiment.run(port=settings.nni_webui or 8080) is None else "completed"
    finally:
        if state in ("running", "completed"):  # NNI leaves stopping to atexit unless interrupted
            experiment.stop()
        if monitor is not None:
            monitor.__exit__(None, None, None)
        _RECORDERS.pop(settings_json, None)
    if state == "interrupted" or recorder.interrupted:
        raise KeyboardInterrupt
    if budget.error is not None:
        raise budget.error
    finished = finished_count(study)[0]
    if finished < settings.budget:
        reason = "timeout" if time.monotonic() >= budget.deadline else \
            "the strategy proposed no new config, or trials failed"
        console.print(f"NNI stopped with {finished} of {settings.budget} finished trials in the study "
                      f"({reason}); re-run the same command to continue")
