"""`export_study`: the architectures a search found, as files that rebuild and run them anywhere.

For each selected trial a folder ``<out>/<arch_id>/`` holds:

- ``config.yaml`` / ``config.json``: the plain `ArchConfig` (``srnas.ArchConfig.load`` and
  ``srnas retrain --config`` read it);
- ``model.pt`` (plain state dict, the EDSR authors' key names) and ``model.safetensors``: only
  when the architecture was retrained (``trials/<study>/retrain/<arch_id>/model.pt``). The
  search keeps no proxy weights, so an architecture that was not retrained gets no weights file
  and its model card says UNTRAINED;
- ``model.onnx`` (MDSR: ``model_x{s}.onnx`` per scale) with dynamic batch, height and width,
  checked with onnxruntime against PyTorch on an input of another size than the export's. An
  untrained architecture's file is named ``model-untrained-random-init.onnx``: it holds the
  random initial weights (useful for latency measurements on a target device, not for images);
- ``model_card.md``: Hugging Face front matter (license, library_name, tags, datasets,
  pipeline_tag, model-index with the retrained PSNR/SSIM per scale, the protocol in each
  metric's name and args), a usage snippet, config, costs, proxy and retrained metrics with
  their protocol, study and trial ids, files (written by `srnas.results.model_card`);
  ``metadata.json`` (the same, machine-readable).

`load_exported` rebuilds the network of such a folder with its weights.

Each folder is written in a temporary folder next to it and renamed into place
(`srnas.fileio.atomic_folder`): an interrupted export leaves either the previous folder or the
new one, never half of one. Folders and files get the user's umask (0755/0644 under umask 022).
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import importlib.util
import json
import math
import warnings
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from srnas._version import __version__
from srnas.arch.checkpoint import load_weights
from srnas.arch.config import ArchConfig
from srnas.arch.cost import count_mult_adds, count_params
from srnas.arch.efficient_layers import fuse
from srnas.arch.networks import build_model
from srnas.errors import ConfigError, MissingExtraError, SrnasError
from srnas.fileio import atomic_folder, atomic_path, atomic_write, atomic_write_text
from srnas.registry import unknown_name
from srnas.results.frame import retrained_results, select_trials, trial_config
from srnas.results.model_card import model_card
from srnas.space.search_space import SearchSpace
from srnas.studies import load_study

#: Formats ``--format`` accepts.
EXPORT_FORMATS = ("yaml", "json", "pt", "safetensors", "onnx")
#: Packages each format needs beyond the core install, by import name.
FORMAT_PACKAGES: dict[str, tuple[str, ...]] = {"onnx": ("onnx", "onnxruntime"), "safetensors": ("safetensors",)}
#: LR size (H, W) of the dummy input the ONNX graph is traced with.
ONNX_EXPORT_SIZE = (32, 32)
#: LR size (N, H, W) of the input the exported graph is checked on: another batch, height and width.
ONNX_CHECK_SHAPE = (2, 27, 41)
#: Largest allowed |ONNX - PyTorch| as a fraction of ``rgb_range`` (0.0255 on the 0-255 scale,
#: far below the 0.5 that changes an 8-bit output value).
ONNX_TOLERANCE = 1e-4
ONNX_OPSET = 17


class ExportError(SrnasError):
    """An export cannot be written or does not reproduce the PyTorch model."""


@dataclasses.dataclass
class ExportedArch:
    """One exported architecture: where it went and what it holds."""

    arch_id: str
    trial: int
    folder: Path
    trained: bool
    files: list[str]
    onnx_max_abs_diff: dict[str, float]


def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"yaml,onnx"`` -> ``("yaml", "onnx")``; an unknown or empty format is a `ConfigError`."""
    items = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text)]
    items = [t for t in items if t]
    if not items:
        raise ConfigError(f"--format: give at least one of {', '.join(EXPORT_FORMATS)}")
    for item in items:
        if item not in EXPORT_FORMATS:
            raise unknown_name("export format", item, EXPORT_FORMATS, flag="--format")
    return tuple(dict.fromkeys(items))


def installed_formats() -> tuple[tuple[str, ...], dict[str, str]]:
    """The export formats whose packages are installed, and for each other one why not (the
    default of ``srnas export``: write what can be written, say what was skipped)."""
    ok, skipped = [], {}
    for fmt in EXPORT_FORMATS:
        for package in FORMAT_PACKAGES.get(fmt, ()):
            try:
                importlib.import_module(package)
            except ImportError:
                skipped[fmt] = f"{package} is not installed: pip install 'srnas[export]'"
                break
        else:
            ok.append(fmt)
    return tuple(ok), skipped


def require_extras(formats: Iterable[str]) -> None:
    """Fail before writing anything when a format's package is missing (names the extra)."""
    for fmt in formats:
        for package in FORMAT_PACKAGES.get(fmt, ()):
            try:
                importlib.import_module(package)
            except ImportError:
                raise MissingExtraError(package, "export", f"{fmt} export") from None


# ---- ONNX ------------------------------------------------------------------------------------


class _AtScale(nn.Module):
    """A traceable copy of a network with one input, serving one scale (MDSR takes ``scale=``)."""

    def __init__(self, model: nn.Module, scale: int) -> None:
        super().__init__()
        self.net = copy.deepcopy(model).eval()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, scale=self.scale)


def export_onnx(model: nn.Module, config: "ArchConfig", path: Path, *, scale: int,
                check_shape: tuple[int, int, int] = ONNX_CHECK_SHAPE, seed: int = 0) -> float:
    """Export ``model`` at ``scale`` to ONNX (dynamic N, H, W) and check it with onnxruntime.

    The check feeds a random input of shape ``check_shape`` (N, H, W; another size than the
    export's) to onnxruntime and to the PyTorch model and returns max |difference| on the
    0..rgb_range scale; an `ExportError` is raised when it exceeds ``ONNX_TOLERANCE * rgb_range``.
    """
    import onnxruntime as ort  # lazy: optional onnxruntime (the export extra)

    model = model.eval()
    wrapped = _AtScale(model, scale).eval()
    dummy = torch.rand(1, config.n_colors, *ONNX_EXPORT_SIZE) * config.rgb_range
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings and the legacy exporter's deprecation notice
        with atomic_path(path) as tmp:
            torch.onnx.export(wrapped, (dummy,), str(tmp), input_names=["lr"], output_names=["sr"],
                              dynamic_axes={"lr": {0: "batch", 2: "height", 3: "width"},
                                            "sr": {0: "batch", 2: "out_height", 3: "out_width"}},
                              opset_version=ONNX_OPSET, dynamo=False)
    gen = torch.Generator().manual_seed(seed)
    n, h, w = check_shape
    x = torch.rand(n, config.n_colors, h, w, generator=gen) * config.rgb_range
    with torch.no_grad():
        expected = model(x, scale=scale).numpy()
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(None, {"lr": x.numpy()})[0]
    except Exception as exc:  # onnxruntime raises its own exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"{path.name}: onnxruntime cannot run the exported graph on a {n}x{h}x{w} input "
                          f"(the export size was {ONNX_EXPORT_SIZE[0]}x{ONNX_EXPORT_SIZE[1]}): {first}") from None
    if got.shape != expected.shape:
        raise ExportError(f"{path.name}: ONNX output shape {got.shape} for input {tuple(x.shape)}, "
                          f"PyTorch gives {expected.shape}")
    diff = float(np.max(np.abs(got - expected)))
    if not math.isfinite(diff) or diff > ONNX_TOLERANCE * config.rgb_range:
        raise ExportError(f"{path.name}: ONNX output differs from PyTorch by {diff:.3g} on a {n}x{h}x{w} input "
                          f"(allowed {ONNX_TOLERANCE * config.rgb_range:.3g}); the export is not usable")
    return diff


# ---- one architecture ------------------------------------------------------------------------


def _state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def export_trial(study: Any, trial: Any, out_dir: Path, formats: Sequence[str], *,
                 retrained: dict[str, dict[str, Any]]) -> ExportedArch:
    """Write the export folder of one COMPLETE trial (see the module docstring).

    ``retrained``: `srnas.results.frame.retrained_results` of the study (arch_id -> metrics).
    """
    config = trial_config(trial, study_name=study.study_name)
    if config is None:
        raise ExportError(f"study {study.study_name!r} trial {trial.number}: no architecture config recorded")
    arch_id = config.arch_id
    found = retrained.get(arch_id)
    torch.manual_seed(0)
    model = build_model(config).eval()
    trained = found is not None and found.get("weights") is not None
    if trained and found is not None:
        try:
            load_weights(model, found["weights"], strict=True)
        except ConfigError as exc:
            raise ExportError(f"retrained weights of {arch_id} do not fit its config: {exc}") from None
    attrs = trial.user_attrs
    meta: dict[str, Any] = {
        "arch_id": arch_id, "study": study.study_name, "trial": trial.number, "state": trial.state.name,
        "space": attrs.get("space") or study.user_attrs.get("space"), "engine": attrs.get("engine", "optuna"),
        "data": study.user_attrs.get("data", "?"), "trained": trained, "config": config.to_dict(),
        "params": count_params(config), "params_fused": count_params(config, fused=True),
        "mult_adds": {s: count_mult_adds(config, scale=s) for s in config.scales},
        "mult_adds_fused": {s: count_mult_adds(config, scale=s, fused=True) for s in config.scales},
        "activation_mb": SearchSpace.costs(config).activation_mb,
        "proxy": {k: attrs.get(k) for k in ("psnr", "ssim", "protocol", "bicubic_psnr", "fidelity", "schedule",
                                            "seed", "updates", "wall_time_s", "params", "mult_adds")},
        "retrained": None if found is None else {
            k: (str(v) if isinstance(v, Path) else v) for k, v in found.items() if k not in ("config", "psnr_curve")},
        "exported_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "srnas_version": __version__, "files": [], "onnx_files": [], "onnx_max_abs_diff": {},
        "onnx_check_shape": list(ONNX_CHECK_SHAPE),
    }
    if trial.values:
        meta["proxy"]["psnr"] = float(trial.values[0])
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / arch_id
    if final.exists() and not final.is_dir():
        raise ExportError(f"{final}: exists and is not a folder")
    with atomic_folder(final) as tmp:
        files: list[str] = []
        if "yaml" in formats:
            atomic_write_text(tmp / "config.yaml", config.to_yaml())
            files.append("config.yaml")
        if "json" in formats:
            atomic_write_text(tmp / "config.json", json.dumps(config.to_dict(), indent=2) + "\n")
            files.append("config.json")
        if trained and "pt" in formats:
            state = _state_dict(model)
            atomic_write(tmp / "model.pt", lambda handle: torch.save(state, handle))
            files.append("model.pt")
        if trained and "safetensors" in formats:
            from safetensors.torch import save_file  # lazy: optional safetensors (FORMAT_PACKAGES)

            with atomic_path(tmp / "model.safetensors") as path:
                save_file(_state_dict(model), str(path), metadata={"arch_id": arch_id})
            files.append("model.safetensors")
        if "onnx" in formats:
            stem = "model" if trained else "model-untrained-random-init"
            inference = fuse(copy.deepcopy(model))  # re-parameterisable convs as one conv each
            for s in config.scales:
                name = f"{stem}.onnx" if len(config.scales) == 1 else f"{stem}_x{s}.onnx"
                meta["onnx_max_abs_diff"][name] = export_onnx(inference, config, tmp / name, scale=s)
                files.append(name)
                meta["onnx_files"].append(name)
        files += ["model_card.md", "metadata.json"]
        meta["files"] = files
        atomic_write_text(tmp / "model_card.md", model_card(meta, config))
        atomic_write_text(tmp / "metadata.json", json.dumps(meta, indent=2, default=str) + "\n")
    return ExportedArch(arch_id=arch_id, trial=trial.number, folder=final, trained=trained, files=files,
                        onnx_max_abs_diff=dict(meta["onnx_max_abs_diff"]))


def export_study(study_name: str, out_dir: str | Path, *, top: int | None = None, trial: int | None = None,
                 pareto: bool = False, formats: str | Sequence[str] | None = None,
                 storage: str | None = None, root: Path | None = None) -> list[ExportedArch]:
    """Export the selected trials of a study (exactly one of ``top``, ``trial``, ``pareto``).

    ``formats``: the formats to write (each one's package must be installed), or None for every
    format whose package is installed (`installed_formats`). Checks the study, the selection and
    the formats' packages before writing anything.

    Raises:
        StudyError: unknown study.
        SelectionError: unknown, failed or pruned trial; no complete trial.
        ConfigError: unknown format.
        MissingExtraError: a format's package is not installed (names the extra).
        ExportError: an ONNX file does not reproduce PyTorch; retrained weights do not fit.
    """
    fmts = installed_formats()[0] if formats is None else parse_formats(formats)
    require_extras(fmts)
    study = load_study(study_name, storage, root=root)
    selected = select_trials(study, top=top, trial=trial, pareto=pareto)
    retrained = retrained_results(study_name, root)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: exists and is not a folder; -o needs a folder")
    return [export_trial(study, t, out, fmts, retrained=retrained) for t in selected]


# ---- loading an export -----------------------------------------------------------------------


def load_exported(folder: str | Path, *, device: str | torch.device = "cpu", fused: bool = True) -> nn.Module:
    """The network an export folder holds: rebuilt from its config, with its weights, in eval mode.

    Reads ``config.yaml`` (or ``config.json``) and ``model.safetensors`` (or ``model.pt``,
    loaded with ``weights_only=True``). The weights files hold the training form; ``fused``
    (default) returns the inference form, each re-parameterisable conv fused into one conv
    (`srnas.arch.fuse`: the same outputs to float rounding, fewer parameters, faster);
    ``fused=False`` the training form, e.g. to train on.

    >>> net = load_exported("exports/edsr-1a2b3c4d5e")  # doctest: +SKIP
    >>> sr = net(lr)  # lr: N x 3 x H x W, values 0..255  # doctest: +SKIP

    Raises:
        ExportError: no such folder, no config or no weights in it (an UNTRAINED export), or
            a config that is not the one ``metadata.json`` records.
        ConfigError: an unreadable config or weights file, or weights that do not fit the config.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ExportError(f"{root}: no such export folder (expected one written by `srnas export`, "
                          f"with config.yaml and model.safetensors or model.pt)")
    config_file = next((root / n for n in ("config.yaml", "config.json") if (root / n).is_file()), None)
    if config_file is None:
        raise ExportError(f"{root}: no config.yaml or config.json; not an export folder, or exported without "
                          f"--format yaml/json")
    config = ArchConfig.load(config_file)
    meta_file = root / "metadata.json"
    if meta_file.is_file():
        try:
            recorded = json.loads(meta_file.read_text(encoding="utf-8")).get("arch_id")
        except (OSError, ValueError, AttributeError):
            raise ExportError(f"{meta_file}: not readable JSON; the export folder is damaged") from None
        if recorded is not None and recorded != config.arch_id:
            raise ExportError(f"{config_file}: architecture {config.arch_id}, but {meta_file.name} records {recorded}; "
                              f"the export folder is damaged or mixed")
    weights = next((p for p in (root / "model.safetensors", root / "model.pt") if p.is_file()), None)
    if weights is None:
        raise ExportError(f"{root}: holds no weights (model.safetensors or model.pt): an UNTRAINED export; "
                          f"train it with `srnas retrain --config {config_file}`")
    if weights.suffix == ".safetensors" and importlib.util.find_spec("safetensors") is None:
        if not (root / "model.pt").is_file():
            raise MissingExtraError("safetensors", "export", f"loading {weights}")
        weights = root / "model.pt"  # the same weights; needs no extra
    model = build_model(config)
    load_weights(model, weights, strict=True)
    if fused:
        fuse(model)
    return model.to(device).eval()
