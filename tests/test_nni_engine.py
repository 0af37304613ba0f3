"""The NNI engine: the YAML space as an NNI model space, NNI trials recorded in the Optuna study
with the same params, attributes and artifact as Optuna trials, and a 4-trial in-process
search end to end (tiny space, proxy cut short, demo data)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from srnas.arch.config import ArchConfig
from srnas.errors import ConfigError, MissingExtraError, TrainingError
from srnas.search import nni_engine
from srnas.search.objective import TRIAL_ATTRS
from srnas.search.session import Session
from srnas.search.settings import SearchSettings
from srnas.space import SearchSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)

PROXY = "tiny@10"


@pytest.fixture()
def trials_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "trials"
    monkeypatch.setenv("SRNAS_TRIALS_DIR", str(root))
    return root


@pytest.fixture()
def nni_loaded() -> None:
    """NNI imported the way the engine imports it (its warnings about torch names silenced)."""
    pytest.importorskip("nni")
    nni_engine._import_nni()


def _random_sample(space: SearchSpace, rng: random.Random) -> dict[str, Any]:
    return {name: rng.choice(choices) for name, choices in space.searchable_choices().items()}


# ---- the space, without NNI --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tiny", "edsr", "mdsr", "lightweight"])
def test_samples_map_to_configs_of_the_space(name: str) -> None:
    space = SearchSpace.load(name)
    choices = space.flat_choices()
    rng = random.Random(0)
    for _ in range(30):
        sample = _random_sample(space, rng)
        cfg = space.config_from_flat(sample)
        params = space.params_of(cfg)
        assert params is not None
        # Recorded params are exactly what an Optuna trial sampling this config would hold.
        assert set(params) <= set(choices)
        assert all(params[k] == sample[k] for k in params if k in sample)
        dists = nni_engine.optuna_distributions(space, params)
        assert all(isinstance(d, CategoricalDistribution) and params[k] in d.choices for k, d in dists.items())
        assert space.sample(optuna.trial.FixedTrial(params)) == cfg


def test_unused_conditional_choices_are_ignored() -> None:
    tiny = SearchSpace.load("tiny")
    base = {"n_resblocks": 2, "n_feats": 8, "res_scale": 1.0, "global_skip": "bicubic",
            "kernel_size_b0": 5, "kernel_size_b1": 3, "kernel_size_b2": 3, "kernel_size_b3": 3}
    cfg = tiny.config_from_flat(base)
    assert cfg.kernel_sizes == (5, 3)
    assert tiny.config_from_flat({**base, "kernel_size_b2": 5, "kernel_size_b3": 5}) == cfg
    assert sorted(k for k in tiny.params_of(cfg) if k.startswith("kernel")) == ["kernel_size_b0", "kernel_size_b1"]

    mdsr = SearchSpace.load("mdsr")
    sample = _random_sample(mdsr, random.Random(1))
    headless = mdsr.config_from_flat({**sample, "head_blocks": 0, "head_kernel": 3})
    assert headless == mdsr.config_from_flat({**sample, "head_blocks": 0, "head_kernel": 5})
    assert "head_kernel" not in mdsr.params_of(headless)
    with pytest.raises(ConfigError, match="n_feats"):
        tiny.config_from_flat({k: v for k, v in base.items() if k != "n_feats"})


def test_import_does_not_load_nni() -> None:
    code = "import sys, srnas.search.nni_engine; sys.exit(1 if 'nni' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_missing_nni_is_a_missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nni", None)  # `import nni` raises ImportError
    SearchSettings(engine="nni", budget=2)  # valid settings: the extra is what is missing
    with pytest.raises(MissingExtraError, match=r"pip install 'srnas\[nni\]'"):
        nni_engine.NNIEngine().run(None, console=None, progress=False)  # type: ignore[arg-type]


@pytest.mark.parametrize(("change", "message"), [
    ({"objectives": "psnr,params"}, "single-objective"),
    ({"nni_strategy": "darts"}, "allowed: evolution, random, tpe"),
    ({"workers": 2}, "one trial at a time"),
])
def test_settings_nni_cannot_honour_are_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        nni_engine.NNIEngine().validate(SearchSettings(engine="nni", **change))


# ---- the NNI model space -------------------------------------------------------------------------


@pytest.mark.slow
def test_model_space_mirrors_the_yaml_space(nni_loaded: None) -> None:
    import torch
    from nni.nas.evaluator import FunctionalEvaluator
    from nni.nas.space import SimplifiedModelSpace

    space = SearchSpace.load("tiny")
    model_space = nni_engine.SRArchSpace(space=str(space.source))
    mutables = model_space.simplify()
    assert {k: tuple(m.values) for k, m in mutables.items()} == space.searchable_choices()

    sample = _random_sample(space, random.Random(3))
    # The format NNI's experiments use: re-created from its init arguments under the sample.
    executable = SimplifiedModelSpace.from_model(
        model_space, FunctionalEvaluator(nni_engine.evaluate_model, settings="{}")).freeze(sample)
    model = executable.executable_model()
    assert model.config == space.config_from_flat(sample)
    assert model_space.freeze(sample).config == model.config
    assert model(torch.rand(1, 3, 8, 8) * 255).shape == (1, 3, 16, 16)

    # Web-UI mode sends the frozen model to a trial subprocess, which imports the class by name.
    import nni

    code = ("import sys, nni; m = nni.load(sys.stdin.read()).executable_model(); "
            "print(m.config.arch_id, m.sample == " + repr(sample) + ")")
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], input=nni.dump(executable),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [model.config.arch_id, "True"]


def test_strategies(nni_loaded: None) -> None:
    from nni.nas import strategy

    evo = nni_engine.make_strategy("evolution", budget=200, seed=1, n_mutables=8)
    assert isinstance(evo, strategy.RegularizedEvolution)
    assert (evo.population_size, evo.sample_size, evo.mutation_prob) == (50, 12, 1 / 8)
    assert isinstance(nni_engine.make_strategy("random", budget=4, seed=1, n_mutables=8), strategy.Random)
    tpe = nni_engine.make_strategy("tpe", budget=4, seed=1, n_mutables=8)
    assert isinstance(tpe, strategy.TPE) and tpe.tuner.optimize_mode.value == "maximize"
    with pytest.raises(ConfigError, match="unknown strategy"):
        nni_engine.make_strategy("grid", budget=4, seed=1, n_mutables=8)


def test_failed_subprocess_trials_stop_the_search(nni_loaded: None) -> None:
    from types import SimpleNamespace

    from nni.nas.space import ModelStatus

    from srnas.search.trial import MAX_CONSECUTIVE_FAILURES

    budget = nni_engine._StudyBudget(None, timeout=None, recorder=None)
    budget.experiment_id = "abc"
    for status in [ModelStatus.Failed] * (MAX_CONSECUTIVE_FAILURES - 1) + [ModelStatus.Trained]:
        budget.on_training_end(SimpleNamespace(status=status))
    assert budget.error is None and not budget.failures_in_a_row
    for _ in range(MAX_CONSECUTIVE_FAILURES):
        budget.on_training_end(SimpleNamespace(status=ModelStatus.Failed))
    assert "trials in a row failed" in str(budget.error) and "nni-experiments/abc/trials" in str(budget.error)
    assert not budget.available()


# ---- recording trials in the study ------------------------------------------------------------


@pytest.mark.slow
def test_recorder_writes_reuses_and_fails_like_the_optuna_engine(trials_dir: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    settings = SearchSettings(confirm=0, study="rec", budget=3, proxy=PROXY, engine="nni", seed=3, devices=("cpu",),
                              max_params=20_000)
    session = Session.create(settings)
    study, space = session.study, session.space
    recorder = nni_engine.TrialRecorder(session)
    recorder.experiment_id = "exp"
    reports: list[tuple[str, float]] = []
    report = {"report_intermediate": lambda v: reports.append(("step", v)),
              "report_final": lambda v: reports.append(("final", v))}
    small = space.config_from_flat({
        "n_resblocks": 1, "n_feats": 8, "res_scale": 1.0, "global_skip": "bicubic",
        "kernel_size_b0": 3, "kernel_size_b1": 5, "kernel_size_b2": 5, "kernel_size_b3": 5})

    recorder.evaluate(small, **report)
    recorder.evaluate(small.replace(), **report)  # the same architecture again
    big = small.replace(n_resblocks=4, n_feats=32, kernel_sizes=3)
    recorder.evaluate(big, **report)  # over max_params: recorded, never trained

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise TrainingError("loss became NaN at update 3")

    monkeypatch.setattr(recorder.runner.objective, "evaluate", broken)
    recorder.evaluate(small.replace(n_feats=12), **report)

    first, reused, infeasible, failed = study.get_trials()[1:]  # trial 0: the space's preset, waiting
    assert study.trials[0].state == TrialState.WAITING
    assert first.state == TrialState.COMPLETE
    assert not [k for k in TRIAL_ATTRS if k not in first.user_attrs]
    assert first.user_attrs["engine"] == "nni" and first.user_attrs["nni_trial"] == "exp/1"
    assert first.user_attrs["seed"] == 3 * 100_003 + first.number
    assert first.params == space.params_of(small) and first.values == [first.user_attrs["psnr"]]
    assert first.intermediate_values == {10: first.user_attrs["psnr"]}
    assert first.system_attrs["constraints:max_params"] < 0

    # A repeat adds no observation (FAIL) but keeps the known result; NNI is told it all the same.
    assert reused.state == TrialState.FAIL and reused.user_attrs["reused_from"] == first.number
    assert reused.user_attrs["psnr"] == first.values[0] and reused.user_attrs["engine"] == "nni"
    assert reused.user_attrs["nni_trial"] == "exp/2"

    # Infeasible: COMPLETE with its constraint values (constrained samplers see it), never trained.
    assert infeasible.state == TrialState.COMPLETE and "max_params exceeded" in infeasible.user_attrs["infeasible"]
    assert infeasible.params == space.params_of(big) and "psnr" not in infeasible.user_attrs
    assert infeasible.system_attrs["constraints:max_params"] > 0

    assert failed.state == TrialState.FAIL and "NaN" in failed.user_attrs["error"]
    psnr = first.user_attrs["psnr"]
    assert reports == [("step", psnr), ("final", psnr), ("final", psnr), ("final", nni_engine.INFEASIBLE_SCORE)]

    from optuna.artifacts import get_all_artifact_meta

    (meta,) = get_all_artifact_meta(first, storage=study._storage)
    assert meta.mimetype == "image/png" and first.user_attrs["sample_artifact"] == meta.artifact_id
    assert (trials_dir / "rec" / "artifacts" / meta.artifact_id).is_file()


# ---- end to end ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_nni_search_fills_the_optuna_study(trials_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from srnas.cli import main

    # --max-params 60000 makes the tiny space's preset (122K params) infeasible: recorded, not counted.
    command = ["search", "--confirm", "0", "--engine", "nni", "--budget", "4", "--study", "nni4", "--seed", "0",
               "--proxy", PROXY, "--max-params", "60000", "--no-progress"]
    assert main(command) == 0
    study = optuna.load_study(study_name="nni4", storage=f"sqlite:///{trials_dir / 'nni4' / 'study.db'}")
    space = SearchSpace.load("tiny")
    trials = study.get_trials()
    assert trials[0].user_attrs["preset"] == "tiny-default" and trials[0].state == TrialState.COMPLETE
    assert "infeasible" in trials[0].user_attrs and trials[0].system_attrs["constraints:max_params"] > 0
    complete = [t for t in trials if t.state == TrialState.COMPLETE and "infeasible" not in t.user_attrs]
    assert len({t.user_attrs["arch_id"] for t in complete}) == 4  # the budget counts architectures
    assert all(t.state == TrialState.COMPLETE or (t.state == TrialState.FAIL and "reused_from" in t.user_attrs)
               for t in trials)

    from optuna.artifacts import get_all_artifact_meta

    experiments = set()
    for t in complete:
        attrs = t.user_attrs
        assert not [k for k in TRIAL_ATTRS if k not in attrs], t.number
        assert attrs["engine"] == "nni" and attrs["space"] == "tiny" and attrs["protocol"] == "benchmark"
        assert attrs["psnr_curve"][-1][0] == 10 and t.values[0] == pytest.approx(attrs["psnr"])
        assert attrs["params"] <= 60_000
        cfg = ArchConfig.from_dict(attrs["config"])
        assert cfg.arch_id == attrs["arch_id"]
        assert t.params == space.params_of(cfg)  # exactly the config that was trained
        choices = space.flat_choices()
        assert t.distributions == {k: CategoricalDistribution(list(choices[k])) for k in t.params}
        experiment, _, index = attrs["nni_trial"].partition("/")
        experiments.add(experiment)
        assert index.isdigit()
        if "reused_from" not in attrs:
            assert t.intermediate_values
            (meta,) = get_all_artifact_meta(t, storage=study._storage)
            assert (trials_dir / "nni4" / "artifacts" / meta.artifact_id).is_file()
    # One NNI experiment, written under HOME (a temporary folder in the tests).
    (experiment,) = experiments
    assert (Path(os.environ["HOME"]) / "nni-experiments" / experiment).is_dir()
    out = capsys.readouterr()
    assert "of 4 architectures trained to full fidelity" in " ".join(out.out.split())
    assert "strategy evolution (RegularizedEvolution)" in out.err
    assert "INFO" not in out.out  # NNI's own log stays in its log file

    # The same command again resumes: the budget is met, nothing runs.
    assert main(command) == 0
    assert len(study.get_trials()) == len(trials)
    assert "already holds 4 distinct architectures (budget 4): nothing to do" in " ".join(capsys.readouterr().err.split())
