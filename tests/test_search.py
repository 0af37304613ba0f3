"""The Optuna engine end to end on the demo data (tiny space, proxies cut short)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from srnas.cli import main
from srnas.search.objective import TRIAL_ATTRS

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.slow

#: Proxy updates per trial: what these tests check holds for any length (the recorded curve
#: ends at it), and training is nearly all of a trial's time.
UPDATES = 10
FAST = ["--proxy", f"tiny@{UPDATES}", "--no-progress", "--heartbeat", "2", "--workers", "1"]


@pytest.fixture()
def trials_dir(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "trials"
    monkeypatch.setenv("SRNAS_TRIALS_DIR", str(root))
    return root


def _study(root: Path, name: str, storage: str | None = None) -> optuna.Study:
    url = storage or f"sqlite:///{root / name / 'study.db'}"
    return optuna.load_study(study_name=name, storage=url)


def _finished(study: optuna.Study) -> list:
    """The trials that count towards the budget: one per architecture trained (not repeats)."""
    from srnas.outcomes import is_trained

    return [t for t in study.get_trials() if is_trained(t)]


def test_six_trial_search_records_everything(trials_dir: Path, capsys) -> None:
    assert main(["search", "--confirm", "0", "--budget", "6", "--study", "six", "--seed", "1", *FAST]) == 0
    study = _study(trials_dir, "six")
    finished = _finished(study)
    assert len(finished) == 6
    complete = [t for t in finished if t.state == TrialState.COMPLETE]
    assert complete
    for t in complete:
        missing = [k for k in TRIAL_ATTRS if k not in t.user_attrs]
        assert not missing, (t.number, missing)
        assert t.user_attrs["protocol"] == "benchmark"
        assert t.user_attrs["psnr_curve"][-1][0] == UPDATES
        assert t.values[0] == pytest.approx(t.user_attrs["psnr"])
    # The preset of the tiny space ran first.
    assert study.trials[0].user_attrs.get("preset") == "tiny-default"
    # Every trained trial has its SR sample artifact.
    from optuna.artifacts import get_all_artifact_meta

    trained = [t for t in complete if "reused_from" not in t.user_attrs]
    assert all(get_all_artifact_meta(t, storage=study._storage) for t in trained)
    assert any((trials_dir / "six" / "artifacts").iterdir())
    out = capsys.readouterr().out
    assert "Best" in out and "srnas dashboard --study six" in out
    # Re-running the same command resumes: the budget is already met, nothing new runs.
    assert main(["search", "--confirm", "0", "--budget", "6", "--study", "six", "--seed", "1", *FAST]) == 0
    assert len(_study(trials_dir, "six").trials) == len(study.trials)


def test_single_worker_cpu_search_is_reproducible(trials_dir: Path) -> None:
    for name in ("a", "b"):
        assert main(["search", "--confirm", "0", "--budget", "3", "--study", name, "--seed", "7", "--sampler", "random",
                     "--pruner", "none", *FAST]) == 0
    a, b = _study(trials_dir, "a"), _study(trials_dir, "b")
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert [t.values for t in a.trials] == [t.values for t in b.trials]


def test_multi_objective_search_yields_pareto_set(trials_dir: Path, capsys) -> None:
    assert main(["search", "--confirm", "0", "--budget", "5", "--study", "mo", "--objectives", "psnr,params",
                 "--sampler", "nsga2", "--seed", "0", *FAST]) == 0
    study = _study(trials_dir, "mo")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    pareto = study.best_trials
    assert pareto
    for t in pareto:
        assert t.values[1] == t.user_attrs["params"]
    assert "Pareto set" in capsys.readouterr().out


def test_constraints_exclude_configs_without_training(trials_dir: Path) -> None:
    assert main(["search", "--confirm", "0", "--budget", "4", "--study", "capped", "--max-params", "40000",
                 "--sampler", "random", "--seed", "3", *FAST]) == 0
    study = _study(trials_dir, "capped")
    infeasible = [t for t in study.trials if "infeasible" in t.user_attrs]
    assert infeasible, "the random sampler should have drawn configs over the cap"
    for t in infeasible:
        assert t.user_attrs["params"] > 40000
        assert "psnr_curve" not in t.user_attrs and "wall_time_s" not in t.user_attrs
        assert t.constraints["max_params"] > 0
    for t in _finished(study):
        assert t.user_attrs["params"] <= 40000
    assert len(_finished(study)) == 4


def test_same_architecture_is_not_trained_twice(trials_dir: Path) -> None:
    from srnas.search.engines import run_search
    from srnas.search.session import Session
    from srnas.search.settings import SearchSettings

    settings = SearchSettings(confirm=0, study="dup", budget=3, proxy=f"tiny@{UPDATES}", seed=0, heartbeat=2, pruner="none",
                              workers=1)
    session = Session.create(settings)
    study, space = session.study, session.space
    params = space.params_of(space.sample_random(1, seed=5)[0])
    study.enqueue_trial(params)
    study.enqueue_trial(params)
    run_search(settings, progress=False)
    trials = [t for t in _study(trials_dir, "dup").trials if t.params == params]
    assert len(trials) == 2
    first, second = sorted(trials, key=lambda t: t.number)
    assert second.user_attrs["reused_from"] == first.number
    # The repeat adds no observation: it ends FAIL (no sampler learns from it) with the known result.
    assert first.state == TrialState.COMPLETE and second.state == TrialState.FAIL and second.values is None
    assert second.user_attrs["psnr"] == first.user_attrs["psnr"] == first.values[0]


def _run_two_workers(trials_dir: Path, name: str, storage: str | None, space: Path) -> optuna.Study:
    argv = ["search", "--confirm", "0", "--budget", "8", "--study", name, "--seed", "2", *FAST, "--workers", "2",
            "--space", str(space)]
    if storage:
        argv += ["--storage", storage]
    assert main(argv) == 0
    return _study(trials_dir, name, storage)


def test_two_workers_end_with_exact_budget(trials_dir: Path, small_space: Path) -> None:
    study = _run_two_workers(trials_dir, "two", None, small_space)
    assert len(_finished(study)) == 8
    assert not [t for t in study.trials if t.state in (TrialState.FAIL, TrialState.RUNNING)]
    assert len({t.user_attrs["worker"] for t in study.trials}) == 2


@pytest.mark.postgres
def test_two_workers_on_postgresql(trials_dir: Path, postgres_url: str, small_space: Path) -> None:
    url = postgres_url
    name = f"pg{os.getpid()}{int(time.time())}"
    study = _run_two_workers(trials_dir, name, url, small_space)
    assert len(_finished(study)) == 8
    assert not [t for t in study.trials if t.state in (TrialState.FAIL, TrialState.RUNNING)]
    optuna.delete_study(study_name=name, storage=url)


def _trial_to_kill(root: Path) -> int | None:
    """A RUNNING trial of study ``killed`` whose worker is recorded (a kill now fails it as
    "died"), once an earlier one is COMPLETE; None if there is none yet."""
    trials = _study(root, "killed").trials
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    running = [t for t in trials if t.state == TrialState.RUNNING and "worker" in t.user_attrs]
    return running[0].number if done and running else None


def test_killed_worker_trial_is_failed_and_budget_finished(trials_dir: Path, small_space: Path) -> None:
    args = ["search", "--confirm", "0", "--budget", "4", "--study", "killed", "--seed", "4", *FAST, "--space", str(small_space)]
    env = {**os.environ, "SRNAS_TRIALS_DIR": str(trials_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "srnas", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    db = trials_dir / "killed" / "study.db"
    deadline = time.monotonic() + 240
    killed_number = None
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            try:
                if not db.exists() or _trial_to_kill(trials_dir) is None:
                    continue
            except Exception:
                continue
            # Frozen, the search cannot finish the trial between this look and the kill: look again.
            os.kill(proc.pid, signal.SIGSTOP)
            try:
                killed_number = _trial_to_kill(trials_dir)
            except Exception:
                killed_number = None
            if killed_number is not None:
                os.kill(proc.pid, signal.SIGKILL)
                break
            os.kill(proc.pid, signal.SIGCONT)
    finally:
        if proc.poll() is None and killed_number is None:
            proc.kill()
        proc.wait()
    assert killed_number is not None, proc.stderr.read().decode()[-2000:]
    before = {t.number: t.values for t in _study(trials_dir, "killed").trials if t.state == TrialState.COMPLETE}
    assert before

    # The same command again finishes the budget.
    assert main(args) == 0
    study = _study(trials_dir, "killed")
    by_number = {t.number: t for t in study.trials}
    assert by_number[killed_number].state == TrialState.FAIL
    assert "died" in by_number[killed_number].user_attrs["error"]
    for number, values in before.items():
        assert by_number[number].values == values
    assert len(_finished(study)) == 4
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]


@pytest.mark.parametrize(("argv", "message"), [
    (["--space", "galaxy"], "unknown search space 'galaxy'"),
    (["--storage", "nonsense"], "invalid storage URL 'nonsense'"),
    (["--storage", "postgresql+psycopg://u:secret@127.0.0.1:9/none"], "cannot connect"),
    (["--budget", "0"], "--budget must be a positive integer"),
    (["--objectives", "params"], "--objectives must start with psnr"),
    (["--sampler", "cmaes"], "unknown sampler 'cmaes'"),
    (["--proxy", "tiny@x"], "expected NAME@UPDATES"),
])
def test_bad_input_one_line_nonzero_exit(trials_dir: Path, capsys, argv: list[str], message: str) -> None:
    assert main(["search", "--confirm", "0", "--study", "bad", "--no-progress", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert "secret" not in err


def test_data_folder_without_images(trials_dir: Path, tmp_path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    assert main(["search", "--confirm", "0", "--study", "nodata", "--data", str(empty), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert str(empty) in err and len(err.splitlines()) == 1
    assert not (trials_dir / "nodata" / "study.db").exists()


def test_short_search_on_the_mixed_block_space(trials_dir: Path) -> None:
    argv = ["search", "--confirm", "0", "--space", "mixed", "--budget", "2", "--study", "mix", "--seed", "3",
            "--max-params", "120000", "--proxy", f"tiny@{UPDATES}", "--no-progress", "--workers", "1", "--pruner", "none"]
    assert main(argv) == 0
    study = _study(trials_dir, "mix")
    finished = _finished(study)
    assert len(finished) == 2
    for t in finished:
        from srnas.arch.config import ArchConfig

        cfg = ArchConfig.from_dict(t.user_attrs["config"])
        assert t.user_attrs["params"] <= 120_000 and len(cfg.block) == cfg.n_resblocks
        assert any(k.startswith("block_s") for k in t.params)
    # The EDSR-baseline preset is over the cap: recorded infeasible, never trained.
    assert study.trials[0].user_attrs.get("preset") == "edsr-baseline" and "infeasible" in study.trials[0].user_attrs
