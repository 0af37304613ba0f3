"""The proxy-fidelity study: banded sampling, the space variant, fidelity names, zero-cost scores,
tau-b overall and inside parameter bands with bootstrap intervals, the design grid and its CPU
accounting, the resumable run log, and a short run on the tiny space with the real trainer."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import kendalltau

from srnas.arch import ArchConfig, count_params
from srnas.cli import main
from srnas.errors import ConfigError
from srnas.results.fidelity import (
    RUN_COLUMNS, _append, _score, band_pairs, bootstrap_tau, extrapolate_curve, fixed_variant,
    kendall_tau_b, parse_fidelity, parse_fix, proxy_designs, rank_stats, read_runs, recommend, stratified_sample,
    variant_sample,
)
from srnas.results.zero_cost import grad_norm, synflow
from srnas.space import SearchSpace


def test_parse_fidelity_longer_and_shortened() -> None:
    tiny = parse_fidelity("tiny-step")
    long = parse_fidelity("tiny-step*10")
    assert long.name == "tiny-step*10" and long.updates == 10 * tiny.updates
    assert long.lr_milestones == tuple(10 * m for m in tiny.lr_milestones)
    assert long.eval_every == 10 * tiny.eval_every and long.fidelity_id != tiny.fidelity_id
    assert (long.lr, long.batch, long.patch) == (tiny.lr, tiny.batch, tiny.patch)
    cosine = parse_fidelity("tiny-cosine*10")
    assert cosine.lr_policy == "cosine" and cosine.updates == 3000 and cosine.lr_at(3000) == pytest.approx(0.0)
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
    with pytest.raises(ConfigError, match="--per-band"):
        stratified_sample(space, 6, per_band=0)


@pytest.mark.parametrize("space_name", ["tiny", "tiny-wide"])
def test_bands_hold_nets_within_ten_percent(space_name: str) -> None:
    space = SearchSpace.load(space_name)
    picks = stratified_sample(space, 20, seed=0, per_band=4)
    params = [count_params(c) for c in picks]
    assert len({c.arch_id for c in picks}) == 20 and params == sorted(params)
    mask = band_pairs(params)
    # Each band's 4 nets pairwise within 10%: at least 5 bands x 6 pairs.
    assert np.triu(mask, 1).sum() >= 30
    assert max(params) / min(params) > 10  # still spread over the space
    pool = sorted(count_params(c) for c in space.enumerate())
    assert params[0] <= pool[len(pool) // 5] and params[-1] >= pool[4 * len(pool) // 5 - 1]


def test_variant_forces_the_value_and_shares_configs() -> None:
    space = SearchSpace.load("tiny")
    fix = {"global_skip": "bicubic"}
    variant = fixed_variant(space, fix)
    assert variant.params["global_skip"].choices == ("bicubic",) and variant.name == "tiny[global_skip=bicubic]"
    picks = stratified_sample(space, 20, seed=0, per_band=4)
    forced = variant_sample(picks, variant, fix, seed=0)
    assert len({c.arch_id for c in forced}) == 20
    assert all(c.global_skip == "bicubic" and variant.params_of(c) is not None for c in forced)
    shared = {c.arch_id for c in picks if c.global_skip == "bicubic"}
    assert shared <= {c.arch_id for c in forced}  # skip nets of the main sample are reused as they are
    # Duplicates after forcing are replaced by nets of (nearly) the same size.
    assert sorted(count_params(c) for c in forced) == pytest.approx(sorted(count_params(c) for c in picks), rel=0.25)
    with pytest.raises(ConfigError, match="one value per net"):
        fixed_variant(space, {"kernel_size": 3})
    with pytest.raises(ConfigError, match="unknown dimension"):
        fixed_variant(space, {"nope": 1})
    assert parse_fix(["global_skip=bicubic", "res_scale=0.1"]) == {"global_skip": "bicubic", "res_scale": 0.1}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_fix(["global_skip"])


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


def test_kendall_tau_b_matches_scipy_with_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        x, y = rng.integers(0, 4, 12).astype(float), rng.normal(size=12)
        assert kendall_tau_b(x, y) == pytest.approx(kendalltau(x, y).statistic)
    assert kendall_tau_b([1, 1, 1], [1, 2, 3]) is None  # constant: undefined, not 0


def test_band_tau_uses_only_pairs_of_similar_size() -> None:
    params = [100, 105, 1000, 1050]
    mask = band_pairs(params)
    assert [tuple(p) for p in np.argwhere(np.triu(mask, 1))] == [(0, 1), (2, 3)]
    assert not band_pairs([100, 111]).any() and band_pairs([100, 110])[0, 1]
    reference = [30.0, 31.0, 32.0, 33.0]
    # Ranks the size classes right but each band backwards: overall positive, inside bands -1.
    proxy = [30.5, 30.4, 32.5, 32.4]
    assert kendall_tau_b(proxy, reference) == pytest.approx(1 / 3)  # 4 concordant, 2 discordant of 6
    assert kendall_tau_b(proxy, reference, mask) == pytest.approx(-1.0)
    stats = rank_stats(proxy, reference, params, resamples=200)
    assert stats["band_pairs"] == 2 and stats["band_tau"] == pytest.approx(-1.0) and stats["n"] == 4
    assert stats["tau"] == pytest.approx(1 / 3) and stats["rho"] == pytest.approx(0.6)
    # #params ties inside a band of equal sizes: undefined there (it cannot rank them).
    assert kendall_tau_b([100, 100, 1000, 1000], reference, band_pairs([100, 100, 1000, 1000])) is None


def test_bootstrap_interval_brackets_the_estimate() -> None:
    rng = np.random.default_rng(1)
    y = np.arange(30, dtype=float)
    x = y + rng.normal(scale=6, size=30)
    tau = kendall_tau_b(x, y)
    lo, hi = bootstrap_tau(x, y, resamples=500, seed=0)
    assert lo < tau < hi and -1 <= lo and hi <= 1 and hi - lo > 0.05
    assert bootstrap_tau(x, y, resamples=500, seed=0) == (lo, hi)  # seeded
    assert bootstrap_tau(y, y, resamples=200) == (1.0, 1.0)
    assert bootstrap_tau([1.0] * 5, list(range(5)), resamples=50) is None
    # Inside bands: a resample keeps only pairs of distinct architectures in one band.
    params = np.repeat([100.0, 1000.0, 10000.0], 10)
    band = bootstrap_tau(x, y, params, resamples=300, seed=0)
    assert band is not None and band[0] <= kendall_tau_b(x, y, band_pairs(params)) <= band[1]


def test_curve_extrapolation_is_log_linear() -> None:
    curve = [(u, 30 + 0.5 * math.log(u)) for u in (50, 100, 150, 200, 250, 300)]
    assert extrapolate_curve(curve, 3000) == pytest.approx(30 + 0.5 * math.log(3000))
    # Only the last two thirds count: an early dip changes nothing.
    assert extrapolate_curve([(50, 10.0), *curve[1:]], 3000) == pytest.approx(30 + 0.5 * math.log(3000))
    assert extrapolate_curve([(300, 31.0)], 3000) == 31.0


def _run(psnrs: list[float], cpu: float, eval_cpu: list[float], curve: list[list[float]] | None = None) -> dict:
    names = ["coffee", "china", "flower"]
    return {"images": dict(zip(names, psnrs)), "eval_cpu_s": dict(zip(names, eval_cpu)), "fit_cpu_s": cpu,
            "eval_points": 6, "curve": curve or [[100, 30.0], [200, 31.0], [300, 31.5]]}


def test_design_grid_scores_and_cpu_accounting() -> None:
    designs = proxy_designs(["tiny-step", "tiny-cosine"], seeds=2, images=3)
    keys = [d.key for d in designs]
    assert keys[:5] == ["tiny-step|s1|v1", "tiny-step|s1|v3", "tiny-step|s2|v1", "tiny-step|s2|v3",
                        "tiny-step|extrapolated"]
    assert keys[-4:] == ["synflow", "grad_norm", "params", "mult_adds"] and len(keys) == 14
    assert designs[3].label == "tiny-step, 2 seeds, 3 val images"
    assert [d.key for d in proxy_designs(["tiny"], seeds=1, images=1)][:2] == ["tiny|s1|v1", "tiny|extrapolated"]
    runs = {"tiny-step": [_run([31.0, 25.0, 36.0], 10.0, [0.1, 0.2, 0.3]), _run([31.2, 25.2, 36.2], 12.0, [0.1, 0.2, 0.3])]}
    arch = {"params": 1000, "mult_adds": 5e8, "synflow": 7.0, "synflow_cpu_s": 0.4, "grad_norm": 2.0, "grad_norm_cpu_s": 0.5}
    by_key = {d.key: d for d in designs}
    assert _score(by_key["tiny-step|s1|v1"], arch, runs, 3000) == (31.0, 10.0)
    score, cpu = _score(by_key["tiny-step|s1|v3"], arch, runs, 3000)
    assert score == pytest.approx(92 / 3) and cpu == pytest.approx(10.0 + 6 * (0.2 + 0.3))
    score, cpu = _score(by_key["tiny-step|s2|v1"], arch, runs, 3000)
    assert score == pytest.approx(31.1) and cpu == pytest.approx(22.0)
    assert _score(by_key["tiny-step|extrapolated"], arch, runs, 3000)[1] == 10.0
    assert _score(by_key["synflow"], arch, runs, 3000) == (7.0, 0.4)
    assert _score(by_key["params"], arch, runs, 3000) == (1000.0, 0.0)


def test_recommend_best_tau_per_second_that_beats_params() -> None:
    def row(design: str, kind: str, tau: float | None, cpu: float) -> dict:
        return {"variant": "searchable", "design": design, "label": design, "kind": kind, "tau": tau, "cpu_s": cpu}

    rows = [row("params", "cost", 0.3, 0.0), row("a", "proxy", 0.6, 10.0), row("b", "proxy", 0.7, 30.0),
            row("c", "zero-cost", 0.2, 0.1), row("d", "extrapolation", 0.5, 5.0)]
    assert recommend(rows)["design"] == "a"  # trained proxies only: 0.06 tau/s beats b's 0.023
    # Among every kind d's 0.1 tau/s wins; c (zero-cost) is below #params.
    assert recommend(rows, kinds=("proxy", "extrapolation", "zero-cost"))["design"] == "d"
    assert recommend([r for r in rows if r["design"] in ("params", "c")], kinds=("zero-cost",)) is None
    assert recommend(rows, "other") is None


def test_run_log_survives_a_cut_line(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    row = {k: "" for k in RUN_COLUMNS} | {
        "arch_id": "edsr-a", "schedule": "tiny", "train_id": "u300-x", "seed": 0, "updates": 300, "psnr": 31.0,
        "images": json.dumps({"coffee": 31.0}), "curve": "[[300, 31.0]]", "fit_cpu_s": 4.0, "fit_wall_s": 4.1,
        "eval_cpu_s": json.dumps({"coffee": 0.1}), "eval_points": 6, "protocol": "benchmark", "config": "{}"}
    _append(path, RUN_COLUMNS, row)
    with path.open("a") as handle:
        handle.write("edsr-b,tiny,u300-x,0,300,3")  # a crash in the middle of a row
    assert list(read_runs(path)) == [("edsr-a", "u300-x", 0)]
    _append(path, RUN_COLUMNS, row | {"arch_id": "edsr-c"})
    runs = read_runs(path)
    assert list(runs) == [("edsr-a", "u300-x", 0), ("edsr-c", "u300-x", 0)]
    assert runs[("edsr-c", "u300-x", 0)]["images"] == {"coffee": 31.0} and runs[("edsr-c", "u300-x", 0)]["seed"] == 0
    assert len(path.read_text().splitlines()) == 3


@pytest.mark.slow
def test_fidelity_run_tiny_space_with_variant_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "fid"
    argv = ["fidelity", "--space", "tiny", "--n", "4", "--per-band", "2", "--seeds", "1", "--proxy", "tiny-step@5",
            "--reference", "tiny-cosine@10", "--fix", "global_skip=bicubic", "--device", "cpu", "-o", str(out)]
    assert main(argv) == 0
    runs = read_runs(out / "runs.csv")
    settings = json.loads((out / "settings.json").read_text())
    assert settings["fix"] == {"global_skip": "bicubic"} and settings["per_band"] == 2
    payload = json.loads((out / "correlations.json").read_text())
    variants = payload["variants"]
    assert list(variants) == ["searchable", "global_skip=bicubic"] and all(len(v) == 4 for v in variants.values())
    archs = set(variants["searchable"]) | set(variants["global_skip=bicubic"])
    assert len(runs) == 2 * len(archs)  # one proxy and one reference run per architecture, shared ones once
    for r in runs.values():
        assert r["protocol"] == "benchmark" and list(r["images"]) == ["coffee", "china", "flower"]
        assert 20 < r["psnr"] < 40 and r["fit_cpu_s"] > 0 and set(r["eval_cpu_s"]) == set(r["images"])
    assert {r["seed"] for r in runs.values()} == {0, 1000}  # the reference starts from other initialisations
    assert payload["val_images"] == ["coffee", "china", "flower"] and payload["bicubic_psnr"]["coffee"] == pytest.approx(30.59, abs=0.01)
    designs = {(d["variant"], d["design"]): d for d in payload["designs"]}
    assert len(designs) == 2 * 7
    for d in designs.values():
        assert d["n"] == 4 and (d["tau"] is None or -1 <= d["tau"] <= 1)
        assert d["tau"] is None or d["tau_lo"] is None or d["tau_lo"] <= d["tau"] + 1e-9 <= d["tau_hi"] + 2e-9
    assert designs[("searchable", "tiny-step@5|s1|v3")]["cpu_s"] > designs[("searchable", "tiny-step@5|s1|v1")]["cpu_s"] > 0
    assert designs[("searchable", "params")]["cpu_s"] == 0 and designs[("searchable", "params")]["tau"] is not None
    html = (out / "fidelity.html").read_text()
    assert 'id="fig-fidelity"' in html and "id='table-designs'" in html
    assert not re.search(r"<script[^>]*\bsrc=", html, flags=re.I)
    captured = capsys.readouterr()
    printed = captured.out
    # Progress lines (stderr): each run and each finished architecture, with the ETA.
    assert re.search(rf"^\[{len(runs)}/{len(runs)}\] .*; elapsed \S+, ETA 0s$", captured.err, flags=re.M)
    assert re.search(rf"^architecture {len(archs)}/{len(archs)} done: EDSR .*; elapsed \S+, ETA 0s$", captured.err,
                     flags=re.M), captured.err
    assert "searchable: Kendall tau" in printed and "global_skip=bicubic: Kendall tau" in printed
    assert "grad-norm" in printed and "best tau per CPU second" in printed
    # A re-run trains nothing and keeps the same runs; another sample in the same folder is refused.
    before = (out / "runs.csv").read_text()
    assert main(argv) == 0
    assert f"({len(runs)} already done)" in capsys.readouterr().err
    assert (out / "runs.csv").read_text() == before
    # --no-train with a second seed: nothing trained, the tables from what is there (1-seed designs).
    assert main([*argv[:8], "2", *argv[9:], "--no-train"]) == 0
    assert f"--no-train: {2 * len(archs)} runs missing" in capsys.readouterr().err
    assert (out / "runs.csv").read_text() == before
    assert main([*argv[:-2], "--seed", "5", "-o", str(out)]) == 2
    assert "other settings (seed differ" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--n", "2"], "--n must be an integer >= 3"),
    (["--n", "4", "--proxy", "tiny", "--reference", "proxy-tiny"], "are the same fidelity"),
    (["--n", "4", "--proxy", "tiny", "--reference", "tiny@100"], "is shorter than --proxy"),
    (["--n", "4", "--reference", "tiny*ten"], "expected NAME*FACTOR"),
    (["--n", "4", "--space", "nope"], "unknown search space 'nope'"),
    (["--n", "4", "--fix", "kernel_size=3"], "only a dimension with one value per net"),
    (["--n", "4", "--proxy", ","], "give at least one proxy fidelity"),
])
def test_fidelity_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str], message: str) -> None:
    assert main(["fidelity", *argv, "-o", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err

