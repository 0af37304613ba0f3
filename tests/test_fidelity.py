"""The proxy-fidelity study: the sample stratified over dimensions (distinct parameter counts),
the space variant, fidelity names, zero-cost scores, tau-b overall, inside parameter bands and
within groups with bootstrap and paired-bootstrap intervals (checked against scipy), the designs
and baselines (skip bit, Mult-Adds with and without the skip) and their CPU accounting, held-out
scoring, tau at every evaluation point and the first rung, the rule for defaults, the resumable
run log, and a short run on the tiny space with the real trainer."""

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
from srnas.results.fidelity.analysis import (
    ArchRecord, analyse, checkpoint_taus, choose, design_grid, design_scores, first_rung, noise_ceiling,
)
from srnas.results.fidelity.runs import RUN_COLUMNS, append_row, read_runs
from srnas.results.fidelity.sample import (
    fixed_variant, sample_spread, searchable_dimensions, stratified_sample, variant_sample,
)
from srnas.results.fidelity.stats import (
    band_pairs, bootstrap_tau, extrapolate_curve, group_pairs, kendall_tau_b, mean_tau, paired_difference, rank_stats,
)
from srnas.results.fidelity.study import parse_fidelity, parse_fix
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


@pytest.mark.parametrize("space_name", ["tiny", "tiny-wide", "lightweight"])
def test_sample_has_distinct_params_and_covers_every_value(space_name: str) -> None:
    space = SearchSpace.load(space_name)
    picks = stratified_sample(space, 24, seed=0)
    params = [count_params(c) for c in picks]
    assert len(set(params)) == 24 and params == sorted(params)  # no two nets of one size
    assert all(space.params_of(c) is not None and space.satisfies(c) for c in picks)
    spread = sample_spread(space, picks)
    assert spread["distinct_params"] == 24 and spread["n"] == 24
    for dim, spec in searchable_dimensions(space):
        counts = spread["dimensions"][dim.name]
        assert set(counts) == {str(v) for v in spec.choices}
        assert min(counts.values()) >= 1, (dim.name, counts)  # every value of every dimension
        if not dim.per_block:  # one value per net: balanced (n / k, give or take one)
            assert max(counts.values()) - min(counts.values()) <= 1, (dim.name, counts)
    # Pairs within 10% exist, and they are nets of different shapes (never equal counts).
    mask = band_pairs(params)
    assert spread["band_pairs"] == np.triu(mask, 1).sum() >= 5
    assert [c.arch_id for c in stratified_sample(space, 24, seed=0)] == [c.arch_id for c in picks]
    assert [c.arch_id for c in stratified_sample(space, 24, seed=1)] != [c.arch_id for c in picks]


def test_sample_refuses_what_cannot_be_distinct() -> None:
    space = SearchSpace.load("tiny")
    with pytest.raises(ConfigError, match="distinct parameter counts"):
        stratified_sample(space.constrained(max_params=7000), 6)
    with pytest.raises(ConfigError, match="--n must be a positive integer"):
        stratified_sample(space, 0)


def test_variant_forces_the_value_and_shares_configs() -> None:
    space = SearchSpace.load("tiny")
    fix = {"global_skip": "bicubic"}
    variant = fixed_variant(space, fix)
    assert variant.params["global_skip"].choices == ("bicubic",) and variant.name == "tiny[global_skip=bicubic]"
    picks = stratified_sample(space, 20, seed=0)
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


def test_paired_bootstrap_equals_scipys() -> None:
    from scipy.stats import bootstrap

    rng = np.random.default_rng(3)
    y = rng.normal(size=10)
    a, b = y + rng.normal(size=10), y + 2 * rng.normal(size=10)

    def difference(xa: np.ndarray, xb: np.ndarray, yy: np.ndarray) -> float:
        return kendalltau(xa, yy).statistic - kendalltau(xb, yy).statistic

    ours = paired_difference(a, b, y, resamples=400, seed=7)
    theirs = bootstrap((a, b, y), difference, paired=True, vectorized=False, n_resamples=400, method="percentile",
                       rng=np.random.default_rng(7)).confidence_interval
    assert ours["diff"] == pytest.approx(difference(a, b, y))
    assert (ours["lo"], ours["hi"]) == pytest.approx((theirs.low, theirs.high))
    single = bootstrap((a, y), lambda xa, yy: kendalltau(xa, yy).statistic, paired=True, vectorized=False,
                       n_resamples=400, method="percentile", rng=np.random.default_rng(7)).confidence_interval
    assert bootstrap_tau(a, y, resamples=400, seed=7) == pytest.approx((single.low, single.high))
    # A design against itself: exactly 0 on every resample.
    assert paired_difference(a, a, y, resamples=100) == {"diff": 0.0, "lo": 0.0, "hi": 0.0}


def test_seed_designs_average_the_taus_of_their_seeds() -> None:
    y = [1.0, 2.0, 3.0, 4.0]
    good, bad = [1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]
    assert mean_tau([good, bad], y) == pytest.approx(0.0)  # a lucky seed is not the design's tau
    stats = rank_stats([good, good[::1]], y, [10, 100, 1000, 10000], resamples=50)
    assert stats["seeds"] == 2 and stats["tau"] == stats["tau_min"] == stats["tau_max"] == 1.0


def test_group_pairs_give_tau_within_skip_groups() -> None:
    skip = ["none", "none", "bicubic", "bicubic"]
    mask = group_pairs(skip)
    assert [tuple(p) for p in np.argwhere(np.triu(mask, 1))] == [(0, 1), (2, 3)]
    reference = [30.0, 31.0, 32.0, 33.0]
    bit = [0.0, 0.0, 1.0, 1.0]
    # The skip bit ranks the groups, not the nets inside them: undefined within groups.
    assert kendall_tau_b(bit, reference) == pytest.approx(4 / math.sqrt(4 * 6))
    assert kendall_tau_b(bit, reference, mask) is None
    stats = rank_stats([31.0, 30.0, 33.0, 32.0], reference, [1, 2, 3, 4], groups=skip, resamples=50)
    assert stats["group_pairs"] == 2 and stats["group_tau"] == pytest.approx(-1.0)
    assert stats["tau"] == pytest.approx(kendalltau([31.0, 30.0, 33.0, 32.0], reference).statistic)


def _run(coffee: float, held: tuple[float, float], cpu: float = 10.0, curve: list[list[float]] | None = None) -> dict:
    return {"images": {"coffee": coffee, "china": held[0], "flower": held[1]}, "fit_cpu_s": cpu, "eval_points": 6,
            "eval_cpu_s": {"coffee": 0.1, "china": 0.2, "flower": 0.3}, "curve": curve or [[300, coffee]]}


def _arch(cfg: ArchConfig) -> dict:
    return {"params": count_params(cfg), "mult_adds": 2.0, "mult_adds_learned": 1.0,
            "skip": 1 if cfg.global_skip == "bicubic" else 0, "synflow": 3.0, "synflow_cpu_s": 0.2,
            "grad_norm": 4.0, "grad_norm_cpu_s": 0.3}


def test_designs_baselines_and_held_out_scoring() -> None:
    designs = design_grid(["tiny-step", "tiny-cosine"], seeds=2, skip_searched=True)
    keys = [d.key for d in designs]
    assert keys[:3] == ["tiny-step|s1", "tiny-step|s2", "tiny-step|extrapolated"]
    assert keys[-6:] == ["synflow", "grad_norm", "params", "mult_adds", "mult_adds_learned", "skip"]
    assert [d.key for d in designs if d.searchable] == ["tiny-step|s1", "tiny-cosine|s1"]
    assert "skip" not in [d.key for d in design_grid(["tiny"], 1, skip_searched=False)]
    cfgs = [ArchConfig(n_resblocks=b, n_feats=8, global_skip=s) for b, s in ((1, "none"), (2, "bicubic"), (3, "none"))]
    records = [ArchRecord(c, _arch(c), {"tiny-step": [_run(31.0 + i, (25.0, 36.0), 10.0), _run(31.5 + i, (25.0, 36.0), 12.0)]},
                          [_run(0.0, (20.0 + i, 30.0))]) for i, c in enumerate(cfgs)]
    by_key = {d.key: d for d in designs}
    # Proxies read the selection image only (coffee); one-seed designs keep one vector per seed.
    vectors, cpu = design_scores(by_key["tiny-step|s1"], records, ["coffee"], 3000)
    assert vectors == [[31.0, 32.0, 33.0], [31.5, 32.5, 33.5]] and cpu == pytest.approx(11.0)
    vectors, cpu = design_scores(by_key["tiny-step|s2"], records, ["coffee"], 3000)
    assert vectors == [[31.25, 32.25, 33.25]] and cpu == pytest.approx(22.0)
    # A second selection image costs its evaluation at every evaluation point.
    _, cpu = design_scores(by_key["tiny-step|s1"], records, ["coffee", "china"], 3000)
    assert cpu == pytest.approx(11.0 + 6 * 0.2)
    # The skip bit is its definition: 1 with the bicubic skip, 0 without.
    assert design_scores(by_key["skip"], records, ["coffee"], 3000) == ([[0.0, 1.0, 0.0]], 0.0)
    assert design_scores(by_key["grad_norm"], records, ["coffee"], 3000)[1] == pytest.approx(0.3)
    res = analyse("searchable", records, designs[:2] + designs[-6:], select=["coffee"], held_out=["china", "flower"],
                  reference_updates=3000, skip_searched=True, resamples=50)
    # The reference is the held-out mean (china, flower), never the selection image.
    assert [r["reference_psnr"] for r in res["table"]] == [25.0, 25.5, 26.0]
    assert res["table"][1]["global_skip"] == "bicubic" and res["table"][1]["skip"] == 1.0
    assert res["table"][0]["tiny-step|s1"] == pytest.approx(31.25)


def test_skip_bit_and_learned_mult_adds_in_the_arch_rows(tmp_path: Path) -> None:
    from srnas.arch import count_mult_adds
    from srnas.results.fidelity.study import _arch_rows

    cfg = ArchConfig(n_resblocks=1, n_feats=8, global_skip="bicubic")
    rows = _arch_rows(tmp_path / "archs.csv", [cfg, cfg.replace(global_skip="none")], seed=0)
    with_skip, without = rows[cfg.arch_id], rows[cfg.replace(global_skip="none").arch_id]
    assert with_skip["skip"] == 1 and without["skip"] == 0 and with_skip["params"] == without["params"]
    assert with_skip["mult_adds"] == count_mult_adds(cfg) > with_skip["mult_adds_learned"] == without["mult_adds"]
    again = _arch_rows(tmp_path / "archs.csv", [cfg], seed=0)  # read back, not recomputed
    assert again[cfg.arch_id]["mult_adds_learned"] == with_skip["mult_adds_learned"]


def test_checkpoint_taus_come_from_the_recorded_curves() -> None:
    cfgs = [ArchConfig(n_resblocks=1, n_feats=f) for f in (8, 12, 16, 24, 32)]
    y = [30.0, 31.0, 32.0, 33.0, 34.0]
    early = [[1.0, 3.0, 2.0, 5.0, 4.0], [2.0, 1.0, 3.0, 4.0, 5.0]]  # per seed, at update 50
    records = []
    for i, c in enumerate(cfgs):
        runs = [_run(y[i], (y[i], y[i]), curve=[[50, early[j][i]], [100, y[i] + j], [150, y[i]]]) for j in range(2)]
        records.append(ArchRecord(c, _arch(c), {"p": runs}, [_run(0, (y[i], y[i]))]))
    points = checkpoint_taus(records, "p", y, None, resamples=200)
    assert [p["update"] for p in points] == [50, 100, 150]
    want = np.mean([kendalltau(e, y).statistic for e in early])
    assert points[0]["tau"] == pytest.approx(want) and points[1]["tau"] == points[2]["tau"] == 1.0
    assert points[2]["vs_final"] == 0.0 and points[0]["vs_final"] == pytest.approx(want - 1.0)
    assert points[0]["tau_lo"] <= points[0]["tau"] <= points[0]["tau_hi"]
    # The first rung: from where on no point is distinguishably worse than the final one.
    row = lambda u, hi: {"update": u, "vs_final_hi": hi}  # noqa: E731
    assert first_rung([row(50, -0.1), row(100, 0.05), row(150, 0.0)]) == 100
    assert first_rung([row(50, 0.2), row(100, -0.01), row(150, 0.0)]) == 150
    assert first_rung([row(50, 0.2), row(100, 0.1), row(150, 0.0)]) == 50
    # Within skip groups too: a point that ranks only the skip bit well is no rung.
    grouped = lambda u, hi, ghi: {**row(u, hi), "group_vs_final_hi": ghi}  # noqa: E731
    assert first_rung([grouped(50, 0.2, -0.3), grouped(100, 0.1, 0.02), grouped(150, 0.0, 0.0)]) == 100


def test_rule_prefers_a_costlier_design_only_when_its_interval_excludes_zero() -> None:
    y = list(range(12))
    noisy = [0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10]
    scores = {"cheap": [noisy], "same": [y], "costly": [y], "tie": [noisy[::-1]]}
    rows = [{"design": "cheap", "searchable": True, "tau": mean_tau([noisy], y), "cpu_s": 10.0},
            {"design": "tie", "searchable": True, "tau": -0.5, "cpu_s": 10.5},
            {"design": "costly", "searchable": True, "tau": 1.0, "cpu_s": 30.0},
            {"design": "zero", "searchable": False, "tau": 1.0, "cpu_s": 0.1}]
    chosen, steps = choose(rows, scores, y, resamples=300)
    assert steps[0]["design"] == "cheap"  # of the two equally cheap ones the higher tau; zero-cost not eligible
    # tau 1.0 vs 0.82 over 12 nets: the paired interval holds 0, so the cheap design stays.
    assert chosen == "cheap" and steps[1]["design"] == "costly" and steps[1]["lo"] <= 0 <= steps[1]["hi"]
    far = [float(v) for v in [11, 0, 10, 1, 9, 2, 8, 3, 7, 4, 6, 5]]
    rows[0]["tau"] = mean_tau([far], y)
    chosen, steps = choose(rows, {**scores, "cheap": [far]}, y, resamples=300)
    assert chosen == "costly" and steps[1]["lo"] > 0


def test_noise_ceiling_is_the_reference_against_itself() -> None:
    seed0, seed1 = [1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 1.0, 3.0, 4.0, 5.0]
    ceiling = noise_ceiling([seed0, seed1, seed0], [1, 2, 3, 4, 5], None, resamples=100)
    pairs = [kendalltau(seed0, seed1).statistic, kendalltau(seed0, seed1).statistic, 1.0]
    assert ceiling["seed_pairs"] == 3 and ceiling["tau"] == pytest.approx(np.mean(pairs))
    assert noise_ceiling([seed0], [1, 2, 3, 4, 5], None) is None


def test_run_log_survives_a_cut_line(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    row = {k: "" for k in RUN_COLUMNS} | {
        "arch_id": "edsr-a", "schedule": "tiny", "train_id": "u300-x", "seed": 0, "updates": 300, "psnr": 31.0,
        "images": json.dumps({"coffee": 31.0}), "curve": "[[300, 31.0]]", "fit_cpu_s": 4.0, "fit_wall_s": 4.1,
        "eval_cpu_s": json.dumps({"coffee": 0.1}), "eval_points": 6, "protocol": "benchmark", "config": "{}"}
    append_row(path, RUN_COLUMNS, row)
    with path.open("a") as handle:
        handle.write("edsr-b,tiny,u300-x,0,300,3")  # a crash in the middle of a row
    assert list(read_runs(path)) == [("edsr-a", "u300-x", 0)]
    append_row(path, RUN_COLUMNS, row | {"arch_id": "edsr-c"})
    runs = read_runs(path)
    assert list(runs) == [("edsr-a", "u300-x", 0), ("edsr-c", "u300-x", 0)]
    assert runs[("edsr-c", "u300-x", 0)]["images"] == {"coffee": 31.0} and runs[("edsr-c", "u300-x", 0)]["seed"] == 0
    assert len(path.read_text().splitlines()) == 3


@pytest.mark.slow
def test_fidelity_run_with_variant_and_resume(tmp_path: Path, small_space: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "fid"
    argv = ["fidelity", "--space", str(small_space), "--n", "4", "--seeds", "1", "--reference-seeds", "2", "--proxy",
            "tiny-step@10", "--reference", "tiny-cosine@20", "--fix", "global_skip=bicubic", "--device", "cpu",
            "-o", str(out)]
    assert main(argv) == 0
    runs = read_runs(out / "runs.csv")
    settings = json.loads((out / "settings.json").read_text())
    assert settings["fix"] == {"global_skip": "bicubic"} and settings["reference_seeds"] == 2
    assert settings["select_images"] == ["coffee"] and settings["held_out_images"] == ["china", "flower"]
    payload = json.loads((out / "correlations.json").read_text())
    variants = payload["variants"]
    assert list(variants) == ["searchable", "global_skip=bicubic"] and all(len(v["archs"]) == 4 for v in variants.values())
    archs = set(variants["searchable"]["archs"]) | set(variants["global_skip=bicubic"]["archs"])
    assert len(runs) == 3 * len(archs)  # one proxy and two reference runs per architecture, shared ones once
    for r in runs.values():
        assert r["protocol"] == "benchmark" and list(r["images"]) == ["coffee", "china", "flower"]
        assert 20 < r["psnr"] < 40 and r["fit_cpu_s"] > 0 and set(r["eval_cpu_s"]) == set(r["images"])
        # Reference runs keep a curve on the selection image at 10 points (the reference curve).
        assert len(r["curve"]) == (10 if r["updates"] == 20 else 1)
    assert {r["seed"] for r in runs.values()} == {0, 1000, 1001}  # the reference starts from other initialisations
    assert payload["bicubic_psnr"]["coffee"] == pytest.approx(30.59, abs=0.01)
    assert payload["spread"]["searchable"]["distinct_params"] == 4
    main_v = variants["searchable"]
    designs = {d["design"]: d for d in main_v["designs"]}
    assert "skip" in designs and "skip" not in {d["design"] for d in variants["global_skip=bicubic"]["designs"]}
    for d in designs.values():
        assert d["n"] == 4 and (d["tau"] is None or -1 <= d["tau"] <= 1)
        assert d["tau"] is None or d["tau_lo"] is None or d["tau_lo"] <= d["tau"] + 1e-9 <= d["tau_hi"] + 2e-9
    assert designs["params"]["cpu_s"] == 0 and designs["params"]["tau"] is not None
    assert main_v["chosen"] == "tiny-step@10|s1" and main_v["noise_ceiling"]["seed_pairs"] == 1
    assert [c["update"] for c in main_v["checkpoints"]] == [10] and main_v["first_rung"] == 10
    assert [p["update"] for p in main_v["reference_curve"]] == list(range(2, 21, 2))
    assert payload["recommended"]["searchable"] == "tiny-step@10|s1"
    html = (out / "fidelity.html").read_text()
    assert 'id="fig-fidelity"' in html and "id='table-designs'" in html
    assert not re.search(r"<script[^>]*\bsrc=", html, flags=re.I)
    captured = capsys.readouterr()
    printed = captured.out
    # Progress lines (stderr): each run and each finished architecture, with the ETA.
    assert re.search(rf"^\[{len(runs)}/{len(runs)}\] .*; elapsed \S+, ETA 0s$", captured.err, flags=re.M)
    assert re.search(rf"^architecture {len(archs)}/{len(archs)} done: EDSR .*; elapsed \S+, ETA 0s$", captured.err,
                     flags=re.M), captured.err
    assert "searchable: Kendall tau with the held-out reference" in printed
    assert "global_skip=bicubic: Kendall tau" in printed and "noise ceiling" in printed
    assert "grad-norm" in printed and "has the bicubic skip" in printed and "chosen by the rule: tiny-step@10" in printed
    # A re-run trains nothing and keeps the same runs; another sample in the same folder is refused.
    before = (out / "runs.csv").read_text()
    assert main(argv) == 0
    assert f"({len(runs)} already done)" in capsys.readouterr().err
    assert (out / "runs.csv").read_text() == before
    # --no-train with a second seed: nothing trained, the tables from what is there (no complete net).
    assert main([*argv[:6], "2", *argv[7:], "--no-train"]) == 0
    assert f"--no-train: {len(archs)} runs missing" in capsys.readouterr().err
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
    (["--n", "4", "--select-images", "3"], "at least one must stay held out"),
])
def test_fidelity_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str], message: str) -> None:
    assert main(["fidelity", *argv, "-o", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err

