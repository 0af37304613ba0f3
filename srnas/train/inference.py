"""Inference on what a user names, the evaluation workflow of ``srnas eval``: an architecture
(`load_arch`: a preset or a config file), a trained network (`load_for_inference`: a retrain
folder, a weights file, or a preset with the EDSR authors' weights), the sets to score it on
(`eval_sets`), and `evaluate`, scores beside bicubic (``srnas.evaluate``, re-exported by
`srnas.api`). Imports are inside the functions: importing this module stays light.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from srnas.errors import ConfigError

if TYPE_CHECKING:
    import torch.nn as nn

    from srnas.arch.config import ArchConfig
    from srnas.data import SRImageSet
    from srnas.train.evaluate import EvalResult

#: Benchmark sets ``srnas eval`` scores by default (those present under the root).
DEFAULT_SETS = "Set5,Set14,B100,Urban100"


def load_arch(target: str | Path, scale: int | None = None) -> "ArchConfig":
    """A preset name or an architecture file (YAML/JSON) -> `ArchConfig` (``scale``: the
    scale of a preset, or one the file's config must serve)."""
    # lazy: keeps srnas --help off yaml (srnas.arch.config)
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
    # lazy: torch (start-up)
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
        from srnas.data import load_eval_set  # lazy: keeps srnas --help off numpy (srnas.data)

        val = load_eval_set("demo", scale)
        return {val.name: val}, []
    # lazy: keeps srnas --help off numpy (srnas.data)
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
        from srnas.arch.cost import count_params  # lazy: keeps srnas --help off yaml (srnas.arch.config)

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
    # lazy: torch (start-up)
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
