"""Training: schedules (proxy fidelities, the paper's), `Trainer`, checkpoints, evaluation runner,
device and precision policy, and the workflows of ``srnas retrain`` (`srnas.train.entry`) and
``srnas eval`` (`srnas.train.inference`).

Names are re-exported lazily: ``from srnas.train import get_schedule`` does not import torch.

>>> from srnas.train import get_schedule
>>> get_schedule("paper").lr_milestones
(200000,)
"""

from __future__ import annotations

from srnas._lazy import lazy_exports

_EXPORTS = {
    "ProxySchedule": "srnas.train.schedules",
    "PaperSchedule": "srnas.train.schedules",
    "Schedule": "srnas.train.schedules",
    "PROXY_FIDELITIES": "srnas.train.schedules",
    "PAPER_SCHEDULES": "srnas.train.schedules",
    "get_schedule": "srnas.train.schedules",
    "schedule_names": "srnas.train.schedules",
    "schedule_from_dict": "srnas.train.schedules",
    "Trainer": "srnas.train.trainer",
    "TrainResult": "srnas.train.fit_result",
    "TrainProgress": "srnas.train.fit_result",
    "save_checkpoint": "srnas.train.checkpoint",
    "load_checkpoint": "srnas.train.checkpoint",
    "save_weights": "srnas.train.checkpoint",
    "EvalResult": "srnas.train.evaluate",
    "ImageScore": "srnas.train.evaluate",
    "evaluate_model": "srnas.train.evaluate",
    "evaluate_bicubic": "srnas.train.evaluate",
    "upscale_image": "srnas.train.evaluate",
    "super_resolve": "srnas.train.evaluate",
    "DevicePolicy": "srnas.train.device",
    "policy_for": "srnas.train.device",
    "resolve_device": "srnas.train.device",
    "PUBLISHED_X2": "srnas.train.published",
    "RetrainSettings": "srnas.train.entry",
    "resolve_retrain": "srnas.train.entry",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
