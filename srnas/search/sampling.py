"""Samplers and pruners of a search, built from its settings.

`DistinctSampler` wraps Optuna's sampler (TPE, random, NSGA-II, GP) so that it proposes each
architecture once: it draws a whole config when a trial starts (the base sampler's joint
proposal, completed parameter by parameter with its independent sampling), and when that config
was seen already (trained, running, infeasible or queued at this study's fidelity) it asks the
base sampler again, up to `REDRAWS` times, then takes the unseen config nearest to the last
proposal (fewest parameters changed; the whole space where it can be enumerated, else a random
pool). A proposal is therefore never a repeat while the space holds unseen configs, and the
study's history, what the base sampler learns from, holds each architecture once. How a trial's
config was found is recorded in the trial's system attribute ``srnas:proposal``
(``sampler``, ``redraw N`` or ``nearest unseen``).

Pruning: ``asha`` (the default) is successive halving with its first rung at the proxy's
measured ``first_rung`` and reduction factor 3; one bracket, so the sampler sees every trial
(Optuna gives a sampler under ``hyperband`` only the trials of the same bracket).
"""

from __future__ import annotations

import dataclasses
import random
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import CategoricalDistribution

from srnas.space.choosers import FixedChooser
from srnas.space.search_space import SearchSpace
from srnas.optuna_seams import storage_of, trial_id_of

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.trial import FrozenTrial

    from srnas.search.settings import SearchSettings
    from srnas.train.schedules import ProxySchedule

#: Extra proposals asked of the base sampler before the nearest unseen config is taken.
REDRAWS = 8
#: Spaces up to this size are enumerated for the nearest unseen config; larger ones sampled.
ENUMERATE_LIMIT = 50_000
#: Random configs drawn as the candidate pool of a larger space.
POOL = 4000
#: TPE's random start-up trials (counted over the whole study: one bracket under ``asha``).
STARTUP_TRIALS = 10
PROPOSAL_ATTR = "srnas:proposal"
REDUCTION_FACTOR = 3


def make_sampler(settings: "SearchSettings", space: SearchSpace | None = None) -> "optuna.samplers.BaseSampler":
    """The settings' sampler; wrapped in `DistinctSampler` when ``space`` is given."""
    seed = settings.seed
    base: optuna.samplers.BaseSampler
    if settings.sampler == "tpe":
        # group=True: the per-block kernels (conditional on the depth) are modelled jointly too.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            base = optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True,
                                              n_startup_trials=STARTUP_TRIALS)
    elif settings.sampler == "random":
        base = optuna.samplers.RandomSampler(seed=seed)
    elif settings.sampler == "nsga2":
        base = optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, settings.budget // 4)))
    else:
        base = optuna.samplers.GPSampler(seed=seed)
    return base if space is None else DistinctSampler(base, space, seed=seed)


def make_sampler_for_worker(settings: "SearchSettings", worker_id: int,
                            space: SearchSpace | None = None) -> "optuna.samplers.BaseSampler":
    """Each worker's sampler gets its own seed (same seeds would propose the same configs)."""
    if settings.seed is None or worker_id == 0:
        return make_sampler(settings, space)
    return make_sampler(dataclasses.replace(settings, seed=settings.seed + 7919 * worker_id), space)


def make_pruner(settings: "SearchSettings", schedule: "ProxySchedule") -> "optuna.pruners.BasePruner":
    kind = settings.effective_pruner
    if kind == "none":
        return optuna.pruners.NopPruner()
    first = schedule.rungs_from()
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=first)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=first, max_resource=schedule.updates,
                                              reduction_factor=REDUCTION_FACTOR)
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=first, reduction_factor=REDUCTION_FACTOR)


def _distance(a: Mapping[str, Any], b: Mapping[str, Any]) -> int:
    """Parameters that differ between two assignments (one present in only one counts too)."""
    return sum(1 for k in set(a) | set(b) if a.get(k, object()) != b.get(k, object()))


class DistinctSampler(optuna.samplers.BaseSampler):
    """A sampler that proposes each architecture of ``space`` once (see the module docstring).

    It implements Optuna's `BaseSampler` interface by delegation: relative sampling covers every
    parameter of the space (the flat set NNI also uses), so a trial's whole config is known, and
    checked against the study, before anything is suggested.
    """

    def __init__(self, base: "optuna.samplers.BaseSampler", space: SearchSpace, *, seed: int | None = None) -> None:
        self.base = base
        self.space = space
        self._rng = random.Random(seed)
        self._flat = {name: CategoricalDistribution(list(choices))
                      for name, choices in space.flat_choices().items() if len(choices) > 1}
        self._pool: list[tuple[str, dict[str, Any]]] | None = None

    # ---- BaseSampler ----------------------------------------------------------------------

    def __str__(self) -> str:
        return f"DistinctSampler({self.base})"

    def infer_relative_search_space(self, study: "optuna.Study", trial: "FrozenTrial") -> dict[str, "BaseDistribution"]:
        return dict(self._flat)

    def sample_relative(self, study: "optuna.Study", trial: "FrozenTrial",
                        search_space: dict[str, "BaseDistribution"]) -> dict[str, Any]:
        if not self._flat:
            return {}
        seen = self.seen(study, exclude=trial.number)
        params: dict[str, Any] = {}
        for attempt in range(REDRAWS + 1):
            params = self._propose(study, trial)
            if self._arch(params) not in seen:
                self._note(study, trial, "sampler" if attempt == 0 else f"redraw {attempt}")
                return params
        nearest = self._nearest_unseen(params, seen)
        if nearest is None:  # every config of the space was proposed: the repeat is answered as one
            self._note(study, trial, "space exhausted")
            return params
        self._note(study, trial, "nearest unseen")
        return nearest

    def sample_independent(self, study: "optuna.Study", trial: "FrozenTrial", param_name: str,
                           param_distribution: "BaseDistribution") -> Any:
        return self.base.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: "optuna.Study", trial: "FrozenTrial") -> None:
        self.base.before_trial(study, trial)

    def after_trial(self, study: "optuna.Study", trial: "FrozenTrial", state: Any, values: Sequence[float] | None) -> None:
        self.base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()
        self._rng.seed()

    # ---- proposals ------------------------------------------------------------------------

    def _propose(self, study: "optuna.Study", trial: "FrozenTrial") -> dict[str, Any]:
        """One whole assignment from the base sampler: its joint proposal, the rest drawn one by
        one with its independent sampling."""
        space = self.base.infer_relative_search_space(study, trial)
        params = dict(self.base.sample_relative(study, trial, space)) if space else {}
        for name, dist in self._flat.items():
            if name not in params:
                params[name] = self.base.sample_independent(study, trial, name, dist)
        return {k: v for k, v in params.items() if k in self._flat}

    def _arch(self, params: Mapping[str, Any]) -> str:
        return self.space.config_from_flat(params).arch_id

    def seen(self, study: "optuna.Study", *, exclude: int | None = None) -> set[str]:
        """Architectures the study holds at its fidelity: trained, running, infeasible, repeats
        and queued ones (FAIL trials are retried or given up, not seen)."""
        out: set[str] = set()
        for t in study.get_trials(deepcopy=False):
            if t.number == exclude or t.state.name == "FAIL":
                continue
            arch = t.user_attrs.get("arch_id")
            if arch is None:
                params = {**t.system_attrs.get("fixed_params", {}), **t.params}
                try:
                    arch = self.space.sample(FixedChooser(params)).arch_id
                except (KeyError, ValueError):
                    continue  # asked but not sampled yet: its worker records the arch next
            out.add(str(arch))
        return out

    def _candidates(self) -> list[tuple[str, dict[str, Any]]]:
        """(arch_id, flat assignment) of every config (or of a random pool of a large space)."""
        if self._pool is None:
            configs = (self.space.enumerate() if self.space.size() <= ENUMERATE_LIMIT
                       else self.space.sample_random(POOL, seed=self._rng.randrange(2**31)))
            pool: dict[str, dict[str, Any]] = {}
            for cfg in configs:
                params = self.space.params_of(cfg)
                if params is not None and self.space.satisfies(cfg):
                    pool.setdefault(cfg.arch_id, {k: v for k, v in params.items() if k in self._flat})
            self._pool = list(pool.items())
        return self._pool

    def _nearest_unseen(self, params: Mapping[str, Any], seen: set[str]) -> dict[str, Any] | None:
        """The unseen config whose assignment differs from ``params`` in fewest parameters (ties
        at random), as a whole flat assignment; None when every config was seen."""
        used = {k: v for k, v in params.items()}
        mine = self.space.params_of(self.space.config_from_flat(params)) or used
        best: list[dict[str, Any]] = []
        best_d = None
        for arch, cand in self._candidates():
            if arch in seen:
                continue
            d = _distance({k: v for k, v in mine.items() if k in self._flat}, cand)
            if best_d is None or d < best_d:
                best, best_d = [cand], d
            elif d == best_d:
                best.append(cand)
        if not best:
            return None
        pick = self._rng.choice(best)
        return {**used, **pick}  # unused conditional values stay as proposed

    @staticmethod
    def _note(study: "optuna.Study", trial: "FrozenTrial", how: str) -> None:
        storage_of(study).set_trial_system_attr(trial_id_of(trial), PROPOSAL_ATTR, how)
