"""The objective shared by every engine: one config and its costs -> proxy training ->
validation PSNR (protocol named) -> trial values and user attributes."""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from srnas.arch.config import ArchConfig
from srnas.arch.cost import ConfigCosts, count_params, measure_latency
from srnas.arch.efficiency import challenge_flops, ntire_score
from srnas.data import imresize, load_eval_set, load_train_set, save_image
from srnas.data.images import most_detailed_window
from srnas.errors import ConfigError
from srnas.search.settings import OBJECTIVES
from srnas.space.search_space import SearchSpace
from srnas.train.schedules import ProxySchedule

#: Keys every evaluated trial records as user attributes (the report and export rely on them).
TRIAL_ATTRS = ("config", "arch_id", "params", "mult_adds", "activation_mb", "psnr", "ssim",
               "protocol", "bicubic_psnr", "psnr_curve", "wall_time_s", "device", "seed",
               "fidelity", "schedule", "space", "engine")


def load_search_data(spec: str, scales: Sequence[int]) -> tuple[Any, Any]:
    """The training set and the validation set(s) of a search: one set for one scale, a
    mapping scale -> set for MDSR (each scale scored on HR cropped to a multiple of it)."""
    scales = list(scales)
    train = load_train_set(spec, scales)
    if len(scales) == 1:
        return train, load_eval_set(spec, scales[0])
    return train, {s: load_eval_set(spec, s) for s in scales}


def check_data(spec: str, scales: Sequence[int]) -> None:
    """Fail with one line naming the data folder before a study is created or touched."""
    load_search_data(spec, scales)


@dataclasses.dataclass
class ProxyEvaluation:
    """What one evaluated config yields (an engine turns it into trial values and attributes)."""

    config: ArchConfig
    attrs: dict[str, Any]
    values: tuple[float, ...] | None        # None: infeasible (not trained)
    violations: dict[str, float]
    sample_png: Path | None = None
    #: Constraints known only after training (``psnr_floor`` of the NTIRE objective: > 0 below it).
    constraints: dict[str, float] = dataclasses.field(default_factory=dict)


class Objective:
    """Evaluates configs of ``space`` with a proxy ``schedule`` on loaded data.

    Engine-agnostic: `evaluate` takes a config and an ``on_eval(step, psnr)`` callback (Optuna
    reports and prunes there) and returns a `ProxyEvaluation`. Data sets are loaded once per worker.
    """

    def __init__(self, space: SearchSpace, schedule: ProxySchedule, *, data: str = "demo",
                 objectives: Sequence[str] = ("psnr",), device: str = "cpu", seed: int = 0,
                 engine: str = "optuna", sample_dir: Path | None = None,
                 latency_lr_size: tuple[int, int] = (180, 320), threads: int | None = None,
                 ntire: dict[str, Any] | None = None) -> None:
        if not isinstance(schedule, ProxySchedule):
            raise ConfigError(f"Objective needs a ProxySchedule (resolve names with get_schedule), "
                              f"got {type(schedule).__name__}")
        self.space = space
        self.schedule = schedule
        self.data_spec = data
        self.objectives = tuple(objectives)
        self.device = device
        self.seed = seed
        self.engine = engine
        self.sample_dir = sample_dir
        self.latency_lr_size = latency_lr_size
        self.threads = threads
        #: The study's NTIRE baseline record (`srnas.search.ntire`), needed by the ``ntire`` objective.
        self.ntire = ntire
        if "ntire" in self.objectives and ntire is None:
            raise ConfigError("the ntire objective needs the study's baseline record (srnas.search.ntire)")
        self._baseline_runtime_ms: float | None = None
        self._train: Any = None
        self._val: Any = None
        #: Where the last training's seconds went (`Trainer.current_time_split`), also when it
        #: was stopped early (pruned): the trial runner records it either way.
        self.last_time_split: dict[str, float] = {}

    # ---- data ---------------------------------------------------------------------------

    def load_data(self) -> None:
        """Load (once) the training and validation sets; errors name the data folder."""
        if self._train is None:
            self._train, self._val = load_search_data(self.data_spec, self.space.scales)

    # ---- evaluation ---------------------------------------------------------------------

    def describe(self, cfg: ArchConfig, costs: ConfigCosts) -> dict[str, Any]:
        """The user attributes a trial records before it trains (config, costs, fidelity)."""
        return {
            "config": cfg.to_dict(), "arch_id": cfg.arch_id, **costs.to_attrs(),
            "space": self.space.name, "engine": self.engine,
            "fidelity": self.schedule.fidelity_id, "schedule": self.schedule.name,
        }

    def evaluate(self, cfg: ArchConfig, *, trial_seed: int, costs: ConfigCosts | None = None,
                 on_eval: Callable[[int, float], None] | None = None) -> ProxyEvaluation:
        """Train ``cfg`` with the proxy schedule and score it; ``costs`` (computed once by the
        caller, `SearchSpace.costs`) decide feasibility first: an infeasible config is not trained."""
        costs = costs or self.space.costs(cfg)
        attrs = self.describe(cfg, costs)
        violations = self.space.violations(costs)
        if any(v > 0 for v in violations.values()):
            over = ", ".join(f"{k} exceeded by {v:,.0f}" for k, v in violations.items() if v > 0)
            attrs["infeasible"] = over
            return ProxyEvaluation(cfg, attrs, None, violations)
        t0 = time.perf_counter()
        result = self.fit(cfg, seed=trial_seed, on_eval=on_eval)
        final = result.final
        attrs.update({
            "psnr": float(final["psnr"]),
            # Proxies rank by PSNR; SSIM is scored in full trainings (None here).
            "ssim": None if final.get("ssim") is None else float(final["ssim"]),
            "protocol": final["protocol"], "bicubic_psnr": float(result.bicubic_psnr),
            "val_images": final.get("val_images"),  # images scored (the set may hold fewer than asked)
            "psnr_curve": [[int(s), float(p)] for s, p in result.psnr_curve],
            "wall_time_s": round(time.perf_counter() - t0, 3), "device": str(result.device),
            "seed": trial_seed, "updates": int(result.updates),
            "host": socket.gethostname(),
            "time_split": dict(result.time_split),
        })
        if result.graph_failure:
            attrs["graph_failure"] = result.graph_failure
        if result.first_replay_s is not None:
            attrs["first_replay_s"] = result.first_replay_s
        if "latency" in self.objectives:
            attrs["latency_ms"] = round(measure_latency(result.model, self.latency_lr_size,
                                                        scale=cfg.scale, device=self.device), 3)
        constraints: dict[str, float] = {}
        if self.ntire is not None and "ntire" in self.objectives:
            attrs.update(self.ntire_attrs(cfg, result.model))
            constraints["psnr_floor"] = round(float(self.ntire["floor"]) - attrs["psnr"], 6)
        values = tuple(self._value(name, attrs) for name in self.objectives)
        t1 = time.perf_counter()
        png = self._sample_image(result.model, cfg)
        # The sample image is one more evaluation forward pass: its time counts as validation.
        attrs["time_split"]["validate"] = round(attrs["time_split"]["validate"] + time.perf_counter() - t1, 4)
        return ProxyEvaluation(cfg, attrs, values, violations, png, constraints)

    def fit(self, cfg: ArchConfig, *, seed: int, on_eval: Callable[[int, float], None] | None = None) -> Any:
        """Train ``cfg`` with the proxy schedule (`srnas.train.Trainer.fit`'s result); where the
        seconds went stays in `last_time_split`, also when the training is stopped early."""
        self.load_data()
        from srnas.train import Trainer  # lazy: torch (start-up)

        trainer = Trainer(cfg, self._train, self._val, self.schedule, device=self.device,
                          seed=seed, on_eval=on_eval, threads=self.threads)
        self.last_time_split = {}
        try:
            return trainer.fit()
        finally:
            self.last_time_split = trainer.current_time_split()

    def ntire_attrs(self, cfg: ArchConfig, model: Any) -> dict[str, Any]:
        """The NTIRE efficiency score of a trained net against the study's baseline: runtime (the
        fused net's median forward on this worker's device, the baseline timed the same way here),
        FLOPs (Mult-Adds on a 256x256 LR input) and fused parameters (`srnas.arch.efficiency`)."""
        base = self.ntire
        if base is None:
            raise ConfigError("the ntire objective needs the study's baseline record (srnas.search.ntire)")
        if self._baseline_runtime_ms is None:
            from srnas.arch.networks import build_model  # lazy: torch (start-up)

            baseline = build_model(ArchConfig.from_dict(base["config"]))
            self._baseline_runtime_ms = measure_latency(baseline, self.latency_lr_size, scale=cfg.scale,
                                                        device=self.device)
        runtime = measure_latency(model, self.latency_lr_size, scale=cfg.scale, device=self.device)
        flops, params = challenge_flops(cfg), count_params(cfg, fused=True)
        score = ntire_score(runtime=runtime, flops=flops, params=params, year=int(base["year"]),
                            baseline=(self._baseline_runtime_ms, float(base["flops"]), float(base["params"])))
        return {"ntire_score": round(score, 6), "ntire_runtime_ms": round(runtime, 3),
                "ntire_baseline_runtime_ms": round(self._baseline_runtime_ms, 3), "flops_256": flops,
                "params_fused": params}

    def bicubic_reference(self) -> float:
        """Bicubic PSNR on the images a trial is scored on (mean over the space's scales)."""
        from srnas.train.evaluate import bicubic_psnr  # lazy: torch (start-up)

        self.load_data()
        val = self._val
        sets = val if isinstance(val, dict) else {self.space.scales[0]: val}
        values = [bicubic_psnr(v, scale=s, max_images=self.schedule.val_images) for s, v in sets.items()]
        return float(sum(values) / len(values))

    def infeasible_values(self, costs: ConfigCosts) -> tuple[float, ...]:
        """Placeholder values of a config that is never trained (a constraint or the device's
        memory rules it out): the bicubic PSNR (the score of the skip alone), its known
        parameters and Mult-Adds, an infinite latency and NTIRE score. Constrained samplers rank it by its
        constraint values, not by these."""
        known = {"psnr": self.bicubic_reference(), "params": float(costs.params), "macs": float(costs.mult_adds)}
        return tuple(known.get(name, math.inf if OBJECTIVES[name].direction == "minimize" else -math.inf)
                     for name in self.objectives)

    @staticmethod
    def _value(name: str, attrs: dict[str, Any]) -> float:
        return float(attrs[OBJECTIVES[name].attr])

    def _sample_image(self, model: Any, cfg: ArchConfig) -> Path | None:
        """A small LR | SR | HR strip of the first validation image, where it has the most detail
        (the trial's artifact)."""
        import torch  # lazy: torch (start-up)

        s = cfg.scale
        val = self._val[s] if isinstance(self._val, dict) else self._val
        hr = val.hr[0]
        lr = val.lr[s][0]
        size = min(48, lr.shape[0], lr.shape[1])
        # Where the image has the most detail (a flat centre would look the same for every net).
        y0, x0 = most_detailed_window(lr, size)
        lr_crop = lr[y0:y0 + size, x0:x0 + size]
        hr_crop = hr[y0 * s:(y0 + size) * s, x0 * s:(x0 + size) * s]
        device = next(model.parameters()).device
        x = torch.from_numpy(np.ascontiguousarray(lr_crop)).permute(2, 0, 1)[None].float().to(device)
        with torch.inference_mode():
            sr = model(x, scale=s)[0].float().clamp(0, 255).round().byte().permute(1, 2, 0).cpu().numpy()
        up = imresize(lr_crop, s)  # bicubic, for a like-for-like view of the input
        strip = np.concatenate([up, np.full((up.shape[0], 4, 3), 255, np.uint8), sr,
                                np.full((up.shape[0], 4, 3), 255, np.uint8), hr_crop], axis=1)
        directory = self.sample_dir or Path(tempfile.gettempdir())
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f"sample-{cfg.arch_id}-", suffix=".png", dir=directory)
        os.close(fd)
        save_image(name, strip)
        return Path(name)
