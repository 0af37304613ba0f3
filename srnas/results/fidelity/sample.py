"""Which architectures a fidelity study trains: a sample stratified over the space's dimensions.

`stratified_sample` balances every searchable dimension that has one value per net (depth,
width, res_scale, the bicubic skip...): each value is given to ``n / k`` nets, independently per
dimension (a Latin-hypercube-like design over the choices), and draws the per-block dimensions
(kernel sizes, block types) at random for each net, each value appearing somewhere. No two nets
of the sample share a parameter count, so nets within 10% of each other (a parameter band) are
nets of different shapes, never copies that differ only in parameter-free choices.

`fixed_variant` and `variant_sample` give a space with one dimension fixed (e.g. the bicubic
skip on for every net) and the main sample's nets forced into it.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from srnas.arch.config import ArchConfig
from srnas.arch.cost import count_params
from srnas.errors import ConfigError
from srnas.results.fidelity.stats import band_pairs
from srnas.space.dimensions import DIMENSIONS, ParamSpec
from srnas.space.search_space import SearchSpace

#: Largest space that is enumerated for the replacement pool of `variant_sample`.
ENUMERATE_LIMIT = 20_000
#: Balanced assignments tried before `stratified_sample` gives up.
ATTEMPTS = 2000
#: Valid samples compared: the one with the most band pairs is kept.
CANDIDATES = 20


class _PlannedChooser:
    """Gives the planned value of a one-per-net parameter and a random value of the others
    (per-block and per-stage parameters)."""

    def __init__(self, planned: Mapping[str, Any], rng: random.Random) -> None:
        self.planned, self.rng = planned, rng

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        if name in self.planned and self.planned[name] in choices:
            return self.planned[name]
        return self.rng.choice(list(choices))


def searchable_dimensions(space: SearchSpace) -> list[tuple[Any, Any]]:
    """(dimension, spec) of every dimension the space searches (more than one choice)."""
    return [(dim, spec) for dim, spec in space.dimensions() if dim.name in space.params and len(spec.choices) > 1]


def _balanced(choices: Sequence[Any], n: int, rng: random.Random) -> list[Any]:
    """``n`` values, each choice ``n // k`` or ``n // k + 1`` times (the extra ones drawn at random)."""
    k = len(choices)
    extra = rng.sample(list(choices), n % k)
    values = [c for c in choices for _ in range(n // k)] + extra
    rng.shuffle(values)
    return values


def _attempt(space: SearchSpace, n: int, rng: random.Random,
             measured: dict[ArchConfig, tuple[int, bool]]) -> list[ArchConfig] | None:
    """One balanced assignment; None when its nets cannot all get distinct parameter counts.
    ``measured``: (parameters, feasible) of the configs met so far (the draws repeat configs
    often; measuring one costs far more than drawing it)."""
    plan = {dim.name: _balanced(spec.choices, n, rng) for dim, spec in searchable_dimensions(space)
            if not dim.per_block}
    picks: list[ArchConfig] = []
    seen: set[int] = set()
    for i in range(n):
        planned = {name: values[i] for name, values in plan.items()}
        for _ in range(32):  # other per-block draws for the same one-per-net values
            cfg = space.sample(_PlannedChooser(planned, rng))
            if cfg not in measured:
                measured[cfg] = (count_params(cfg), space.satisfies(cfg))
            p, feasible = measured[cfg]
            if p not in seen and feasible:
                break
        else:
            return None
        seen.add(p)
        picks.append(cfg)
    return picks


def _covers(space: SearchSpace, picks: Sequence[ArchConfig]) -> bool:
    """Every value of every dimension appears (of a dimension with more values than nets: as
    many different values as there are nets)."""
    for dim, spec in searchable_dimensions(space):
        found = {v for cfg in picks for v in _values(dim, cfg)}
        if len(found) < min(len(spec.choices), len(picks)):
            return False
    return True


def _values(dim: Any, cfg: ArchConfig) -> tuple[Any, ...]:
    value = getattr(cfg, dim.field)
    return tuple(value) if dim.per_block else (value,)


def stratified_sample(space: SearchSpace, n: int, *, seed: int = 0) -> list[ArchConfig]:
    """``n`` feasible configs of ``space`` with distinct parameter counts, stratified over its
    dimensions (see the module docstring), sorted by parameter count.

    Of the first `CANDIDATES` valid balanced samples drawn with ``seed``, the one with the most
    pairs within 10% parameters is returned (the pairs that test ranking where size cannot).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"--n must be a positive integer, got {n!r}")
    rng = random.Random(seed)
    best: list[ArchConfig] | None = None
    best_pairs = -1
    valid = 0
    measured: dict[ArchConfig, tuple[int, bool]] = {}
    for _ in range(ATTEMPTS):
        picks = _attempt(space, n, rng, measured)
        if picks is None or not _covers(space, picks):
            continue
        valid += 1
        pairs = int(np.triu(band_pairs([count_params(c) for c in picks]), 1).sum())
        if pairs > best_pairs:
            best, best_pairs = picks, pairs
        if valid >= CANDIDATES:
            break
    if best is None:
        raise ConfigError(f"space {space.name!r}: found no {n} feasible configs with distinct parameter counts "
                          f"covering every value of its dimensions in {ATTEMPTS} tries; try a smaller --n")
    return sorted(best, key=lambda c: (count_params(c), c.arch_id))


def sample_spread(space: SearchSpace, picks: Sequence[ArchConfig]) -> dict[str, Any]:
    """How a sample covers the space: size, distinct parameter counts and their range, pairs
    within 10% parameters, and for each searched dimension how many nets take each value (for a
    per-block dimension: how many nets have at least one block with it)."""
    params = [count_params(c) for c in picks]
    dims: dict[str, dict[str, int]] = {}
    for dim, spec in searchable_dimensions(space):
        counts: Counter[Any] = Counter()
        for cfg in picks:
            counts.update(set(_values(dim, cfg)))
        dims[dim.name] = {str(v): counts.get(v, 0) for v in spec.choices}
    return {"n": len(picks), "distinct_params": len(set(params)),
            "params_min": min(params) if params else None, "params_max": max(params) if params else None,
            "band_pairs": int(np.triu(band_pairs(params), 1).sum()), "dimensions": dims}


# ---- a space with one dimension fixed --------------------------------------------------------


def _pool(space: SearchSpace, *, seed: int, pool_size: int) -> list[ArchConfig]:
    """Distinct feasible configs of ``space`` sorted by (params, arch_id)."""
    if space.size() <= ENUMERATE_LIMIT:
        candidates = list(space.enumerate())
    else:
        candidates = space.sample_random(pool_size, seed=seed)
    unique: dict[str, ArchConfig] = {}
    for cfg in candidates:
        if space.satisfies(cfg):
            unique.setdefault(cfg.arch_id, cfg)
    return sorted(unique.values(), key=lambda c: (count_params(c), c.arch_id))


def _nearest(pool: Sequence[ArchConfig], target: float, used: set[str], rng: random.Random) -> ArchConfig | None:
    """An unused config of ``pool`` nearest to ``target`` params (log scale); ties broken at random."""
    best: list[ArchConfig] = []
    best_d = math.inf
    for cfg in pool:
        if cfg.arch_id in used:
            continue
        d = abs(math.log(count_params(cfg) / target))
        if d < best_d - 1e-12:
            best, best_d = [cfg], d
        elif abs(d - best_d) <= 1e-12:
            best.append(cfg)
    return rng.choice(best) if best else None


def _fix_field(space: SearchSpace, key: str) -> str:
    for dim in DIMENSIONS:
        if dim.name == key and space.family in dim.families:
            if dim.per_block:
                raise ConfigError(f"--fix {key}: only a dimension with one value per net can be fixed "
                                  "(e.g. global_skip, res_scale, n_feats)")
            return dim.field
    allowed = ", ".join(d.name for d in DIMENSIONS if space.family in d.families and not d.per_block)
    raise ConfigError(f"--fix {key}: unknown dimension; allowed: {allowed}")


def fixed_variant(space: SearchSpace, fix: Mapping[str, Any]) -> SearchSpace:
    """``space`` with each dimension of ``fix`` fixed at its value (named ``SPACE[key=value]``)."""
    params = dict(space.params)
    for key, value in fix.items():
        _fix_field(space, key)
        params[key] = ParamSpec(key, (value,))
    label = ",".join(f"{k}={v}" for k, v in fix.items())
    return dataclasses.replace(space, name=f"{space.name}[{label}]", params=params)


def variant_sample(picks: Sequence[ArchConfig], variant: SearchSpace, fix: Mapping[str, Any], *,
                   seed: int = 0, pool_size: int = 4000) -> list[ArchConfig]:
    """The configs of ``picks`` with ``fix`` forced, as configs of ``variant``; a duplicate or a
    config outside ``variant`` is replaced by the unused one nearest by parameters."""
    fields = {_fix_field(variant, k): v for k, v in fix.items()}
    pool = _pool(variant, seed=seed, pool_size=pool_size)
    rng = random.Random(seed)
    used: set[str] = set()
    out = []
    for cfg in picks:
        try:
            forced: ArchConfig | None = cfg.replace(**fields)
        except (ConfigError, ValueError):
            forced = None
        if forced is None or forced.arch_id in used or variant.params_of(forced) is None \
                or not variant.satisfies(forced):
            forced = _nearest(pool, count_params(cfg), used, rng)
            if forced is None:
                raise ConfigError(f"space {variant.name!r} has fewer than {len(picks)} feasible configs")
        used.add(forced.arch_id)
        out.append(forced)
    return sorted(out, key=lambda c: (count_params(c), c.arch_id))
