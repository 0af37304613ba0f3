"""A study as a table: one row per trial, plus retrained results and Pareto sets.

Everything the report, the export and ``trials.csv`` show is read from the Optuna study (the
system of record) and from the retrain runs ``trials/<study>/retrain/<arch_id>/<schedule>/``.

>>> import optuna
>>> study = optuna.create_study(direction="maximize")
>>> study_frame(study).empty
True
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from srnas.arch.config import ArchConfig
from srnas.errors import ConfigError, SrnasError
from srnas.outcomes import confirmed_records, is_infeasible, is_trained, pareto_mask, pareto_trials, results_of_record
from srnas.studies import StudyHome
from srnas.train.retrain import find_runs

__all__ = ["pareto_mask", "complete_trials", "select_trials", "top_configs", "study_frame", "trial_config",
           "retrained_results", "SelectionError"]

if TYPE_CHECKING:
    import optuna
    import pandas as pd

#: Trial user attributes copied into columns of the same name (absent ones stay empty).
ATTR_COLUMNS = ("arch_id", "params", "mult_adds", "activation_mb", "latency_ms", "psnr", "ssim",
                "protocol", "bicubic_psnr", "fidelity", "schedule", "updates", "wall_time_s", "device",
                "seed", "space", "engine", "preset", "reused_from", "infeasible", "error",
                "sample_artifact")
#: ArchConfig fields flattened into columns.
CONFIG_COLUMNS = ("family", "scales", "n_resblocks", "n_feats", "kernel_sizes", "batch_norm",
                  "res_scale", "act", "global_skip", "head_blocks", "head_kernel")


class SelectionError(SrnasError):
    """The trials asked for (``--trial N``, ``--top K``, ``--pareto``) cannot be used."""


def trial_config(trial: Any, *, study_name: str = "") -> ArchConfig | None:
    """The `ArchConfig` a trial recorded (None when it recorded none)."""
    raw = trial.user_attrs.get("config")
    if raw is None:
        return None
    source = f"study {study_name!r} trial {trial.number}" if study_name else f"trial {trial.number}"
    if isinstance(raw, str):
        return ArchConfig.from_json(raw, source=source)
    return ArchConfig.from_dict(raw, source=source)


def study_frame(study: "optuna.Study") -> "pd.DataFrame":
    """One row per trial with its state, scores, costs, flattened config and search parameters.

    Columns: ``number``, ``state``, ``trained`` (`srnas.outcomes.is_trained`: COMPLETE, or PRUNED
    by the pruner; not infeasible, not a repeat: the search budget's rule), ``psnr`` (the first
    objective for COMPLETE trials, the last reported PSNR for pruned ones), every name of `ATTR_COLUMNS`,
    ``describe`` (one-line summary), the `CONFIG_COLUMNS`, ``confirmed_psnr``, ``confirmed_sd`` and
    ``confirmed_gap`` for the trial of record of a confirmed architecture
    (`srnas.search.confirm`), ``value_<objective>`` for the other
    objectives, ``param_<name>`` for Optuna's parameters, ``psnr_curve`` and ``config`` as JSON,
    ``datetime_start``, ``datetime_complete`` and ``duration_s``.
    """
    import pandas as pd  # lazy: pandas (0.4 s to import); only study_frame needs it

    objectives = list(study.user_attrs.get("objectives") or ["psnr"])
    confirmed = confirmed_records(study.user_attrs)
    rows: list[dict[str, Any]] = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        row: dict[str, Any] = {"number": t.number, "state": t.state.name, "trained": is_trained(t)}
        for key in ATTR_COLUMNS:
            value = attrs.get(key)
            row[key] = value if not isinstance(value, (dict, list)) else json.dumps(value)
        if t.state.name == "COMPLETE" and t.values and "infeasible" not in attrs:  # placeholders otherwise
            row["psnr"] = float(t.values[0])
            for name, value in zip(objectives[1:], t.values[1:]):
                row[f"value_{name}"] = float(value)
        elif row["psnr"] is None and attrs.get("psnr_curve"):
            row["psnr"] = float(attrs["psnr_curve"][-1][1])
        try:
            cfg = trial_config(t, study_name=study.study_name)
        except ConfigError:
            cfg = None
        if cfg is not None:
            d = cfg.to_dict()
            for key in CONFIG_COLUMNS:
                value = d.get(key)
                row[key] = "/".join(map(str, value)) if isinstance(value, list) else value
            row["describe"] = cfg.describe()
            row["config"] = cfg.to_json()
            row["arch_id"] = row["arch_id"] or cfg.arch_id
        else:  # no config recorded (a trial that failed or runs before it had one): the columns stay
            row.update(dict.fromkeys([*CONFIG_COLUMNS, "describe", "config"]))
        record = confirmed.get(str(attrs.get("arch_id")))
        if record is not None and record.get("trial") == t.number:
            row["confirmed_psnr"], row["confirmed_sd"] = record.get("psnr"), record.get("sd")
            row["confirmed_gap"] = record.get("gap")
        for name, value in t.params.items():
            row[f"param_{name}"] = value
        row["psnr_curve"] = json.dumps(attrs.get("psnr_curve") or [])
        row["datetime_start"] = t.datetime_start
        row["datetime_complete"] = t.datetime_complete
        row["duration_s"] = (t.datetime_complete - t.datetime_start).total_seconds() \
            if t.datetime_start and t.datetime_complete else None
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        empty = pd.DataFrame(columns=["number", "state", "trained", *ATTR_COLUMNS, "describe", *CONFIG_COLUMNS,
                                      "config", "psnr_curve", "datetime_start", "datetime_complete", "duration_s"])
        return empty.astype({"trained": bool})
    for key in ("psnr", "ssim", "bicubic_psnr", "params", "mult_adds", "activation_mb", "res_scale", "wall_time_s",
                "confirmed_psnr", "confirmed_sd", "confirmed_gap"):
        if key in frame:
            frame[key] = pd.to_numeric(frame[key], errors="coerce")
    return frame


# ---- retrained results ---------------------------------------------------------------------


def retrained_results(study: str, root: Path | None = None) -> dict[str, dict[str, Any]]:
    """Retrained metrics per arch_id from the study's retrain runs (`srnas.train.retrain`)."""
    return find_runs(StudyHome(study, root).retrain)


# ---- Pareto sets and selection -------------------------------------------------------------


def complete_trials(study: "optuna.Study") -> list[Any]:
    """The results of record: COMPLETE trials with a value and a config, one per architecture,
    confirmed ones first by their confirmed PSNR, then best PSNR first
    (`srnas.outcomes.results_of_record`)."""
    return results_of_record(study.get_trials(deepcopy=False), confirmed_records(study.user_attrs))


def top_configs(study: "optuna.Study", top: int) -> list[ArchConfig]:
    """The configs of the best ``top`` COMPLETE trials (confirmed ones first, `complete_trials`),
    distinct architectures (what ``srnas retrain --top K`` trains)."""
    out = []
    for t in select_trials(study, top=top, purpose="retrain"):
        cfg = trial_config(t, study_name=study.study_name)
        if cfg is not None:
            out.append(cfg)
    return out


def select_trials(study: "optuna.Study", *, top: int | None = None, trial: int | None = None,
                  pareto: bool = False, purpose: str = "export") -> list[Any]:
    """The trials to export (or ``purpose``): one trial by number, the best ``top`` distinct architectures, or
    the Pareto set (PSNR vs the study's cost objectives; PSNR vs params for a single-objective
    study), one trial per architecture.

    Raises `SelectionError` (one line) for an unknown, failed, pruned or unfinished trial and
    for a study without complete trials.
    """
    chosen = [x for x in (top is not None, trial is not None, pareto) if x]
    if len(chosen) != 1:
        raise SelectionError("choose exactly one of --top K, --trial N, --pareto")
    name = study.study_name
    if trial is not None:
        trials = study.get_trials(deepcopy=False)
        match = [t for t in trials if t.number == trial]
        if not match:
            last = f"0..{trials[-1].number}" if trials else "none"
            raise SelectionError(f"study {name!r} has no trial {trial} (trial numbers: {last})")
        t = match[0]
        if t.state.name != "COMPLETE" or is_infeasible(t):
            why = t.user_attrs.get("error") or t.user_attrs.get("infeasible")
            what = "infeasible" if is_infeasible(t) else t.state.name
            raise SelectionError(f"study {name!r} trial {trial} is {what}{f' ({why})' if why else ''}: only trained "
                                 "COMPLETE trials can be exported; pick one with srnas report or use --top K")
        if "config" not in t.user_attrs:
            raise SelectionError(f"study {name!r} trial {trial} recorded no architecture config")
        return [t]
    complete = complete_trials(study)
    if not complete:
        raise SelectionError(f"study {name!r} has no COMPLETE trial with an architecture to {purpose}")
    if top is not None:
        if top < 1:
            raise SelectionError(f"--top must be a positive integer, got {top}")
        return complete[:top]
    # Single objective: the Pareto set of PSNR vs parameters; bicubic is the reference point.
    keep = pareto_trials(study.get_trials(deepcopy=False))
    if not keep:
        raise SelectionError(f"study {name!r}: no architecture beats bicubic, so the Pareto set is empty")
    return keep
