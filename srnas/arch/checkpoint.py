"""Loading weights saved by the EDSR authors' code, the efficient nets' authors' code (IMDN,
RFDN, RLFN, SPAN) or srnas into srnas networks."""

from __future__ import annotations

import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from srnas.errors import ConfigError


#: What srnas loads weights from (said in the one-line errors).
WEIGHT_FORMATS = "a PyTorch state dict (.pt/.pth, saved with torch.save(model.state_dict())) or .safetensors"


def unreadable_weights_reason(path: Path, exc: BaseException | None = None) -> str:
    """Why ``torch.load(path, weights_only=True)`` failed, in srnas's words (torch's own text
    advises ``weights_only=False``, which srnas never does with a downloaded file)."""
    if path.suffix.lower() == ".onnx":
        return (f"an ONNX file; srnas reads {WEIGHT_FORMATS} (an export folder has model.pt or "
                "model.safetensors next to it; run ONNX files with onnxruntime)")
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    if zipfile.is_zipfile(path) or head[:1] == b"\x80":  # torch's zip format or a plain pickle
        if exc is None or "Weights only load failed" in str(exc):
            return ("holds pickled Python objects, not only tensors; srnas loads weights with weights_only=True and "
                    f"never unpickles objects: save {WEIGHT_FORMATS}")
        first = str(exc).splitlines()[0][:160] if str(exc) else ""
        return f"damaged or truncated PyTorch file ({type(exc).__name__}: {first})"
    return f"not a PyTorch weights file; srnas reads {WEIGHT_FORMATS}"


def read_state_dict(path: str | Path) -> dict[str, Any]:
    """Read a plain state dict from ``.pt``/``.pth`` (weights only, never arbitrary pickles)
    or ``.safetensors``. srnas training checkpoints (``{"model": state_dict, ...}``) work too.
    Any other file (ONNX, pickled objects, garbage) is a one-line `ConfigError`."""
    import torch  # lazy: torch (start-up)

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: weights file not found")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file  # lazy: torch (start-up), under safetensors.torch

            state = load_file(str(p))
        else:
            with warnings.catch_warnings():  # torch warns about pickle protocols before refusing
                warnings.simplefilter("ignore", UserWarning)
                state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickle with objects, truncated zip, ONNX ...
        if p.suffix == ".safetensors":
            first = str(exc).splitlines()[0][:160] if str(exc) else ""
            raise ConfigError(f"{p}: cannot read weights ({type(exc).__name__}: {first})") from None
        raise ConfigError(f"{p}: {unreadable_weights_reason(p, exc)}") from None
    if isinstance(state, Mapping) and "model" in state and isinstance(state["model"], Mapping):
        state = state["model"]
    if not isinstance(state, Mapping):
        raise ConfigError(f"{p}: expected a state dict, found {type(state).__name__}")
    # Weights saved from DataParallel carry a "module." prefix.
    return {k.removeprefix("module."): v for k, v in state.items()}


def _is_scale_specific(key: str) -> bool:
    """The upsampler: ``tail.0.{i}.*`` in EDSR, ``upsample.{s}.*`` in MDSR."""
    parts = key.split(".")
    return parts[0] == "upsample" or (parts[0] == "tail" and parts[1] == "0" and len(parts) > 3)


#: The authors' top-level module names of the efficient presets (IMDN and RFDN: ``fea_conv``,
#: ``IMDB{n}``/``B{n}``, ``c`` (1x1 + act), ``LR_conv``, ``upsampler``; RLFN: ``conv_1``,
#: ``block_{n}``, ``conv_2``, ``upsampler``; SPAN adds ``conv_cat``) -> `EfficientSR`'s names.
#: Inside the blocks the names are already the authors' (`srnas.arch.efficient_layers`).
_AUTHORS_EFFICIENT_PREFIXES = (
    (re.compile(r"^(fea_conv|conv_1)\."), "head.0."),
    (re.compile(r"^(?:IMDB|B|block_)(\d+)\."), None),  # 1-based block number -> body.{n-1}
    (re.compile(r"^c\.0\."), "aggregate.0."),
    (re.compile(r"^conv_cat\."), "aggregate."),
    (re.compile(r"^(LR_conv|conv_2)\."), "trunk_conv."),
    (re.compile(r"^upsampler\.0\."), "tail.0."),
)


def efficient_authors_keys(state: Mapping[str, Any], model: Any) -> dict[str, Any]:
    """A state dict saved by the IMDN, RFDN, RLFN or SPAN authors' code, renamed for an
    `EfficientSR` model (keys already in srnas's layout pass unchanged). SPAN's ``eval_conv.*``
    tensors (its fused convs, kept beside the training branches) are dropped where the model
    is unfused: `srnas.arch.fuse` derives them from the branches. The frozen mean shift srnas
    adds is taken from ``model``."""
    own = model.state_dict()
    out: dict[str, Any] = {}
    for key, value in state.items():
        new = key
        for pattern, target in _AUTHORS_EFFICIENT_PREFIXES:
            found = pattern.match(key)
            if found:
                repl = f"body.{int(found[1]) - 1}." if target is None else target
                new = repl + key[found.end():]
                break
        if new.split(".")[-2:-1] == ["eval_conv"] and new not in own:
            continue
        out[new] = value
    if out.keys() != state.keys():  # the authors' layout: their nets have no mean-shift convs
        for key in ("sub_mean.weight", "sub_mean.bias", "add_mean.weight", "add_mean.bias"):
            out.setdefault(key, own[key])
    return out


def load_weights(model: Any, source: str | Path | Mapping[str, Any], *, strict: bool = True,
                 transfer: bool = False) -> list[str]:
    """Load a state dict into ``model``.

    ``strict`` checks every key and shape (the authors' released files load this way into the
    matching preset; the efficient presets' authors' names are translated,
    `efficient_authors_keys`). ``transfer=True`` initialises a model of another scale from these weights,
    as the paper does for x3/x4 from x2: every tensor except the upsampler is copied; the keys
    left at their initial values are returned.
    """
    state = read_state_dict(source) if isinstance(source, (str, Path)) else dict(source)
    where = str(source) if isinstance(source, (str, Path)) else "state dict"
    if getattr(getattr(model, "config", None), "family", None) == "efficient":
        state = efficient_authors_keys(state, model)
    own = model.state_dict()
    if not transfer:
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if strict and (missing or unexpected):
            detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
            raise ConfigError(f"{where}: keys do not match the model ({detail}; "
                              f"{len(missing)} missing, {len(unexpected)} unexpected)")
        for k, v in state.items():
            if k in own and tuple(own[k].shape) != tuple(v.shape):
                raise ConfigError(f"{where}: {k} has shape {tuple(v.shape)}, the model expects {tuple(own[k].shape)}")
        model.load_state_dict(state, strict=strict)
        return missing
    copied = {}
    for k, v in state.items():
        if _is_scale_specific(k) or k not in own or tuple(own[k].shape) != tuple(v.shape):
            continue
        copied[k] = v
    model.load_state_dict(copied, strict=False)
    return sorted(set(own) - set(copied))
