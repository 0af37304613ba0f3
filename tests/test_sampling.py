"""Samplers and pruners of a search, without training: the sampler's history holds each
architecture once however often its base proposes it, conditional parameters are modelled
jointly (TPE with group=True), infeasible configs reach samplers through Optuna's constraint API,
and the pruner's first rung is where the fidelity study measured the ranking to carry signal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from srnas.errors import ConfigError
from srnas.search.sampling import PROPOSAL_ATTR, DistinctSampler, make_pruner, make_sampler
from srnas.search.settings import SearchSettings
from srnas.space import SearchSpace
from srnas.train.schedules import PROXY_FIDELITIES, get_schedule

optuna.logging.set_verbosity(optuna.logging.WARNING)
ROOT = Path(__file__).resolve().parent.parent


class StuckSampler(optuna.samplers.RandomSampler):
    """A base sampler that proposes the same value of every parameter, every time."""

    def sample_independent(self, study: Any, trial: Any, name: str, distribution: Any) -> Any:
        return distribution.choices[0]


def _small_space() -> SearchSpace:
    return SearchSpace.from_dict({"name": "small", "parameters": {
        "n_resblocks": [1, 2], "n_feats": [8, 16], "kernel_size": {"choices": [3, 5], "per": "block"},
        "global_skip": "bicubic"}})


def _run(study: optuna.Study, space: SearchSpace, n: int) -> list[str]:
    archs = []
    for _ in range(n):
        trial = study.ask()
        cfg = space.sample(trial)
        trial.set_user_attr("arch_id", cfg.arch_id)
        study.tell(trial, float(cfg.n_feats + cfg.n_resblocks))
        archs.append(cfg.arch_id)
    return archs


def test_history_holds_each_architecture_once_however_often_proposed() -> None:
    space = _small_space()  # 2 x 2 x (2 + 4) ... 12 configs
    assert space.size() == 12
    study = optuna.create_study(direction="maximize", sampler=DistinctSampler(StuckSampler(), space, seed=0))
    archs = _run(study, space, 12)
    assert len(set(archs)) == 12  # the base proposed one config twelve times; the study holds twelve
    how = [t.system_attrs[PROPOSAL_ATTR] for t in study.trials]
    assert how[0] == "sampler" and set(how[1:]) == {"nearest unseen"}
    # Each replacement is a nearest neighbour of the proposal (one parameter changed where one was free).
    assert study.trials[1].params["n_resblocks"] == 1 or study.trials[1].params["n_feats"] == 8
    # Once every config was proposed the space is exhausted: the proposal is answered as a repeat.
    trial = study.ask()
    space.sample(trial)
    assert trial.study._storage.get_trial(trial._trial_id).system_attrs[PROPOSAL_ATTR] == "space exhausted"


def test_tpe_proposals_are_distinct_and_learn_from_every_trial() -> None:
    space = SearchSpace.load("tiny")
    settings = SearchSettings(seed=0)
    sampler = make_sampler(settings, space)
    assert isinstance(sampler, DistinctSampler) and isinstance(sampler.base, optuna.samplers.TPESampler)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    archs = _run(study, space, 40)
    assert len(set(archs)) == 40
    # Queued (enqueued) configs count as seen: the sampler never proposes them again.
    cfg = space.sample_random(1, seed=9)[0]
    study.enqueue_trial(space.params_of(cfg))
    assert cfg.arch_id in sampler.seen(study)


def test_conditional_parameters_are_sampled_jointly() -> None:
    space = SearchSpace.load("tiny")
    sampler = make_sampler(SearchSettings(seed=1), space)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    _run(study, space, 14)  # past TPE's 10 start-up trials, depths 1-4 seen
    trial = study._storage.get_trial(study.ask()._trial_id)
    joint = sampler.base.infer_relative_search_space(study, trial)
    # group=True: per-block kernels of deeper nets are in TPE's joint model, not drawn one by one.
    assert {"n_resblocks", "n_feats", "kernel_size_b0", "kernel_size_b3"} <= set(joint)
    plain = optuna.samplers.TPESampler(seed=1, multivariate=True).infer_relative_search_space(study, trial)
    assert "kernel_size_b3" not in plain  # without groups only the parameters every trial has


def test_infeasible_configs_reach_the_sampler_through_constraints(tmp_path: Path) -> None:
    from srnas.search.objective import Objective
    from srnas.search.trial import TrialRunner

    space = SearchSpace.load("tiny").constrained(max_params=20_000)
    schedule = get_schedule("tiny@10")
    study = optuna.create_study(direction="maximize", storage=f"sqlite:///{tmp_path / 's.db'}")
    objective = Objective(space, schedule, device="cpu")
    runner = TrialRunner(study, space, objective, artifacts=tmp_path / "art", seed=0, device="cpu",
                         worker={"worker": "test:1"})
    big = next(c for c in space.sample_random(50, seed=0) if not space.satisfies(c))
    trial = study.ask()
    outcome = runner.run(trial, space.sample(_Fixed(space.params_of(big))))
    t = study.trials[-1]
    assert outcome.state == "infeasible" and t.state == TrialState.COMPLETE  # COMPLETE: NSGA-II and GP see it
    assert t.constraints["max_params"] > 0 and "psnr_curve" not in t.user_attrs  # infeasible, never trained
    assert t.values[0] == pytest.approx(objective.bicubic_reference())  # a placeholder no result reads
    from srnas.outcomes import count_trials, results_of_record

    assert results_of_record([t]) == [] and count_trials([t]).infeasible == 1 and count_trials([t]).finished == 0


class _Fixed:
    def __init__(self, params: dict) -> None:
        self.params = params

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return self.params[name]


@pytest.mark.parametrize("space_name", ["tiny", "tiny-wide"])
def test_first_rung_equals_the_measured_value(space_name: str) -> None:
    space = SearchSpace.load(space_name)
    proxy = PROXY_FIDELITIES[space.proxy]
    study = json.loads((ROOT / "benchmarks" / f"fidelity-{space_name}" / "correlations.json").read_text())
    main = study["variants"]["searchable"]
    chosen_schedule = main["chosen_schedule"]
    # The space's default proxy is the design the fidelity study chose, trained and scored as measured.
    assert proxy.fidelity_id == get_schedule(chosen_schedule).replace(val_images=1).fidelity_id
    assert proxy.first_rung == main["first_rung"] is not None
    pruner = make_pruner(SearchSettings(), proxy)
    assert isinstance(pruner, optuna.pruners.SuccessiveHalvingPruner) and pruner._min_resource == main["first_rung"]
    # No rung before it: the pruner is never asked to stop a net earlier.
    assert proxy.rungs_from() == main["first_rung"] and main["first_rung"] in proxy.eval_points()


def test_first_rung_is_an_evaluation_point_and_not_part_of_the_fidelity() -> None:
    tiny = get_schedule("tiny-step")
    ruled = tiny.replace(first_rung=150)
    assert ruled.fidelity_id == tiny.fidelity_id and ruled.rungs_from() == 150 and tiny.rungs_from() == 50
    assert ruled.lengthened(2).first_rung == 300 and ruled.shortened(200).first_rung == 150
    assert ruled.shortened(100).first_rung is None  # past the end of a cut run: the first point again
    # Between evaluation points: pruning starts at the next one (and another interval keeps it valid).
    assert tiny.replace(first_rung=75).rungs_from() == 100
    assert ruled.replace(eval_every=300).rungs_from() == 300
    with pytest.raises(ConfigError, match=r"first_rung must be an update count in 1\.\.300"):
        tiny.replace(first_rung=301)
    hyperband = make_pruner(SearchSettings(pruner="hyperband"), ruled)
    assert isinstance(hyperband, optuna.pruners.HyperbandPruner)


def test_search_settings_check_the_new_options() -> None:
    assert SearchSettings().effective_pruner == "asha" and SearchSettings().confirm == 3
    for bad in ({"max_updates": 0}, {"confirm": -1}, {"confirm_seeds": 0}, {"max_updates": "9"}):
        with pytest.raises(ConfigError):
            SearchSettings(**bad)


def test_pruned_trials_record_their_time_split(tmp_path: Path) -> None:
    from srnas.search.objective import Objective
    from srnas.search.trial import TrialRunner

    class Always(optuna.pruners.BasePruner):
        def prune(self, study: Any, trial: Any) -> bool:
            return True

    space = SearchSpace.load("tiny")
    study = optuna.create_study(direction="maximize", pruner=Always())
    runner = TrialRunner(study, space, Objective(space, get_schedule("tiny@100"), device="cpu"),
                         artifacts=tmp_path / "art", seed=0, device="cpu", worker={"worker": "test:1"})
    cfg = space.sample_random(1, seed=3)[0]
    outcome = runner.run(study.ask(), cfg, prune=True)
    t = study.trials[-1]
    assert outcome.state == "pruned" and t.state == TrialState.PRUNED
    split = t.user_attrs["time_split"]
    assert set(split) == {"prepare", "train", "validate"} and split["train"] > 0 and split["validate"] > 0
    assert t.user_attrs["wall_time_s"] >= split["train"]
