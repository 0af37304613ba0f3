"""The Python API, the public face of the workflows: `search`, `retrain` and `evaluate`, the
functions that ``srnas search``, ``srnas retrain`` and ``srnas eval`` call (the commands only
parse, print and call what this module offers), and `confirm` (``srnas confirm``). Each workflow
lives in its layer and is re-exported here: search in `srnas.search.entry` (its settings
`SearchSettings`, its run `run_search`), retrain in `srnas.train.entry`, evaluation in
`srnas.train.inference`. `retrain` and `run_retrain` are the train layer's with the ranking of
a study's trials for ``--top K`` (`srnas.results.frame.top_configs`, above train).

Keyword arguments are named like the flags (``budget=``, ``max_params=``, ``workers=``) and
take the same values; ``run=`` names a run file (YAML, the same keys, `srnas.runfile`) that the
keyword arguments override. Everything heavy (torch, Optuna) is imported inside the functions,
so ``import srnas`` stays light.

>>> import srnas
>>> study = srnas.search(budget=4, proxy="tiny@20", study="api-demo", workers=1)  # doctest: +SKIP
>>> study.best_trial.user_attrs["arch_id"]  # doctest: +SKIP
'edsr-...'

A search resumes with what its study recorded (``run_settings``): ``srnas.search(study=NAME)``
continues with the recorded budget, space, proxy, workers ...; arguments given override them,
and the session still refuses changes that would alter the study's results (space, proxy,
data, objectives).

>>> from srnas.api import resolve_retrain
>>> settings, output = resolve_retrain(preset="edsr-baseline", max_updates=20, log_every=5)
>>> settings.preset, settings.schedule, settings.max_updates, output
('edsr-baseline', 'paper', 20, {'log_every': 5})
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from srnas.search.entry import SEARCH_OUTPUT, confirm, resolve_search, search, search_schema
from srnas.search.settings import SearchSettings
from srnas.train.entry import (
    RETRAIN_OUTPUT,
    RetrainOutcome,
    RetrainSettings,
    resolve_retrain,
    retrain_progress_lines,
    retrain_schema,
    stop_signals,
)
from srnas.train.inference import DEFAULT_SETS, Evaluation, eval_sets, evaluate, load_arch, load_for_inference

__all__ = ["DEFAULT_SETS", "Evaluation", "RETRAIN_OUTPUT", "RetrainOutcome", "RetrainSettings", "SEARCH_OUTPUT",
           "SearchSettings", "confirm", "eval_sets", "evaluate", "load_arch", "load_for_inference", "resolve_retrain",
           "resolve_search", "retrain", "retrain_progress_lines", "retrain_schema", "run_retrain", "run_search",
           "search", "search_schema", "stop_signals"]

if TYPE_CHECKING:
    import optuna
    from rich.console import Console

    from srnas.train.retrain import RetrainRun
    from srnas.train.fit_result import TrainProgress


def run_search(settings: SearchSettings, *, console: "Console | None" = None, progress: bool = True,
               create_only: bool = False) -> "optuna.Study":
    """`search` with settings already resolved (`resolve_search`): create or resume the study and
    run its engine until the budget is met (`srnas.search.engines.run_search`, imported here on
    first use: it imports Optuna)."""
    from srnas.search.engines import run_search as run

    return run(settings, console=console, progress=progress, create_only=create_only)


def retrain(run: str | Path | None = None, *,
            progress: "Callable[[RetrainRun, TrainProgress], None] | None" = None,
            on_done: Callable[[RetrainOutcome], None] | None = None, **options: Any) -> list[RetrainOutcome]:
    """Retrain architectures (``srnas retrain``): a config file or preset, or the best K
    trials of a study; returns one `RetrainOutcome` per architecture.

    ``options`` are the flags as keywords (`RetrainSettings`: ``config``, ``preset``,
    ``top``, ``study``, ``data``, ``schedule``, ``max_updates``, ``device``, ``seed``,
    ``resume``, ``tensorboard`` ...); ``run``: a run file they override. ``progress(run, p)``
    sees every update (default: the plain lines ``srnas retrain`` prints off a terminal,
    `retrain_progress_lines`); ``on_done(outcome)`` each finished run. Each run appends its
    lines to its ``retrain.log``; the result line is logged too.

    >>> [done] = srnas.retrain(preset="edsr-baseline", schedule="proxy-tiny", max_updates=20)  # doctest: +SKIP
    >>> done.result.final["psnr"], done.run.weights  # doctest: +SKIP
    """
    from srnas.log import ensure_configured

    ensure_configured()
    settings, _output = resolve_retrain(run, **options)
    return run_retrain(settings, progress=progress or retrain_progress_lines(), on_done=on_done, log_result=True)


def run_retrain(settings: RetrainSettings, *,
                progress: "Callable[[RetrainRun, TrainProgress], None] | None" = None,
                on_done: Callable[[RetrainOutcome], None] | None = None,
                log_result: bool = False) -> list[RetrainOutcome]:
    """`retrain` with settings already resolved: `srnas.train.entry.run_retrain`, whose ``--top K``
    trains the best K distinct architectures of the study, confirmed ones first
    (`srnas.results.frame.top_configs`); ``log_result``: the result line goes to the log as well
    as to ``retrain.log`` (the command prints it on stdout instead)."""
    from srnas.results.frame import top_configs
    from srnas.train.entry import run_retrain as run

    return run(settings, top_configs=top_configs, progress=progress, on_done=on_done, log_result=log_result)
