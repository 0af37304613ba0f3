"""What commands print and where: plain lines off a terminal (read from a file while the command
runs), the study and retrain log files, -q/-v, the overview and the defaults in every --help."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from srnas.cli import WORKFLOW, build_parser, main
from srnas.errors import ConfigError
from srnas.log import ProgressClock, progress_interval
from srnas.units import human_bytes, human_count, human_duration

TRIAL_LINE = re.compile(r"^trial (\d+) (complete|pruned|failed)", re.M)


@pytest.mark.slow
def test_search_to_a_file_shows_each_finished_trial_while_it_runs(tmp_path: Path, small_space: Path) -> None:
    trials = tmp_path / "trials"
    out_file = tmp_path / "search.out"
    env = {**os.environ, "SRNAS_TRIALS_DIR": str(trials), "SRNAS_PROGRESS_INTERVAL": "1"}
    argv = [sys.executable, "-m", "srnas", "search", "--confirm", "0", "--budget", "4", "--study", "to-file", "--seed", "3",
            "--proxy", "tiny@30", "--workers", "1", "--heartbeat", "2", "--space", str(small_space)]
    with open(out_file, "wb") as sink:
        proc = subprocess.Popen(argv, env=env, stdout=sink, stderr=subprocess.STDOUT)
        seen_while_running: set[int] = set()
        try:
            deadline = time.monotonic() + 240
            while proc.poll() is None and time.monotonic() < deadline:
                numbers = {int(n) for n, _ in TRIAL_LINE.findall(out_file.read_text(errors="replace"))}
                if proc.poll() is None:
                    seen_while_running |= numbers
                time.sleep(0.2)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    text = out_file.read_text()
    assert proc.returncode == 0, text[-2000:]
    assert seen_while_running, f"no trial line appeared before the search ended:\n{text}"
    finished = TRIAL_LINE.findall(text)
    assert len(finished) >= 4, text
    # One line per trial: state, PSNR, parameters, time, best so far.
    line = next(ln for ln in text.splitlines() if re.match(r"trial \d+ complete", ln))
    assert re.search(r"complete: \d+\.\d\d dB, [\d.]+K params, .*, \d+s; best \d+\.\d\d dB #\d+", line), line
    assert re.search(r"^search \d/4 architectures trained .* ETA ", text, re.M), text
    log = (trials / "to-file" / "search.log").read_text()
    assert "search started: study to-file" in log and "search ended: budget met" in log
    assert {n for n, _ in TRIAL_LINE.findall(text)} <= {n for n in re.findall(r"\d\d:\d\d trial (\d+) ", log)}


def _tiny_config(tmp_path: Path) -> Path:
    from srnas.arch import ArchConfig

    path = tmp_path / "tiny.yaml"
    path.write_text(ArchConfig(n_resblocks=1, n_feats=4, global_skip="bicubic").to_yaml())
    return path


@pytest.mark.parametrize("quiet", [False, True])
def test_retrain_prints_plain_lines_and_keeps_a_log(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   quiet: bool) -> None:
    from srnas.train.retrain import RetrainRun

    argv = ["retrain", "--config", str(_tiny_config(tmp_path)), "--schedule", "proxy-tiny", "--max-updates", "3",
            "--log-every", "2", "--device", "cpu", "--out", str(tmp_path), *(["-q"] if quiet else [])]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("done: PSNR ")  # the result, also with -q
    if quiet:
        assert captured.err == ""
    else:
        assert "update 2/3 (67%), loss" in captured.err  # every --log-every updates
        assert "update 3/3 (100%), validation PSNR" in captured.err  # and at each evaluation
    from srnas.arch import ArchConfig
    from srnas.train.schedules import get_schedule

    run = RetrainRun(ArchConfig.load(_tiny_config(tmp_path)), get_schedule("proxy-tiny").shortened(3),
                     tmp_path / "manual" / "retrain")
    log = run.log.read_text()
    assert "retrain 1/1" in log and "update 3/3 (100%), validation PSNR" in log and "done: PSNR" in log


def test_srnas_alone_prints_the_overview_in_workflow_order(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    listed = re.findall(r"^    ([\w-]+) {2,}\S", out, flags=re.M)
    assert listed[0] == "search"
    assert listed[:len(WORKFLOW)] == list(WORKFLOW)
    for name in WORKFLOW:  # each with a one-line description
        assert re.search(rf"^    {name} +\w", out, flags=re.M), name


def _parsers(parser: argparse.ArgumentParser, path: str = "srnas") -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _parsers(sub, f"{path} {name}")
    return found


@pytest.mark.parametrize(("path", "parser"), _parsers(build_parser())[1:], ids=lambda v: v if isinstance(v, str) else "")
def test_every_help_shows_defaults_and_quiet_verbose(path: str, parser: argparse.ArgumentParser) -> None:
    text = parser.format_help()
    assert "-q, --quiet" in text and "-v, --verbose" in text, path
    assert parser.description, f"{path} has no description"
    one_of_required = {a for g in parser._mutually_exclusive_groups if g.required for a in g._group_actions}
    for action in parser._actions:
        if not action.option_strings or action.help in (None, argparse.SUPPRESS) or action.required \
                or action in one_of_required:
            continue
        if isinstance(action, (argparse._HelpAction, argparse._StoreTrueAction, argparse._StoreConstAction)):
            continue
        helped = parser._get_formatter()._expand_help(action)  # what --help prints for it
        assert "default" in helped.lower(), f"{path} {action.option_strings[0]}: {helped!r}"


def test_search_help_names_budget_default_and_proxy_forms(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert re.search(r"--budget BUDGET .*\(default: 200\)", text)
    assert "NAME@N" in text and "NAME*F" in text


def test_verbosity_goes_before_or_after_the_command() -> None:
    parser = build_parser()
    assert parser.parse_args(["-q", "space", "list"]).verbosity == -1
    assert parser.parse_args(["space", "list", "-v"]).verbosity == 1
    assert parser.parse_args(["space", "list"]).verbosity == 0


def test_units_and_progress_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    assert human_count(28_668_211_200) == "28.67G" and human_count(4531) == "4.53K" and human_count(None) == "-"
    assert human_bytes(31_505_881) == "31.5 MB" and human_duration(3725) == "1h02m"
    clock = ProgressClock(100, every=3600)
    assert not clock.due() and clock.eta(0) is None and clock.eta(100) == 0.0
    assert clock.status(50).startswith("50/100 (50%), elapsed 0s, ETA ")
    monkeypatch.setenv("SRNAS_PROGRESS_INTERVAL", "5")
    assert progress_interval() == 5.0
    monkeypatch.setenv("SRNAS_PROGRESS_INTERVAL", "soon")
    with pytest.raises(ConfigError, match="SRNAS_PROGRESS_INTERVAL='soon'"):
        progress_interval()


@pytest.mark.parametrize("argv, line", [
    (["search", "--bugdet", "5"], "srnas search: error: unrecognized arguments: --bugdet 5 (did you mean --budget?)"),
    (["search", "--budget", "abc"], "srnas search: error: argument --budget: invalid int value: 'abc'"),
    (["serch"], "(did you mean search?)"),
    (["retrain", "--preset", "edsr-baseline", "--precision", "bf61"], "(did you mean bf16?)"),
    (["report", "--study", "x", "--zzz"], "srnas report: error: unrecognized arguments: --zzz; see srnas report --help"),
])
def test_usage_errors_are_one_line_with_a_suggestion(capsys: pytest.CaptureFixture, argv: list, line: str) -> None:
    from srnas.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and line in err, err


def test_progress_clock_shows_the_first_line_early() -> None:
    import time

    from srnas.log import ProgressClock

    clock = ProgressClock(10, every=60.0, first=0.05)
    assert not clock.due()
    time.sleep(0.06)
    assert clock.due() and not clock.due()  # then every 60 s as before
    assert not ProgressClock(10, every=60.0).due()


@pytest.mark.parametrize("value", ["-5", "abc", "nan"])
def test_bad_progress_interval_is_one_line_and_creates_nothing(tmp_path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture, value: str) -> None:
    from srnas.cli import main

    monkeypatch.setenv("SRNAS_TRIALS_DIR", str(tmp_path / "trials"))
    monkeypatch.setenv("SRNAS_PROGRESS_INTERVAL", value)
    assert main(["search", "--budget", "1", "--confirm", "0", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"SRNAS_PROGRESS_INTERVAL={value!r}" in err
    assert not (tmp_path / "trials").exists()  # no study was created


def test_names_from_a_shared_storage_are_shown_not_obeyed(tmp_path, capsys: pytest.CaptureFixture) -> None:
    """A study name holding terminal escapes or rich markup (anyone can write one into a shared
    database) is printed as text by srnas studies."""
    import optuna

    from srnas.cli import main

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    optuna.create_study(study_name="evil\x1b[2J\x1b[31m[bold]x[/bold]", storage=url)
    assert main(["studies", "--storage", url]) == 0
    out = capsys.readouterr().out
    assert "\x1b[2J" not in out and "\\x1b[2J" in out and "[bold]x[/bold]" in out
