"""Winners confirmed: the top K trained again on fresh seeds and scored on held-out images, the
records in the study, the rankings that use them (summary, studies, report, export --top,
retrain --top), the compute budget of a search, and a confirmation killed and resumed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from srnas.cli import main
from srnas.outcomes import confirmed_records, results_of_record

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.slow

FAST = ["--no-progress", "--heartbeat", "1", "--workers", "1", "--devices", "cpu"]


@pytest.fixture()
def fast(small_space: Path) -> list[str]:
    """`FAST` in the small space (tests/conftest.py): confirmation's bookkeeping, not its nets."""
    return [*FAST, "--space", str(small_space)]


def _study(root: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{root / name / 'study.db'}")


def test_search_confirms_its_top_k_on_fresh_seeds_and_held_out_images(trials_dir: Path, fast: list[str], capsys) -> None:
    assert main(["search", "--budget", "4", "--study", "conf", "--proxy", "tiny@20", "--seed", "2", "--pruner", "none",
                 "--confirm", "2", "--confirm-seeds", "2", *fast]) == 0
    study = _study(trials_dir, "conf")
    records = confirmed_records(study.user_attrs)
    assert len(records) == 2
    trial_seeds = {t.user_attrs.get("seed") for t in study.trials}
    by_psnr = sorted(results_of_record(study.trials), key=lambda t: -t.values[0])
    assert set(records) == {t.user_attrs["arch_id"] for t in by_psnr[:2]}  # the top 2 by their search score
    for arch, r in records.items():
        assert len(r["seeds"]) == 2 and not set(r["seeds"]) & trial_seeds  # fresh seeds
        assert r["on"] == "held-out" and r["images"] == ["china", "flower"] and r["selection_images"] == ["coffee"]
        trial = next(t for t in study.trials if t.number == r["trial"])
        assert r["psnr"] == pytest.approx(sum(r["runs"]) / 2, abs=1e-3) and r["sd"] >= 0
        assert r["gap"] == pytest.approx(trial.values[0] - r["selection_psnr"])
        for seed in r["seeds"]:  # each unit in the study, scored on every validation image
            unit = study.user_attrs[f"confirm:{arch}:{seed}"]
            assert set(unit["images"]) == {"coffee", "china", "flower"}
    out = capsys.readouterr().out
    assert "confirmed" in out and "gap" in out
    # The ranking every command uses puts confirmed architectures first, by their confirmed score.
    ranked = results_of_record(study.trials, records)
    best_confirmed = max(records.values(), key=lambda r: r["psnr"])
    assert ranked[0].number == best_confirmed["trial"]
    # A second run confirms nothing again (resumable, idempotent).
    before = dict(study.user_attrs)
    assert main(["confirm", "--study", "conf", "--top", "2", "--json"]) == 0
    assert dict(_study(trials_dir, "conf").user_attrs) == before
    # --trial adds one (the preset, to compare with); a trial without a result is refused in one line.
    preset = next(t for t in study.trials if t.user_attrs.get("preset"))
    assert main(["confirm", "--study", "conf", "--top", "0", "--trial", str(preset.number)]) == 0
    assert preset.user_attrs["arch_id"] in confirmed_records(_study(trials_dir, "conf").user_attrs)
    capsys.readouterr()
    assert main(["confirm", "--study", "conf", "--top", "0", "--trial", "99"]) == 2
    assert "trial 99 is not a COMPLETE trial" in capsys.readouterr().err


def test_confirmed_scores_change_what_export_and_retrain_take(trials_dir: Path) -> None:
    from srnas.results.frame import select_trials, top_configs
    from srnas.results.overview import study_overview

    assert main(["search", "--budget", "3", "--study", "rank", "--proxy", "tiny@10", "--seed", "5", "--pruner", "none",
                 "--confirm", "0", *FAST]) == 0
    study = _study(trials_dir, "rank")
    by_selection = results_of_record(study.trials)
    first, second = by_selection[0], by_selection[1]
    assert [t.number for t in select_trials(study, top=2)] == [first.number, second.number]
    # Confirmation says the second is better on held-out images: export --top and retrain --top follow.
    for t, psnr in ((first, 28.0), (second, 29.0)):
        study.set_user_attr(f"confirmed:{t.user_attrs['arch_id']}", {
            "trial": t.number, "psnr": psnr, "sd": 0.1, "seeds": [1, 2], "runs": [psnr, psnr], "on": "held-out",
            "images": ["china", "flower"], "selection_images": ["coffee"], "selection_psnr": 30.0, "gap": 0.5})
    study = _study(trials_dir, "rank")
    assert [t.number for t in select_trials(study, top=2)] == [second.number, first.number]
    assert top_configs(study, 1)[0].arch_id == second.user_attrs["arch_id"]
    overview = study_overview(study)
    assert overview["best"]["trial"] == second.number and overview["best"]["confirmed"]["psnr"] == 29.0
    from srnas.results.report import write_report

    html = write_report("rank", static_images=False).html.read_text()
    assert "confirmed PSNR, held out" in html and "winner&#x27;s-curse gap" in html


def test_compute_budget_counts_training_updates(trials_dir: Path, fast: list[str]) -> None:
    assert main(["search", "--budget", "50", "--study", "updates", "--proxy", "tiny@20", "--seed", "1",
                 "--max-updates", "60", "--confirm", "0", *fast]) == 0
    from srnas.outcomes import study_counts

    counts = study_counts(_study(trials_dir, "updates"))
    assert counts.updates >= 60 and counts.finished == counts.updates // 20 == 3  # 3 full trainings of 20 updates


# `srnas confirm` in a child process that SIGKILLs itself in the middle of its first unit's
# training (after its third update: the unit is claimed, its heartbeat runs, no result yet). Dying
# at a known point, not when a poll of the study happens to see the claim, lets the proxy be
# short without a race between the kill and the unit's end.
KILLED_MID_UNIT = """
import os, signal, sys
from srnas.train.trainer import Trainer
update_once = Trainer.update_once
def dying_update(self):
    update_once(self)
    if self.update == 3:
        os.kill(os.getpid(), signal.SIGKILL)
Trainer.update_once = dying_update
from srnas.cli import main
sys.exit(main())
"""


def test_confirmation_killed_mid_run_resumes(trials_dir: Path, fast: list[str], capsys) -> None:
    assert main(["search", "--budget", "2", "--study", "kc", "--proxy", "tiny@20", "--seed", "1", "--pruner", "none",
                 "--confirm", "0", *fast]) == 0
    env = {**os.environ, "SRNAS_TRIALS_DIR": str(trials_dir)}
    args = ["confirm", "--study", "kc", "--top", "1", "--seeds", "2"]
    killed = subprocess.run([sys.executable, "-c", KILLED_MID_UNIT, *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    attrs = _study(trials_dir, "kc").user_attrs
    assert sum(k.startswith("confirm-claim:") for k in attrs) == 1  # it died holding the first unit
    assert not any(k.startswith("confirm:") for k in attrs) and not confirmed_records(attrs)
    # The same command again takes over the dead worker's claim and finishes (in this process: the
    # killed worker's PID is gone, so its claim is stale at once).
    capsys.readouterr()
    assert main(args) == 0
    records = confirmed_records(_study(trials_dir, "kc").user_attrs)
    assert len(records) == 1 and len(next(iter(records.values()))["seeds"]) == 2
    assert "confirmed" in capsys.readouterr().out


def test_confirm_bad_input_is_one_line(trials_dir: Path, capsys) -> None:
    assert main(["confirm", "--study", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no study 'nope'" in err
