"""srnas: neural architecture search for single-image super-resolution.

The public API is re-exported here lazily, so that ``import srnas`` stays fast and never
imports torch, NNI, onnx or kaleido until a name that needs them is used. ``srnas.search(...)``,
``srnas.retrain(...)`` and ``srnas.evaluate(...)`` run what the commands of the same names run
(`srnas.api`); ``srnas.search`` is also the subpackage `srnas.search`, callable.

>>> import srnas
>>> cfg = srnas.preset_config("edsr-baseline", scale=2)
>>> srnas.count_params(cfg)
1369859
"""

from __future__ import annotations

import importlib

from srnas._lazy import lazy_exports
from srnas._version import __version__

_EXPORTS = {
    "ArchConfig": "srnas.arch.config",
    "build_model": "srnas.arch.networks",
    "preset_config": "srnas.arch.presets",
    "PRESETS": "srnas.arch.presets",
    "count_params": "srnas.arch.cost",
    "count_mult_adds": "srnas.arch.cost",
    "cost_of": "srnas.arch.cost",
    "load_weights": "srnas.arch.checkpoint",
    "load_exported": "srnas.results.export",
    "SearchSpace": "srnas.space.search_space",
    "retrain": "srnas.api",
    "evaluate": "srnas.api",
    "study_overview": "srnas.results.overview",
    "SrnasError": "srnas.errors",
    "ConfigError": "srnas.errors",
    "DataError": "srnas.errors",
}

__all__ = sorted([*_EXPORTS, "search"]) + ["__version__"]


_lazy_getattr, __dir__ = lazy_exports(__name__, _EXPORTS)


def __getattr__(name: str) -> object:
    if name == "search":  # the subpackage, whose module is callable: srnas.search(...) runs srnas.search.entry.search
        return importlib.import_module("srnas.search")
    return _lazy_getattr(name)
