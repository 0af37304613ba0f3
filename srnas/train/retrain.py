"""The retrain workflow as a library object: one architecture trained with one schedule in its
own folder, which `RetrainRun` writes and reads.

A run lives in ``<retrain root>/<arch_id>/<schedule>/`` (the retrain root of a study is
``StudyHome.retrain``, ``trials/<study>/retrain``): ``config.yaml``, ``checkpoint.pt``
(resumable), ``model.pt`` (final weights), ``metrics.json``, ``retrain.log`` and, when the
``tensorboard`` package is installed (``pip install 'srnas[tensorboard]'``), TensorBoard scalars
in ``tensorboard/`` (train/loss, train/lr, val/psnr). Keying the folder by schedule
lets one architecture be trained with several schedules side by side. The paper's recipe for
x3/x4 EDSR (start from the x2 weights, all but the upsampler) looks for the x2 run of the same
architecture and schedule (`RetrainRun.x2_weights`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock, Timeout

from srnas.arch.config import ArchConfig
from srnas.data import load_eval_set, load_train_set
from srnas.errors import ConfigError, MissingExtraError, TrainingError
from srnas.fileio import atomic_write_text
from srnas.studies import path_slug
from srnas.train.schedules import Schedule
from srnas.units import finite_or_none

if TYPE_CHECKING:
    from srnas.data import SRImageSet
    from srnas.train.fit_result import TrainProgress, TrainResult

CONFIG_FILE, WEIGHTS_FILE, METRICS_FILE, LOG_FILE = "config.yaml", "model.pt", "metrics.json", "retrain.log"
#: Held while a run writes its folder (a second writer is refused).
LOCK_FILE = ".retrain.lock"
TENSORBOARD_DIR = "tensorboard"
#: Loss and lr points written to TensorBoard per run (at most; every evaluation is written too).
TENSORBOARD_POINTS = 1000


def load_retrain_data(spec: str, scales: tuple[int, ...]) -> tuple["SRImageSet", dict[int, "SRImageSet"]]:
    """Training set for all scales, and one validation set per scale (HR modcropped to it)."""
    return load_train_set(spec, list(scales)), {s: load_eval_set(spec, s) for s in scales}


class RetrainRun:
    """One architecture with one schedule under ``root`` (a study's retrain folder)."""

    def __init__(self, config: ArchConfig, schedule: Schedule, root: Path | str) -> None:
        self.config = config
        self.schedule = schedule
        self.root = Path(root)

    @property
    def folder(self) -> Path:
        return self.root / self.config.arch_id / path_slug(self.schedule.name)

    @property
    def weights(self) -> Path:
        return self.folder / WEIGHTS_FILE

    @property
    def metrics_file(self) -> Path:
        return self.folder / METRICS_FILE

    @property
    def log(self) -> Path:
        """The run's log file (``retrain.log``: progress lines of every session, appended)."""
        return self.folder / LOG_FILE

    @property
    def tensorboard_dir(self) -> Path:
        """TensorBoard event files of the run (``tensorboard --logdir`` on it or on the study)."""
        return self.folder / TENSORBOARD_DIR

    def x2_weights(self) -> Path | None:
        """The paper's recipe: x3/x4 EDSR start from the x2 run of the same architecture and
        schedule (None for x2, MDSR, or when that run has no weights)."""
        cfg = self.config
        if cfg.family != "edsr" or cfg.scale == 2:
            return None
        x2 = RetrainRun(cfg.replace(scales=(2,)), self.schedule, self.root).weights
        return x2 if x2.is_file() else None

    def train(self, train: "SRImageSet", val: "SRImageSet | Mapping[int, SRImageSet]", *,
              data: str = "", device: str = "auto", precision: str = "auto", seed: int = 0,
              resume: bool = False, init: str | Path | None = None, checkpoint_every: int | None = None,
              progress: Callable[["TrainProgress"], None] | None = None,
              tensorboard: bool | None = None, should_stop: Callable[[], bool] | None = None) -> "TrainResult":
        """Train (continuing from the folder's checkpoint with ``resume``), then write the
        weights and ``metrics.json``. A folder of another architecture is refused.

        ``tensorboard``: write TensorBoard scalars to `tensorboard_dir` (None: when the
        ``tensorboard`` package is installed; True without it: `MissingExtraError`).
        ``should_stop``: see `Trainer` (a stop writes the checkpoint: `TrainingStopped`). One
        writer per folder: a second run into a folder being written is refused in one line."""
        folder = self.folder
        folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(folder / LOCK_FILE))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise TrainingError(f"{folder}: another srnas retrain is writing this folder now; wait for it, or "
                                "pass another --out") from None
        try:
            return self._train(train, val, data=data, device=device, precision=precision, seed=seed, resume=resume,
                               init=init, checkpoint_every=checkpoint_every, progress=progress,
                               tensorboard=tensorboard, should_stop=should_stop)
        finally:
            lock.release()

    def _train(self, train: "SRImageSet", val: "SRImageSet | Mapping[int, SRImageSet]", *, data: str, device: str,
               precision: str, seed: int, resume: bool, init: str | Path | None, checkpoint_every: int | None,
               progress: Callable[["TrainProgress"], None] | None, tensorboard: bool | None,
               should_stop: Callable[[], bool] | None) -> "TrainResult":
        # lazy: torch (start-up)
        from srnas.train.checkpoint import save_weights
        from srnas.train.trainer import Trainer

        folder = self.folder
        config_file = folder / CONFIG_FILE
        if config_file.is_file() and ArchConfig.load(config_file).arch_id != self.config.arch_id:
            raise TrainingError(f"{config_file}: another architecture was trained in this folder")
        atomic_write_text(config_file, self.config.to_yaml())
        scalars = _TensorBoardScalars.open(self.tensorboard_dir, self.schedule.updates, wanted=tensorboard)

        def on_progress(p: "TrainProgress") -> None:
            if scalars is not None:
                scalars.progress(p)
            if progress is not None:
                progress(p)

        # A full training's result covers the whole validation set, with SSIM, whatever the schedule:
        # one set name, one number (a proxy schedule scores fewer images while it trains).
        trainer = Trainer(self.config, train, val, self.schedule, device=device, seed=seed, checkpoint_dir=folder,
                          checkpoint_every=checkpoint_every, precision=precision, init_weights=init,
                          ssim=True, full_final=True, should_stop=should_stop,
                          progress=on_progress if scalars is not None or progress is not None else None,
                          on_eval=scalars.evaluation if scalars is not None else None)
        try:
            result = trainer.fit(resume=resume)
        finally:
            if scalars is not None:
                scalars.close()
        save_weights(self.weights, result.model)
        metrics = {"arch_id": self.config.arch_id, "config": self.config.to_dict(), "data": data, **result.to_dict()}
        try:
            text = json.dumps(metrics, indent=2, default=_json_default, allow_nan=False)
        except ValueError:  # a NaN is no number to write down: metrics.json stays valid JSON
            raise TrainingError(f"{self.metrics_file}: the run's metrics hold a non-finite number; not written") from None
        atomic_write_text(self.metrics_file, text + "\n")
        return result

    def read(self) -> dict[str, Any] | None:
        """The finished run's metrics (see `read_run`), None before it finished."""
        return read_run(self.folder)


class _TensorBoardScalars:
    """train/loss and train/lr (at most `TENSORBOARD_POINTS` points a run) and val/psnr (every
    evaluation) for TensorBoard. The writer opens at the first update of this session, purging
    the points a resumed run will write again."""

    def __init__(self, folder: Path, updates: int) -> None:
        self.folder = folder
        self.every = max(1, updates // TENSORBOARD_POINTS)
        self.writer: Any = None

    @classmethod
    def open(cls, folder: Path, updates: int, *, wanted: bool | None) -> "_TensorBoardScalars | None":
        if wanted is False:
            return None
        try:
            # lazy: optional tensorboard (the tensorboard extra)
            import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it)
        except ImportError:
            if wanted:
                raise MissingExtraError("tensorboard", "tensorboard", "TensorBoard scalars of a retrain") from None
            return None
        return cls(folder, updates)

    def _writer(self, step: int) -> Any:
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter  # lazy: torch, optional tensorboard

            self.writer = SummaryWriter(log_dir=str(self.folder), purge_step=step)
        return self.writer

    def progress(self, p: "TrainProgress") -> None:
        if p.update % self.every == 0 or p.update == p.total:
            writer = self._writer(p.update)
            if math.isfinite(p.loss):
                writer.add_scalar("train/loss", p.loss, p.update)
            writer.add_scalar("train/lr", p.lr, p.update)

    def evaluation(self, update: int, psnr: float) -> None:
        self._writer(update).add_scalar("val/psnr", psnr, update)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_run(folder: Path) -> dict[str, Any] | None:
    """Final metrics of one retrain folder (None when it has no readable metrics.json).

    Returns ``psnr``, ``ssim``, ``protocol``, ``scale``, ``per_scale`` (scale -> psnr, ssim),
    ``val_set``, ``val_images`` (how many images the score covers), ``data`` (the training
    data spec), ``schedule`` (name), ``fidelity``,
    ``updates``, ``bicubic_psnr``, ``psnr_curve``, ``weights`` (path of model.pt or None),
    ``config`` (ArchConfig or None), ``arch_id`` and ``folder``.
    """
    metrics_file = folder / METRICS_FILE
    try:
        data = json.loads(metrics_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    final: dict[str, Any] = data["final"] if isinstance(data.get("final"), dict) else data
    psnr = finite_or_none(final.get("psnr"))
    if psnr is None:
        return None
    schedule = data.get("schedule") or final.get("schedule") or {}
    cfg: ArchConfig | None = None
    for candidate in (folder / CONFIG_FILE, folder / "config.json"):
        if candidate.is_file():
            try:
                cfg = ArchConfig.load(candidate)
            except ConfigError:
                cfg = None
            break
    if cfg is None and isinstance(data.get("config"), dict):
        try:
            cfg = ArchConfig.from_dict(data["config"], source=str(metrics_file))
        except ConfigError:
            cfg = None
    weights = folder / WEIGHTS_FILE
    return {
        "arch_id": data.get("arch_id") or (cfg.arch_id if cfg else folder.name),
        "psnr": psnr,
        "ssim": finite_or_none(final.get("ssim")),
        "protocol": final.get("protocol"),
        "scale": final.get("scale"),
        "per_scale": final.get("per_scale") if isinstance(final.get("per_scale"), dict) else {},
        "val_set": final.get("val_set"),
        "val_images": final.get("val_images"),
        "data": data.get("data"),
        "schedule": schedule.get("name") if isinstance(schedule, dict) else str(schedule),
        "fidelity": schedule.get("fidelity_id") if isinstance(schedule, dict) else None,
        "updates": data.get("updates"),
        "bicubic_psnr": finite_or_none(data.get("bicubic_psnr", final.get("bicubic_psnr"))),
        "psnr_curve": data.get("psnr_curve") or final.get("psnr_curve") or [],
        "weights": weights if weights.is_file() else None,
        "config": cfg,
        "folder": folder,
    }


def find_runs(root: Path) -> dict[str, dict[str, Any]]:
    """The finished runs under a retrain root, one per arch_id: the longest training (most
    updates) when an architecture was trained with several schedules."""
    out: dict[str, dict[str, Any]] = {}
    if not root.is_dir():
        return out
    folders = sorted({p.parent for p in root.glob(f"*/{METRICS_FILE}")} | {p.parent for p in root.glob(f"*/*/{METRICS_FILE}")})
    for folder in folders:
        found = read_run(folder)
        if found is None:
            continue
        key = str(found["arch_id"])
        if key not in out or (found["updates"] or 0) > (out[key]["updates"] or 0):
            out[key] = found
    return out
