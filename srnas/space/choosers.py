"""Choosers: what `SearchSpace.sample` draws its values from. Anything with Optuna's
``suggest_categorical`` is one (an Optuna trial); `RandomChooser` stands in for a trial in plain
random sampling, `FixedChooser` replays a known assignment."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any, Protocol


class Chooser(Protocol):
    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...


class RandomChooser:
    """Uniform random choices from a seeded RNG (stands in for an Optuna trial)."""

    def __init__(self, seed: int | None = None) -> None:
        self.rng = random.Random(seed)
        self.params: dict[str, Any] = {}

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        value = self.rng.choice(list(choices))
        self.params[name] = value
        return value


class FixedChooser:
    """Replays a dict of parameter values (raises KeyError naming a missing parameter)."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params = dict(params)

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        value = self.params[name]
        if value not in choices:
            raise ValueError(f"{name}={value!r} not among {list(choices)}")
        return value
