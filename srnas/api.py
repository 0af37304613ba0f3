"""The Python API, the public face of srnas: the workflows as Python calls, and whatever else the
``srnas`` commands call (the commands only parse, print and call what this module offers).

What it offers:

- the workflows: `search` (``srnas search``; its settings `SearchSettings`, `resolve_search`,
  `run_search`), `confirm`, `retrain` (`RetrainSettings`, `resolve_retrain`, `run_retrain`) and
  `evaluate` (``srnas eval``; `load_for_inference` and `upscale_image` for ``srnas upscale``);
- a search past one machine: `run_worker` (``srnas worker``), `serve_storage_proxy`;
- studies and their results: `study_overview`, `overview_of` (a study by name), `list_studies`,
  `summary_table`, `write_report`, `export_study`, `run_fidelity`, `serve_dashboard`;
- architectures, spaces and data: `load_arch`, `cost_of`, `build_model`, `SearchSpace`,
  `available_spaces`, `download_dataset`, `describe_data_root`, image files (`load_image`,
  `save_image`, `imresize`);
- named choices and numbers of record: `PROXY_FIDELITIES`, `PAPER_SCHEDULES`, `published_rows`;
- run files and output files: `dump_run_file`, `atomic_write_text`.

Each lives in its layer and is re-exported here: search in `srnas.search.entry` (its settings
`SearchSettings`, its run `run_search`), retrain in `srnas.train.entry`, evaluation in
`srnas.train.inference`. `retrain` and `run_retrain` are the train layer's with the ranking of
a study's trials for ``--top K`` (`srnas.results.frame.top_configs`, above train).

Keyword arguments are named like the flags (``budget=``, ``max_params=``, ``workers=``) and
take the same values; ``run=`` names a run file (YAML, the same keys, `srnas.runfile`) that the
keyword arguments override. Everything heavy (torch, Optuna) is imported inside the functions,
or, for the names of modules that import it, on first use (`srnas._lazy`, as in the package
``__init__`` files), so ``import srnas`` and ``import srnas.api`` stay light.

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

>>> from srnas.api import PROXY_FIDELITIES  # its module is imported here, on first use
>>> "tiny" in PROXY_FIDELITIES
True
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from srnas._lazy import lazy_exports
from srnas.fileio import atomic_write_text
from srnas.runfile import dump_run_file
from srnas.search.entry import SEARCH_OUTPUT, confirm, resolve_search, search, search_schema
from srnas.search.settings import SearchSettings
from srnas.studies import trials_root
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

if TYPE_CHECKING:
    import optuna
    from rich.console import Console

    from srnas.arch.cost import cost_of, lr_size_for, measure_latency
    from srnas.arch.networks import build_model
    from srnas.data.download import download_dataset, manga109_instructions
    from srnas.data.images import image_kind, is_image_file, load_image, save_image
    from srnas.data.imresize import imresize
    from srnas.data.layout import describe_data_root
    from srnas.results.dashboard import serve_dashboard
    from srnas.results.export import export_study, installed_formats
    from srnas.results.fidelity.study import parse_fix, run_fidelity
    from srnas.results.overview import list_studies, study_overview
    from srnas.results.report import write_report
    from srnas.search.progress import summary_table
    from srnas.search.worker import REQUEUE_EXIT, run_worker
    from srnas.space.loading import available_spaces
    from srnas.space.search_space import SearchSpace
    from srnas.storage_proxy import serve_storage_proxy
    from srnas.train.evaluate import EvalResult, upscale_image
    from srnas.train.fit_result import TrainProgress
    from srnas.train.published import BENCHMARK_SETS, PUBLISHED_DIV2K, published_rows
    from srnas.train.retrain import RetrainRun
    from srnas.train.schedules import PAPER_SCHEDULES, PROXY_FIDELITIES

# Imported on first use (`srnas._lazy`): these modules import torch, Optuna or numpy, or more
# than starting a workflow needs.
_LAZY = {
    "REQUEUE_EXIT": "srnas.search.worker",
    "run_worker": "srnas.search.worker",
    "serve_storage_proxy": "srnas.storage_proxy",
    "study_overview": "srnas.results.overview",
    "list_studies": "srnas.results.overview",
    "summary_table": "srnas.search.progress",
    "write_report": "srnas.results.report",
    "export_study": "srnas.results.export",
    "installed_formats": "srnas.results.export",
    "run_fidelity": "srnas.results.fidelity.study",
    "parse_fix": "srnas.results.fidelity.study",
    "serve_dashboard": "srnas.results.dashboard",
    "RetrainRun": "srnas.train.retrain",
    "TrainProgress": "srnas.train.fit_result",
    "EvalResult": "srnas.train.evaluate",
    "upscale_image": "srnas.train.evaluate",
    "PROXY_FIDELITIES": "srnas.train.schedules",
    "PAPER_SCHEDULES": "srnas.train.schedules",
    "BENCHMARK_SETS": "srnas.train.published",
    "PUBLISHED_DIV2K": "srnas.train.published",
    "published_rows": "srnas.train.published",
    "cost_of": "srnas.arch.cost",
    "lr_size_for": "srnas.arch.cost",
    "measure_latency": "srnas.arch.cost",
    "build_model": "srnas.arch.networks",
    "SearchSpace": "srnas.space.search_space",
    "available_spaces": "srnas.space.loading",
    "download_dataset": "srnas.data.download",
    "manga109_instructions": "srnas.data.download",
    "describe_data_root": "srnas.data.layout",
    "load_image": "srnas.data.images",
    "save_image": "srnas.data.images",
    "is_image_file": "srnas.data.images",
    "image_kind": "srnas.data.images",
    "imresize": "srnas.data.imresize",
}

__all__ = [
    # the workflows
    "SEARCH_OUTPUT", "SearchSettings", "confirm", "resolve_search", "run_search", "search", "search_schema",
    "RETRAIN_OUTPUT", "RetrainOutcome", "RetrainRun", "RetrainSettings", "TrainProgress", "resolve_retrain", "retrain",
    "retrain_progress_lines", "retrain_schema", "run_retrain", "stop_signals",
    "DEFAULT_SETS", "EvalResult", "Evaluation", "eval_sets", "evaluate", "load_arch", "load_for_inference",
    "upscale_image",
    # a search past one machine
    "REQUEUE_EXIT", "run_worker", "serve_storage_proxy",
    # studies and their results
    "export_study", "installed_formats", "list_studies", "overview_of", "parse_fix", "run_fidelity",
    "serve_dashboard", "study_overview", "summary_table", "trials_root", "write_report",
    # architectures, spaces, data
    "SearchSpace", "available_spaces", "build_model", "cost_of", "describe_data_root", "download_dataset",
    "image_kind", "imresize", "is_image_file", "load_image", "lr_size_for", "manga109_instructions",
    "measure_latency", "save_image",
    # named choices, numbers of record, run files, output files
    "BENCHMARK_SETS", "PAPER_SCHEDULES", "PROXY_FIDELITIES", "PUBLISHED_DIV2K", "atomic_write_text", "dump_run_file",
    "published_rows",
]

if not TYPE_CHECKING:  # hidden from mypy, which then checks each name against the imports above
    __getattr__, __dir__ = lazy_exports(__name__, _LAZY)


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


def overview_of(study: str, *, storage: str | None = None) -> dict[str, Any]:
    """`study_overview` of the study named ``study`` (``srnas studies --show``), in its folder's
    storage or in ``storage``; its ``storage`` entry names where it was read (passwords
    redacted)."""
    from srnas.optuna_seams import storage_of
    from srnas.results.overview import study_overview
    from srnas.storages import redact, storage_location
    from srnas.studies import StudyHome

    loaded = StudyHome(study).load(storage)
    where = redact(storage) if storage else storage_location(storage_of(loaded))
    return study_overview(loaded, location=where)
