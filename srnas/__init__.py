"""srnas: neural architecture search for single-image super-resolution.

The public API is re-exported here lazily, so that ``import srnas`` stays fast and never
imports torch, NNI, onnx or kaleido until a name that needs them is used.

>>> import srnas
>>> cfg = srnas.preset_config("edsr-baseline", scale=2)
>>> srnas.count_params(cfg)
1369859
"""

from __future__ import annotations

from srnas._lazy import lazy_exports

__version__ = "0.1.0"

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
    "SearchSpace": "srnas.space",
    "SrnasError": "srnas.errors",
    "ConfigError": "srnas.errors",
    "DataError": "srnas.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
