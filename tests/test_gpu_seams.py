"""The GPU path's control flow and policies, checked on the CPU through seams: whole-step graphs
with a stand-in backend (warm-up, one graph per scale and shape, the lr as a tensor, fallback,
replays that must train), the fp32 output stage under bf16 autocast, checkpoints read to the CPU
first, device binding of workers, torch.compile with a cheap backend, scores on the device, and
the training store kept across runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from srnas.arch import ArchConfig, build_model
from srnas.arch.blocks import BicubicUpsample
from srnas.data import SRImageSet, demo_split
from srnas.train import ProxySchedule, Trainer
from srnas.train.graphs import RecordedGraphs

warnings_off = pytest.mark.filterwarnings("ignore:graphs turned off:RuntimeWarning")


@pytest.fixture(scope="module")
def demo_x2() -> tuple[SRImageSet, SRImageSet]:
    return demo_split((2,))


def _small(val: SRImageSet, size: int = 48) -> SRImageSet:
    hr = np.ascontiguousarray(val.hr[0][:size, :size])
    lr = {s: [np.ascontiguousarray(v[0][: size // s, : size // s])] for s, v in val.lr.items()}
    return SRImageSet(name="val-crop", names=val.names[:1], hr=[hr], lr=lr, protocol=val.protocol)


def _schedule(updates: int = 12, **kw: Any) -> ProxySchedule:
    return ProxySchedule(name="g", **{"updates": updates, "batch": 4, "patch": 8, "lr": 1e-3,
                                      "eval_every": updates, "val_images": 1, **kw})


def _params(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters() if p.requires_grad]


CFG = ArchConfig(n_resblocks=1, n_feats=8)


def test_recorded_graphs_train_like_eager_steps(demo_x2: tuple[SRImageSet, SRImageSet]) -> None:
    train, val = demo_x2
    sched = _schedule(updates=12, lr_milestones=(8,))  # the lr changes while graphs replay
    backend = RecordedGraphs()
    graphed = Trainer(CFG, train, _small(val), sched, seed=3, graph_backend=backend)
    result = graphed.fit()
    eager = Trainer(CFG, train, _small(val), sched, seed=3).fit()
    assert graphed.graph_failure is None and eager.first_replay_s is None
    # Warm-up steps, then one capture for the one (scale, shape), replayed for every later step.
    assert len(backend.captured) == 1 and backend.replays == 12 - 3
    assert result.first_replay_s is not None and 0 < result.first_replay_s < result.wall_time_s
    assert isinstance(graphed.optimizer.param_groups[0]["lr"], torch.Tensor)
    assert float(graphed.optimizer.param_groups[0]["lr"]) == pytest.approx(sched.lr_at(11))
    for a, b in zip(_params(result.model), _params(eager.model)):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)  # replays train, and follow the lr schedule
    assert [round(v, 4) for _, v in result.loss_curve] == [round(v, 4) for _, v in eager.loss_curve]


def test_one_graph_per_scale_and_shape(demo_x2: tuple[SRImageSet, SRImageSet]) -> None:
    train, val = demo_split((2, 3))
    cfg = ArchConfig(family="mdsr", scales=(2, 3), n_resblocks=1, n_feats=8, head_blocks=0)
    backend = RecordedGraphs()
    trainer = Trainer(cfg, train, {s: _small(val) for s in (2, 3)}, _schedule(updates=4), graph_backend=backend)
    trainer.prepare()
    x3_before = _params(trainer.model.upsample[1])
    for _ in range(5):
        trainer.step(torch.rand(4, 3, 8, 8) * 255, torch.rand(4, 3, 16, 16) * 255, 2)
    assert len(backend.captured) == 1
    for p, q in zip(x3_before, _params(trainer.model.upsample[1])):
        assert torch.equal(p, q)  # the x3 branch is left alone by x2 replays
    for _ in range(4):
        trainer.step(torch.rand(4, 3, 8, 8) * 255, torch.rand(4, 3, 24, 24) * 255, 3)
    assert len(backend.captured) == 2 and set(trainer._graphs) == {(2, (4, 3, 8, 8), (4, 3, 16, 16)),
                                                                   (3, (4, 3, 8, 8), (4, 3, 24, 24))}


class FailingCapture(RecordedGraphs):
    def __init__(self) -> None:
        super().__init__()
        self.resets = 0

    def capture(self, step: Callable[[], None]) -> Any:
        raise RuntimeError("operation not permitted when stream is capturing")

    def reset(self) -> None:
        self.resets += 1


class SilentReplay(RecordedGraphs):
    """A graph whose replay does nothing (a capture on the wrong device would do that)."""

    def replay(self, graph: Any) -> None:
        self.replays += 1


@warnings_off
@pytest.mark.parametrize("backend_cls", [FailingCapture, SilentReplay])
def test_a_failed_capture_or_an_idle_replay_falls_back_to_eager(demo_x2: tuple[SRImageSet, SRImageSet],
                                                                backend_cls: type) -> None:
    train, val = demo_x2
    backend = backend_cls()
    trainer = Trainer(CFG, train, _small(val), _schedule(updates=8), graph_backend=backend)
    result = trainer.fit()
    assert trainer.graph_failure and trainer.graphs is None and trainer._graphs is None
    assert result.graph_failure == trainer.graph_failure and np.isfinite(result.loss_curve[-1][1])
    if backend_cls is FailingCapture:
        assert "stream is capturing" in trainer.graph_failure and backend.resets == 1
    else:
        assert "left the parameters unchanged" in trainer.graph_failure
    eager = Trainer(CFG, train, _small(val), _schedule(updates=8)).fit()
    for a, b in zip(_params(result.model), _params(eager.model)):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)  # no step was lost or doubled


def test_the_output_stage_is_fp32_under_bf16_autocast() -> None:
    for cfg in (ArchConfig(n_resblocks=2, n_feats=8, global_skip="bicubic"),
                ArchConfig(family="mdsr", scales=(2, 3), n_resblocks=2, n_feats=8, global_skip="bicubic")):
        net = build_model(cfg).eval()
        x = torch.rand(1, 3, 10, 12) * 255
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            y = net(x, scale=2)
        assert y.dtype == torch.float32
        # An untrained bicubic-skip net is bicubic (to float32 rounding; bf16 would be ~1 grey level off).
        assert (y - BicubicUpsample(2)(x)).abs().max() < 1e-3


def test_checkpoints_load_to_the_cpu_and_rng_states_come_back_to_it(demo_x2: tuple[SRImageSet, SRImageSet],
                                                                    tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import srnas.train.trainer as trainer_module
    from srnas.train.device import rng_state, set_rng_state

    train, val = demo_x2
    Trainer(CFG, train, _small(val), _schedule(updates=4, eval_every=2), checkpoint_dir=tmp_path, checkpoint_every=2).fit()
    seen: list[Any] = []
    real = trainer_module.load_checkpoint

    def spy(path: Any, *, map_location: Any = "cpu") -> Any:
        seen.append(map_location)
        return real(path, map_location=map_location)

    monkeypatch.setattr(trainer_module, "load_checkpoint", spy)
    resumed = Trainer(CFG, train, _small(val), _schedule(updates=4, eval_every=2), checkpoint_dir=tmp_path)
    resumed.prepare(resume=True)
    assert seen == ["cpu"] and resumed.update == 4
    # RNG tensors that come back in another form (as from map_location=<device>) still restore.
    state = rng_state()
    expected = torch.rand(3)
    moved = {**state, "torch": state["torch"].to(torch.int64)}
    set_rng_state(moved)
    assert torch.equal(torch.rand(3), expected)


def test_workers_are_bound_to_one_device(monkeypatch: pytest.MonkeyPatch) -> None:
    from srnas.train.device import bind_device

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert bind_device("cuda:3") == ({"CUDA_VISIBLE_DEVICES": "3"}, "cuda:0")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    assert bind_device("cuda:1") == ({"CUDA_VISIBLE_DEVICES": "6"}, "cuda:0")
    assert bind_device("cpu") == ({}, "cpu")


def test_bf16_only_where_the_card_has_it_natively() -> None:
    from srnas.errors import ConfigError
    from srnas.train.device import native_bf16, policy_for

    assert not native_bf16(torch.device("cpu"))
    assert policy_for("cpu", "auto").precision == "fp32"
    with pytest.raises(ConfigError, match="CUDA only"):
        policy_for("cpu", "bf16")


def test_torch_compile_path_trains_with_a_cheap_backend(demo_x2: tuple[SRImageSet, SRImageSet]) -> None:
    train, val = demo_x2
    compiled = Trainer(CFG, train, _small(val), _schedule(updates=4), seed=1, compile="eager")
    result = compiled.fit()
    eager = Trainer(CFG, train, _small(val), _schedule(updates=4), seed=1).fit()
    assert compiled.graphs is None  # compile replaces the hand-made graphs
    for a, b in zip(_params(result.model), _params(eager.model)):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


def test_scores_on_the_device_equal_the_protocol_metrics(demo_x2: tuple[SRImageSet, SRImageSet]) -> None:
    from srnas.train.evaluate import DeviceScorer, bicubic_psnr, evaluate_bicubic, evaluate_model

    _, val = demo_x2
    net = build_model(ArchConfig(n_resblocks=1, n_feats=8)).eval()
    scorer = DeviceScorer.shared(val, scale=2, device=torch.device("cpu"))
    assert DeviceScorer.shared(val, scale=2, device=torch.device("cpu")) is scorer  # uploaded once
    on_device = scorer.score(net)
    reference = evaluate_model(net, val, scale=2, with_ssim=False)
    assert on_device.psnr == pytest.approx(reference.psnr, abs=1e-9)
    assert bicubic_psnr(val, scale=2) == pytest.approx(evaluate_bicubic(val, scale=2, with_ssim=False).psnr)


def test_the_training_store_is_kept_across_runs(demo_x2: tuple[SRImageSet, SRImageSet]) -> None:
    from srnas.data.patches import PatchSampler

    train, _ = demo_x2
    a = PatchSampler(train, 2, patch=8, batch=2)
    b = PatchSampler(train, 2, patch=8, batch=2, seed=5)
    assert a._hr is b._hr  # packed once
    lr, hr, _ = PatchSampler(train, 2, patch=8, batch=2, channels_last=True).sample()
    assert lr.is_contiguous(memory_format=torch.channels_last) and hr.shape == (2, 3, 16, 16)


def test_proxy_runs_record_where_their_time_went(demo_x2: tuple[SRImageSet, SRImageSet]) -> None:
    train, val = demo_x2
    result = Trainer(CFG, train, _small(val), _schedule(updates=4)).fit()
    assert set(result.time_split) == {"prepare", "train", "validate"}
    assert all(v >= 0 for v in result.time_split.values()) and result.time_split["train"] > 0
    assert result.final["ssim"] is None  # proxies rank by PSNR; SSIM costs more than a short validation


def test_paper_schedules_score_the_whole_set_at_the_end(demo_x2: tuple[SRImageSet, SRImageSet]) -> None:
    from srnas.train.schedules import PaperSchedule

    train, val = demo_x2
    three = SRImageSet(name="three", names=["a", "b", "c"], hr=[_small(val).hr[0]] * 3,
                       lr={2: [_small(val).lr[2][0]] * 3}, protocol=val.protocol)
    paper = PaperSchedule(name="paper-smoke", updates=2, batch=2, patch=8, eval_every=1, val_images=1)
    result = Trainer(CFG, train, three, paper).fit()
    assert result.final["val_images"] == 3 and result.final["ssim"] is not None


def test_the_device_check_runs_its_cpu_parts_and_skips_the_cuda_ones(tmp_path: Any) -> None:
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    out = subprocess.run([sys.executable, str(script), "--quick", "--json", str(tmp_path / "check.json")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-1500:] + out.stderr[-1500:]
    result = json.loads((tmp_path / "check.json").read_text())
    statuses = {c["check"]: c["status"] for c in result["checks"]}
    assert statuses.pop("CPU seams (stand-in graphs, fp32 output stage)") == "PASS"
    expected = "SKIP" if not torch.cuda.is_available() else "PASS"
    assert set(statuses.values()) == {expected} and len(statuses) == 15
    if expected == "SKIP":
        assert out.stdout.count("SKIP  ") == 15 and "no CUDA device here" in out.stdout


def test_the_checks_own_comparisons_do_not_cry_wolf() -> None:
    """float32(1e-3), what a captured optimiser's tensor lr reads back as, is 1e-3."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "gpu_check", Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    as_read = float(torch.tensor(1e-3, dtype=torch.float32))
    assert as_read != 1e-3 and check.lr_matches(as_read, 1e-3)
    assert not check.lr_matches(2e-3, 1e-3) and not check.lr_matches(float(torch.tensor(5e-4)), 1e-3)


@pytest.mark.slow
def test_gpu_run_script_leaves_its_results_on_a_cpu(tmp_path: Any) -> None:
    """The one-call device script runs end to end here (CUDA parts SKIP with a line), within
    3 minutes, leaving the check's JSON, the card and the short search in OUTDIR."""
    import json
    import os
    import subprocess
    import time
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_run.sh"
    start = time.monotonic()
    # The search trains a shorter proxy than on a GPU (training is nearly all of its time here).
    env = {**os.environ, "SRNAS_GPU_RUN_PROXY": "tiny@10"}
    out = subprocess.run(["bash", str(script), str(tmp_path / "out"), "--quick"], capture_output=True, text=True,
                         timeout=180, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert time.monotonic() - start < 180
    files = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"card.txt", "gpu_check.json", "gpu_check.log", "search.json", "search.log"} <= files and len(files) <= 8
    checks = json.loads((tmp_path / "out" / "gpu_check.json").read_text())["checks"]
    assert len(checks) == 16 and all(c["status"] in ("PASS", "SKIP") for c in checks)
    if not torch.cuda.is_available():
        assert "SKIP card" in (tmp_path / "out" / "card.txt").read_text()
    assert json.loads((tmp_path / "out" / "search.json").read_text())["trained"] == 8


def test_workers_per_device_and_each_worker_bound_to_its_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import srnas.search.optuna_engine as engine
    from srnas.search.settings import SearchSettings, auto_workers
    from srnas.train.device import bind_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert auto_workers(("auto",), 3) == (6, ("cuda:0", "cuda:1"))
    assert auto_workers(("cuda:1",), 2) == (2, ("cuda:1",))
    settings = SearchSettings(workers=4, devices=("cuda:0", "cuda:1"), workers_per_device=2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    bound = [bind_device(engine.worker_device(settings, i)) for i in range(4)]
    assert bound == [({"CUDA_VISIBLE_DEVICES": "0"}, "cuda:0"), ({"CUDA_VISIBLE_DEVICES": "1"}, "cuda:0")] * 2
    with pytest.raises(Exception, match="--workers-per-device"):
        SearchSettings(workers_per_device=0)
    # --devices cuda (no index) spreads the workers over every visible GPU, auto or not.
    assert auto_workers(("cuda",), 2) == (4, ("cuda:0", "cuda:1"))
    spread = engine.OptunaEngine().validate(SearchSettings(workers=4, devices=("cuda",)))
    assert spread.devices == ("cuda:0", "cuda:1")
    assert [bind_device(engine.worker_device(spread, i))[0] for i in range(4)] == \
        [{"CUDA_VISIBLE_DEVICES": "0"}, {"CUDA_VISIBLE_DEVICES": "1"}] * 2


def test_fp32_means_fp32_and_tf32_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """TF32 only where asked for: `apply_policy` sets the process-wide flags from the policy."""
    import dataclasses

    from srnas.errors import ConfigError
    from srnas.train.device import apply_policy, policy_for

    with pytest.raises(ConfigError, match="tf32"):
        policy_for("cpu", "tf32")
    cpu = policy_for("cpu", "fp32")
    assert cpu.precision == "fp32" and not cpu.tf32
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    try:
        for tf32, autocast, name in ((False, None, "fp32"), (True, None, "tf32"), (False, torch.bfloat16, "bf16")):
            policy = dataclasses.replace(cpu, device=torch.device("cuda"), autocast_dtype=autocast, tf32=tf32,
                                         threads=None)
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = not tf32
            apply_policy(policy)  # sets flags only: no CUDA call is made
            assert policy.precision == name
            assert torch.backends.cuda.matmul.allow_tf32 is tf32 and torch.backends.cudnn.allow_tf32 is tf32
    finally:
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark) = saved


def test_head_and_its_input_stay_fp32_under_bf16_autocast() -> None:
    from srnas.arch import ArchConfig, build_model

    for cfg in (ArchConfig(n_resblocks=1, n_feats=8), ArchConfig(family="mdsr", scales=(2, 3), n_resblocks=1,
                                                                n_feats=8, head_blocks=1, head_kernel=3)):
        net = build_model(cfg).eval()
        x = torch.rand(1, 3, 12, 12) * 255
        with torch.no_grad():
            _, want = net._start(x)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                shifted, head = net._start(x)
        assert shifted.dtype == head.dtype == torch.float32
        assert torch.equal(head, want)  # not rounded to bf16's grey levels


def test_unchanged_lr_is_not_written_again() -> None:
    from srnas.arch import ArchConfig
    from srnas.data import demo_split
    from srnas.train import Trainer, get_schedule

    class Spy(torch.Tensor):
        fills = 0

        def fill_(self, value):  # type: ignore[no-untyped-def, override]
            Spy.fills += 1
            return super().fill_(value)

    train, val = demo_split()
    t = Trainer(ArchConfig(n_resblocks=1, n_feats=8), train, val, get_schedule("tiny@4"), device="cpu")
    t.prepare()
    group = t.optimizer.param_groups[0]
    group["lr"] = torch.tensor(t._lr_now).as_subclass(Spy)
    t.set_lr(t._lr_now)
    t.set_lr(t._lr_now)
    assert Spy.fills == 0
    t.set_lr(t._lr_now / 2)
    assert Spy.fills == 1 and float(group["lr"]) == pytest.approx(t._lr_now)


def test_accelerator_sampler_launches_few_kernels_per_minibatch() -> None:
    """The accelerator path of the patch sampler: about 14 kernel launches per minibatch plus its
    share of the per-block work (was about 55), counted on the CPU with a dispatch mode."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "data_throughput", Path(__file__).resolve().parent.parent / "benchmarks" / "data_throughput.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from srnas.data import SRImageSet, imresize

    rng = np.random.default_rng(0)
    hr = [rng.integers(0, 256, (240, 240, 3), dtype=np.uint8) for _ in range(2)]
    data = SRImageSet("s", ["a", "b"], hr, {s: [imresize(h, 1 / s) for h in hr] for s in (2, 3, 4)}, protocol="div2k")
    ops_x2, _ = bench.launches_per_minibatch(data, (2,), minibatches=32, rounds=0)  # counted, not timed
    ops_mdsr, _ = bench.launches_per_minibatch(data, (2, 3, 4), minibatches=32, rounds=0)
    assert ops_x2 <= 20 and ops_mdsr <= 26, (ops_x2, ops_mdsr)


def test_cpu_threads_follow_omp_num_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Processes that share the cores (SLURM tasks, test workers) say so with OMP_NUM_THREADS: a
    CPU policy takes it instead of every core; a value that is not a positive integer is ignored."""
    from srnas.train.device import cpu_count, cpu_threads, policy_for

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cpu_threads() == 1 and policy_for("cpu").threads == 1
    assert policy_for("cpu", threads=3).threads == 3  # an explicit count wins
    for unset in ("", "0", "two", "-1"):
        monkeypatch.setenv("OMP_NUM_THREADS", unset)
        assert cpu_threads() == cpu_count() == policy_for("cpu").threads
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert cpu_threads() == cpu_count()
