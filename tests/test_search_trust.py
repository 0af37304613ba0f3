"""Search bookkeeping you can trust: a net that reached its last evaluation is COMPLETE, the
budget counts distinct architectures, an exhausted space ends cleanly, a changed space or
proxy is refused on resume, and Pareto sets hold every net trained to full fidelity."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from srnas.cli import main
from srnas.outcomes import count_trials, is_repeat, pareto_mask
from srnas.search.session import Session
from srnas.search.settings import SearchSettings

optuna.logging.set_verbosity(optuna.logging.WARNING)

FAST = ["--no-progress", "--heartbeat", "2", "--workers", "1"]


def _study(root: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{root / name / 'study.db'}")


class AlwaysPrune(optuna.pruners.BasePruner):
    """A pruner that says prune at every report."""

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return True


def test_a_trial_that_reaches_its_last_evaluation_is_complete(trials_dir: Path) -> None:
    settings = SearchSettings(confirm=0, study="last", budget=2, proxy="tiny@20", seed=1, workers=1, devices=("cpu",))
    session = Session.create(settings)
    session.study.pruner = AlwaysPrune()
    runner = session.trial_runner(device="cpu", engine="optuna")
    # One evaluation (the last): never pruned, whatever the pruner says.
    trial = session.study.ask()
    outcome = runner.run(trial, session.space.sample(trial), prune=True)
    assert outcome.state == "complete"
    # Two evaluations: pruned at the first (an intermediate rung) only.
    longer = Session.create(SearchSettings(confirm=0, study="last2", budget=2, proxy="tiny@40", seed=1, workers=1))
    longer.study.pruner = AlwaysPrune()
    runner = longer.trial_runner(device="cpu", engine="optuna")
    object.__setattr__(runner.objective, "schedule", longer.schedule.replace(eval_every=20))
    trial = longer.study.ask()
    outcome = runner.run(trial, longer.space.sample(trial), prune=True)
    (t,) = [t for t in longer.study.get_trials() if t.number == trial.number]
    assert outcome.state == "pruned" and t.state == TrialState.PRUNED and max(t.intermediate_values) == 20


def test_repeats_do_not_count_and_add_no_observation(trials_dir: Path) -> None:
    settings = SearchSettings(confirm=0, study="rep", budget=3, proxy="tiny@20", seed=0, pruner="none", workers=1)
    session = Session.create(settings)
    params = session.space.params_of(session.space.sample_random(1, seed=5)[0])
    for _ in range(3):
        session.study.enqueue_trial(params)
    assert main(["search", "--confirm", "0", "--budget", "3", "--study", "rep", "--proxy", "tiny@20", "--seed", "0",
                 "--pruner", "none", *FAST]) == 0
    study = _study(trials_dir, "rep")
    counts = count_trials(study.get_trials())
    assert counts.finished == 3 and counts.repeats == 2
    repeats = [t for t in study.get_trials() if is_repeat(t)]
    # The sampler's history holds the architecture once: the repeats end FAIL (no sampler reads
    # FAIL trials), with the known result recorded for people, not told as a value.
    assert len(repeats) == 2 and all(t.state == TrialState.FAIL and t.values is None for t in repeats)
    first = min((t for t in study.get_trials() if t.params == params), key=lambda t: t.number)
    assert first.state == TrialState.COMPLETE
    assert all(t.user_attrs["psnr"] == first.values[0] and t.params == params for t in repeats)
    history = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING))
    assert sum(1 for t in history if t.params == params) == 1
    assert len({t.user_attrs["arch_id"] for t in study.get_trials() if t.state == TrialState.COMPLETE
                and not is_repeat(t)}) == 3


def test_an_exhausted_space_ends_the_search_with_a_line(trials_dir: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    space = tmp_path / "two.yaml"
    space.write_text("name: two\nparameters:\n  n_resblocks: [1]\n  n_feats: [4, 8]\n  global_skip: bicubic\n")
    assert main(["search", "--confirm", "0", "--space", str(space), "--budget", "5", "--study", "two", "--proxy", "tiny@10",
                 "--sampler", "random", "--seed", "0", *FAST]) == 0
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert "space exhausted: all 2 configs of space 'two' were proposed" in err
    assert count_trials(_study(trials_dir, "two").get_trials()).finished == 2


def test_a_changed_space_or_proxy_is_refused_naming_the_change(trials_dir: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    space = tmp_path / "s.yaml"
    space.write_text("name: s\nparameters:\n  n_resblocks: [1, 2]\n  n_feats: [4, 8]\n  global_skip: bicubic\n")
    base = ["search", "--confirm", "0", "--space", str(space), "--study", "ch", "--seed", "0", *FAST]
    assert main([*base, "--budget", "1", "--proxy", "tiny@10"]) == 0
    capsys.readouterr()
    assert main([*base, "--budget", "2", "--proxy", "tiny@12"]) == 2
    err = capsys.readouterr().err.strip()
    assert "proxy tiny@10 (now tiny@12)" in err and "--study NEW" in err and "\n" not in err
    space.write_text("name: s\nparameters:\n  n_resblocks: [1, 2]\n  n_feats: [4, 8, 12]\n  global_skip: bicubic\n")
    assert main([*base, "--budget", "2", "--proxy", "tiny@10"]) == 2
    err = capsys.readouterr().err.strip()
    assert "parameters.n_feats [4, 8] (now [4, 8, 12])" in err and "\n" not in err
    # Nothing was started: the study still holds its one trial.
    assert len(_study(trials_dir, "ch").get_trials()) == 1
    # Same proxy name, another definition (a study recorded when tiny scored 4 images): the
    # fields that changed are named, not the fidelity hashes.
    space.write_text("name: s\nparameters:\n  n_resblocks: [1, 2]\n  n_feats: [4, 8]\n  global_skip: bicubic\n")
    study = _study(trials_dir, "ch")
    study.set_user_attr("schedule", {**study.user_attrs["schedule"], "val_images": 4})
    from srnas.train.schedules import get_schedule

    study.set_user_attr("fidelity", get_schedule("tiny-step@10").fidelity_id)
    assert main([*base, "--budget", "2", "--proxy", "tiny@10"]) == 2
    err = capsys.readouterr().err.strip()
    assert "proxy tiny@10 is defined differently now (val_images 4 -> 1)" in err and "\n" not in err
    assert main([*base, "--budget", "2", "--proxy", "tiny-step@10"]) == 0  # which resumes it
    assert count_trials(_study(trials_dir, "ch").get_trials()).finished == 2


def test_an_already_reached_budget_says_so(trials_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["search", "--confirm", "0", "--study", "done", "--proxy", "tiny@10", "--seed", "0", *FAST]
    assert main([*argv, "--budget", "2"]) == 0
    capsys.readouterr()
    assert main([*argv, "--budget", "1"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "already holds 2 distinct architectures (budget 1): nothing to do" in err and "--budget N" in err


def test_a_study_written_before_the_first_release_is_refused_in_one_line(
        trials_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """srnas 0.1.0 reads no study that a development version before it wrote (one without the
    identity every release records): the search and a worker refuse it before training."""
    argv = ["search", "--confirm", "0", "--study", "old", "--proxy", "tiny@10", "--seed", "0", "--budget", "2", *FAST]
    url = f"sqlite:///{trials_dir / 'old' / 'study.db'}"
    (trials_dir / "old").mkdir(parents=True)
    study = optuna.create_study(study_name="old", storage=url, direction="maximize")
    for key, value in {"srnas": 1, "space": "tiny", "objectives": ["psnr"], "proxy": "tiny@10", "data": "demo"}.items():
        study.set_user_attr(key, value)  # what a development version recorded: no canonical space, no fidelity
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "study 'old' was written by a development version of srnas before 0.1.0" in err, err
    assert "space_canonical" in err and "--study NEW" in err and "\n" not in err
    assert main(["worker", "--study", "old", "--no-progress"]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    assert optuna.load_study(study_name="old", storage=url).get_trials() == []


def test_bicubic_is_the_reference_point_of_pareto_sets() -> None:
    # (params, PSNR): the smallest net is below bicubic (30.59), so it is never on the front.
    assert pareto_mask([1000, 5000, 9000], [28.56, 31.0, 30.9], reference=30.59) == [False, True, False]
