"""The baseline of the ``ntire`` objective (``--objectives psnr,ntire``): the NTIRE efficient-SR
challenge's score of each trained net against a baseline preset (`srnas.arch.efficiency`).

The baseline (``--ntire-baseline``, default ``span:28``) is built at the search's scale and
trained once per study with the study's proxy, data and seed, so that the PSNR floor is
relative to the baseline's PSNR at the same fidelity, as the challenge's floor is relative to
its baseline's: a net more than ``--ntire-margin`` dB under it violates the constraint
``psnr_floor`` (constrained samplers treat it as infeasible). The record (the baseline's config,
PSNR, fused parameters, FLOPs on a 256x256 LR input, the floor) lives in the study's user
attribute ``ntire_baseline``; every worker reads it and times the baseline itself on its own
device, since runtime is the one term that depends on the machine.
"""

from __future__ import annotations

from typing import Any

from srnas.arch.cost import count_params
from srnas.arch.efficiency import baseline_config, challenge_flops
from srnas.errors import ConfigError
from srnas.log import get_logger
from srnas.search.objective import Objective

#: The study's user attribute that holds the record.
NTIRE_ATTR = "ntire_baseline"


def ntire_settings(settings: Any) -> dict[str, Any]:
    """What of ``settings`` defines the ntire objective (part of a study's identity)."""
    return {"baseline": settings.ntire_baseline, "year": int(settings.ntire_year),
            "margin": float(settings.ntire_margin)}


def check_ntire_space(space: Any) -> None:
    """The challenge scores one scale: refuse a multi-scale space in one line."""
    if len(space.scales) != 1:
        raise ConfigError(f"--objectives ...,ntire scores one scale; space {space.name!r} has scales "
                          f"{', '.join(map(str, space.scales))}: use a single-scale space")


def ensure_baseline(study: Any, settings: Any, space: Any, schedule: Any, *, device: str) -> dict[str, Any]:
    """The study's baseline record, trained and recorded first where it has none (a study that
    searches ``ntire`` is never without one once `srnas.search.session.Session.create` returns)."""
    wanted = ntire_settings(settings)

    def matching(record: Any) -> bool:
        return isinstance(record, dict) and all(record.get(k) == v for k, v in wanted.items()) \
            and record.get("fidelity") == schedule.fidelity_id

    recorded = study.user_attrs.get(NTIRE_ATTR)
    if matching(recorded):
        return recorded
    cfg = baseline_config(settings.ntire_baseline, space.scales[0])
    seed = settings.seed or 0
    log = get_logger("search")
    log.info(f"ntire objective: training the baseline {settings.ntire_baseline} (x{cfg.scale}, "
             f"{count_params(cfg, fused=True):,} parameters fused) once with proxy {schedule.name} for the PSNR floor")
    objective = Objective(space, schedule, data=settings.data, device=device, seed=seed)
    result = objective.fit(cfg, seed=seed)
    psnr = float(result.final["psnr"])
    record = {**wanted, "config": cfg.to_dict(), "arch_id": cfg.arch_id, "psnr": round(psnr, 6),
              "floor": round(psnr - wanted["margin"], 6), "params": count_params(cfg, fused=True),
              "flops": challenge_flops(cfg), "fidelity": schedule.fidelity_id, "seed": seed,
              "device": str(result.device)}
    again = study.user_attrs.get(NTIRE_ATTR)  # another creator may have recorded one meanwhile
    if matching(again):
        return again
    study.set_user_attr(NTIRE_ATTR, record)
    log.info(f"ntire objective: baseline {settings.ntire_baseline} scores {psnr:.2f} dB at {schedule.name}; "
             f"nets under {record['floor']:.2f} dB are infeasible")
    return record
