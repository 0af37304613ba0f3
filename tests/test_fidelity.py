"""The proxy-fidelity study: sampling, fidelity names, zero-cost scores, correlations, resumable
CSV, and a short N=4 run on the tiny space with the real trainer."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import pytest

from srnas.arch import ArchConfig, count_params
from srnas.cli import main
from srnas.errors import ConfigError
from srnas.results.fidelity import (
    CSV_COLUMNS, PREDICTORS, _append_row, correlations, parse_fidelity, read_rows, stratified_sample,
)
from srnas.results.zero_cost import grad_norm, synflow
from srnas.space import SearchSpace


def test_parse_fidelity_longer_and_shortened() -> None:
    tiny = parse_fidelity("tiny")
    long = parse_fidelity("tiny*10")
    assert long.name == "tiny*10" and long.updates == 10 * tiny.updates
    assert long.lr_milestones == tuple(10 * m for m in tiny.lr_milestones)
    assert long.eval_every == 10 * tiny.eval_every and long.fidelity_id != tiny.fidelity_id
    assert (long.lr, long.batch, long.patch) == (tiny.lr, tiny.batch, tiny.patch)
    assert parse_fidelity("tiny@40").updates == 40
    assert parse_fidelity("tiny*2@100").updates == 100
    for bad in ("tiny*0", "tiny*x", "tiny@-3", "huge"):
        with pytest.raises(ConfigError):
            parse_fidelity(bad)


def test_stratified_sample_spreads_over_params() -> None:
    space = SearchSpace.load("tiny")
    picks = stratified_sample(space, 6, seed=0)
    params = [count_params(c) for c in picks]
    assert len({c.arch_id for c in picks}) == 6 and params == sorted(params)
    every = sorted(count_params(c) for c in space.enumerate())
    # One pick per sixth of the sorted space: the first from the smallest, the last from the largest.
    assert params[0] <= every[len(every) // 6] and params[-1] >= every[5 * len(every) // 6 - 1]
    assert [c.arch_id for c in stratified_sample(space, 6, seed=0)] == [c.arch_id for c in picks]
    assert [c.arch_id for c in stratified_sample(space, 6, seed=1)] != [c.arch_id for c in picks]
    with pytest.raises(ConfigError, match="feasible configs"):
        stratified_sample(space.constrained(max_params=2000), 3)


def test_zero_cost_scores_are_informative() -> None:
    small = ArchConfig(n_resblocks=2, n_feats=8, global_skip="bicubic")
    wide = small.replace(n_feats=32)
    for score in (synflow, grad_norm):
        # Without re-initialising the zero tail conv both would be exactly 0 for bicubic-skip nets.
        assert score(small) > 0 and math.isfinite(score(small))
        assert score(small, seed=3) == score(small, seed=3)
    assert synflow(wide) > synflow(small)  # more paths, larger path norm
    assert grad_norm(wide) != grad_norm(small)
    mdsr = ArchConfig(family="mdsr", scales=(2, 3), n_resblocks=1, n_feats=8, head_blocks=1, head_kernel=3)
    assert synflow(mdsr) > 0 and grad_norm(mdsr) > 0


def test_correlations_known_values() -> None:
    rows = [{"reference_psnr": r, "proxy_psnr": p, "params": n, "mult_adds": n * 10, "synflow": 1.0, "grad_norm": g}
            for r, p, n, g in [(30.0, 29.0, 10, 3.0), (31.0, 29.5, 20, 2.0), (32.0, 30.0, 30, 1.0), (33.0, 29.8, 40, 0.5)]]
    c = correlations(rows)
    assert set(c) == set(PREDICTORS)
    assert c["params"]["kendall_tau"] == pytest.approx(1.0) and c["params"]["spearman_rho"] == pytest.approx(1.0)
    assert c["grad_norm"]["kendall_tau"] == pytest.approx(-1.0)
    assert c["proxy_psnr"]["kendall_tau"] == pytest.approx(2 / 3)   # one discordant pair of six
    assert c["synflow"]["kendall_tau"] is None                     # constant: undefined, not 0


def test_csv_append_survives_a_cut_line(tmp_path: Path) -> None:
    path = tmp_path / "fidelity.csv"
    row = {k: 1 for k in CSV_COLUMNS} | {"arch_id": "edsr-a", "describe": "x", "protocol": "benchmark",
                                         "config": json.dumps({"n_feats": 8})}
    _append_row(path, row)
    with path.open("a") as handle:
        handle.write("edsr-b,3,cut sho")  # a crash in the middle of a row
    assert [r["arch_id"] for r in read_rows(path)] == ["edsr-a"]
    _append_row(path, row | {"arch_id": "edsr-c"})
    assert [r["arch_id"] for r in read_rows(path)] == ["edsr-a", "edsr-c"]
    with path.open(newline="") as handle:
        assert len(list(csv.reader(handle))) == 3


@pytest.mark.slow
def test_fidelity_run_n4_tiny_space_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "fid"
    argv = ["fidelity", "--space", "tiny", "--n", "4", "--proxy", "tiny@10", "--reference", "tiny@20",
            "--device", "cpu", "-o", str(out)]
    assert main(argv) == 0
    rows = read_rows(out / "fidelity.csv")
    assert len(rows) == 4 and len({r["arch_id"] for r in rows}) == 4
    for r in rows:
        assert r["protocol"] == "benchmark" and 20 < r["proxy_psnr"] < 40 and 20 < r["reference_psnr"] < 40
        assert r["synflow"] > 0 and r["grad_norm"] > 0
    assert [r["params"] for r in rows] == sorted(r["params"] for r in rows)
    payload = json.loads((out / "correlations.json").read_text())
    assert payload["n"] == 4 and payload["proxy"]["updates"] == 10 and payload["reference"]["updates"] == 20
    assert set(payload["correlations"]) == set(PREDICTORS)
    for stats in payload["correlations"].values():
        assert set(stats) == {"kendall_tau", "kendall_p", "spearman_rho", "spearman_p"}
        assert stats["kendall_tau"] is None or -1 <= stats["kendall_tau"] <= 1
    assert payload["correlations"]["params"]["kendall_tau"] is not None
    html = (out / "fidelity.html").read_text()
    assert 'id="fig-fidelity"' in html and "id='table-correlations'" in html
    assert not re.search(r"<script[^>]*\bsrc=", html, flags=re.I)
    printed = capsys.readouterr().out
    assert "Kendall tau" in printed and "grad-norm" in printed
    # A re-run trains nothing and keeps the same rows; other settings in the same folder are refused.
    before = (out / "fidelity.csv").read_text()
    assert main(argv) == 0
    assert "(4 already done)" in capsys.readouterr().out
    assert (out / "fidelity.csv").read_text() == before
    assert main([*argv[:-2], "--seed", "5", "-o", str(out)]) == 2
    assert "other settings" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--n", "2"], "--n must be an integer >= 3"),
    (["--n", "4", "--proxy", "tiny", "--reference", "proxy-tiny"], "are the same fidelity"),
    (["--n", "4", "--reference", "tiny*ten"], "expected NAME*FACTOR"),
    (["--n", "4", "--space", "nope"], "unknown search space 'nope'"),
])
def test_fidelity_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str], message: str) -> None:
    assert main(["fidelity", *argv, "-o", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err
