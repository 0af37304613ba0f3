"""The NTIRE efficient-SR score (srnas.arch.efficiency) against hand-computed values."""

from __future__ import annotations

import math

import pytest

from srnas.arch.efficiency import challenge_flops, ntire_score
from srnas.arch.presets import preset_config
from srnas.errors import ConfigError


def test_score_against_hand_computed_values() -> None:
    base = (10.0, 20e9, 300_000.0)
    # A net at half the baseline's runtime, the same FLOPs, twice the parameters.
    net = dict(runtime=5.0, flops=20e9, params=600_000.0)
    assert ntire_score(**net, baseline=base, year=2026) == pytest.approx(
        0.8 * math.exp(1.0) + 0.1 * math.exp(2.0) + 0.1 * math.exp(4.0))
    assert ntire_score(**net, baseline=base, year=2024) == pytest.approx(
        0.7 * math.exp(1.0) + 0.15 * math.exp(2.0) + 0.15 * math.exp(4.0))
    assert ntire_score(**net, baseline=base, year=2025) == ntire_score(**net, baseline=base, year=2024)
    # The baseline scores e^2 whatever the weights; lower is better.
    for year in (2024, 2025, 2026):
        assert ntire_score(runtime=10.0, flops=20e9, params=3e5, baseline=base, year=year) == pytest.approx(math.exp(2))
    assert ntire_score(runtime=9.0, flops=20e9, params=3e5, baseline=base) < math.exp(2)


def test_bad_inputs_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match="unknown NTIRE year 2023; allowed: 2024 \\| 2025 \\| 2026"):
        ntire_score(runtime=1, flops=1, params=1, baseline=(1, 1, 1), year=2023)
    with pytest.raises(ConfigError, match="the baseline's flops must be a positive number"):
        ntire_score(runtime=1, flops=1, params=1, baseline=(1, 0, 1))
    with pytest.raises(ConfigError, match="runtime must be a finite number >= 0"):
        ntire_score(runtime=float("nan"), flops=1, params=1, baseline=(1, 1, 1))


def test_challenge_flops_of_the_2026_baseline() -> None:
    """SPAN with 28 channels at x4, fused: the challenge's 9.83G on a 256x256 LR input."""
    cfg = preset_config("span", scale=4, n_feats=28)
    assert challenge_flops(cfg) == 9_833_807_872
    assert round(challenge_flops(cfg) / 1e9, 2) == 9.83
