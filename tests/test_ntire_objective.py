"""``--objectives psnr,ntire``: the NTIRE efficient-SR score of each trained net against a
baseline trained once per study at the study's fidelity, with its PSNR floor as a constraint."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from srnas.arch import ArchConfig
from srnas.arch.cost import count_params
from srnas.arch.efficiency import baseline_config, challenge_flops
from srnas.cli import main
from srnas.errors import ConfigError

optuna.logging.set_verbosity(optuna.logging.WARNING)

FAST = ["--proxy", "tiny@20", "--no-progress", "--heartbeat", "2", "--workers", "1", "--confirm", "0",
        "--space", "efficient-tiny", "--ntire-baseline", "span:8", "--seed", "1"]


@pytest.fixture()
def trials_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "trials"
    monkeypatch.setenv("SRNAS_TRIALS_DIR", str(root))
    return root


def test_baseline_config_parses_preset_and_width() -> None:
    cfg = baseline_config("span:28", 4)
    assert cfg.n_feats == 28 and cfg.scale == 4 and count_params(cfg, fused=True) == 150_688
    assert baseline_config("rlfn-s", 2).n_feats == 48
    for bad, message in (("galaxy", "unknown single-scale preset 'galaxy'"), ("mdsr", "unknown single-scale preset"),
                         ("span:x", "the width after ':' must be a positive integer, not 'x'")):
        with pytest.raises(ConfigError, match=message) as err:
            baseline_config(bad, 2)
        assert "\n" not in str(err.value)


@pytest.mark.slow
def test_ntire_search_scores_each_net_against_the_recorded_baseline(trials_dir: Path, capsys) -> None:
    assert main(["search", "--budget", "3", "--study", "nt", "--objectives", "psnr,ntire", "--ntire-year", "2024",
                 *FAST]) == 0
    err = capsys.readouterr().err
    assert "training the baseline span:8" in err and "nets under" in err
    study = optuna.load_study(study_name="nt", storage=f"sqlite:///{trials_dir / 'nt' / 'study.db'}")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    base = study.user_attrs["ntire_baseline"]
    cfg = baseline_config("span:8", 2)
    assert base["arch_id"] == cfg.arch_id and base["year"] == 2024 and base["margin"] == 0.04
    assert base["params"] == count_params(cfg, fused=True) and base["flops"] == challenge_flops(cfg)
    assert base["floor"] == pytest.approx(base["psnr"] - 0.04) and base["fidelity"] == study.user_attrs["fidelity"]
    done = [t for t in study.trials if t.state == TrialState.COMPLETE and "infeasible" not in t.user_attrs]
    assert len(done) == 3
    for t in done:
        a = t.user_attrs
        net = ArchConfig.from_dict(a["config"])
        assert a["flops_256"] == challenge_flops(net) and a["params_fused"] == count_params(net, fused=True)
        # Hand-computed from the recorded terms with the 2024 weights (0.7 / 0.15 / 0.15).
        score = (0.7 * math.exp(2 * a["ntire_runtime_ms"] / a["ntire_baseline_runtime_ms"])
                 + 0.15 * math.exp(2 * a["flops_256"] / base["flops"])
                 + 0.15 * math.exp(2 * a["params_fused"] / base["params"]))
        assert t.values[1] == a["ntire_score"] == pytest.approx(score, rel=1e-3)
        assert t.constraints["psnr_floor"] == pytest.approx(base["floor"] - t.values[0], abs=1e-5)
    # A resume reuses the recorded settings (2024) and the recorded baseline: nothing is trained again.
    assert main(["search", "--budget", "4", "--study", "nt", *FAST]) == 0
    assert "training the baseline" not in capsys.readouterr().err
    assert study.user_attrs["ntire_baseline"] == base
    # One asking for another year is refused in one line, before anything trains.
    assert main(["search", "--budget", "5", "--study", "nt", "--ntire-year", "2026", *FAST]) == 2
    line = capsys.readouterr().err.strip()
    assert "--ntire-year 2024 (now 2026)" in line and len(line.splitlines()) == 1
    assert len([t for t in study.trials if t.state == TrialState.COMPLETE]) == 4


@pytest.mark.parametrize(("argv", "message"), [
    (["--ntire-year", "2023"], "--ntire-year: unknown challenge year 2023; allowed: 2024 | 2025 | 2026"),
    (["--ntire-baseline", "galaxy"], "--ntire-baseline 'galaxy': unknown single-scale preset"),
    (["--ntire-margin", "-1"], "--ntire-margin must be a number of dB >= 0"),
    (["--space", "mdsr"], "scores one scale; space 'mdsr' has scales 2, 3, 4"),
])
def test_bad_ntire_input_is_one_line(trials_dir: Path, capsys, argv: list[str], message: str) -> None:
    assert main(["search", "--study", "bad", "--objectives", "psnr,ntire", "--no-progress", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (trials_dir / "bad" / "study.db").exists()
