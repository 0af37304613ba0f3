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
  their protocol, study and trial ids, files; ``metadata.json`` (the same, machine-readable).

`load_exported` rebuilds the network of such a folder with its weights.

Each folder is written in a temporary folder next to it and renamed into place
(`srnas.fileio.atomic_folder`): an interrupted export leaves either the previous folder or the
new one, never half of one. Folders and files get the user's umask (0755/0644 under umask 022).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import warnings
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from srnas.errors import ConfigError, MissingExtraError, SrnasError
from srnas.fileio import atomic_folder, atomic_path, atomic_write, atomic_write_text

if TYPE_CHECKING:
    from srnas.arch.config import ArchConfig

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
#: ``license`` in the model card's front matter: the srnas license. Edit the card when your
#: weights or training data carry another (DIV2K is for academic research).
CARD_LICENSE = "mit"
#: What each evaluation protocol measures on (srnas.metrics): channel, border crop in pixels.
_PROTOCOL_REGION = {"benchmark": ("Y channel (BT.601)", 0), "div2k": ("RGB", 6)}


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
            raise ConfigError(f"--format: unknown export format {item!r}; allowed: {', '.join(EXPORT_FORMATS)}")
    return tuple(dict.fromkeys(items))


def installed_formats() -> tuple[tuple[str, ...], dict[str, str]]:
    """The export formats whose packages are installed, and for each other one why not (the
    default of ``srnas export``: write what can be written, say what was skipped)."""
    import importlib

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
    import importlib

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
    import numpy as np
    import onnxruntime as ort

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


# ---- model card --------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _trained_on_div2k(protocol: str | None, val_set: str | None) -> bool:
    # Only DIV2K data yields the "div2k" protocol and a validation set named DIV2K (srnas.data).
    return protocol == "div2k" or str(val_set or "").upper() == "DIV2K"


def _metric(kind: str, value: float, scale: int, protocol: str | None) -> dict[str, Any]:
    """One model-index metric; its name and ``args`` say the protocol it was measured with."""
    if protocol in _PROTOCOL_REGION:
        channel, extra = _PROTOCOL_REGION[protocol]
        crop = scale + extra
        name = f"{kind.upper()} x{scale} ({protocol} protocol: {channel}, {crop} px border crop)"
        args: dict[str, Any] = {"protocol": protocol, "scale": scale, "channel": channel, "border_crop": crop}
    else:
        name, args = f"{kind.upper()} x{scale} (protocol not recorded)", {"scale": scale}
    return {"type": kind, "value": round(float(value), 4), "name": name, "args": args}


def _model_index(meta: dict[str, Any], config: "ArchConfig") -> list[dict[str, Any]]:
    """Hugging Face ``model-index``: the retrained weights' PSNR/SSIM per scale."""
    r = meta["retrained"]
    protocol, val_set, data = r.get("protocol"), r.get("val_set"), r.get("data") or meta["data"]
    per_scale = {int(s): v for s, v in (r.get("per_scale") or {}).items()}
    if not per_scale:
        per_scale = {config.scales[0]: {"psnr": r["psnr"], "ssim": r.get("ssim")}} if len(config.scales) == 1 else {}
    div2k = _trained_on_div2k(protocol, val_set)
    dataset_type = "DIV2K" if div2k else ("srnas-demo" if data == "demo" else "custom")
    images = r.get("val_images")
    # The set's name says how many of its images the number covers (one name, one number).
    named = str(val_set or f"validation part of {data}") + (f" ({images} images)" if images else "")
    results = []
    for s, v in sorted(per_scale.items()):
        metrics = [_metric("psnr", v["psnr"], s, protocol)]
        if v.get("ssim") is not None:
            metrics.append(_metric("ssim", v["ssim"], s, protocol))
        results.append({
            "task": {"type": "image-to-image", "name": "Image Super-Resolution"},
            "dataset": {"type": dataset_type, "name": named, "config": f"bicubic_x{s}", "split": "validation"},
            "metrics": metrics,
        })
    return results


def _front_matter(meta: dict[str, Any], config: "ArchConfig") -> str:
    """The YAML block a Hugging Face model card starts with (license, tags, datasets, model-index)."""
    import yaml

    r = meta["retrained"] if meta["trained"] else None
    protocol = (r or meta["proxy"]).get("protocol")
    tags = ["super-resolution", "image-to-image", "srnas", "edsr", *(["mdsr"] if config.family == "mdsr" else []),
            "neural-architecture-search", *([] if meta["trained"] else ["untrained"])]
    card: dict[str, Any] = {"license": CARD_LICENSE, "library_name": "srnas", "pipeline_tag": "image-to-image",
                            "tags": tags}
    if _trained_on_div2k(protocol, (r or {}).get("val_set")):
        card["datasets"] = ["DIV2K"]
    results = _model_index(meta, config) if r is not None else []
    if results:
        card["model-index"] = [{"name": meta["arch_id"], "results": results}]
    return "---\n" + yaml.safe_dump(card, sort_keys=False, allow_unicode=True, width=100) + "---\n\n"


def _usage(meta: dict[str, Any], config: "ArchConfig") -> list[str]:
    """The card's usage snippet: load the folder, run one forward pass."""
    folder, s = meta["arch_id"], config.scales[-1]
    call = "net(lr)" if len(config.scales) == 1 else f"net(lr, scale={s})  # any of {list(config.scales)}"
    if meta["trained"]:
        load = [f'net = srnas.load_exported("{folder}")  # architecture + weights, eval mode']
    else:
        load = ["# UNTRAINED export: no weights here, so this is the architecture with random weights",
                f'net = srnas.build_model(srnas.ArchConfig.load("{folder}/config.yaml")).eval()']
    return ["## Usage", "", "```python", "import torch", "import srnas", "", *load,
            f"lr = torch.rand(1, {config.n_colors}, 48, 48) * {config.rgb_range:g}  # N x C x H x W, "
            f"values 0..{config.rgb_range:g}",
            "with torch.no_grad():", f"    sr = {call}",
            f"print(sr.shape)  # N x C x {s}H x {s}W", "```", ""]


def _model_card(meta: dict[str, Any], config: "ArchConfig") -> str:
    proxy, retrained = meta["proxy"], meta["retrained"]
    study, trial, arch_id = meta["study"], meta["trial"], meta["arch_id"]
    lines = [f"# {arch_id}: {config.describe()}", ""]
    if meta["trained"]:
        lines += [f"**Status: TRAINED.** Weights from `srnas retrain` ({retrained['schedule']}, "
                  f"{retrained['updates']} updates), copied from `{retrained['folder']}`.", ""]
    else:
        lines += ["**Status: UNTRAINED.** No retrained weights were found in "
                  f"`trials/{study}/retrain/{arch_id}/` (a search keeps no proxy weights), so this folder "
                  "holds no `.pt`/`.safetensors` weights."
                  + (" The ONNX file is named `*-untrained-random-init.onnx`: it carries random initial "
                     "weights, good for latency measurements, useless for images." if meta["onnx_files"] else ""),
                  "", f"Train it with: `srnas retrain --config config.yaml --study {study}` "
                  "(the paper schedule; add `--schedule proxy-short` for a quick run).", ""]
    lines += _usage(meta, config)
    lines += ["## Provenance", "",
              f"- study `{study}`, trial {trial} (state {meta['state']}), space `{meta['space']}`, "
              f"engine {meta['engine']}",
              f"- proxy fidelity `{proxy.get('fidelity')}` ({proxy.get('schedule')}), seed {proxy.get('seed')}",
              f"- exported {meta['exported_at']} by srnas {meta['srnas_version']}", "",
              "## Architecture", "", "```yaml", config.to_yaml().rstrip(), "```", "",
              "## Cost", "",
              f"- trainable parameters (mean shift excluded): {meta['params']:,}",
              *([f"- inference form (re-parameterisable convs fused; the ONNX files and `load_exported` "
                 f"use it): {meta['params_fused']:,} parameters"] if meta["params_fused"] != meta["params"] else []),
              *[f"- Mult-Adds x{s} (one forward pass, 1280x720 output): {m:,} ({m / 1e9:.2f}G)"
                + (f"; fused {meta['mult_adds_fused'][s]:,}" if meta["mult_adds_fused"][s] != m else "")
                for s, m in meta["mult_adds"].items()],
              f"- training activation memory (batch 16, LR patch 48, fp32): {meta['activation_mb']:.1f} MiB", "",
              "## Metrics", "",
              "| result | PSNR (dB) | SSIM | bicubic PSNR | protocol | validation set | schedule |",
              "|---|---|---|---|---|---|---|",
              f"| proxy (search) | {_fmt(proxy.get('psnr'))} | {_fmt(proxy.get('ssim'), 4)} | "
              f"{_fmt(proxy.get('bicubic_psnr'))} | {proxy.get('protocol') or '-'} | "
              f"validation part of data '{meta['data']}' | {proxy.get('schedule') or '-'} |"]
    if retrained is not None:
        lines.append(f"| retrained | {_fmt(retrained['psnr'])} | {_fmt(retrained['ssim'], 4)} | "
                     f"{_fmt(retrained['bicubic_psnr'])} | {retrained['protocol'] or '-'} | "
                     f"{retrained['val_set'] or '-'} | {retrained['schedule'] or '-'} ({retrained['updates']} updates) |")
    else:
        lines.append("| retrained | - | - | - | - | - | not retrained |")
    lines += ["", "Protocols: benchmark = Y channel (BT.601), crop = scale; div2k = RGB, crop = scale + 6. "
              "Proxy scores come from a short training and rank architectures; they are not final quality.", "",
              "## Files", ""]
    descriptions = {
        "config.yaml": "architecture: `srnas.ArchConfig.load('config.yaml')`, `srnas retrain --config config.yaml`",
        "config.json": "the same config as JSON (`srnas.ArchConfig.load('config.json')`)",
        "model.pt": "plain state dict (EDSR authors' key names): `srnas.load_exported(folder)`, or "
                    "`srnas.load_weights(srnas.build_model(cfg), 'model.pt')`",
        "model.safetensors": "the same weights as safetensors (`srnas.load_weights(net, 'model.safetensors')`)",
        "metadata.json": "everything on this card, machine-readable",
        "model_card.md": "this card",
    }
    for name in meta["files"]:
        if name.endswith(".onnx"):
            diff = meta["onnx_max_abs_diff"][name]
            n, h, w = ONNX_CHECK_SHAPE
            text = (f"input `lr` float32 N x {config.n_colors} x H x W, values 0..{config.rgb_range:g}; output `sr` "
                    f"N x {config.n_colors} x sH x sW; N, H, W dynamic (H, W >= 2). Checked with onnxruntime against "
                    f"PyTorch on a {n} x {config.n_colors} x {h} x {w} input: max |diff| {diff:.2e}")
            if "untrained" in name:
                text = "UNTRAINED random-init weights; " + text
        else:
            text = descriptions.get(name, "")
        lines.append(f"- `{name}`: {text}")
    return _front_matter(meta, config) + "\n".join(lines) + "\n"


# ---- one architecture ------------------------------------------------------------------------


def _state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def export_trial(study: Any, trial: Any, out_dir: Path, formats: Sequence[str], *,
                 retrained: dict[str, dict[str, Any]]) -> ExportedArch:
    """Write the export folder of one COMPLETE trial (see the module docstring).

    ``retrained``: `srnas.results.frame.retrained_results` of the study (arch_id -> metrics).
    """
    from srnas._version import __version__
    from srnas.arch.checkpoint import load_weights
    from srnas.arch.cost import count_mult_adds, count_params
    from srnas.arch.efficient_layers import fuse
    from srnas.arch.networks import build_model
    from srnas.results.frame import trial_config
    from srnas.space import SearchSpace

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
            from safetensors.torch import save_file

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
        atomic_write_text(tmp / "model_card.md", _model_card(meta, config))
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
    from srnas.results.frame import retrained_results, select_trials
    from srnas.studies import load_study

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
    import importlib.util

    from srnas.arch.checkpoint import load_weights
    from srnas.arch.config import ArchConfig
    from srnas.arch.networks import build_model

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
    from srnas.arch.efficient_layers import fuse

    model = build_model(config)
    load_weights(model, weights, strict=True)
    if fused:
        fuse(model)
    return model.to(device).eval()
