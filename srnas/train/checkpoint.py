"""Training checkpoints, written atomically and read without unpickling arbitrary objects.

A checkpoint holds everything a run needs to continue exactly: model, optimiser, learning-rate
position, RNG states (torch, NumPy, Python), update count, patch-sampler state, the config and
the schedule. Files are written with `srnas.fileio.atomic_write` (a temporary file in the same
folder, fsync'ed, moved over the old file, mode from the umask): a crash or an exception while
saving leaves the previous checkpoint intact and no half-written file.

A run resumes on the same training set only (`data_identity`), its optimiser keeping this
device's implementation flags (`load_optimizer_state`); `load_init_weights` starts one from
weights of another run or scale.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from srnas.arch.checkpoint import load_weights, read_state_dict, unreadable_weights_reason
from srnas.arch.config import ArchConfig
from srnas.arch.efficient_layers import fuse
from srnas.arch.networks import build_model
from srnas.errors import ConfigError, TrainingError
from srnas.fileio import atomic_write
from srnas.train.schedules import Schedule, schedule_from_dict

if TYPE_CHECKING:
    from srnas.data import SRImageSet

CHECKPOINT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"

_NDARRAY = "__ndarray__"
_TUPLE = "__tuple__"


def save_weights(path: str | Path, model: torch.nn.Module) -> Path:
    """Save a model's plain state dict (contiguous CPU tensors) atomically, e.g. ``model.pt``."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    return atomic_write(path, lambda handle: torch.save(state, handle))


def to_safe(obj: Any) -> Any:
    """Make a nested structure loadable with ``torch.load(weights_only=True)``.

    NumPy arrays and scalars become tensors and Python numbers, tuples are tagged so that
    `from_safe` restores them; tensors, str, numbers, None, lists and str-keyed dicts pass.
    """
    if isinstance(obj, np.ndarray):
        return {_NDARRAY: torch.from_numpy(np.ascontiguousarray(obj).astype(np.int64 if obj.dtype.kind == "u" else obj.dtype)),
                "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Mapping):
        return {k: to_safe(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return {_TUPLE: [to_safe(v) for v in obj]}
    if isinstance(obj, list):
        return [to_safe(v) for v in obj]
    return obj


def from_safe(obj: Any) -> Any:
    """Inverse of `to_safe`."""
    if isinstance(obj, Mapping):
        if _NDARRAY in obj:
            return obj[_NDARRAY].numpy().astype(np.dtype(obj["dtype"]))
        if _TUPLE in obj:
            return tuple(from_safe(v) for v in obj[_TUPLE])
        return {k: from_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_safe(v) for v in obj]
    return obj


def weights_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names, dtypes, shapes and bytes (in name order): a checkpoint
    carries it, and a resume recomputes it (a flipped bit in the weights is found)."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().to("cpu")
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        # reshape(-1): one element order whatever the memory layout (channels_last included).
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> Path:
    """Write a training checkpoint atomically, with the digest of its model weights (see the
    module docstring)."""
    payload = {"version": CHECKPOINT_VERSION, **to_safe(dict(state))}
    if "model" in state:
        payload["model_sha256"] = weights_digest(state["model"])
    return atomic_write(path, lambda handle: torch.save(payload, handle))


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` (weights only: no arbitrary unpickling)."""
    p = Path(path)
    if not p.is_file():
        raise TrainingError(f"{p}: checkpoint not found")
    try:
        payload = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated or foreign file
        reason = unreadable_weights_reason(p, exc)
        if reason.startswith("not a PyTorch weights file") and p.stat().st_size > 0:
            with open(p, "rb") as fh:
                if fh.read(2) == b"PK":  # a zip cut short: torch's format, damaged
                    reason = "damaged or truncated (a crash while copying it, or a full disk?)"
        raise TrainingError(f"{p}: unreadable checkpoint: {reason}; delete it to start over") from None
    if not isinstance(payload, dict) or "model" not in payload or "update" not in payload:
        raise TrainingError(f"{p}: not an srnas training checkpoint (no 'model'/'update' entries)")
    version = payload.get("version")
    if version != CHECKPOINT_VERSION:
        raise TrainingError(f"{p}: checkpoint format version {version!r}, this srnas reads {CHECKPOINT_VERSION}")
    digest = payload.get("model_sha256")
    if digest is not None and weights_digest(payload["model"]) != digest:
        raise TrainingError(f"{p}: corrupted checkpoint: its weights do not match the digest written with them; "
                            "delete it to start over")
    bad = [k for k, v in payload["model"].items() if torch.is_tensor(v) and v.is_floating_point()
           and not bool(torch.isfinite(v).all())]
    if bad:
        raise TrainingError(f"{p}: corrupted checkpoint: non-finite values in {bad[0]}; delete it to start over")
    return from_safe(payload)


def find_weights(path: str | Path) -> Path:
    """The weights file of ``path``: the file itself, or ``model.pt`` (else ``checkpoint.pt``) in a
    retrain output folder."""
    p = Path(path)
    if p.is_dir():
        for name in ("model.pt", CHECKPOINT_NAME, "model.safetensors"):
            if (p / name).is_file():
                return p / name
        raise ConfigError(f"{p}: no model.pt or {CHECKPOINT_NAME} in this folder (expected a `srnas retrain` output)")
    if not p.is_file():
        raise ConfigError(f"{p}: model file or folder not found")
    if p.suffix.lower() == ".onnx":
        raise ConfigError(f"{p}: {unreadable_weights_reason(p)}")
    return p


def load_model(path: str | Path, *, config: "ArchConfig | None" = None,
               device: str | torch.device = "cpu", fused: bool = True) -> tuple[torch.nn.Module, "ArchConfig"]:
    """Build a network and load trained weights, in eval mode; ``fused``: in its inference form
    (re-parameterisable convs fused into one conv each, `srnas.arch.fuse`), as eval and upscale use it.

    ``path`` is a `srnas retrain` output folder, or a weights file (plain state dict, srnas
    checkpoint, the EDSR authors' ``.pt``, ``.safetensors``). The architecture is ``config`` when
    given, else the ``config.yaml`` next to the weights, else the config stored in an srnas
    checkpoint.
    """
    weights = find_weights(path)
    if config is None:
        for candidate in (weights.parent / "config.yaml", weights.parent / "config.yml", weights.parent / "config.json"):
            if candidate.is_file():
                config = ArchConfig.load(candidate)
                break
    if config is None and weights.suffix in (".pt", ".pth"):
        try:
            stored = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception:
            stored = None
        if isinstance(stored, dict) and isinstance(stored.get("config"), dict):
            config = ArchConfig.from_dict(from_safe(stored["config"]), source=f"{weights} (stored config)")
    if config is None:
        raise ConfigError(f"{weights}: no config.yaml next to the weights; pass --config FILE or a preset name")
    model = build_model(config)
    load_weights(model, weights, strict=True)
    if fused:
        fuse(model)
    return model.to(device).eval(), config


# ---- resuming and starting a run ------------------------------------------------------------


def data_identity(images: "SRImageSet") -> dict[str, Any]:
    """What a training set is, as a checkpoint records it: its name, image count and a digest of
    its image names (a run resumes only on the same set)."""
    names = list(images.names)
    return {"name": images.name, "images": len(names),
            "names_sha256": hashlib.sha256("\n".join(names).encode()).hexdigest()}


def check_resumable(state: Mapping[str, Any], *, where: str, arch_id: str, schedule: Schedule, seed: int,
                    train_data: "SRImageSet") -> None:
    """Raise `TrainingError` unless checkpoint ``state`` (read from ``where``) is of the same run:
    architecture, schedule, seed and training set."""
    if state.get("arch_id") != arch_id:
        raise TrainingError(f"{where}: checkpoint of architecture {state.get('arch_id')}, "
                            f"not {arch_id}; use another checkpoint folder")
    theirs = schedule_from_dict(state["schedule"])
    if theirs.fidelity_id != schedule.fidelity_id:
        raise TrainingError(f"{where}: checkpoint of schedule {theirs.name!r} ({theirs.fidelity_id}), "
                            f"not {schedule.name!r} ({schedule.fidelity_id})")
    if int(state["seed"]) != seed:
        raise TrainingError(f"{where}: checkpoint trained with seed {state['seed']}, not {seed}")
    theirs_data, mine = state.get("data"), data_identity(train_data)
    if isinstance(theirs_data, dict) and theirs_data != mine:  # (checkpoints of older srnas lack it)
        raise TrainingError(f"{where}: checkpoint trained on {theirs_data.get('name')} "
                            f"({theirs_data.get('images')} images), not on {mine['name']} ({mine['images']} "
                            "images); resume with the same --data, or use another output folder")


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a checkpoint's optimiser state, keeping this optimiser's implementation flags."""
    # load_state_dict also copies the implementation flags (fused, capturable, a tensor lr) of
    # the run that saved it; keep this device's own, so that a CUDA checkpoint resumes on CPU.
    own: list[dict[str, Any]] = [{k: g[k] for k in ("fused", "capturable", "foreach", "lr") if k in g}
                                 for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, mine in zip(optimizer.param_groups, own):
        lr = float(group["lr"])
        group.update(mine)
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def load_init_weights(model: torch.nn.Module, source: str | Path | Mapping[str, Any]) -> None:
    """Load starting weights: all of them when they match, else all but the upsampler (x2 -> x3/x4)."""
    state = read_state_dict(source) if isinstance(source, (str, Path)) else dict(source)
    try:
        load_weights(model, state, strict=True)
    except ConfigError:
        left = load_weights(model, state, strict=False, transfer=True)
        own = model.state_dict()
        if len(left) == len(own):
            raise ConfigError(f"init weights {source if isinstance(source, (str, Path)) else 'state dict'}: "
                              "no tensor matches this architecture") from None
