"""Run files (``--run``/``--config``, ``--print-config``, a study's recorded settings reused on
resume), the Python API (``srnas.search``, ``srnas.retrain``, ``srnas.evaluate``; the CLI calls
the same functions), ``srnas studies`` and the JSON outputs, TensorBoard scalars of a retrain."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import srnas
from srnas.cli import main
from srnas.errors import ConfigError

FAST = {"proxy": "tiny@10", "workers": 1, "seed": 0, "devices": "cpu", "heartbeat": 2, "confirm": 0}
FAST_ARGS = ["--confirm", "0", "--proxy", "tiny@10", "--workers", "1", "--seed", "0", "--devices", "cpu", "--heartbeat", "2",
             "--no-progress"]


# ---- run files ------------------------------------------------------------------------------


def test_run_file_errors_name_file_and_line(trials_dir: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run.yaml"
    cases = [
        ("budget: 4\nmax_parms: 1000\n", "run.yaml:2: unknown key 'max_parms' (did you mean max_params?)"),
        ("study: x\nbudget: ten\n", "run.yaml:2: budget: expected an integer, got 'ten'"),
        ("workers: 1\ndevices: [cpu, 3]\n", "run.yaml:2: devices: expected a list"),
        ("- budget\n", "run.yaml:1: a run file is a mapping"),
        ("no-progress: maybe\n", "run.yaml:1: no_progress: expected true or false, got 'maybe'"),
    ]
    for text, message in cases:
        run.write_text(text)
        assert main(["search", "--run", str(run), "--print-config"]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, (text, err)
    assert not trials_dir.exists()  # nothing created by a refused file


def test_print_config_merges_defaults_file_and_flags(trials_dir: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run.yaml"
    run.write_text("budget: 12\nmax-params: 5000\nobjectives: [psnr, params]\nsampler: random\nno_progress: true\n")
    assert main(["search", "--config", str(run), "--sampler", "nsga2", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["budget"] == 12 and printed["max_params"] == 5000 and printed["objectives"] == ["psnr", "params"]
    assert printed["sampler"] == "nsga2"  # the flag overrides the file
    assert printed["no_progress"] is True and printed["json"] is False
    assert printed["workers"] == "auto" and printed["space"] == "tiny"  # defaults filled in
    assert printed["study"] == "tiny-demo-psnr-params"  # the name the search would use
    # The printed file is a run file: read back, it gives the same settings.
    out = tmp_path / "effective.yaml"
    assert main(["search", "--config", str(run), "--sampler", "nsga2", "--print-config", str(out)]) == 0
    assert main(["search", "--run", str(out), "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out.split("\n", 1)[1]) == printed
    assert not trials_dir.exists()


@pytest.mark.slow
def test_study_records_its_run_and_a_plain_resume_reuses_it(trials_dir: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run.yaml"
    run.write_text("study: rec\nbudget: 2\nproxy: tiny@10\nworkers: 1\nseed: 3\ndevices: cpu\nheartbeat: 2\n")
    assert main(["search", "--confirm", "0", "--run", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    # `srnas studies --show` prints the recorded run file (a YAML a search reads back).
    assert main(["studies", "--show", "rec"]) == 0
    shown = capsys.readouterr().out
    assert "2 distinct architectures trained" in shown and "fidelity tiny@10" in shown
    recorded = yaml.safe_load(shown)
    assert recorded["proxy"] == "tiny@10" and recorded["seed"] == 3 and recorded["budget"] == 2
    assert recorded["workers"] == 1 and "storage" not in recorded
    # No other flag: the recorded settings (proxy tiny@10, not the space's default) are used.
    assert main(["search", "--study", "rec", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["proxy"] == "tiny@10"
    # A flag given overrides the record: a bigger budget continues the same study.
    assert main(["search", "--confirm", "0", "--study", "rec", "--budget", "3", "--no-progress", "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    # A resume says so in its first line.
    first = captured.err.strip().splitlines()[0]
    assert first.startswith("resuming study rec") and "2 of 3 architectures trained so far" in first
    assert summary["study"] == "rec" and summary["trained"] == 3 and summary["fidelity"] == "tiny@10"
    assert summary["run_settings"]["budget"] == 3 and summary["best"]["psnr"] > 0
    # Changes that alter results are still refused.
    assert main(["search", "--confirm", "0", "--study", "rec", "--proxy", "tiny@20", "--no-progress"]) == 2
    assert "searched with another setup" in capsys.readouterr().err
    # The listing: counts, best result and fidelity of every study.
    assert main(["studies", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["study"], row["trained"], row["fidelity"]) == ("rec", 3, "tiny@10")
    best = row["best"]
    assert best["describe"].startswith("EDSR x2 B=") and row["repeats_per_trained"] == 0.0
    assert main(["studies"]) == 0
    table = capsys.readouterr().out
    assert "rec" in table and "tiny@10" in table
    # The best net is described (and named when it is the space's preset), not only its id.
    assert main(["studies", "--show", "rec"]) == 0
    shown = capsys.readouterr().out
    assert best["describe"] in shown.replace("\n", " ")
    if best["preset"]:
        assert f"preset {best['preset']}" in shown


def test_retrain_run_file(tmp_path: Path, capsys) -> None:
    run = tmp_path / "retrain.yaml"
    run.write_text("preset: edsr-baseline\nschedule: proxy-tiny\nmax-updates: 2\ndevice: cpu\n")
    assert main(["retrain", "--run", str(run), "--seed", "5", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["preset"] == "edsr-baseline" and printed["max_updates"] == 2 and printed["seed"] == 5
    assert printed["config"] is None and printed["log_every"] == 1000
    # --config (an architecture) on the command line replaces the file's preset.
    cfg = tmp_path / "arch.yaml"
    cfg.write_text(srnas.ArchConfig(n_resblocks=1, n_feats=4).to_yaml())
    assert main(["retrain", "--config-file", str(run), "--config", str(cfg), "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["config"] == str(cfg) and printed["preset"] is None
    run.write_text("preset: edsr-baseline\nupdates: 2\n")
    assert main(["retrain", "--run", str(run)]) == 2
    assert "retrain.yaml:2: unknown key 'updates'" in capsys.readouterr().err
    run.write_text("schedule: proxy-tiny\n")
    assert main(["retrain", "--run", str(run)]) == 2
    assert "say what to retrain" in capsys.readouterr().err


# ---- Python API -----------------------------------------------------------------------------


@pytest.mark.parametrize("first", ["call", "submodule"])
def test_srnas_search_is_callable_whatever_was_imported_first(first: str) -> None:
    steps = {"call": "import srnas; assert callable(srnas.search)",
             "submodule": "import srnas.search.session; import srnas; assert srnas.search.Session"}
    other = "submodule" if first == "call" else "call"
    code = "; ".join([steps[first], steps[other], "import srnas",
                      "from srnas.errors import ConfigError",
                      "exec('try:\\n srnas.search(budgte=3)\\nexcept ConfigError as e:\\n print(e)')"])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "unknown key 'budgte' (did you mean budget?)" in out.stdout


def test_api_checks_keywords_like_a_run_file() -> None:
    with pytest.raises(ConfigError, match="budget: expected an integer, got '3'"):
        srnas.search(budget="3")
    with pytest.raises(ConfigError, match="unknown key 'sets'"):
        srnas.retrain(preset="edsr-baseline", sets="Set5")


@pytest.mark.slow
def test_python_api_search_retrain_evaluate(trials_dir: Path, tmp_path: Path, capsys) -> None:
    import optuna

    study = srnas.search(study="py", budget=2, progress=False, **FAST)
    # The API prints what the command prints off a terminal: a line per trial.
    assert "trial 0 complete" in capsys.readouterr().err
    assert isinstance(study, optuna.Study) and study.study_name == "py"
    assert study.user_attrs["run_settings"]["budget"] == 2
    assert len([t for t in study.trials if t.state.name == "COMPLETE"]) >= 1
    # The same study resumes with what it recorded: nothing left to do at the same budget.
    again = srnas.search(study="py", progress=False)
    assert len(again.trials) == len(study.trials)

    seen: list[int] = []
    outcomes = srnas.retrain(study="py", top=1, schedule="proxy-tiny", max_updates=3, device="cpu", seed=1,
                             progress=lambda run, p: seen.append(p.update))
    (done,) = outcomes
    assert done.run.weights.is_file() and done.result.updates == 3 and seen[-1] == 3
    assert done.run.folder.parents[2] == trials_dir / "py"
    assert "done: PSNR" in done.summary
    capsys.readouterr()
    # Without a progress callback the API logs each evaluation and the result, as the CLI does.
    (again_done,) = srnas.retrain(study="py", top=1, schedule="proxy-tiny", max_updates=4, device="cpu", seed=1)
    err = capsys.readouterr().err
    assert "update 4/4 (100%), validation PSNR" in err and again_done.summary in err

    scores = srnas.evaluate(done.run.folder, data="demo", device="cpu")
    (name,) = scores.results
    assert scores.scale == 2 and scores.results[name].psnr > 20 and scores.bicubic[name].psnr > 20
    assert scores.to_dict()["arch_id"] == done.run.config.arch_id


# ---- TensorBoard ---------------------------------------------------------------------------


def test_retrain_writes_tensorboard_scalars(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tmp_path / "arch.yaml"
    cfg.write_text(srnas.ArchConfig(n_resblocks=1, n_feats=4, global_skip="bicubic").to_yaml())
    base = ["retrain", "--config", str(cfg), "--schedule", "proxy-tiny", "--device", "cpu", "--out", str(tmp_path),
            "--no-progress"]
    assert main([*base, "--max-updates", "4"]) == 0
    (folder,) = (tmp_path / "manual" / "retrain").glob("*/*")
    events = EventAccumulator(str(folder / "tensorboard"))
    events.Reload()
    assert {"train/loss", "train/lr", "val/psnr"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4]
    assert [e.step for e in events.Scalars("val/psnr")] == [4]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert events.Scalars("val/psnr")[0].value == pytest.approx(metrics["final"]["psnr"], abs=1e-4)
    assert events.Scalars("train/lr")[0].value == pytest.approx(2e-3)
    # --no-tensorboard writes none.
    assert main([*base, "--max-updates", "2", "--no-tensorboard"]) == 0
    (other,) = [p for p in (tmp_path / "manual" / "retrain").glob("*/*") if p != folder]
    assert not (other / "tensorboard").exists()


def test_tensorboard_asked_for_without_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    assert main(["retrain", "--preset", "edsr-baseline", "--schedule", "proxy-tiny", "--max-updates", "1",
                 "--device", "cpu", "--out", str(tmp_path), "--tensorboard"]) == 2
    assert "pip install 'srnas[tensorboard]'" in capsys.readouterr().err


@pytest.mark.slow
def test_a_resume_keeps_the_proxy_when_the_spaces_default_changes(trials_dir: Path, tmp_path: Path, capsys) -> None:
    """A study searched with its space's default proxy resumes with that proxy after the default
    changed (a new srnas release), instead of refusing the study."""
    space = tmp_path / "mine.yaml"
    body = "name: mine\nparameters:\n  n_resblocks: [1, 2]\n  n_feats: [8]\n  global_skip: bicubic\nproxy: {}\n"
    space.write_text(body.format("tiny@10"))
    argv = ["search", "--confirm", "0", "--space", str(space), "--study", "moved", "--workers", "1", "--seed", "1",
            "--devices", "cpu", "--no-progress"]
    assert main([*argv, "--budget", "1"]) == 0
    space.write_text(body.format("tiny@20"))  # the default moved on
    assert main([*argv, "--budget", "2"]) == 0
    capsys.readouterr()
    assert main(["studies", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["fidelity"] == "tiny@10" and row["trained"] == 2
