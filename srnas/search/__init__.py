"""Search: settings, the session every engine shares, the objective and trial runner, the
Optuna and NNI engines. Names are re-exported lazily (``import srnas.search`` imports no torch).

This package is also the function ``srnas.search(...)`` (`srnas.search.entry.search`): its module is
callable, so the name works whether or not a submodule such as ``srnas.search.session`` was
imported before (importing one sets ``srnas.search`` to this package).
"""

from __future__ import annotations

import sys
import types
from typing import Any

from srnas._lazy import lazy_exports

_EXPORTS = {
    "SearchSettings": "srnas.search.settings",
    "OBJECTIVES": "srnas.search.settings",
    "Session": "srnas.search.session",
    "Engine": "srnas.search.session",
    "ENGINES": "srnas.search.engines",
    "get_engine": "srnas.search.engines",
    "run_search": "srnas.search.engines",
    "Objective": "srnas.search.objective",
    "ProxyEvaluation": "srnas.search.objective",
    "TRIAL_ATTRS": "srnas.search.objective",
    "TrialRunner": "srnas.search.trial",
    "resolve_search": "srnas.search.entry",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


class _CallableSearch(types.ModuleType):
    """The ``srnas.search`` package as a function: ``srnas.search(budget=...)`` calls
    `srnas.search.entry.search` (see its documentation for the arguments)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from srnas.search.entry import search  # lazy: as the re-exports (srnas._lazy)

        return search(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableSearch
