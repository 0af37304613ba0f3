"""Training checkpoints: exact resume, atomic writes, safe loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from srnas.arch import ArchConfig
from srnas.data import SRImageSet, demo_split
from srnas.errors import TrainingError
from srnas.train import ProxySchedule, Trainer, TrainProgress
from srnas.train import checkpoint as ckpt


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def data() -> tuple[SRImageSet, SRImageSet]:
    train, val = demo_split((2,))
    hr = np.ascontiguousarray(val.hr[0][:64, :64])
    small_val = SRImageSet(name="v", names=["coffee"], hr=[hr], lr={2: [np.ascontiguousarray(val.lr[2][0][:32, :32])]})
    return train, small_val


SCHEDULE = ProxySchedule(name="resume", updates=12, batch=4, patch=12, lr=2e-3, lr_milestones=(5, 9),
                         eval_every=4, val_images=1)
CONFIG = ArchConfig(n_resblocks=2, n_feats=8, kernel_sizes=(3, 5), global_skip="bicubic")


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path: Path, data: tuple[SRImageSet, SRImageSet]) -> None:
    train, val = data
    whole = Trainer(CONFIG, train, val, SCHEDULE, seed=3, checkpoint_dir=tmp_path / "a").fit()

    def crash(p: TrainProgress) -> None:
        if p.update == 6:  # two updates after the checkpoint at 4: they are lost and redone
            raise Interrupt

    with pytest.raises(Interrupt):
        Trainer(CONFIG, train, val, SCHEDULE, seed=3, checkpoint_dir=tmp_path / "b", progress=crash).fit()
    assert ckpt.load_checkpoint(tmp_path / "b" / ckpt.CHECKPOINT_NAME)["update"] == 4
    resumed = Trainer(CONFIG, train, val, SCHEDULE, seed=3, checkpoint_dir=tmp_path / "b").fit(resume=True)

    a, b = _weights(whole.model), _weights(resumed.model)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert resumed.updates == whole.updates == 12
    assert resumed.psnr_curve == whole.psnr_curve
    assert resumed.loss_curve == whole.loss_curve
    assert resumed.final["psnr"] == whole.final["psnr"]

    # A fresh (not resumed) run in the same folder starts over; a different seed is not resumed.
    with pytest.raises(TrainingError, match="seed"):
        Trainer(CONFIG, train, val, SCHEDULE, seed=4, checkpoint_dir=tmp_path / "b").fit(resume=True)


def test_resuming_a_finished_run_only_evaluates(tmp_path: Path, data: tuple[SRImageSet, SRImageSet]) -> None:
    train, val = data
    first = Trainer(CONFIG, train, val, SCHEDULE, checkpoint_dir=tmp_path).fit()
    steps: list[int] = []
    again = Trainer(CONFIG, train, val, SCHEDULE, checkpoint_dir=tmp_path,
                    progress=lambda p: steps.append(p.update)).fit(resume=True)
    assert steps == []
    assert again.final["psnr"] == first.final["psnr"] and again.psnr_curve == first.psnr_curve


def test_checkpoint_of_another_architecture_or_schedule_is_refused(tmp_path: Path,
                                                                   data: tuple[SRImageSet, SRImageSet]) -> None:
    train, val = data
    Trainer(CONFIG, train, val, SCHEDULE.shortened(4), checkpoint_dir=tmp_path).fit()
    with pytest.raises(TrainingError, match="architecture"):
        Trainer(CONFIG.replace(n_feats=4), train, val, SCHEDULE.shortened(4), checkpoint_dir=tmp_path).fit(resume=True)
    with pytest.raises(TrainingError, match="schedule"):
        Trainer(CONFIG, train, val, SCHEDULE, checkpoint_dir=tmp_path).fit(resume=True)


def test_checkpoint_holds_everything_needed(tmp_path: Path, data: tuple[SRImageSet, SRImageSet]) -> None:
    train, val = data
    trainer = Trainer(CONFIG, train, val, SCHEDULE.shortened(4), checkpoint_dir=tmp_path, seed=7)
    trainer.fit()
    state = ckpt.load_checkpoint(tmp_path / "checkpoint.pt")
    for key in ("model", "optimizer", "lr_schedule", "rng", "update", "sampler", "config", "schedule", "seed"):
        assert key in state, key
    assert set(state["rng"]) >= {"torch", "numpy", "python"}
    assert state["config"] == CONFIG.to_dict()
    assert state["schedule"]["fidelity_id"] == SCHEDULE.shortened(4).fidelity_id
    assert state["update"] == 4 and state["seed"] == 7
    # The weights load with the arch loader too (srnas eval of a checkpoint).
    model, cfg = ckpt.load_model(tmp_path / "checkpoint.pt")
    assert cfg == CONFIG
    assert torch.equal(model.state_dict()["head.0.weight"], state["model"]["head.0.weight"])


def test_failed_save_leaves_previous_checkpoint_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "checkpoint.pt"
    ckpt.save_checkpoint(path, {"model": {"w": torch.ones(3)}, "update": 1})
    before = path.read_bytes()

    def exploding_save(obj: object, handle: object) -> None:
        handle.write(b"PK\x03\x04 half a zip file")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", exploding_save)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(path, {"model": {"w": torch.zeros(3)}, "update": 2})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]  # no temporary left behind
    assert ckpt.load_checkpoint(path)["update"] == 1


def test_interrupt_during_save_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "sub" / "checkpoint.pt"

    def interrupted(obj: object, handle: object) -> None:
        handle.write(b"partial")  # type: ignore[attr-defined]
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(path, {"model": {}, "update": 0})
    assert not path.exists() and list(path.parent.iterdir()) == []


def test_unreadable_checkpoints_give_one_line(tmp_path: Path) -> None:
    good = ckpt.save_checkpoint(tmp_path / "good.pt", {"model": {"w": torch.ones(2)}, "update": 3})
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:40])
    for path, pattern in ((truncated, "unreadable checkpoint"), (tmp_path / "missing.pt", "not found")):
        with pytest.raises(TrainingError, match=pattern) as err:
            ckpt.load_checkpoint(path)
        assert "\n" not in str(err.value)
    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.ones(1)}, plain)
    with pytest.raises(TrainingError, match="not an srnas training checkpoint"):
        ckpt.load_checkpoint(plain)


def test_pickled_objects_are_never_unpickled(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple:
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "update": 0, "version": ckpt.CHECKPOINT_VERSION, "x": Evil()}, path)
    with pytest.raises(TrainingError, match="unreadable checkpoint"):
        ckpt.load_checkpoint(path)


def test_safe_encoding_round_trips_numpy_and_tuples() -> None:
    state = {"a": np.arange(5, dtype=np.uint32), "b": (1, "x", (2.5, None)), "c": [np.float32(1.5)],
             "d": {"e": np.zeros((2, 2), np.float64)}}
    back = ckpt.from_safe(ckpt.to_safe(state))
    assert back["a"].dtype == np.uint32 and back["a"].tolist() == [0, 1, 2, 3, 4]
    assert back["b"] == (1, "x", (2.5, None))
    assert back["c"] == [1.5]
    assert back["d"]["e"].shape == (2, 2)


def test_resume_keeps_this_devices_optimiser_flags(tmp_path: Path, data: tuple[SRImageSet, SRImageSet]) -> None:
    """A checkpoint from a CUDA-graph run (capturable Adam, tensor lr) resumes on the CPU."""
    train, val = data
    sched = SCHEDULE.shortened(8)
    trainer = Trainer(CONFIG, train, val, sched, checkpoint_dir=tmp_path, checkpoint_every=4)
    trainer.prepare()
    for _ in range(4):
        trainer.update_once()
    state = trainer.state_dict()
    for group in state["optimizer"]["param_groups"]:
        group.update(capturable=True, fused=None, foreach=True, lr=torch.tensor(group["lr"]))
    ckpt.save_checkpoint(tmp_path / ckpt.CHECKPOINT_NAME, state)
    resumed = Trainer(CONFIG, train, val, sched, checkpoint_dir=tmp_path)
    assert resumed.prepare(resume=True) == 4
    group = resumed.optimizer.param_groups[0]
    assert group["fused"] is True and not group["capturable"] and isinstance(group["lr"], float)
    assert group["lr"] == pytest.approx(sched.lr_at(3))
    assert resumed.fit(resume=True).updates == 8


# ---- what a resume refuses, and a stop that keeps the work ----------------------------------


def _retrain(tmp_path: Path, *extra: str) -> int:
    from srnas.cli import main

    # A one-block net: what a resume refuses does not depend on the architecture's size.
    return main(["retrain", "--config", str(_tiny_config(tmp_path)), "--schedule", "proxy-tiny", "--device", "cpu",
                 "--out", str(tmp_path), "--no-progress", "--checkpoint-every", "1", *extra])


def _folder(tmp_path: Path) -> Path:
    (arch,) = (tmp_path / "manual" / "retrain").iterdir()
    (out,) = arch.iterdir()
    return out


def test_a_corrupted_checkpoint_is_refused_on_resume(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from srnas.train.checkpoint import load_checkpoint

    assert _retrain(tmp_path, "--data", "demo", "--max-updates", "2") == 0
    ckpt = _folder(tmp_path) / "checkpoint.pt"
    state = torch.load(ckpt, weights_only=True)
    key = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][key].view(-1)[0] = float("nan")  # a flipped value, the digest left as it was
    torch.save(state, ckpt)
    with pytest.raises(TrainingError, match=r"corrupted checkpoint: its weights do not match the digest"):
        load_checkpoint(ckpt)
    capsys.readouterr()
    assert _retrain(tmp_path, "--data", "demo", "--max-updates", "2", "--resume") == 2
    assert "corrupted checkpoint" in capsys.readouterr().err
    # A truncated one is called what it is.
    ckpt.write_bytes(ckpt.read_bytes()[:200])
    with pytest.raises(TrainingError, match=r"damaged or truncated"):
        load_checkpoint(ckpt)


def test_resume_refuses_other_data(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from srnas.data import save_image

    folder = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for i in range(5):  # as many training images as the demo has (4 train + 1 held out)
        save_image(folder / f"p{i}.png", (rng.random((120, 120, 3)) * 255).astype(np.uint8))
    assert _retrain(tmp_path, "--data", "demo", "--max-updates", "2") == 0
    capsys.readouterr()
    assert _retrain(tmp_path, "--data", str(folder), "--max-updates", "2", "--resume") == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the run's own start line
    assert last.startswith("srnas: error: ") and "checkpoint trained on demo-train (4 images), not on photos" in last


@pytest.mark.slow
def test_sigterm_stops_retrain_with_a_checkpoint_and_resume_continues(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "SRNAS_TRIALS_DIR": str(tmp_path)}
    argv = [sys.executable, "-m", "srnas", "retrain", "--config", str(_tiny_config(tmp_path)), "--schedule",
            "proxy-tiny@100", "--data", "demo", "--device", "cpu", "--out", str(tmp_path), "--no-progress",
            "--checkpoint-every", "1000", "--log-every", "20"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:  # 20 updates in (and far from the end)
        logs = list((tmp_path / "manual").rglob("retrain.log"))
        if logs and "update 20/100" in logs[0].read_text():
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 75, err[-1500:]  # "resume me"
    assert "stopped at update" in err and "--resume continues" in err
    ckpt = _folder(tmp_path) / "checkpoint.pt"
    from srnas.train.checkpoint import load_checkpoint

    stopped_at = load_checkpoint(ckpt)["update"]
    assert 0 < stopped_at < 100  # written at the stop, not at the last scheduled checkpoint (none before 1000)
    done = subprocess.run([*argv, "--resume"], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-1500:]
    assert load_checkpoint(ckpt)["update"] == 100


def test_two_retrains_into_one_folder_are_refused(tmp_path: Path) -> None:
    from filelock import FileLock

    from srnas.train.retrain import LOCK_FILE, RetrainRun
    from srnas.train.schedules import get_schedule

    cfg = ArchConfig(n_resblocks=1, n_feats=4, global_skip="bicubic")
    run = RetrainRun(cfg, get_schedule("tiny@2"), tmp_path)
    run.folder.mkdir(parents=True)
    with FileLock(str(run.folder / LOCK_FILE)):  # another writer holds it
        from srnas.data import demo_split

        train, val = demo_split()
        with pytest.raises(TrainingError, match=r"another srnas retrain is writing this folder"):
            run.train(train, val, device="cpu")
    assert run.train(train, val, device="cpu").updates == 2  # free again


def _tiny_config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(ArchConfig(n_resblocks=1, n_feats=8, global_skip="bicubic").to_yaml())
    return path
