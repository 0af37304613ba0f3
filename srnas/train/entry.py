"""The retrain workflow, the one ``srnas retrain`` runs: its settings (`RetrainSettings`, from
the defaults, a run file and keywords named like the flags: `resolve_retrain`), and
`run_retrain`, which trains each architecture they name in its own `RetrainRun` folder
(`srnas.train.retrain`), with progress lines, a result line and stop signals. The Python call
``srnas.retrain(...)`` is `srnas.api.retrain`: it adds the ranking of a study's trials for
``--top K``, which lives above this layer (`srnas.results`). The model, data and training
modules are imported inside the functions: importing this module (``srnas --help`` does) stays light.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from srnas.errors import ConfigError
from srnas.log import FILE_ONLY, ProgressClock, get_logger, log_file
from srnas.runfile import check_options, options_schema, read_run_file
from srnas.studies import StudyHome, trials_root
from srnas.train.inference import load_arch
from srnas.train.schedules import get_schedule
from srnas.units import human_duration

if TYPE_CHECKING:
    import optuna

    from srnas.arch.config import ArchConfig
    from srnas.train.retrain import RetrainRun
    from srnas.train.fit_result import TrainProgress, TrainResult

#: Keys of a retrain run file about how the command shows things.
RETRAIN_OUTPUT: dict[str, Any] = {"no_progress": bool, "log_every": int}


@dataclasses.dataclass
class RetrainSettings:
    """What one ``srnas retrain`` asks for (its flags). Exactly one of ``config`` (an
    architecture file or preset name), ``preset`` and ``top`` (the best K trials of
    ``study``) says what to train; ``out`` is the folder of the study folders (default
    ``trials/``); ``tensorboard``: scalars for TensorBoard (None: when it is installed)."""

    config: str | None = None
    preset: str | None = None
    top: int | None = None
    study: str | None = None
    storage: str | None = None
    scale: int | None = None
    data: str = "demo"
    schedule: str = "paper"
    resume: bool = False
    device: str = "auto"
    precision: str = "auto"
    out: str | None = None
    seed: int = 0
    init: str | None = None
    checkpoint_every: int | None = None
    max_updates: int | None = None
    tensorboard: bool | None = None

    def __post_init__(self) -> None:
        chosen = [f"--{key}" for key in ("config", "preset", "top") if getattr(self, key) is not None]
        if not chosen:
            raise ConfigError("say what to retrain: --config FILE (an architecture), --preset NAME, "
                              "or --top K with --study NAME")
        if len(chosen) > 1:
            raise ConfigError(f"{' and '.join(chosen)} both say what to retrain; give one of them")
        if self.top is not None and not self.study:
            raise ConfigError("--top needs --study NAME (the study whose best trials to retrain)")
        if self.precision not in ("auto", "fp32", "tf32", "bf16"):
            raise ConfigError(f"--precision: {self.precision!r}; allowed: auto, fp32, tf32, bf16")
        for key in ("top", "checkpoint_every", "max_updates"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"--{key.replace('_', '-')} must be a positive integer, got {value}")

    def run_options(self) -> dict[str, Any]:
        """The settings as the keys of a run file (``srnas retrain --run FILE``)."""
        return dataclasses.asdict(self)


def retrain_schema() -> dict[str, Any]:
    """The keys of a retrain run file and their types (`RetrainSettings`, `RETRAIN_OUTPUT`)."""
    return {**options_schema(RetrainSettings), **RETRAIN_OUTPUT}


def resolve_retrain(run: str | Path | None = None, **options: Any) -> tuple[RetrainSettings, dict[str, Any]]:
    """The settings of a retrain and its output options: the defaults, the run file ``run``,
    then ``options`` (one of ``config``/``preset``/``top`` given there replaces the file's)."""
    schema = retrain_schema()
    given = read_run_file(run, schema) if run is not None else {}
    explicit = check_options(options, schema)
    if any(explicit.get(key) is not None for key in ("config", "preset", "top")):
        for key in ("config", "preset", "top"):
            given.pop(key, None)
    given.update(explicit)
    output = {key: given.pop(key) for key in list(given) if key in RETRAIN_OUTPUT}
    return RetrainSettings(**given), output


@dataclasses.dataclass
class RetrainOutcome:
    """One finished retrain: the run (its folder and files) and the training result."""

    run: "RetrainRun"
    result: "TrainResult"

    @property
    def summary(self) -> str:
        """The line ``srnas retrain`` prints for it."""
        final, result = self.result.final, self.result
        ssim = "" if final.get("ssim") is None else f", SSIM {final['ssim']:.4f}"
        scales = ",".join(str(s) for s in final["scales"])
        mean = " (mean over scales)" if len(final["scales"]) > 1 else ""
        images = final.get("val_images")
        return (f"done: PSNR {final['psnr']:.2f} dB{ssim}{mean} on {final['val_set']}"
                + (f" ({images} image{'s' if images != 1 else ''})" if images else "") + " "
                f"({final['protocol']} protocol, x{scales}); bicubic {result.bicubic_psnr:.2f} dB; "
                f"{result.updates:,} updates in {human_duration(result.wall_time_s)} on {result.device} "
                f"-> {self.run.folder}")



def retrain_progress_lines(*, log_every: int = 1000, route: dict[str, Any] | None = None
                           ) -> "Callable[[RetrainRun, TrainProgress], None]":
    """A ``progress`` for `run_retrain` that logs a plain line at every evaluation, every
    ``log_every`` updates, at the end and at least every minute (what ``srnas retrain`` prints
    off a terminal, and the Python API by default); ``route`` is the logging ``extra``."""
    log = get_logger("retrain")
    state: dict[str, Any] = {}

    def lines(run: "RetrainRun", p: "TrainProgress") -> None:
        if state.get("run") is not run:  # a new run: its own evaluation points and clock
            state.update(run=run, eval_points=set(run.schedule.eval_points()), clock=ProgressClock(run.schedule.updates))
        evaluated = p.update in state["eval_points"]
        clock = state["clock"]
        if not (evaluated or p.update % log_every == 0 or p.update == p.total or clock.due()):
            return
        clock.mark()
        psnr = f", validation PSNR {p.last_psnr:.2f} dB" if evaluated and p.last_psnr is not None else ""
        log.info(f"update {p.update:,}/{p.total:,} ({100 * p.update / max(p.total, 1):.0f}%){psnr}, "
                 f"loss {p.loss:.3f}, lr {p.lr:.2e}, elapsed {human_duration(p.elapsed_s)}, "
                 f"ETA {human_duration(p.eta_s)}", extra=route)

    return lines


def run_retrain(settings: RetrainSettings, *,
                top_configs: "Callable[[optuna.Study, int], list[ArchConfig]]",
                progress: "Callable[[RetrainRun, TrainProgress], None] | None" = None,
                on_done: Callable[[RetrainOutcome], None] | None = None,
                log_result: bool = False) -> list[RetrainOutcome]:
    """`srnas.api.retrain` with settings already resolved; ``log_result``: the result line goes
    to the log as well as to ``retrain.log`` (the command prints it on stdout instead).
    ``top_configs(study, k)``: the architectures of ``--top K``, the best ``k`` trials of the
    study (ranking trials is the results layer's: `srnas.api.run_retrain` passes
    `srnas.results.frame.top_configs`)."""
    from srnas.arch.presets import preset_config  # lazy: keeps srnas --help off yaml (srnas.arch.config)

    s = settings
    # An empty --study is refused by the name check, not taken as "manual".
    home = StudyHome("manual" if s.study is None else s.study, s.out if s.out is not None else trials_root())
    schedule = get_schedule(s.schedule)
    if s.max_updates is not None:
        schedule = schedule.shortened(s.max_updates)
    if s.top is not None:
        configs = top_configs(home.load(s.storage), s.top)
    elif s.preset is not None:
        configs = [preset_config(s.preset, scale=s.scale)]
    else:
        configs = [load_arch(str(s.config), s.scale)]
    data_cache: dict[tuple[int, ...], tuple[Any, Any]] = {}
    outcomes = []
    with stop_signals() as stop:
        for i, cfg in enumerate(configs, 1):
            outcome = _retrain_one(i, len(configs), cfg, schedule, home, s, data_cache, progress, stop, log_result)
            outcomes.append(outcome)
            if on_done is not None:
                on_done(outcome)
    return outcomes


def stop_signals() -> "AbstractContextManager[Callable[[], bool]]":
    """While open, SIGTERM and SIGUSR1 (what batch schedulers send before they kill a job;
    SLURM's ``--signal=USR1@90``) ask a training to stop at its next update with a checkpoint;
    yields the question to pass as ``should_stop``. Outside the main thread a no-op."""
    @contextlib.contextmanager
    def handlers() -> Any:
        asked = threading.Event()
        if threading.current_thread() is not threading.main_thread():
            yield asked.is_set
            return
        previous = {}
        for sig in (signal.SIGTERM, getattr(signal, "SIGUSR1", None)):
            if sig is not None:
                previous[sig] = signal.signal(sig, lambda *_: asked.set())
        try:
            yield asked.is_set
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    return handlers()


def _retrain_one(i: int, n: int, cfg: Any, schedule: Any, home: Any, s: RetrainSettings,
                 data_cache: dict[tuple[int, ...], tuple[Any, Any]],
                 progress: "Callable[[RetrainRun, TrainProgress], None] | None", stop: Callable[[], bool],
                 log_result: bool) -> RetrainOutcome:
    """Architecture ``i`` of ``n`` of `run_retrain`."""
    # lazy: torch, numpy: keeps srnas --help off them
    from srnas.train.checkpoint import CHECKPOINT_NAME
    from srnas.train.retrain import RetrainRun, load_retrain_data

    log = get_logger("retrain")
    if cfg.scales not in data_cache:
        data_cache[cfg.scales] = load_retrain_data(s.data, cfg.scales)
    train, val = data_cache[cfg.scales]
    run = RetrainRun(cfg, schedule, home.retrain)
    with log_file(run.log):
        log.info(f"retrain {i}/{n} {cfg.describe()} ({cfg.arch_id}), schedule {schedule.name} "
                 f"({schedule.updates:,} updates), data {s.data} -> {run.folder}")
        init = s.init
        if init is None and getattr(schedule, "init_from_x2", False):
            found = run.x2_weights()
            if found is not None:
                log.info(f"initialising from the x2 weights {found} (all but the upsampler)")
                init = str(found)
            elif cfg.family == "edsr" and cfg.scale != 2:
                log.warning(f"note: no x2 retrain of this architecture with schedule {schedule.name} in "
                            f"{home.retrain}; training x{cfg.scale} from scratch (the paper starts x3/x4 "
                            "from x2: pass --init)")
        if s.resume and not (run.folder / CHECKPOINT_NAME).is_file():
            log.info(f"no {CHECKPOINT_NAME} in {run.folder}: starting from update 0")
        report = None if progress is None else (lambda p, run=run: progress(run, p))
        result = run.train(train, val, data=s.data, device=s.device, precision=s.precision, seed=s.seed,
                           resume=s.resume, init=init, checkpoint_every=s.checkpoint_every, progress=report,
                           tensorboard=s.tensorboard, should_stop=stop)
        outcome = RetrainOutcome(run, result)
        log.info(outcome.summary, extra=None if log_result else FILE_ONLY)
    return outcome

