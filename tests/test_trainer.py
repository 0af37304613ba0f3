"""Trainer: learns on the demo data, follows the lr schedule, MDSR branch isolation, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from srnas.arch import ArchConfig
from srnas.data import SRImageSet, demo_split
from srnas.errors import ConfigError, DataError, TrainingError
from srnas.train import ProxySchedule, Trainer, TrainProgress, TrainResult, get_schedule


@pytest.fixture(scope="module")
def demo_x2() -> tuple[SRImageSet, SRImageSet]:
    return demo_split((2,))


def _tiny_schedule(updates: int = 6, **kw: object) -> ProxySchedule:
    return ProxySchedule(name="t", **{"updates": updates, "batch": 4, "patch": 12, "lr": 1e-3,
                                      "eval_every": 3, "val_images": 1, **kw})


def _small_val(val: SRImageSet, size: int = 96) -> SRImageSet:
    """The validation photograph cut to size x size HR pixels (fast evaluation)."""
    hr = np.ascontiguousarray(val.hr[0][:size, :size])
    lr = {s: [np.ascontiguousarray(v[0][: size // s, : size // s])] for s, v in val.lr.items()}
    return SRImageSet(name="val-crop", names=val.names[:1], hr=[hr], lr=lr, protocol=val.protocol)


@pytest.mark.slow
def test_tiny_proxy_beats_bicubic_on_the_demo_data(demo_x2: tuple[SRImageSet, SRImageSet]) -> None:
    train, val = demo_x2
    cfg = ArchConfig(n_resblocks=2, n_feats=16, global_skip="bicubic")
    result = Trainer(cfg, train, val, get_schedule("proxy-tiny"), seed=0, ssim=True).fit()
    assert isinstance(result, TrainResult)
    assert result.updates == 300
    assert [u for u, _ in result.psnr_curve] == get_schedule("tiny").eval_points()
    assert result.final["protocol"] == "benchmark" and result.final["scale"] == 2
    assert result.final["val_set"] == "demo-val"
    # tiny scores on the first demo validation photograph, coffee: bicubic 30.59 dB
    # (docs/reference.md section 6)
    assert result.final["val_images"] == 1
    assert result.bicubic_psnr == pytest.approx(30.59, abs=0.02)
    assert result.final["psnr"] > result.bicubic_psnr + 0.5, result.psnr_curve
    assert result.final["psnr"] == result.psnr_curve[-1][1]
    assert 0.5 < result.final["ssim"] < 1
    assert not result.model.training
    assert result.wall_time_s > 0 and result.device == "cpu" and result.seed == 0


def test_untrained_bicubic_skip_net_scores_bicubic(demo_x2: tuple[SRImageSet, SRImageSet]) -> None:
    """The zero-initialised tail makes the untrained net a bicubic upsampler: the protocol matches."""
    train, val = demo_x2
    trainer = Trainer(ArchConfig(n_resblocks=1, n_feats=4, global_skip="bicubic"), train, _small_val(val),
                      _tiny_schedule())
    trainer.prepare()
    scores = trainer.validate()
    assert scores["psnr"] == pytest.approx(scores["bicubic_psnr"], abs=0.05)


def test_lr_halves_at_the_configured_update_counts(demo_x2: tuple[SRImageSet, SRImageSet]) -> None:
    train, val = demo_x2
    seen: list[tuple[int, float]] = []
    sched = _tiny_schedule(updates=9, lr_milestones=(4, 7), eval_every=9)
    trainer = Trainer(ArchConfig(n_resblocks=1, n_feats=4), train, _small_val(val), sched,
                      progress=lambda p: seen.append((p.update, p.lr)))
    original = trainer.set_lr
    applied: list[float] = []

    def spy(lr: float) -> None:
        original(lr)
        applied.append(trainer.optimizer.param_groups[0]["lr"])

    trainer.set_lr = spy  # type: ignore[method-assign]
    trainer.fit()
    assert applied == [1e-3] * 4 + [5e-4] * 3 + [2.5e-4] * 2
    assert [u for u, _ in seen] == list(range(1, 10))
    assert [lr for _, lr in seen] == applied


def _mdsr_cfg() -> ArchConfig:
    return ArchConfig(family="mdsr", scales=(2, 3, 4), n_resblocks=1, n_feats=8, head_blocks=1, head_kernel=3)


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_mdsr_updates_only_the_chosen_scales_branches() -> None:
    train, val = demo_split((2, 3, 4))
    trainer = Trainer(_mdsr_cfg(), train, _small_val(val), _tiny_schedule())
    trainer.prepare()
    net = trainer.model
    opt = trainer.optimizer
    branches = {s: (net.pre_process[i], net.upsample[i]) for i, s in enumerate(net.scales)}

    def step(scale: int) -> None:
        g = torch.Generator().manual_seed(scale)
        lr = torch.rand(2, 3, 8, 8, generator=g) * 255
        hr = torch.rand(2, 3, 8 * scale, 8 * scale, generator=g) * 255
        trainer.step(lr, hr, scale)

    before = {s: [_snapshot(m) for m in mods] for s, mods in branches.items()}
    shared_before = _snapshot(net.head)
    step(3)
    for s, mods in branches.items():
        unchanged = all(_same(b, _snapshot(m)) for b, m in zip(before[s], mods))
        assert unchanged == (s != 3), f"x{s} branch {'changed' if s != 3 else 'did not change'}"
        params = [p for m in mods for p in m.parameters()]
        assert all((p in opt.state) == (s == 3) for p in params), f"Adam state of x{s}"
    assert not _same(shared_before, _snapshot(net.head))

    # A later step at x2 leaves x3's weights and Adam moments exactly as they were.
    x3_params = [p for m in branches[3] for p in m.parameters()]
    x3_weights = [p.detach().clone() for p in x3_params]
    x3_moments = [{k: v.clone() for k, v in opt.state[p].items()} for p in x3_params]
    step(2)
    step(2)
    for p, w, m in zip(x3_params, x3_weights, x3_moments):
        assert torch.equal(p, w)
        assert all(torch.equal(opt.state[p][k], m[k]) for k in m)
    assert all(p not in opt.state for p in (q for mod in branches[4] for q in mod.parameters()))


def test_mdsr_fit_reports_every_scale_and_their_mean() -> None:
    train, val = demo_split((2, 3, 4))
    result = Trainer(_mdsr_cfg(), train, _small_val(val), _tiny_schedule(updates=4, eval_every=4)).fit()
    per = result.final["per_scale"]
    assert sorted(per) == ["2", "3", "4"]
    assert result.final["scale"] == [2, 3, 4]
    assert result.final["psnr"] == pytest.approx(np.mean([v["psnr"] for v in per.values()]))
    assert result.bicubic_psnr == pytest.approx(np.mean([v["bicubic_psnr"] for v in per.values()]))
    assert per["2"]["bicubic_psnr"] > per["3"]["bicubic_psnr"] > per["4"]["bicubic_psnr"]


def test_mdsr_accepts_one_validation_set_per_scale() -> None:
    train, _ = demo_split((2, 3))
    cfg = ArchConfig(family="mdsr", scales=(2, 3), n_resblocks=1, n_feats=4, head_blocks=0)
    vals = {s: _small_val(demo_split((s,))[1]) for s in (2, 3)}
    result = Trainer(cfg, train, vals, _tiny_schedule(updates=2, eval_every=2)).fit()
    assert sorted(result.final["per_scale"]) == ["2", "3"]
    with pytest.raises(ConfigError, match="x3"):
        Trainer(cfg, train, {2: vals[2]}, _tiny_schedule())
    with pytest.raises(DataError, match="x3"):
        Trainer(cfg, train, vals[2], _tiny_schedule()).fit()


def test_nan_loss_stops_with_a_clear_error(demo_x2: tuple[SRImageSet, SRImageSet]) -> None:
    train, val = demo_x2

    def poison(p: TrainProgress) -> None:
        if p.update == 3:
            with torch.no_grad():
                trainer.model.head[0].weight.fill_(math.nan)

    trainer = Trainer(ArchConfig(n_resblocks=1, n_feats=4), train, _small_val(val), _tiny_schedule(updates=8),
                      progress=poison)
    with pytest.raises(TrainingError) as err:
        trainer.fit()
    msg = str(err.value)
    assert msg.startswith("non-finite loss at update 4 ")
    assert "\n" not in msg and "lr" in msg


def test_on_eval_sees_every_point_and_its_exception_propagates(demo_x2: tuple[SRImageSet, SRImageSet]) -> None:
    train, val = demo_x2

    class Pruned(Exception):
        pass

    calls: list[tuple[int, float]] = []

    def on_eval(step: int, psnr: float) -> None:
        calls.append((step, psnr))
        if step == 6:
            raise Pruned("stop here")

    trainer = Trainer(ArchConfig(n_resblocks=1, n_feats=4), train, _small_val(val), _tiny_schedule(updates=12),
                      on_eval=on_eval)
    with pytest.raises(Pruned, match="stop here"):
        trainer.fit()
    assert [s for s, _ in calls] == [3, 6]
    assert all(math.isfinite(p) for _, p in calls)


def test_same_seed_same_result_other_seed_differs(demo_x2: tuple[SRImageSet, SRImageSet]) -> None:
    train, val = demo_x2
    cfg = ArchConfig(n_resblocks=1, n_feats=4)
    runs = [Trainer(cfg, train, _small_val(val), _tiny_schedule(updates=3), seed=s).fit() for s in (1, 1, 2)]
    a, b, c = (_snapshot(r.model) for r in runs)
    assert _same(a, b)
    assert not _same(a, c)


def test_x3_starts_from_x2_weights_except_the_upsampler(demo_x2: tuple[SRImageSet, SRImageSet]) -> None:
    from srnas.arch import build_model

    cfg2 = ArchConfig(n_resblocks=1, n_feats=4)
    x2 = build_model(cfg2).state_dict()
    train3, val3 = demo_split((3,))
    trainer = Trainer(cfg2.replace(scales=(3,)), train3, _small_val(val3), _tiny_schedule(), init_weights=x2)
    trainer.prepare()
    own = trainer.model.state_dict()
    assert torch.equal(own["body.0.body.0.weight"], x2["body.0.body.0.weight"])
    assert torch.equal(own["head.0.weight"], x2["head.0.weight"])
    assert own["tail.0.0.weight"].shape != x2["tail.0.0.weight"].shape
    with pytest.raises(ConfigError, match="no tensor matches"):
        Trainer(cfg2.replace(scales=(3,)), train3, val3, _tiny_schedule(), init_weights={"foo": torch.zeros(1)}).prepare()


def test_invalid_arguments() -> None:
    train, val = demo_split((2,))
    cfg = ArchConfig(n_resblocks=1, n_feats=4)
    tiny = get_schedule("tiny")
    with pytest.raises(ConfigError, match="unknown schedule"):
        get_schedule("proxy-nope")
    with pytest.raises(ConfigError, match="Trainer needs a schedule object"):
        Trainer(cfg, train, val, "tiny")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="precision 'bf16'"):
        Trainer(cfg, train, val, tiny, precision="bf16")
    with pytest.raises(ConfigError, match="device"):
        Trainer(cfg, train, val, tiny, device="tpu")
    with pytest.raises(ConfigError, match="ArchConfig"):
        Trainer("edsr-baseline", train, val, tiny)  # type: ignore[arg-type]


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
def test_cuda_graph_training_follows_eager_training(demo_x2: tuple[SRImageSet, SRImageSet]) -> None:
    """Captured steps (bf16, channels_last, CUDA graphs) train like eager fp32 steps."""
    train, val = demo_x2
    cfg = ArchConfig(n_resblocks=2, n_feats=16)
    sched = _tiny_schedule(updates=40, batch=8, patch=16, eval_every=40)
    graphed = Trainer(cfg, train, _small_val(val), sched, device="cuda")
    result = graphed.fit()
    assert graphed.graph_failure is None and graphed._graphs  # captured, not fallen back
    eager = Trainer(cfg, train, _small_val(val), sched, device="cuda", precision="fp32", cuda_graphs=False).fit()
    assert result.loss_curve[-1][1] == pytest.approx(eager.loss_curve[-1][1], rel=0.15)
    assert result.final["psnr"] == pytest.approx(eager.final["psnr"], abs=0.5)


@cuda
def test_cuda_mdsr_graphs_keep_other_branches(demo_x2: tuple[SRImageSet, SRImageSet]) -> None:
    train, val = demo_split((2, 3, 4))
    trainer = Trainer(_mdsr_cfg(), train, _small_val(val), _tiny_schedule(updates=30), device="cuda")
    trainer.prepare()
    x4_before = _snapshot(trainer.model.upsample[2])
    for _ in range(12):  # past the warm-up: x2 steps replay a captured graph
        lr = torch.rand(4, 3, 12, 12, device="cuda") * 255
        trainer.step(lr, torch.rand(4, 3, 24, 24, device="cuda") * 255, 2)
    torch.cuda.synchronize()
    assert trainer._graphs and any(e.graph is not None for e in trainer._graphs.values())
    assert _same(x4_before, _snapshot(trainer.model.upsample[2]))
