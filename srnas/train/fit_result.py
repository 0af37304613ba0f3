"""What a `Trainer` run reports: `TrainProgress` to a progress callback, `TrainResult` from
`Trainer.fit`, and `TrainingStopped` when a run was asked to stop and kept a checkpoint."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from srnas.errors import TrainingError

if TYPE_CHECKING:
    from torch import nn


@dataclasses.dataclass(frozen=True)
class TrainProgress:
    """What a progress callback sees (after ``update`` of ``total`` updates)."""

    update: int
    total: int
    loss: float
    lr: float
    last_psnr: float | None
    elapsed_s: float
    eta_s: float | None


@dataclasses.dataclass
class TrainResult:
    """Outcome of `Trainer.fit`.

    ``psnr_curve`` holds (update, validation PSNR) at every evaluation point; ``final`` the last
    evaluation with ``psnr``, ``ssim``, ``protocol``, ``scale`` (an int, or the list of scales of
    an MDSR model whose ``psnr``/``ssim`` are then the mean over scales) and ``per_scale``;
    ``bicubic_psnr`` the bicubic baseline on the same images with the same protocol. ``model``
    is the trained network in eval mode.
    """

    psnr_curve: list[tuple[int, float]]
    final: dict[str, Any]
    bicubic_psnr: float
    updates: int
    wall_time_s: float
    device: str
    model: nn.Module
    seed: int
    schedule: dict[str, Any] = dataclasses.field(default_factory=dict)
    arch_id: str = ""
    precision: str = "fp32"
    loss_curve: list[tuple[int, float]] = dataclasses.field(default_factory=list)
    #: Why whole-step graphs were turned off during the run (None: they ran, or were not used).
    graph_failure: str | None = None
    #: Seconds spent preparing (model, optimiser, data on the device), training and validating.
    time_split: dict[str, float] = dataclasses.field(default_factory=dict)
    #: Seconds from the start of training to the first replayed whole-step graph (None: none).
    first_replay_s: float | None = None

    @property
    def fidelity_id(self) -> str:
        return str(self.schedule.get("fidelity_id", ""))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (everything but the model)."""
        return {
            "arch_id": self.arch_id, "final": self.final, "bicubic_psnr": self.bicubic_psnr,
            "psnr_curve": [list(p) for p in self.psnr_curve], "loss_curve": [list(p) for p in self.loss_curve],
            "updates": self.updates, "wall_time_s": self.wall_time_s, "device": self.device,
            "precision": self.precision, "seed": self.seed, "schedule": self.schedule,
            "graph_failure": self.graph_failure, "time_split": self.time_split,
            "first_replay_s": self.first_replay_s,
        }


class TrainingStopped(TrainingError):
    """`Trainer.fit` was asked to stop (``should_stop``: SIGTERM, a batch scheduler's warning)
    and wrote its checkpoint: run it again with resume to continue."""

    #: The exit code of a command stopped this way: "resume me" (EX_TEMPFAIL).
    EXIT_CODE = 75

    def __init__(self, update: int, total: int, checkpoint: Path | None) -> None:
        where = f"checkpoint {checkpoint}" if checkpoint is not None else "no checkpoint folder: nothing kept"
        super().__init__(f"stopped at update {update:,} of {total:,} ({where}); the same command with --resume "
                         "continues")
        self.update, self.checkpoint = update, checkpoint
