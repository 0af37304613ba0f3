"""The NNI engine: the YAML space as an NNI 3.0 model space, NNI's multi-trial strategies
(regularized evolution, random, TPE) choosing configs, and the objective shared with the Optuna
engine scoring them.

Optuna stays the system of record: every NNI trial is written into the study with the params
``SearchSpace.params_of(config)`` (the same names and distributions an Optuna trial has), the
same user attributes (`TRIAL_ATTRS`, ``engine = "nni"``) and the same sample-image artifact, so
dashboard, report, retrain and export work unchanged. A trial appears in the study as RUNNING
while it trains and ends COMPLETE, FAIL, or PRUNED with ``infeasible`` (constraints violated,
never trained), exactly as an Optuna worker's trial would.

Conditional parameters: NNI spaces have no conditionals, so the model space holds the space's
`SearchSpace.flat_choices` (one kernel choice per *possible* block or stage, ``head_kernel``
whatever ``head_blocks`` is), declared once with the space's dimensions; the config is built
from the sample by `SearchSpace.config_from_flat`, so unused choices are ignored and the
recorded params are those of the config that was trained.

Execution: in-process by default (NNI's sequential engine: no Node.js, no port). With
``--nni-webui PORT`` NNI's training-service engine starts its bundled Node manager and web UI
on PORT and runs each trial in a subprocess, which writes into the study the same way.

NNI is imported only inside the functions that need it; without it `NNIEngine.run` raises
`MissingExtraError`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import uuid
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from srnas.arch.config import ArchConfig
from srnas.errors import ConfigError, MissingExtraError, SrnasError
from srnas.search.progress import SearchProgress
from srnas.search.session import Session
from srnas.search.settings import SearchSettings
from srnas.search.trial import MAX_CONSECUTIVE_FAILURES
from srnas.space.search_space import SearchSpace
from srnas.optuna_seams import trial_id_of
from srnas.registry import unknown_name

if TYPE_CHECKING:
    from rich.console import Console

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


def optuna_distributions(space: SearchSpace, params: Mapping[str, Any]) -> dict[str, Any]:
    """Optuna distributions of ``params`` (names from `SearchSpace.params_of`), the same an
    Optuna trial's ``suggest_categorical`` records."""
    from optuna.distributions import CategoricalDistribution  # lazy: optuna (start-up)

    choices = space.flat_choices()
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
            # lazy: optional nni (the nni extra)
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
    # lazy: optional nni (the nni extra)
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
            for label, choices in search_space.searchable_choices().items():
                mutable = self.add_mutable(nni.choice(label, list(choices)))
                sample[label] = ensure_frozen(mutable)
            self.sample = sample
            self.config = search_space.config_from_flat(sample)
            self._network: Any = None

        def network(self) -> Any:
            """The EDSR/MDSR network of ``config`` (built once)."""
            if self._network is None:
                from srnas.arch.networks import build_model  # lazy: torch (start-up)

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
    from nni.nas import strategy  # lazy: optional nni (the nni extra)

    if name == "evolution":
        population = max(2, min(100, budget // 4))
        return strategy.RegularizedEvolution(population_size=population, sample_size=max(1, population // 4),
                                             mutation_prob=1.0 / max(n_mutables, 1), dedup=True, seed=seed)
    if name == "random":
        return strategy.Random(dedup=True, seed=seed)
    if name == "tpe":
        return strategy.TPE(optimize_mode="maximize", seed=seed)
    raise unknown_name("strategy", name, STRATEGIES, flag="--nni-strategy")


# ---- one trial: evaluate and record in the Optuna study ----------------------------------------


class TrialRecorder:
    """Evaluates NNI's configs with the session's `TrialRunner` and writes each as an Optuna trial.

    One per process: in-process runs register theirs (`NNIEngine.run`); a subprocess trial of
    the web-UI mode attaches to the study from the settings (`for_settings`).
    """

    def __init__(self, session: Session, *, device: str | None = None) -> None:
        from srnas.train.device import resolve_device  # lazy: torch (start-up)

        self.session = session
        self.study = session.study
        self.space = session.space
        self.device = str(resolve_device(device or session.settings.devices[0]))
        self.runner = session.trial_runner(device=self.device, engine="nni")
        self.interrupted = False
        #: In-process runs: the NNI experiment id and how many of its trials ran (trial labels).
        self.experiment_id: str | None = None
        self.count = 0

    @classmethod
    def for_settings(cls, settings_json: str) -> "TrialRecorder":
        """Attach to the study named in the settings (a subprocess trial of the web-UI mode)."""
        return cls(Session.attach(SearchSettings.from_json(settings_json)))

    # ---- the study ------------------------------------------------------------------------

    def _open_trial(self, cfg: ArchConfig, attrs: dict[str, Any]) -> Any:
        """Add a RUNNING trial with the config's params and return a live `optuna.Trial` on it
        (found again by its unique ``nni_trial`` label)."""
        # lazy: optuna (start-up)
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
                return optuna.trial.Trial(self.study, trial_id_of(t))
        raise SrnasError(f"study {self.study.study_name!r}: the trial just added for {cfg.arch_id} is gone")

    def next_label(self) -> str:
        """A unique label of the NNI trial now running: ``<experiment id>/<trial>``."""
        import nni  # lazy: optional nni (the nni extra)

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
        from optuna.trial import TrialState  # lazy: optuna (start-up)

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
    import nni  # lazy: optional nni (the nni extra)

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

    def __init__(self, session: Session | None, *, timeout: float | None, recorder: TrialRecorder | None) -> None:
        self.session = session
        self.deadline = time.monotonic() + timeout if timeout else math.inf
        self.recorder = recorder
        self.error: SrnasError | None = None
        self.failures_in_a_row = 0
        self.experiment_id = ""  # set once the NNI experiment exists

    def on_training_end(self, event: Any) -> None:
        """Subprocess trials (web-UI mode): stop after `MAX_CONSECUTIVE_FAILURES` failed in a
        row (in-process trials count their own failures in `TrialRecorder.evaluate`)."""
        from nni.nas.space import ModelStatus  # lazy: optional nni (the nni extra)

        if event.status != ModelStatus.Failed:
            self.failures_in_a_row = 0
            return
        self.failures_in_a_row += 1
        if self.failures_in_a_row >= MAX_CONSECUTIVE_FAILURES and self.error is None:
            self.error = SrnasError(f"{self.failures_in_a_row} NNI trials in a row failed; their logs are in "
                                    f"nni-experiments/{self.experiment_id}/trials under HOME")

    def available(self) -> bool:
        if self.error is not None or (self.recorder is not None and self.recorder.interrupted) \
                or time.monotonic() >= self.deadline or self.session is None:
            return False
        try:
            return self.session.budget_left() > 0
        except SrnasError as exc:  # constraints reject nearly every config
            self.error = exc
            return False


def _experiment_class() -> type:
    """`NasExperiment` whose execution engines ask a `_StudyBudget` before each trial."""
    # lazy: optional nni (the nni extra)
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


class NNIEngine:
    """``--engine nni``: NNI's multi-trial strategies, one trial at a time, every trial in the
    session's Optuna study. Raises `MissingExtraError` without NNI."""

    name: ClassVar[str] = "nni"

    def validate(self, settings: SearchSettings) -> SearchSettings:
        if settings.multi_objective:
            raise ConfigError(f"--engine nni optimises one objective (NNI strategies are single-objective), "
                              f"not {','.join(settings.objectives)}; use --engine optuna for a Pareto search")
        if settings.nni_strategy not in STRATEGIES:
            raise unknown_name("strategy", settings.nni_strategy, STRATEGIES, flag="--nni-strategy")
        if settings.workers == "auto":
            return dataclasses.replace(settings, workers=1)
        if isinstance(settings.workers, int) and settings.workers > 1:
            raise ConfigError(f"--engine nni runs one trial at a time, not --workers {settings.workers}; "
                              "use --engine optuna for parallel workers")
        return settings

    def run(self, session: Session, *, console: "Console", progress: bool) -> None:
        """Search until the study holds the budget: trials waiting in the study (the space's
        presets) first, then NNI's proposals. In this process (NNI's sequential engine) unless
        ``nni_webui`` names a port, where NNI's Node manager and web UI serve the experiment and
        trials run as subprocesses."""
        _import_nni()
        import nni.runtime.log as nni_log  # lazy: optional nni (the nni extra)

        session.fail_stale()
        done = session.already_done_note()
        if done is not None:
            console.print(done)
            return
        left = session.budget_left()
        # NNI logs to stdout by default; its log file (~/nni-experiments/<id>/log) keeps everything.
        stdout_handler = nni_log._handlers.get("_stdout_")
        nni_log.silence_stdout()
        try:
            _search(session, console=console, progress=progress, remaining=left)
        finally:
            if stdout_handler is not None:
                nni_log.start_stdout_logging()


def _search(session: Session, *, console: "Console", progress: bool, remaining: int) -> None:
    """`NNIEngine.run` once NNI is loaded and there is budget left."""
    # lazy: optional nni (the nni extra)
    from nni.nas.evaluator import FunctionalEvaluator
    from nni.nas.experiment import NasExperimentConfig

    settings = dataclasses.replace(session.settings, study=session.name)
    space = session.space
    settings_json = settings.to_json()
    recorder = TrialRecorder(session)
    budget = _StudyBudget(session, timeout=settings.timeout, recorder=recorder)
    model_space = __getattr__(MODEL_SPACE_NAME)(space=str(space.source))
    n_mutables = len(space.searchable_choices())
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
    config.experiment_name = f"srnas-{session.name}"
    experiment = _experiment_class()(model_space, evaluator, strategy, config=config)
    experiment.study_budget = budget
    budget.experiment_id = experiment.id
    if not webui:
        recorder.experiment_id = experiment.id

    console.print(session.describe(NNIEngine.name)
                  + f", {n_mutables} NNI choices, strategy {settings.nni_strategy} "
                  f"({STRATEGIES[settings.nni_strategy]}), budget {settings.budget} ({remaining} to go), "
                  f"NNI experiment {experiment.id} "
                  + (f"with its web UI on http://localhost:{settings.nni_webui}" if webui else "in-process")
                  + "; NNI strategies do not prune")
    _RECORDERS[settings_json] = recorder
    monitor = SearchProgress(session.study, settings.budget, console=console, bar=progress)
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
    finished = session.counts().finished
    if finished < settings.budget:
        reason = "timeout" if time.monotonic() >= budget.deadline else \
            "the strategy proposed no new config, or trials failed"
        console.print(f"NNI stopped with {finished} of {settings.budget} finished trials in the study "
                      f"({reason}); re-run the same command to continue")
