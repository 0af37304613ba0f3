"""Search engines by name, and `run_search`: settings -> engine -> session -> study.

An engine implements `srnas.search.session.Engine` (validate its own options, run a session to
its budget); a new engine is one class and one entry in `ENGINES`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.text import Text

from srnas.data.images import max_image_pixels
from srnas.errors import SrnasError
from srnas.log import FILE_ONLY, get_logger, log_file, progress_interval
from srnas.search.confirm import confirm_session
from srnas.search.nni_engine import NNIEngine
from srnas.search.optuna_engine import OptunaEngine
from srnas.search.processes import terminate_as_interrupt
from srnas.search.session import Engine, Session
from srnas.search.settings import SearchSettings
from srnas.registry import Registry
from srnas.storages import redact

if TYPE_CHECKING:
    import optuna

log = get_logger("search")

ENGINES: Registry[type[Engine]] = Registry("engine", ((e.name, e) for e in (OptunaEngine, NNIEngine)), flag="--engine")


def get_engine(name: str) -> Engine:
    """The engine registered as ``name`` (``optuna``, ``nni``)."""
    return ENGINES.get(name)()


def run_search(settings: SearchSettings, *, console: "Console | None" = None, progress: bool = True,
               create_only: bool = False) -> "optuna.Study":
    """Create or resume the study of ``settings`` and run its engine until the budget is met;
    returns the study. Engine options are checked before any study is created.
    ``create_only``: create (or update) the study with its settings and train nothing; workers
    started anywhere then run it (``srnas worker``, `srnas.search.worker`).

    ``progress``: a live bar when the console is a terminal (plain lines otherwise, see
    `srnas.search.progress`). Every line is also appended to the study's log file
    (``trials/<study>/search.log``), between a start line and an end line.
    """
    with terminate_as_interrupt():  # SIGTERM stops a search as Ctrl-C does
        return _run_search(settings, console=console, progress=progress, create_only=create_only)


def _confirm(session: Session, console: "Console") -> None:
    """Confirm the winners once the search is over (what the workers left, then the record)."""
    settings = session.settings
    if not settings.confirm or session.budget_left() > 0:
        return
    pending = confirm_session(session, top=settings.confirm, seeds=settings.confirm_seeds,
                              log=lambda line: log.info(line, extra=FILE_ONLY))
    for r in pending:
        console.print(f"confirmed trial {r['trial']} ({r['arch_id']}): {r['psnr']:.3f} dB (sd {r['sd']:.3f}, "
                      f"{len(r['seeds'])} fresh seeds, {r['on']} images {', '.join(r['images'])}); selection score "
                      f"minus fresh seeds on the same images (winner's curse): {r['gap']:+.3f} dB")


def _run_search(settings: SearchSettings, *, console: "Console | None", progress: bool,
                create_only: bool = False) -> "optuna.Study":
    # Settings read from the environment are checked before anything is created.
    progress_interval()
    max_image_pixels()
    engine = get_engine(settings.engine)
    asked = settings.run_options()  # recorded as asked for (workers auto, not the count it became)
    settings = engine.validate(settings)
    session = Session.create(settings, run=asked)
    console = console or Console(stderr=True)
    if create_only:
        counts = session.counts()
        storage = f" --storage {redact(settings.storage)}" if settings.storage else ""
        console.print(Text.from_markup(session.describe(engine.name)).plain
                      + f": ready, budget {settings.budget} distinct architectures ({counts.finished} trained so far); "
                      f"start workers with: srnas worker --study {session.name}{storage}")
        return session.study
    with log_file(session.home.search_log):
        header = Text.from_markup(session.describe(engine.name)).plain
        log.info(f"search started: {header}, budget {settings.budget}, workers {settings.workers}, "
                 f"devices {','.join(settings.devices)}", extra=FILE_ONLY)
        try:
            engine.run(session, console=console, progress=progress)
            _confirm(session, console)
        except SrnasError as exc:
            log.info(f"search stopped: {exc}", extra=FILE_ONLY)
            raise
        except KeyboardInterrupt:
            log.info("search interrupted", extra=FILE_ONLY)
            raise
        log.info(f"search ended: {session.end_note()}", extra=FILE_ONLY)
    return session.study
