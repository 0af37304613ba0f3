"""Search spaces: YAML files that parameterise EDSR/MDSR/efficient configs.

`SearchSpace` (`srnas.space.search_space`) is a validated space: sampling, constraints,
membership, NNI's flat choices, counting. Its searchable fields are the `Dimension`s of
`DIMENSIONS` (`srnas.space.dimensions`); the file format and its parsing are
`srnas.space.loading`; `RandomChooser` and `FixedChooser` (`srnas.space.choosers`) stand in for an
Optuna trial. What a config costs, and the constraint keys, are the cost model's
(`srnas.arch.cost.ConfigCosts`).

Names are re-exported lazily: ``from srnas.space import SearchSpace`` imports neither torch nor Optuna.

>>> from srnas.space import SearchSpace
>>> SearchSpace.load("tiny").size()
900
"""

from __future__ import annotations

from srnas._lazy import lazy_exports

_EXPORTS = {
    "SearchSpace": "srnas.space.search_space",
    "canonical_changes": "srnas.space.search_space",
    "DIMENSIONS": "srnas.space.dimensions",
    "PARAMETERS": "srnas.space.dimensions",
    "Dimension": "srnas.space.dimensions",
    "ParamSpec": "srnas.space.dimensions",
    "available_spaces": "srnas.space.loading",
    "Chooser": "srnas.space.choosers",
    "FixedChooser": "srnas.space.choosers",
    "RandomChooser": "srnas.space.choosers",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
