"""The Python API: `search`, `retrain` and `evaluate`, the functions that ``srnas search``,
``srnas retrain`` and ``srnas eval`` call (the commands only parse, print and call these).
`search` lives in the search layer (`srnas.search.entry`) and is re-exported here.

Keyword arguments are named like the flags (``budget=``, ``max_params=``, ``workers=``) and
take the same values; ``run=`` names a run file (YAML, the same keys, `srnas.runfile`) that the
keyword arguments override. Everything heavy (torch, Optuna) is imported inside the functions,
so ``import srnas`` stays light.

>>> import srnas
>>> study = srnas.search(budget=4, proxy="tiny@20", study="api-demo", workers=1)  # doctest: +SKIP
>>> study.best_trial.user_attrs["arch_id"]  # doctest: +SKIP
'edsr-...'

A search resumes with what its study recorded (``run_settings``): ``srnas.search(study=NAME)``
continues with the recorded budget, space, proxy, workers ...; arguments given override them,
and the session still refuses changes that would alter the study's results (space, proxy,
data, objectives).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from srnas.errors import ConfigError
from srnas.runfile import check_options, options_schema, read_run_file
from srnas.search.entry import SEARCH_OUTPUT, resolve_search, search, search_schema

__all__ = ["DEFAULT_SETS", "Evaluation", "RETRAIN_OUTPUT", "RetrainOutcome", "RetrainSettings", "SEARCH_OUTPUT",
           "eval_sets", "evaluate", "load_arch", "load_for_inference", "resolve_retrain", "resolve_search",
           "retrain", "retrain_schema", "run_retrain", "search", "search_schema"]

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    import torch.nn as nn

    from srnas.arch.config import ArchConfig
    from srnas.data import SRImageSet
    from srnas.train.evaluate import EvalResult
    from srnas.train.retrain import RetrainRun
    from srnas.train.trainer import TrainProgress, TrainResult

#: Keys of a retrain run file about how the command shows things.
RETRAIN_OUTPUT: dict[str, Any] = {"no_progress": bool, "log_every": int}
#: Benchmark sets ``srnas eval`` scores by default (those present under the root).
DEFAULT_SETS = "Set5,Set14,B100,Urban100"


# ---- retrain ------------------------------------------------------------------------------


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
        from srnas.units import human_duration

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


def retrain(run: str | Path | None = None, *,
            progress: "Callable[[RetrainRun, TrainProgress], None] | None" = None,
            on_done: Callable[[RetrainOutcome], None] | None = None, **options: Any) -> list[RetrainOutcome]:
    """Retrain architectures (``srnas retrain``): a config file or preset, or the best K
    trials of a study; returns one `RetrainOutcome` per architecture.

    ``options`` are the flags as keywords (`RetrainSettings`: ``config``, ``preset``,
    ``top``, ``study``, ``data``, ``schedule``, ``max_updates``, ``device``, ``seed``,
    ``resume``, ``tensorboard`` ...); ``run``: a run file they override. ``progress(run, p)``
    sees every update (default: the plain lines ``srnas retrain`` prints off a terminal,
    `retrain_progress_lines`); ``on_done(outcome)`` each finished run. Each run appends its
    lines to its ``retrain.log``; the result line is logged too.

    >>> [done] = srnas.retrain(preset="edsr-baseline", schedule="proxy-tiny", max_updates=20)  # doctest: +SKIP
    >>> done.result.final["psnr"], done.run.weights  # doctest: +SKIP
    """
    from srnas.log import ensure_configured

    ensure_configured()
    settings, _output = resolve_retrain(run, **options)
    return run_retrain(settings, progress=progress or retrain_progress_lines(), on_done=on_done, log_result=True)


def retrain_progress_lines(*, log_every: int = 1000, route: dict[str, Any] | None = None
                           ) -> "Callable[[RetrainRun, TrainProgress], None]":
    """A ``progress`` for `run_retrain` that logs a plain line at every evaluation, every
    ``log_every`` updates, at the end and at least every minute (what ``srnas retrain`` prints
    off a terminal, and the Python API by default); ``route`` is the logging ``extra``."""
    from srnas.log import ProgressClock, get_logger
    from srnas.units import human_duration

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
                progress: "Callable[[RetrainRun, TrainProgress], None] | None" = None,
                on_done: Callable[[RetrainOutcome], None] | None = None,
                log_result: bool = False) -> list[RetrainOutcome]:
    """`retrain` with settings already resolved; ``log_result``: the result line goes to the log
    as well as to ``retrain.log`` (the command prints it on stdout instead)."""
    from srnas.arch.presets import preset_config
    from srnas.studies import StudyHome, trials_root
    from srnas.train.schedules import get_schedule

    s = settings
    # An empty --study is refused by the name check, not taken as "manual".
    home = StudyHome("manual" if s.study is None else s.study, s.out if s.out is not None else trials_root())
    schedule = get_schedule(s.schedule)
    if s.max_updates is not None:
        schedule = schedule.shortened(s.max_updates)
    if s.top is not None:
        from srnas.results.frame import top_configs

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
    import contextlib
    import signal
    import threading

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
    from srnas.log import FILE_ONLY, get_logger, log_file
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


# ---- evaluate -----------------------------------------------------------------------------


def load_arch(target: str | Path, scale: int | None = None) -> "ArchConfig":
    """A preset name or an architecture file (YAML/JSON) -> `ArchConfig` (``scale``: the
    scale of a preset, or one the file's config must serve)."""
    from srnas.arch.config import ArchConfig
    from srnas.arch.presets import PRESETS, preset_config

    text = str(target)
    if text.lower().replace("_", "-") in PRESETS:
        return preset_config(text, scale=scale)
    if Path(text).suffix.lower() in (".yaml", ".yml", ".json") or Path(text).exists():
        cfg = ArchConfig.load(text)
        if scale is not None and scale not in cfg.scales:
            raise ConfigError(f"{text}: scale {scale} not in the config's scales {list(cfg.scales)}")
        return cfg
    raise ConfigError(f"{text!r} is neither a preset ({', '.join(PRESETS)}) nor a config file")


def load_for_inference(model: str | Path, *, pretrained: bool = False, weights_url: str | None = None,
                       config: str | Path | None = None, scale: int | None = None,
                       device: str = "auto") -> tuple["nn.Module", "ArchConfig", int]:
    """The network ``model`` names (a retrain folder, a weights file, or with ``pretrained``
    a preset with the EDSR authors' weights) in eval mode on ``device``, its config and the
    scale to run it at (``scale``, or the model's only one)."""
    from srnas.arch.networks import build_model
    from srnas.arch.presets import PRESETS
    from srnas.train.checkpoint import load_model
    from srnas.train.device import resolve_device

    name = str(model)
    if pretrained:
        if config:
            raise ConfigError(f"--pretrained: the architecture is the preset {name!r}; drop --config")
        net = build_model(name, scale=scale, pretrained=True, weights_url=weights_url)
        cfg = cast("ArchConfig", net.config)
        net = net.to(resolve_device(device)).eval()
    else:
        if weights_url is not None:
            raise ConfigError("--weights-url is where --pretrained weights come from: add --pretrained")
        if name.lower().replace("_", "-") in PRESETS and not Path(name).exists():
            raise ConfigError(f"--model {name}: a preset name, not a file; add --pretrained for the EDSR authors' "
                              "released weights")
        arch = load_arch(config, scale) if config else None
        net, cfg = load_model(name, config=arch, device=resolve_device(device))
    if scale is None:
        if len(cfg.scales) != 1:
            raise ConfigError(f"{name}: the model serves scales {list(cfg.scales)}; pass --scale")
        return net, cfg, cfg.scale
    if scale not in cfg.scales:
        raise ConfigError(f"{name}: the model serves scales {list(cfg.scales)}, not {scale}")
    return net, cfg, scale


def eval_sets(data: str, sets: str | Sequence[str] | None, scale: int) -> tuple[dict[str, "SRImageSet"], list[str]]:
    """The sets ``data`` and ``sets`` name (``demo``, a benchmark root, a DIV2K root or a
    folder of HR images), and notes on default sets that are not there."""
    names = sets if isinstance(sets, str) or sets is None else ",".join(sets)
    wanted = None if names is None else [n.strip() for n in names.split(",") if n.strip()]
    if wanted == []:
        raise ConfigError(f"--sets {names!r}: give at least one set name, e.g. {DEFAULT_SETS}")
    if data == "demo":
        if wanted is not None:
            raise ConfigError("--sets picks sets of a benchmark root; --data demo has one set (drop --sets)")
        from srnas.data import load_eval_set

        val = load_eval_set("demo", scale)
        return {val.name: val}, []
    from srnas.data import load_benchmark_sets, load_image_folder
    from srnas.data.layout import available_sets, data_folder, data_kind

    root = data_folder(data)
    kind = data_kind(root)
    if kind in ("folder", "set"):  # one's own HR images, or one set folder: every image, one set
        if wanted is not None and [w.lower() for w in wanted] != [root.name.lower()]:
            raise ConfigError(f"--sets {names}: {root} is one folder of images, scored as the set "
                              f"{root.name!r}; drop --sets (or point --data at a benchmark root)")
        one = load_image_folder(root, scale)
        return {one.name: one}, []
    notes: list[str] = []
    if wanted is None:
        if kind == "div2k":
            wanted = ["DIV2K"]
        else:
            present = {s.lower() for s in available_sets(root)}
            defaults = DEFAULT_SETS.split(",")
            wanted = [s for s in defaults if s.lower() in present] or defaults
            missing = [s for s in defaults if s not in wanted]
            if missing and len(wanted) < len(defaults):
                notes.append(f"{', '.join(missing)} not found under {root} (`srnas data download benchmark`)")
    return {s.name: s for s in load_benchmark_sets(root, wanted, scale)}, notes


@dataclasses.dataclass
class Evaluation:
    """The scores of one model on each set (``results``) beside bicubic on the same images
    (``bicubic``); ``counts``: per set (images found, images of the official set or None)."""

    model: str
    config: "ArchConfig"
    scale: int
    self_ensemble: bool
    tile: int | None
    results: dict[str, "EvalResult"]
    bicubic: dict[str, "EvalResult"]
    counts: dict[str, tuple[int, int | None]]
    notes: list[str]

    @property
    def params(self) -> int:
        from srnas.arch.cost import count_params

        return count_params(self.config)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly: per-image rows and means of the model and of bicubic, per set."""
        return {"model": self.model, "arch_id": self.config.arch_id, "config": self.config.to_dict(),
                "scale": self.scale, "self_ensemble": self.self_ensemble, "tile": self.tile,
                "results": {k: v.to_dict() for k, v in self.results.items()},
                "bicubic": {k: v.to_dict() for k, v in self.bicubic.items()},
                "images": {k: {"found": n, "official": expected} for k, (n, expected) in self.counts.items()}}


def evaluate(model: str | Path, *, data: str = "demo", sets: str | Sequence[str] | None = None,
             scale: int | None = None, self_ensemble: bool = False, tile: int | None = None,
             device: str = "auto", bf16: bool = False, pretrained: bool = False, weights_url: str | None = None,
             config: str | Path | None = None,
             status: Callable[[str], AbstractContextManager[Any]] | None = None) -> Evaluation:
    """PSNR/SSIM of ``model`` on benchmark sets with the paper's protocol, beside bicubic on
    the same images (``srnas eval``; keywords named like its flags). ``status(text)`` wraps
    each set's evaluation (the CLI's spinner).

    >>> scores = srnas.evaluate("edsr-baseline", pretrained=True, data="benchmark/", sets="Set5")  # doctest: +SKIP
    >>> scores.results["Set5"].psnr  # doctest: +SKIP
    """
    from srnas.data.layout import official_image_count
    from srnas.train.evaluate import evaluate_bicubic, evaluate_model

    net, cfg, scale = load_for_inference(model, pretrained=pretrained, weights_url=weights_url, config=config,
                                         scale=scale, device=device)
    found, notes = eval_sets(data, sets, scale)
    results: dict[str, EvalResult] = {}
    bicubic: dict[str, EvalResult] = {}
    for name, images in found.items():
        with (status(f"{name} x{scale} ({len(images.hr)} images)") if status else nullcontext()):
            results[name] = evaluate_model(net, images, scale=scale, self_ensemble=self_ensemble, tile=tile,
                                           bf16=bf16)
            bicubic[name] = evaluate_bicubic(images, scale=scale)
    counts = {name: (len(images), official_image_count(name)) for name, images in found.items()}
    return Evaluation(model=str(model), config=cfg, scale=scale, self_ensemble=self_ensemble, tile=tile,
                      results=results, bicubic=bicubic, counts=counts, notes=notes)
