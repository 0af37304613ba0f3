"""Schedules: named fidelities, the paper's lr policy, identity and (de)serialisation."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from srnas.errors import ConfigError
from srnas.train.schedules import (
    PAPER_SCHEDULES, PROXY_FIDELITIES, PaperSchedule, ProxySchedule, get_schedule, schedule_from_dict,
)


def test_paper_schedule_follows_the_paper() -> None:
    paper = get_schedule("paper")
    assert isinstance(paper, PaperSchedule)
    assert (paper.updates, paper.batch, paper.patch, paper.lr) == (300_000, 16, 48, 1e-4)
    assert (paper.betas, paper.eps, paper.loss) == ((0.9, 0.999), 1e-8, "l1")
    assert paper.lr_milestones == (200_000,)
    long = get_schedule("paper-long")
    assert long.updates == 1_000_000
    assert long.lr_milestones == (200_000, 400_000, 600_000, 800_000)
    assert long.lr_at(999_999) == pytest.approx(1e-4 / 16)


@pytest.mark.parametrize("milestones", [(3, 7), (1,), (5, 6, 9)])
def test_lr_halves_exactly_at_the_configured_update_counts(milestones: tuple[int, ...]) -> None:
    s = ProxySchedule(name="t", updates=10, lr=1e-3, lr_milestones=milestones)
    lrs = [s.lr_at(u) for u in range(10)]
    for u in range(1, 10):
        expected = 0.5 if u in milestones else 1.0
        assert lrs[u] / lrs[u - 1] == pytest.approx(expected), (u, lrs)
    assert lrs[0] == 1e-3


def test_cosine_option() -> None:
    s = ProxySchedule(name="c", updates=100, lr=1e-3, lr_milestones="cosine")  # type: ignore[arg-type]
    assert s.lr_policy == "cosine" and s.lr_milestones == ()
    assert s.lr_at(0) == pytest.approx(1e-3)
    assert s.lr_at(50) == pytest.approx(5e-4)
    assert s.lr_at(100) == pytest.approx(0.0)
    assert all(s.lr_at(u) >= s.lr_at(u + 1) for u in range(100))


def test_named_fidelities_and_aliases() -> None:
    assert {"tiny", "short", "medium"} <= set(PROXY_FIDELITIES)
    tiny = get_schedule("proxy-tiny")
    assert get_schedule("tiny") is tiny and get_schedule("Proxy_Tiny") is tiny
    assert (tiny.updates, tiny.batch, tiny.patch, tiny.lr) == (300, 16, 24, 2e-3)
    assert get_schedule(tiny) is tiny
    cut = get_schedule("proxy-tiny@40")
    assert (cut.name, cut.updates, cut.lr_milestones) == ("tiny@40", 40, ())
    with pytest.raises(ConfigError, match="NAME@UPDATES"):
        get_schedule("tiny@0")
    for name in ("proxy-short", "medium", "paper", "paper-long"):
        assert get_schedule(name).name == name.removeprefix("proxy-")


def test_unknown_schedule_names_the_allowed_ones() -> None:
    with pytest.raises(ConfigError) as err:
        get_schedule("proxy-huge")
    msg = str(err.value)
    assert "'proxy-huge'" in msg and "paper-long" in msg and "proxy-tiny" in msg
    assert "\n" not in msg


@pytest.mark.parametrize("bad", [dict(updates=0), dict(batch=-1), dict(lr=0.0), dict(lr_milestones=(5, 3)),
                                 dict(lr_policy="linear"), dict(loss="ssim"), dict(val_images=0)])
def test_invalid_fields_raise_config_error(bad: dict) -> None:
    with pytest.raises(ConfigError, match="schedule 'x'"):
        ProxySchedule(name="x", **{"updates": 10, **bad})


def test_fidelity_id_is_stable_and_tracks_training_fields() -> None:
    a = ProxySchedule(name="a", updates=300, lr=2e-3, lr_milestones=(200,), eval_every=50)
    b = dataclasses.replace(a, name="b", eval_every=100)  # name and eval points do not change training
    assert a.fidelity_id == b.fidelity_id
    for change in (dict(updates=301), dict(batch=8), dict(patch=32), dict(lr=1e-3), dict(lr_milestones=(100,)),
                   dict(val_images=3), dict(augment=False)):
        assert dataclasses.replace(a, **change).fidelity_id != a.fidelity_id, change
    assert a.fidelity_id.startswith("u300-b16-p24-lr0.002-step-")
    # The same in a fresh interpreter (no hash randomisation involved).
    code = ("from srnas.train.schedules import ProxySchedule as P; "
            "print(P(name='z', updates=300, lr=2e-3, lr_milestones=(200,)).fidelity_id)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == a.fidelity_id


def test_to_dict_round_trip_and_json() -> None:
    for s in [*PROXY_FIDELITIES.values(), *PAPER_SCHEDULES.values()]:
        d = s.to_dict()
        json.dumps(d)
        assert d["fidelity_id"] == s.fidelity_id
        assert schedule_from_dict(d) == s


def test_shortened_keeps_milestones_inside_and_renames() -> None:
    paper = get_schedule("paper")
    short = paper.shortened(5)
    assert short.updates == 5 and short.lr_milestones == () and short.eval_every == 5
    assert short.name == "paper@5" and short.fidelity_id != paper.fidelity_id
    assert paper.shortened(10**7) is paper
    assert short.eval_points() == [5]
    assert get_schedule("tiny").eval_points() == [50, 100, 150, 200, 250, 300]


def test_import_does_not_pull_torch() -> None:
    code = "import sys, srnas.train.schedules, srnas.train; srnas.train.get_schedule('tiny'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_tiny_designs_of_the_fidelity_study() -> None:
    step, cosine = get_schedule("tiny-step"), get_schedule("tiny-cosine")
    # tiny-step is the first tiny, unchanged: studies recorded with it keep comparing with it.
    assert step.fidelity_id == "u300-b16-p24-lr0.002-step-9075762d"
    assert (step.updates, step.lr_milestones, step.val_images, step.eval_every) == (300, (200,), 4, 50)
    # Same budget, batch, patch and peak lr; the lr annealed to zero instead of halved once.
    assert (cosine.updates, cosine.batch, cosine.patch, cosine.lr) == (step.updates, step.batch, step.patch, step.lr)
    assert cosine.lr_policy == "cosine" and cosine.lr_at(0) == 2e-3 and cosine.lr_at(299) < 1e-6
    assert cosine.fidelity_id != step.fidelity_id and cosine.eval_points() == step.eval_points()
    ref = get_schedule("tiny-cosine*10")
    assert ref.updates == 3000 and ref.lr_policy == "cosine" and ref.lr_at(1500) == pytest.approx(1e-3)
    # The default tiny is the design the study chose for the tiny space: tiny-step scored on the
    # first validation image (the runs of benchmarks/fidelity-tiny were trained under this id).
    assert get_schedule("tiny").fidelity_id == step.replace(val_images=1).fidelity_id \
        == "u300-b16-p24-lr0.002-step-8e39e6a3"
    assert {"tiny-step", "tiny-cosine"} <= set(PROXY_FIDELITIES)
