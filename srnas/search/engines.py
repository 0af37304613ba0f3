"""Search engines by name, and `run_search`: settings -> engine -> session -> study.

An engine implements `srnas.search.session.Engine` (validate its own options, run a session to
its budget); a new engine is one class and one entry in `ENGINES`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from srnas.errors import ConfigError
from srnas.search.nni_engine import NNIEngine
from srnas.search.optuna_engine import OptunaEngine
from srnas.search.session import Engine, Session
from srnas.search.settings import SearchSettings

if TYPE_CHECKING:
    import optuna
    from rich.console import Console

ENGINES: dict[str, type[Engine]] = {engine.name: engine for engine in (OptunaEngine, NNIEngine)}


def get_engine(name: str) -> Engine:
    """The engine registered as ``name`` (``optuna``, ``nni``)."""
    try:
        return ENGINES[name]()
    except KeyError:
        raise ConfigError(f"--engine: unknown engine {name!r}; allowed: {', '.join(ENGINES)}") from None


def run_search(settings: SearchSettings, *, console: "Console | None" = None, progress: bool = True) -> "optuna.Study":
    """Create or resume the study of ``settings`` and run its engine until the budget is met;
    returns the study. Engine options are checked before any study is created."""
    from rich.console import Console

    engine = get_engine(settings.engine)
    settings = engine.validate(settings)
    session = Session.create(settings)
    engine.run(session, console=console or Console(stderr=True), progress=progress)
    return session.study
