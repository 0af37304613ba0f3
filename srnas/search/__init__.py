"""Search: settings, the session every engine shares, the objective and trial runner, the
Optuna and NNI engines. Names are re-exported lazily (``import srnas.search`` imports no torch)."""

from __future__ import annotations

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
    "Evaluation": "srnas.search.objective",
    "TRIAL_ATTRS": "srnas.search.objective",
    "TrialRunner": "srnas.search.trial",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
