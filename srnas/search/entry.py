"""``srnas.search(...)``: a search as a Python call, the function ``srnas search`` calls, and
`confirm`, the one ``srnas confirm`` calls (both re-exported by `srnas.api`).

The settings come from, in increasing precedence: the defaults (`SearchSettings`), what the
study recorded when it exists (``run_settings``: a resume reuses them), a run file
(`srnas.runfile`), and keyword arguments named like the flags. The space, the engines and the
session are imported inside the functions: importing this module (``srnas --help`` does) stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from srnas.errors import ConfigError
from srnas.log import ensure_configured, get_logger
from srnas.runfile import check_options, coerce, options_schema, read_run_file
from srnas.search.settings import SearchSettings
from srnas.storages import is_journal_url, journal_path, sqlite_path
from srnas.studies import StudyError, StudyHome

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    import optuna
    from rich.console import Console

#: Keys of a search run file about what the command does with its settings (show them, or only
#: create the study for workers started elsewhere), not what it searches: never recorded.
SEARCH_OUTPUT: dict[str, Any] = {"no_progress": bool, "json": bool, "create_only": bool}


def search_schema() -> dict[str, Any]:
    """The keys of a search run file and their types: every `SearchSettings` field (the flags
    of ``srnas search``) and `SEARCH_OUTPUT`."""
    return {**options_schema(SearchSettings, exclude=("root",)), **SEARCH_OUTPUT}


def resolve_search(run: str | Path | None = None, *, root: str | Path | None = None,
                   **options: Any) -> tuple["SearchSettings", dict[str, Any]]:
    """The settings a search runs with, and its output options (`SEARCH_OUTPUT` keys given):
    the defaults, overridden by what the study recorded when it exists (a resume reuses its
    settings), by the run file ``run``, then by ``options``. The study name is filled in.
    Unknown keys and wrong types are one `ConfigError` line (with FILE:LINE for the file)."""
    schema = search_schema()
    given = read_run_file(run, schema) if run is not None else {}
    given.update(check_options(options, schema))
    output = {key: given.pop(key) for key in list(given) if key in SEARCH_OUTPUT}
    root_text = None if root is None else str(root)
    merged = {**_recorded_search(given, root_text), **given}
    return SearchSettings(**merged, root=root_text), output


def _recorded_search(given: Mapping[str, Any], root: str | None) -> dict[str, Any]:
    """The ``run_settings`` the study ``given`` names recorded (empty when it does not exist
    yet), with the study name; only keys this srnas knows, with values of the right type."""
    from srnas.space.search_space import SearchSpace  # lazy: keeps srnas --help off yaml

    probe = SearchSettings(**given, root=root)  # a bad value fails here as it would below
    name = probe.study or probe.resolved_study(SearchSpace.load(probe.space).name)
    home = StudyHome(name, probe.root_path())
    url = probe.storage
    if url is None and not home.exists():
        return {"study": name}
    if url is not None:
        file = journal_path(url) if is_journal_url(url) else sqlite_path(url)
        if file is not None and not file.is_file():  # nothing to resume (and nothing created here)
            return {"study": name}
    try:
        attrs = home.load(url).user_attrs
    except StudyError:  # not in this storage yet, or a broken file: creating the session says so
        return {"study": name}
    recorded = attrs.get("run_settings")
    out: dict[str, Any] = {}
    if isinstance(recorded, dict):
        schema = options_schema(SearchSettings, exclude=("root", "storage"))
        for key, value in recorded.items():
            if key in schema:
                try:
                    out[key] = coerce(value, schema[key])
                except ValueError:  # recorded by another srnas with another type: the default
                    continue
    # A study searched with the space's default proxy keeps it when that default changes later.
    if out.get("proxy") is None and isinstance(attrs.get("proxy"), str):
        out["proxy"] = attrs["proxy"]
    out["study"] = name
    return out


def search(run: str | Path | None = None, *, progress: bool = True, console: "Console | None" = None,
           root: str | Path | None = None, **options: Any) -> "optuna.Study":
    """Run a search (``srnas search``) and return its Optuna study.

    ``options`` are the flags as keywords: ``budget``, ``space``, ``data``, ``proxy``,
    ``study``, ``storage``, ``artifacts``, ``engine``, ``sampler``, ``pruner``, ``objectives``,
    ``workers``, ``devices``, ``workers_per_device``, ``timeout``, ``seed``, ``max_params``,
    ``max_mult_adds``, ``max_activation_mb``, ``nni_strategy``, ``nni_webui``, ``heartbeat``
    (defaults as in ``srnas search --help``). ``run``: a run file they override; an existing
    study resumes with the settings it recorded (`resolve_search`). ``progress``: a live bar
    on a terminal (plain lines otherwise) on ``console`` (default stderr); ``root``: the
    folder of the study folders (default ``trials/`` or ``SRNAS_TRIALS_DIR``).

    >>> study = srnas.search(budget=6, proxy="tiny@20", workers=1, seed=0)  # doctest: +SKIP
    """
    from srnas.search.engines import run_search  # lazy: optuna (start-up)

    ensure_configured()  # per-trial and progress lines as the command prints them
    settings, output = resolve_search(run, root=root, **options)
    return run_search(settings, console=console, progress=progress and not output.get("no_progress", False),
                      create_only=output.get("create_only", False))


def confirm(study: str, *, storage: str | None = None, top: int = 3, seeds: int | None = None,
            extra: Sequence[int] = (), device: str | None = None,
            log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Train the ``top`` architectures of the existing ``study`` again on ``seeds`` fresh seeds
    each (default: the study's ``confirm_seeds``) and score them on images the search did not
    select on (``srnas confirm``; keywords named like its flags, ``extra`` its ``--trial``);
    returns the confirmed records, best first (`srnas.search.confirm`). ``log``: where its
    lines go (default: the ``confirm`` logger, as the command prints them).

    >>> records = srnas.api.confirm("tiny-demo", top=2)  # doctest: +SKIP
    """
    # lazy: keeps srnas --help off numpy and yaml
    from srnas.search.confirm import confirm_session
    from srnas.search.session import Session

    ensure_configured()
    settings, _ = resolve_search(study=study, **({"storage": storage} if storage else {}))
    session = Session.attach(settings)
    if top < 0:
        raise ConfigError(f"--top must be 0 or more, got {top}")
    return confirm_session(session, device=device, top=top, seeds=seeds, extra=extra,
                           log=log or get_logger("confirm").info)
