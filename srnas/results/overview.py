"""What a study holds, in a few numbers: `study_overview` (counts of distinct architectures
trained, the best result, the fidelity, the run settings it recorded) for ``srnas studies``,
``srnas search --json`` and scripts; `list_studies` for every study under ``trials/`` or in one
storage. Counts follow `srnas.outcomes` (the same rules as the search's budget and the report).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from srnas.arch.config import ArchConfig
from srnas.errors import SrnasError
from srnas.outcomes import confirmed_records, count_trials, pareto_trials, reference_psnr, results_of_record
from srnas.storages import open_storage, redact, storage_location
from srnas.studies import StudyHome, list_study_names
from srnas.units import finite_or_none
from srnas.optuna_seams import storage_of

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial


def _result(t: "FrozenTrial", confirmed: dict[str, dict[str, Any]]) -> dict[str, Any]:
    a = t.user_attrs
    record = confirmed.get(str(a.get("arch_id")))
    describe = None
    if isinstance(a.get("config"), dict):
        try:
            describe = ArchConfig.from_dict(a["config"]).describe()
        except Exception:  # a config this srnas cannot read: shown by its id only
            describe = None
    return {"trial": t.number, "arch_id": a.get("arch_id"), "describe": describe, "preset": a.get("preset"),
            "psnr": finite_or_none(t.values[0]),
            "values": [float(v) for v in t.values], "params": a.get("params"), "mult_adds": a.get("mult_adds"),
            "protocol": a.get("protocol"), "config": a.get("config"),
            "confirmed": record if record is not None and record.get("trial") == t.number else None}


def fidelity_name(user_attrs: dict[str, Any]) -> str | None:
    """The proxy a study was searched with, by its schedule name (``tiny@40``)."""
    schedule = user_attrs.get("schedule")
    return user_attrs.get("proxy") or (schedule.get("name") if isinstance(schedule, dict) else None)


def study_overview(study: "optuna.Study", *, location: str | None = None) -> dict[str, Any]:
    """A JSON-friendly summary of ``study``: ``trials`` (all), ``trained`` (distinct
    architectures trained: the budget's count), ``pruned``, ``repeats``, ``running``,
    ``failed``, ``infeasible``, ``repeats_per_trained``, ``complete`` (architectures trained to
    full fidelity), ``best`` (the best of them above bicubic, confirmed ones first, with its
    ``confirmed`` record where there is one, or None), ``pareto`` (multi-objective studies),
    ``bicubic_psnr``, ``fidelity`` (the proxy's name), ``space``, ``data``, ``objectives``,
    ``artifacts``, ``run_settings`` (what its last search ran with) and ``storage``
    (``location``)."""
    trials = study.get_trials(deepcopy=False)
    counts = count_trials(trials)
    attrs = study.user_attrs
    confirmed = confirmed_records(attrs)
    record = results_of_record(trials, confirmed)
    bicubic = reference_psnr(record)
    better = [t for t in record if bicubic is None or (finite_or_none(t.values[0]) or -math.inf) > bicubic]
    multi = len(study.directions) > 1
    out: dict[str, Any] = {
        "study": study.study_name,
        "space": attrs.get("space"),
        "fidelity": fidelity_name(attrs),
        "data": attrs.get("data"),
        "objectives": attrs.get("objectives") or [d.name.lower() for d in study.directions],
        "trials": len(trials),
        "trained": counts.finished,
        "pruned": counts.pruned,
        "repeats": counts.repeats,
        "running": counts.running,
        "failed": counts.failed,
        "infeasible": counts.infeasible,
        "complete": len(record),
        "repeats_per_trained": round(counts.repeats / counts.finished, 3) if counts.finished else None,
        "best": _result(better[0], confirmed) if better else None,
        "bicubic_psnr": bicubic,
        "artifacts": attrs.get("artifacts"),
        "run_settings": attrs.get("run_settings"),
        "storage": location,
    }
    if multi:
        out["pareto"] = [_result(t, confirmed) for t in pareto_trials(trials)]
    return out


def list_studies(root: Path | None = None, storage: str | None = None) -> list[dict[str, Any]]:
    """`study_overview` of every study under ``root`` (default ``trials/``: one storage per
    study folder), or of every study in ``storage``. A study that cannot be read is listed
    with ``error`` (one line) instead of its numbers."""
    import optuna  # lazy: optuna (start-up)

    if storage is not None:
        opened = open_storage(storage)
        return [study_overview(optuna.load_study(study_name=s.study_name, storage=opened), location=redact(storage))
                for s in sorted(opened.get_all_studies(), key=lambda s: s.study_name)]
    out = []
    for name in list_study_names(root):
        home = StudyHome(name, root)
        try:
            study = home.load()
            out.append(study_overview(study, location=storage_location(storage_of(study))))
        except SrnasError as exc:
            out.append({"study": name, "error": str(exc), "storage": str(home.db)})
    return out
