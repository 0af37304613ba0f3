"""`Trainer`: fits one `ArchConfig` on SR patches under a schedule and scores it on a validation set
(`srnas.train.validation`); what a run reports is `srnas.train.fit_result`.

>>> from srnas.arch import ArchConfig
>>> from srnas.data import demo_split
>>> from srnas.train import Trainer, get_schedule
>>> train, val = demo_split()
>>> cfg = ArchConfig(n_resblocks=2, n_feats=16, global_skip="bicubic")
>>> result = Trainer(cfg, train, val, get_schedule("tiny").shortened(20)).fit()  # doctest: +SKIP
>>> result.final["psnr"] > 0  # doctest: +SKIP
True
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from srnas.arch.config import ArchConfig
from srnas.arch.networks import build_model
from srnas.data import PatchSampler
from srnas.errors import ConfigError, TrainingError
from srnas.train.checkpoint import (
    CHECKPOINT_NAME, check_resumable, data_identity, load_checkpoint, load_init_weights, load_optimizer_state, save_checkpoint,
)
from srnas.train.device import DevicePolicy, apply_policy, memory_format, policy_for, rng_state, seed_everything, set_rng_state
from srnas.train.fit_result import TrainingStopped, TrainProgress, TrainResult
from srnas.train.graphs import CudaGraphs, GraphBackend, StaticStep
from srnas.train.evaluate import lr_images
from srnas.train.schedules import PaperSchedule, ProxySchedule, Schedule
from srnas.train.validation import bicubic_per_scale, score_val_sets, val_sets_by_scale

if TYPE_CHECKING:
    from srnas.data import SRImageSet

#: Updates between loss checks (and progress reports) on CUDA: a check synchronises the device.
CUDA_CHECK_EVERY = 50
#: Eager steps per input shape before a CUDA graph is captured (cuDNN autotuning, Adam state).
CUDA_GRAPH_WARMUP = 3


class Trainer:
    """Train one network under a schedule; validate with the validation set's protocol.

    ``val_data``: one `SRImageSet` with LR images at every scale of the config, or a mapping
    scale -> set (e.g. ``{s: load_eval_set(spec, s)}`` for MDSR, HR modcropped per scale).
    ``schedule``: a `ProxySchedule` or a `PaperSchedule` (names are resolved at the edge, by the
    caller, with `get_schedule`).
    ``checkpoint_dir``: where ``checkpoint.pt`` is written every ``checkpoint_every`` updates
    (default: at every evaluation point) and read by ``fit(resume=True)``. ``precision``:
    ``auto`` | ``fp32`` | ``bf16`` (see `srnas.train.device`). ``init_weights``: a weights file or
    state dict to start from; a file of another scale initialises everything but the upsampler
    (the paper's x3/x4-from-x2 recipe). ``on_eval(update, psnr)`` is called at every evaluation
    point; whatever it raises (e.g. ``optuna.TrialPruned``) propagates unchanged.
    ``progress(TrainProgress)`` is called after every loss check (every update on CPU).

    ``ssim``: score SSIM at the last evaluation (default: for paper schedules only; proxies are
    ranked by PSNR, and SSIM costs more than the rest of a short validation). ``full_final``:
    the last evaluation scores the whole validation set (default: for paper schedules only;
    ``srnas retrain`` asks for it whatever the schedule); earlier ones its ``val_images``.
    ``should_stop()``: asked after every update; True writes the checkpoint and raises
    `TrainingStopped` (``srnas retrain`` asks it on SIGTERM and SIGUSR1).
    ``graph_backend``: the whole-step graphs to use (default `CudaGraphs` when the policy turns
    them on; `RecordedGraphs` runs the same control flow on the CPU). ``compile``: a
    ``torch.compile`` backend (``inductor``, ``inductor:reduce-overhead``, ``eager`` ...) for the
    forward pass instead of the hand-made graphs (`SRNAS_COMPILE` sets the default).
    """

    def __init__(self, config: ArchConfig, train_data: "SRImageSet",
                 val_data: "SRImageSet | Mapping[int, SRImageSet]",
                 schedule: Schedule, *, device: str | torch.device = "cpu", seed: int = 0,
                 checkpoint_dir: str | Path | None = None, checkpoint_every: int | None = None,
                 precision: str = "auto", init_weights: str | Path | Mapping[str, Any] | None = None,
                 on_eval: Callable[[int, float], None] | None = None,
                 progress: Callable[[TrainProgress], None] | None = None,
                 channels_last: bool | None = None, cuda_graphs: bool | None = None,
                 threads: int | None = None, ssim: bool | None = None, full_final: bool | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 graph_backend: GraphBackend | None = None, compile: str | None = None) -> None:
        if not isinstance(config, ArchConfig):
            raise ConfigError(f"Trainer needs an ArchConfig, got {type(config).__name__}")
        self.config = config
        self.train_data = train_data
        self.val_sets = val_sets_by_scale(val_data, config.scales)
        self.val_data = self.val_sets[config.scales[0]]
        if not isinstance(schedule, (ProxySchedule, PaperSchedule)):
            raise ConfigError(f"Trainer needs a schedule object, got {type(schedule).__name__} "
                              f"{schedule!r}; resolve names with srnas.train.get_schedule")
        self.schedule: Schedule = schedule
        self.policy: DevicePolicy = policy_for(device, precision, channels_last=channels_last,
                                               cuda_graphs=cuda_graphs, threads=threads)
        self.seed = int(seed)
        self.checkpoint_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
        if checkpoint_every is not None and checkpoint_every < 1:
            raise ConfigError(f"checkpoint_every must be a positive number of updates, got {checkpoint_every}")
        self.checkpoint_every = checkpoint_every or self.schedule.eval_every
        self.init_weights = init_weights
        self.on_eval = on_eval
        self.progress = progress
        self.check_every = CUDA_CHECK_EVERY if self.policy.device.type == "cuda" else 1
        self.ssim = self.schedule.kind == "paper" if ssim is None else bool(ssim)
        self.full_final = self.schedule.kind == "paper" if full_final is None else bool(full_final)
        self.compile = compile if compile is not None else (os.environ.get("SRNAS_COMPILE") or None)
        self._graph_backend_arg = graph_backend
        self.graphs: GraphBackend | None = None
        self._forward_fn: Callable[..., torch.Tensor] | None = None
        #: Seconds of this run spent preparing, training (updates, loss checks, checkpoints) and validating.
        self.time_split = {"prepare": 0.0, "train": 0.0, "validate": 0.0}

        self.model: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.sampler: "PatchSampler | None" = None
        self.update = 0
        self.psnr_curve: list[tuple[int, float]] = []
        self.loss_curve: list[tuple[int, float]] = []
        self.wall_time_before = 0.0
        self._graphs: dict[tuple[Any, ...], StaticStep] | None = None
        self._pending: list[torch.Tensor] = []
        self._window: list[float] = []
        self._lr_now = self.schedule.lr_at(0)
        self._last_loss = float("nan")
        self._t0: float | None = None
        #: Why graphs were turned off for this run (None while they work or were not asked for).
        self.graph_failure: str | None = None
        #: Seconds from the start of `fit` to the first replayed step (None: no graph replayed).
        self.first_replay_s: float | None = None
        #: Asked after every update: True stops `fit` with a checkpoint (`TrainingStopped`).
        self.should_stop = should_stop

    # ---- set-up ---------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.policy.device

    def prepare(self, resume: bool = False) -> int:
        """Build model, optimiser and patch sampler (seeded), load a checkpoint when resuming.

        Returns the update count to continue from. Called by `fit`; call it yourself to drive
        `step` directly (benchmarks, tests).
        """
        started = time.perf_counter()
        apply_policy(self.policy)
        for s, val in self.val_sets.items():  # fail before training, not at the first evaluation
            lr_images(val, s)
        seed_everything(self.seed)
        model = build_model(self.config)
        if self.init_weights is not None:
            load_init_weights(model, self.init_weights)
        # Module.to takes memory_format (torch's stubs do not say so).
        self.model = model.to(self.device, memory_format=memory_format(self.policy)).train()  # type: ignore[call-overload]
        self._forward_fn = self._compiled(self.model) if self.compile else self.model
        self.graphs = None
        if not self.compile:
            self.graphs = self._graph_backend_arg or (CudaGraphs(self.device) if self.policy.cuda_graphs else None)
        self._graphs = {} if self.graphs is not None else None
        self.optimizer = self._make_optimizer(self.model)
        # The packed training images stay on the device for the next run on the same data.
        self.sampler = PatchSampler(self.train_data, self.config.scales, patch=self.schedule.patch,
                                    batch=self.schedule.batch, augment=self.schedule.augment,
                                    device=str(self.device), seed=self.seed,
                                    channels_last=self.policy.channels_last)
        self.update, self.psnr_curve, self.loss_curve, self.wall_time_before = 0, [], [], 0.0
        self._pending, self._window = [], []
        if resume and self.checkpoint_path is not None and self.checkpoint_path.is_file():
            # To the CPU first: RNG states must stay CPU byte tensors; the model and optimiser
            # states move to their parameters' device as they load.
            self._restore(load_checkpoint(self.checkpoint_path, map_location="cpu"))
        self.time_split["prepare"] += time.perf_counter() - started
        return self.update

    def _compiled(self, model: nn.Module) -> Callable[..., torch.Tensor]:
        """``torch.compile`` of the forward pass (``BACKEND[:MODE]``), after a dynamo reset so
        that graphs of the previous architecture are not kept."""
        import torch._dynamo  # lazy: torch._dynamo (2 s to import); only --compile needs it

        backend, _, mode = str(self.compile).partition(":")
        torch._dynamo.reset()
        return torch.compile(model, backend=backend or "inductor", mode=mode or None, dynamic=False)

    def _make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        params = [p for p in model.parameters() if p.requires_grad]
        kwargs: dict[str, Any] = {"betas": self.schedule.betas, "eps": self.schedule.eps}
        if self.graphs is not None:
            # A captured Adam step needs its state on the device and the lr as a device tensor.
            return torch.optim.Adam(params, lr=torch.tensor(self._lr_now, device=self.device),
                                    capturable=True, fused=True, **kwargs)
        # The fused kernels are the fastest Adam on CUDA and on CPU (3x the per-tensor loop there)
        # and just as deterministic.
        return torch.optim.Adam(params, lr=self._lr_now, fused=self.device.type in ("cuda", "cpu"), **kwargs)

    # ---- checkpoints ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything `fit(resume=True)` needs to continue exactly."""
        assert self.model is not None and self.optimizer is not None and self.sampler is not None
        return {
            "model": {k: v.detach().to("cpu").contiguous() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "lr_schedule": {"update": self.update, "lr": self._lr_now},
            "rng": rng_state(),
            "update": self.update,
            "sampler": self.sampler.state_dict(),
            "config": self.config.to_dict(),
            "arch_id": self.config.arch_id,
            "schedule": self.schedule.to_dict(),
            "seed": self.seed,
            "data": data_identity(self.train_data),
            "psnr_curve": [list(p) for p in self.psnr_curve],
            "loss_curve": [list(p) for p in self.loss_curve],
            "loss_window": list(self._window),
            "wall_time_s": self.wall_time_before + self._session_time(),
        }

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        """Write the training state atomically (default: ``checkpoint_dir/checkpoint.pt``)."""
        target = Path(path) if path is not None else self.checkpoint_path
        if target is None:
            raise ConfigError("save_checkpoint: no path given and the Trainer has no checkpoint_dir")
        self._flush_losses()
        return save_checkpoint(target, self.state_dict())

    def _restore(self, state: dict[str, Any]) -> None:
        assert self.model is not None and self.optimizer is not None and self.sampler is not None
        check_resumable(state, where=str(self.checkpoint_path), arch_id=self.config.arch_id, schedule=self.schedule,
                        seed=self.seed, train_data=self.train_data)
        self.model.load_state_dict(state["model"])
        load_optimizer_state(self.optimizer, state["optimizer"])
        self._lr_now = float(self.optimizer.param_groups[0]["lr"])
        self.sampler.load_state_dict(state["sampler"])
        set_rng_state(state["rng"])
        self.update = int(state["update"])
        self.psnr_curve = [(int(u), float(p)) for u, p in state["psnr_curve"]]
        self.loss_curve = [(int(u), float(v)) for u, v in state["loss_curve"]]
        self._window = [float(v) for v in state["loss_window"]]
        self.wall_time_before = float(state["wall_time_s"])

    # ---- one update -----------------------------------------------------------------------------

    def set_lr(self, lr: float) -> None:
        """Set the learning rate of every parameter group (in place for a captured optimiser);
        nothing when it is unchanged (a fill is one kernel launch per update otherwise)."""
        assert self.optimizer is not None
        if lr == self._lr_now:
            return
        self._lr_now = lr
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr

    def step(self, lr: torch.Tensor, hr: torch.Tensor, scale: int) -> torch.Tensor:
        """One update on a batch (float 0..255, on the device); returns the loss (not synchronised).

        Only the parts of the network that this scale uses receive gradients, and parameters
        without a gradient are left alone by Adam (their moments too): MDSR's other scales'
        heads and upsamplers are untouched.
        """
        if self.model is None:
            raise TrainingError("Trainer.step before Trainer.prepare")
        if self.policy.channels_last:
            lr = lr.contiguous(memory_format=torch.channels_last)  # a no-op for the sampler's batches
        if self._graphs is not None:
            return self._graphed_step(lr, hr, scale)
        return self._eager_step(lr, hr, scale)

    def _loss(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        sr = sr.float()  # the output stage is fp32 already; a compiled forward may differ
        return F.l1_loss(sr, hr) if self.schedule.loss == "l1" else F.mse_loss(sr, hr)

    def _forward(self, lr: torch.Tensor, scale: int) -> torch.Tensor:
        assert self._forward_fn is not None
        return self._forward_fn(lr, scale=scale)

    def _eager_step(self, lr: torch.Tensor, hr: torch.Tensor, scale: int, *, cache_enabled: bool = True) -> torch.Tensor:
        assert self.model is not None and self.optimizer is not None
        self.optimizer.zero_grad(set_to_none=True)
        with self.policy.autocast(cache_enabled=cache_enabled):
            sr = self._forward(lr, scale)
        loss = self._loss(sr, hr)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def _graphed_step(self, lr: torch.Tensor, hr: torch.Tensor, scale: int) -> torch.Tensor:
        assert self._graphs is not None and self.graphs is not None
        key = (scale, tuple(lr.shape), tuple(hr.shape))
        entry = self._graphs.setdefault(key, StaticStep())
        if entry.graph is None:
            if entry.warm < CUDA_GRAPH_WARMUP:
                entry.warm += 1
                with self.graphs.side_stream():  # warm-up before a capture, as CUDA requires
                    loss = self._eager_step(lr, hr, scale, cache_enabled=False)
                return loss
            try:
                self._capture(entry, lr, hr, scale)
            except Exception as exc:  # a model with an uncapturable op: eager from now on
                return self._graphs_off(exc, lr, hr, scale)
        assert entry.lr is not None and entry.hr is not None
        entry.lr.copy_(lr)
        entry.hr.copy_(hr)
        probe = None if entry.checked else self._probe()
        if self.first_replay_s is None:
            self.first_replay_s = round(self._session_time(), 4)
        self.graphs.replay(entry.graph)
        if probe is not None:
            entry.checked = True
            param, before = probe
            if torch.equal(param.detach(), before):  # a replay that trains nothing must not pass for training
                return self._graphs_off(TrainingError("a graph replay left the parameters unchanged"), lr, hr, scale)
        assert entry.loss is not None
        return entry.loss.clone()

    def _probe(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """A parameter and its value now, to check that the first replay of a graph trains."""
        assert self.model is not None
        for p in self.model.parameters():
            if p.requires_grad:
                return p, p.detach().clone()
        return None

    def _capture(self, entry: StaticStep, lr: torch.Tensor, hr: torch.Tensor, scale: int) -> None:
        assert self.model is not None and self.optimizer is not None and self.graphs is not None
        optimizer = self.optimizer
        entry.lr = static_lr = lr.clone()
        entry.hr = static_hr = hr.clone()

        def step() -> None:
            # Gradients are set to None first, so that backward writes (not adds) them.
            optimizer.zero_grad(set_to_none=True)
            with self.policy.autocast(cache_enabled=False):
                sr = self._forward(static_lr, scale)
            loss = self._loss(sr, static_hr)
            loss.backward()
            optimizer.step()
            entry.loss = loss.detach()

        entry.graph = self.graphs.capture(step)  # capturing does not run the step: it is replayed now

    def _graphs_off(self, exc: Exception, lr: torch.Tensor, hr: torch.Tensor, scale: int) -> torch.Tensor:
        """Turn graphs off for the rest of the run (resources released, reason recorded) and
        take this step eagerly."""
        assert self.graphs is not None
        self.graph_failure = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        self.graphs.reset()
        self.graphs, self._graphs = None, None
        warnings.warn(f"graphs turned off for this run ({self.graph_failure}); training goes on eagerly",
                      RuntimeWarning, stacklevel=3)
        return self._eager_step(lr, hr, scale)

    def update_once(self) -> torch.Tensor:
        """One scheduled update as `fit` does it: set the lr, draw a batch, step, check the loss.

        Returns the loss tensor (not synchronised). For benchmarks and custom loops after
        `prepare`; `fit` adds evaluation, checkpoints and progress reports.
        """
        if self.sampler is None:
            raise TrainingError("Trainer.update_once before Trainer.prepare")
        self.set_lr(self.schedule.lr_at(self.update))
        lr, hr, scale = self.sampler.sample()
        loss = self.step(lr, hr, scale)
        self.update += 1
        self._record_loss(loss)
        return loss

    # ---- loss checks ----------------------------------------------------------------------------

    def _record_loss(self, loss: torch.Tensor) -> None:
        self._pending.append(loss)
        if len(self._pending) >= self.check_every:
            self._flush_losses()

    def _flush_losses(self) -> None:
        if not self._pending:
            return
        values = torch.stack(self._pending).float().cpu().tolist()
        first = self.update - len(values) + 1
        self._pending = []
        for i, v in enumerate(values):
            if not math.isfinite(v):
                raise TrainingError(
                    f"non-finite loss at update {first + i} ({v}) with lr {self.schedule.lr_at(first + i - 1):g}: "
                    f"{self.config.describe()} diverged; lower the lr or use res_scale 0.1"
                )
        self._window.extend(values)
        self._last_loss = sum(values) / len(values)

    # ---- validation -----------------------------------------------------------------------------

    def bicubic_scores(self, max_images: int | None = None) -> dict[int, float]:
        """Bicubic PSNR per scale on the validation images used for scoring (`bicubic_per_scale`)."""
        return bicubic_per_scale(self.val_sets, max_images)

    def validate(self, *, with_ssim: bool = True, final: bool = False) -> dict[str, Any]:
        """Score the current model on the validation set (every scale; PSNR/SSIM are the mean).

        Scores the schedule's ``val_images`` (the ``final`` evaluation of a run with
        ``full_final``: the whole set), in plain fp32 (`score_val_sets`).
        """
        assert self.model is not None
        started = time.perf_counter()
        images = None if (final and self.full_final) else self.schedule.val_images
        scores = score_val_sets(self.model, self.val_sets, policy=self.policy, max_images=images, with_ssim=with_ssim)
        self.time_split["validate"] += time.perf_counter() - started
        return scores

    # ---- the loop -------------------------------------------------------------------------------

    def _session_time(self) -> float:
        return time.perf_counter() - self._t0 if self._t0 is not None else 0.0

    def current_time_split(self) -> dict[str, float]:
        """Seconds spent preparing, training and validating so far (also of a run stopped early,
        e.g. pruned from ``on_eval``)."""
        split = dict(self.time_split)
        split["train"] = max(0.0, self._session_time() - split["validate"])
        return {k: round(v, 4) for k, v in split.items()}

    def fit(self, resume: bool = False) -> TrainResult:
        """Train for the schedule's updates (continuing from the checkpoint with ``resume``).

        Raises `TrainingError` on a non-finite loss; exceptions from ``on_eval`` and
        ``progress`` propagate unchanged.
        """
        start = self.prepare(resume)
        assert self.model is not None and self.sampler is not None
        total = self.schedule.updates
        eval_points = set(self.schedule.eval_points())
        self._t0 = time.perf_counter()
        final: dict[str, Any] | None = None
        last_psnr = self.psnr_curve[-1][1] if self.psnr_curve else None
        for _ in range(start, total):
            self.update_once()
            if self.update in eval_points:
                self._flush_losses()
                self.loss_curve.append((self.update, sum(self._window) / max(len(self._window), 1)))
                self._window = []
                last = self.update == total
                scores = self.validate(with_ssim=last and self.ssim, final=last)
                if self.update == total:
                    final = scores
                last_psnr = scores["psnr"]
                self.psnr_curve.append((self.update, last_psnr))
                if self.on_eval is not None:
                    self.on_eval(self.update, last_psnr)
            if self.checkpoint_path is not None and (self.update % self.checkpoint_every == 0 or self.update == total):
                self.save_checkpoint()
            if self.progress is not None and not self._pending:
                elapsed = self._session_time()
                done = self.update - start
                eta = elapsed / done * (total - self.update) if done else None
                self.progress(TrainProgress(update=self.update, total=total, loss=self._last_loss,
                                            lr=self._lr_now, last_psnr=last_psnr, elapsed_s=elapsed, eta_s=eta))
            if self.should_stop is not None and self.update < total and self.should_stop():
                self._flush_losses()
                if self.checkpoint_path is not None:
                    self.save_checkpoint()
                raise TrainingStopped(self.update, total, self.checkpoint_path)
        self._flush_losses()
        if final is None:  # resumed after the last update, or nothing to train
            final = self.validate(with_ssim=self.ssim, final=True)
        if not all(math.isfinite(float(final[k])) for k in ("psnr",)) or \
                (final.get("ssim") is not None and not math.isfinite(float(final["ssim"]))):
            raise TrainingError(f"the final evaluation of {self.config.arch_id} is not finite (PSNR {final['psnr']}, "
                                f"SSIM {final.get('ssim')}): the weights are damaged; nothing is written")
        wall = self.wall_time_before + self._session_time()
        self.time_split = self.current_time_split()
        model = self.model.to(memory_format=torch.contiguous_format).eval()  # type: ignore[call-overload]
        return TrainResult(
            psnr_curve=list(self.psnr_curve), final=final, bicubic_psnr=final["bicubic_psnr"],
            updates=self.update, wall_time_s=wall, device=str(self.device), model=model, seed=self.seed,
            schedule=self.schedule.to_dict(), arch_id=self.config.arch_id, precision=self.policy.precision,
            loss_curve=list(self.loss_curve), graph_failure=self.graph_failure,
            time_split=dict(self.time_split), first_replay_s=self.first_replay_s,
        )

