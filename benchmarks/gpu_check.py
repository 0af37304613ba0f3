"""The prepared device check of the GPU path: the checks take about 2 minutes on a GPU, the
throughput table about 4 more (`benchmarks/gpu_run.sh` runs both and a short real search).

Prints the card and the policy, then one PASS/FAIL/SKIP line per CUDA path, then the throughput
table. ``--json`` is rewritten after every check and every throughput row, so a hang or a
timeout keeps everything measured until then. Needs only PyTorch (with CUDA), NumPy, SciPy,
scikit-image and Pillow: no Optuna, no PyYAML (it imports the training layer only). On a
machine without CUDA the CPU-safe parts run and every CUDA check says SKIP with a line.

    python benchmarks/gpu_check.py --json gpu_check.json          # on the GPU machine, from the repo root
    python benchmarks/gpu_check.py --quick                        # checks only, fewer trials, no throughput

Checks
- sampler parity: the CUDA patch sampler draws exactly the CPU sampler's minibatches;
- graphs vs eager: losses of captured bf16 steps follow eager bf16 steps;
- replays train: parameters move under replays, no fallback happened;
- lr changes: an lr halving mid-run takes effect in the captured optimiser (its lr, a float32
  tensor, compared with a relative tolerance; the fp32 graphed run ends where the fp32 eager run
  ends);
- MDSR graphs: one pool of per-scale graphs replayed in random scale order trains as eager
  steps do (fp32 losses and parameters);
- scorer: `DeviceScorer` on CUDA equals the protocol metrics computed on the CPU (1e-4 dB);
- head fp32: under bf16 autocast the mean-shifted input and the head conv stay fp32 (TF32 off);
- bf16 output stage: an untrained bicubic-skip net under bf16 autocast is bicubic, in fp32;
- resume on CUDA: a checkpoint written on CUDA resumes (RNG states read to the CPU first);
- capture fallback: a capture that fails releases its graphs and the run goes on eagerly;
- memory flat: allocated and reserved memory after 12 trials of different architectures are
  flat, with graphs, with torch.compile and in eager fallback;
- placement: a worker bound with CUDA_VISIBLE_DEVICES sees one GPU and trains there (captured
  steps are not empty); ``--devices cuda`` spreads workers over every visible GPU;
- compile: torch.compile of the forward pass trains.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from srnas.arch import ArchConfig, build_model  # noqa: E402
from srnas.arch.blocks import BicubicUpsample  # noqa: E402
from srnas.data import PatchSampler, SRImageSet  # noqa: E402
from srnas.train import ProxySchedule, Trainer  # noqa: E402
from srnas.train.device import bind_device, native_bf16, policy_for  # noqa: E402
from srnas.train.graphs import CudaGraphs  # noqa: E402

CUDA = torch.cuda.is_available()
RESULTS: list[dict[str, Any]] = []
#: Where the results are rewritten after every check and row (``--json``), and what they hold.
STATE: dict[str, Any] = {"path": None, "card": {}, "throughput": {}, "started": time.perf_counter()}
#: Trials per memory mode (fewer under ``--quick``).
MEMORY_TRIALS = {"graphs": 12, "eager fallback": 12, "compile": 6}


def save() -> None:
    """Rewrite the JSON with everything measured so far (atomically: a kill leaves the last one)."""
    path = STATE["path"]
    if path is None:
        return
    payload = {"card": STATE["card"], "checks": RESULTS, "throughput": STATE["throughput"],
               "seconds": round(time.perf_counter() - STATE["started"], 1)}
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)


def lr_matches(value: float, expected: float) -> bool:
    """A captured optimiser's lr is a float32 tensor: compare relatively (float32(1e-3) is
    1.0000000474974513e-3)."""
    return abs(value - expected) <= 1e-6 * abs(expected)


def report(name: str, fn: Callable[[], str | None], *, cuda: bool = True) -> None:
    """Run one check: PASS (with its detail), FAIL (with the reason) or SKIP."""
    if cuda and not CUDA:
        RESULTS.append({"check": name, "status": "SKIP", "detail": "no CUDA device here"})
        print(f"SKIP  {name}: no CUDA device here", flush=True)
        save()
        return
    start = time.perf_counter()
    try:
        detail = fn() or ""
        status = "PASS"
    except AssertionError as exc:
        status, detail = "FAIL", str(exc) or "assertion failed"
    except Exception as exc:  # a crash is a failure of that path, the check goes on
        status, detail = "FAIL", f"{type(exc).__name__}: {exc} | {traceback.format_exc().splitlines()[-3].strip()}"
    seconds = time.perf_counter() - start
    RESULTS.append({"check": name, "status": status, "detail": detail, "seconds": round(seconds, 2)})
    print(f"{status}  {name} ({seconds:.1f} s): {detail}", flush=True)
    save()


def synthetic_set(n: int = 6, size: int = 192, scales: tuple[int, ...] = (2, 3, 4), seed: int = 0) -> SRImageSet:
    """Smooth random images (a blurred noise field: patches with structure, cheap to make)."""
    from scipy.ndimage import gaussian_filter

    from srnas.data import imresize

    rng = np.random.default_rng(seed)
    hr = [np.clip(gaussian_filter(rng.random((size, size, 3)) * 255, (3, 3, 0)) * 3 - 200, 0, 255).astype(np.uint8)
          for _ in range(n)]
    lr = {s: [imresize(h, 1 / s) for h in hr] for s in scales}
    return SRImageSet("synthetic", [f"img{i}" for i in range(n)], hr, lr, protocol="benchmark")


def schedule(updates: int, **kw: Any) -> ProxySchedule:
    return ProxySchedule(name="check", **{"updates": updates, "batch": 16, "patch": 24, "lr": 1e-3,
                                          "eval_every": updates, "val_images": 1, **kw})


def params(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().float().cpu().clone() for p in model.parameters() if p.requires_grad]


def max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


DATA = synthetic_set()
VAL = synthetic_set(n=1, size=96, seed=1)
NET = ArchConfig(n_resblocks=2, n_feats=16, global_skip="bicubic")


def check_sampler_parity() -> str:
    cpu = PatchSampler(DATA, (2, 3), patch=24, batch=16, seed=7, shared_store=False)
    gpu = PatchSampler(DATA, (2, 3), patch=24, batch=16, device="cuda", seed=7, shared_store=False)
    for _ in range(70):  # across blocks of draws
        a, b = cpu.sample(), gpu.sample()
        assert a[2] == b[2], "scales differ"
        assert torch.equal(a[0], b[0].cpu()) and torch.equal(a[1], b[1].cpu()), "pixels differ"
    return "70 minibatches identical (2 scales, 8 dihedral transforms)"


def check_graphs_vs_eager() -> str:
    graphed = Trainer(NET, DATA, VAL, schedule(60), device="cuda", seed=1)
    g = graphed.fit()
    eager = Trainer(NET, DATA, VAL, schedule(60), device="cuda", seed=1, cuda_graphs=False).fit()
    assert graphed.graph_failure is None, f"graphs fell back: {graphed.graph_failure}"
    assert graphed._graphs and all(e.graph is not None for e in graphed._graphs.values()), "nothing captured"
    lg, le = g.loss_curve[-1][1], eager.loss_curve[-1][1]
    assert abs(lg - le) <= 0.1 * le, f"final loss {lg:.4f} graphed vs {le:.4f} eager"
    return f"bf16 loss after 60 updates: graphed {lg:.4f}, eager {le:.4f}; PSNR {g.final['psnr']:.2f} vs {eager.final['psnr']:.2f}"


def check_replays_train() -> str:
    t = Trainer(NET, DATA, VAL, schedule(10), device="cuda")
    t.prepare()
    for _ in range(4):  # warm-up, capture, first replay
        t.update_once()
    before = params(t.model)
    for _ in range(5):
        t.update_once()
    torch.cuda.synchronize()
    moved = max_diff(before, params(t.model))
    assert t.graph_failure is None and moved > 0, f"replays left the parameters where they were ({t.graph_failure})"
    return f"max parameter change over 5 replays: {moved:.3e}"


def check_lr_changes() -> str:
    sched = schedule(40, lr_milestones=(20,), lr=2e-3)
    g = Trainer(NET, DATA, VAL, sched, device="cuda", seed=2, precision="fp32")
    rg = g.fit()
    re = Trainer(NET, DATA, VAL, sched, device="cuda", seed=2, precision="fp32", cuda_graphs=False).fit()
    lr_now = float(g.optimizer.param_groups[0]["lr"])
    assert lr_matches(lr_now, 1e-3), f"captured optimiser lr is {lr_now}, not 1e-3 after the milestone"
    diff = max_diff(params(rg.model), params(re.model))
    assert diff < 1e-2, f"graphed fp32 run ends {diff:.3e} away from the eager run"
    return f"lr {lr_now:g} after the milestone; graphed vs eager fp32 parameters within {diff:.1e}"


def check_bf16_output_stage() -> str:
    for cfg in (NET, ArchConfig(family="mdsr", scales=(2, 3), n_resblocks=2, n_feats=16, global_skip="bicubic")):
        net = build_model(cfg).cuda().eval()
        x = torch.rand(2, 3, 40, 44, device="cuda") * 255
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            y = net(x, scale=2)
        ref = BicubicUpsample(2).cuda()(x)
        err = float((y - ref).abs().max())
        assert y.dtype == torch.float32 and err < 1e-3, f"{cfg.family}: output {y.dtype}, max error {err:.3e}"
    return f"fp32 output equal to bicubic within {err:.1e} (EDSR and MDSR)"


def check_resume() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        whole = Trainer(NET, DATA, VAL, schedule(8, eval_every=4), device="cuda", seed=3, precision="fp32",
                        cuda_graphs=False, checkpoint_dir=Path(tmp) / "a").fit()

        def crash(p: Any) -> None:
            if p.update == 4:
                raise KeyboardInterrupt

        try:
            Trainer(NET, DATA, VAL, schedule(8, eval_every=4), device="cuda", seed=3, precision="fp32",
                    cuda_graphs=False, checkpoint_dir=Path(tmp) / "b", progress=crash).fit()
        except KeyboardInterrupt:
            pass
        resumed = Trainer(NET, DATA, VAL, schedule(8, eval_every=4), device="cuda", seed=3, precision="fp32",
                          cuda_graphs=False, checkpoint_dir=Path(tmp) / "b").fit(resume=True)
    diff = max_diff(params(whole.model), params(resumed.model))
    assert diff < 1e-4, f"resumed run differs by {diff:.3e}"
    return f"resumed at update 4 of 8; parameters within {diff:.1e} of the uninterrupted run"


class FailingCuda(CudaGraphs):
    def capture(self, step: Callable[[], None]) -> Any:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self.stream):
            step()
            torch.cuda.synchronize()  # not allowed while capturing: the capture fails
        return graph


def check_capture_fallback() -> str:
    torch.cuda.synchronize()
    t = Trainer(NET, DATA, VAL, schedule(12), device="cuda", graph_backend=FailingCuda(torch.device("cuda")))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = t.fit()
    assert t.graph_failure, "the failing capture was not noticed"
    assert np.isfinite(r.loss_curve[-1][1]), "training did not go on"
    after = Trainer(NET, DATA, VAL, schedule(12), device="cuda", seed=1).fit()  # graphs work again afterwards
    return f"fell back ({t.graph_failure[:60]}); a later run captured: {after.graph_failure is None}"


MEMORY_CONFIGS = [ArchConfig(n_resblocks=b, n_feats=f, kernel_sizes=k, global_skip=sk)
                  for b, f, k, sk in [(1, 8, 3, "none"), (4, 32, 3, "bicubic"), (2, 16, 5, "bicubic"), (3, 24, 3, "none"),
                                      (4, 32, 5, "bicubic"), (1, 12, 3, "bicubic"), (2, 32, 3, "none"),
                                      (4, 16, 3, "bicubic"), (3, 32, 5, "bicubic"), (2, 8, 3, "none"),
                                      (4, 24, 3, "bicubic"), (1, 32, 5, "none")]]


def check_memory_flat() -> str:
    modes = {"graphs": {}, "eager fallback": {"graph_backend": FailingCuda(torch.device("cuda"))},
             "compile": {"compile": "inductor"}}
    lines, problems = [], []
    for mode, kwargs in modes.items():
        allocated, reserved = [], []
        for cfg in MEMORY_CONFIGS[:MEMORY_TRIALS[mode]]:
            if mode == "eager fallback":  # a fresh failing backend per trial, as a real fallback has
                kwargs = {"graph_backend": FailingCuda(torch.device("cuda"))}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                Trainer(cfg, DATA, VAL, schedule(12), device="cuda", **kwargs).fit()
            gc.collect()
            torch.cuda.synchronize()
            allocated.append(torch.cuda.memory_allocated() / 2**20)
            reserved.append(torch.cuda.memory_reserved() / 2**20)
        grew_a, grew_r = allocated[-1] - allocated[1], reserved[-1] - reserved[1]
        lines.append(f"{mode}: allocated {allocated[1]:.0f} -> {allocated[-1]:.0f} MiB, reserved {reserved[1]:.0f} -> "
                     f"{reserved[-1]:.0f} MiB over {len(allocated)} trials")
        if grew_a >= 64 or grew_r >= 256:
            problems.append(f"{mode} grew by {grew_a:.0f} MiB allocated, {grew_r:.0f} MiB reserved: "
                            f"{[round(r) for r in reserved]}")
    assert not problems, "; ".join(problems)
    return "; ".join(lines)


def check_mdsr_graphs() -> str:
    cfg = ArchConfig(family="mdsr", scales=(2, 3, 4), n_resblocks=2, n_feats=16, head_blocks=1, head_kernel=3)
    sched = schedule(48)
    g = Trainer(cfg, DATA, VAL, sched, device="cuda", seed=4, precision="fp32")
    rg = g.fit()
    re = Trainer(cfg, DATA, VAL, sched, device="cuda", seed=4, precision="fp32", cuda_graphs=False).fit()
    assert g.graph_failure is None, f"graphs fell back: {g.graph_failure}"
    captured = sorted(str(k) for k in (g._graphs or {}))
    assert len(captured) >= 3, f"expected one graph per scale, got {captured}"
    diff = max_diff(params(rg.model), params(re.model))
    lg, le = rg.loss_curve[-1][1], re.loss_curve[-1][1]
    assert diff < 1e-2 and abs(lg - le) <= 0.05 * le, f"parameters {diff:.3e} apart, losses {lg:.4f} vs {le:.4f}"
    return f"{len(captured)} graphs in one pool, mixed-scale replays: parameters within {diff:.1e}, losses {lg:.4f} vs {le:.4f}"


def check_device_scorer() -> str:
    from srnas.train.evaluate import DeviceScorer, evaluate_model

    net = build_model(NET).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.01)  # not the bicubic identity
    val = synthetic_set(n=3, size=120, scales=(2,), seed=5)
    cpu = evaluate_model(net, val, scale=2, with_ssim=False)
    gpu = DeviceScorer(val, scale=2, device=torch.device("cuda")).score(net.cuda())
    diffs = [abs(a.psnr - b.psnr) for a, b in zip(cpu.rows, gpu.rows)]
    assert max(diffs) < 1e-4, f"per-image PSNR differs by up to {max(diffs):.2e} dB"
    return f"{len(diffs)} images, mean {gpu.psnr:.4f} dB on CUDA vs {cpu.psnr:.4f} on the CPU (max difference {max(diffs):.1e})"


def check_head_fp32() -> str:
    net = build_model(NET).cuda().eval()
    x = torch.rand(2, 3, 40, 44, device="cuda") * 255
    with torch.no_grad():
        _, want = net._start(x)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            shifted, head = net._start(x)
    err = float((head - want).abs().max())
    assert shifted.dtype == head.dtype == torch.float32 and err == 0.0, f"head {head.dtype}, max error {err:.2e}"
    return "mean-shifted input and head conv in fp32 under bf16 autocast (identical to fp32)"


def check_devices_spread() -> str:
    from srnas.search.settings import expand_devices

    devices = expand_devices(("cuda",))
    n = torch.cuda.device_count()
    assert devices == tuple(f"cuda:{i}" for i in range(n)), f"--devices cuda -> {devices} with {n} GPU(s)"
    return f"--devices cuda -> {', '.join(devices)}"


PLACEMENT_CHILD = """
import sys, warnings, torch
sys.path.insert(0, {root!r})
from srnas.arch import ArchConfig
from srnas.train import ProxySchedule, Trainer
sys.path.insert(0, {here!r})
import gpu_check as g
assert torch.cuda.device_count() == 1, torch.cuda.device_count()
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    t = Trainer(g.NET, g.DATA, g.VAL, g.schedule(12), device={device!r})
    r = t.fit()
empty = [str(x.message) for x in w if "empty" in str(x.message).lower()]
print(t.graph_failure, len(empty), torch.cuda.get_device_name(0), sep="|")
"""


def check_placement() -> str:
    n = torch.cuda.device_count()
    target = f"cuda:{n - 1}"  # the last GPU: on a multi-GPU machine not the current one
    env_extra, device = bind_device(target)
    code = PLACEMENT_CHILD.format(root=str(Path(__file__).resolve().parents[1]), here=str(Path(__file__).resolve().parent),
                                  device=device)
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env_extra}, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-800:]
    failure, empty, name = out.stdout.strip().splitlines()[-1].split("|")
    assert failure == "None" and empty == "0", f"graph failure {failure}, 'empty graph' warnings {empty}"
    return (f"{target} -> CUDA_VISIBLE_DEVICES={env_extra['CUDA_VISIBLE_DEVICES']} ({n} GPU(s) here): "
            f"child sees 1 GPU ({name}), captured steps train")


def check_compile() -> str:
    t = Trainer(NET, DATA, VAL, schedule(30), device="cuda", compile="inductor")
    r = t.fit()
    e = Trainer(NET, DATA, VAL, schedule(30), device="cuda", cuda_graphs=False).fit()
    ratio = r.loss_curve[-1][1] / e.loss_curve[-1][1]
    assert 0.8 < ratio < 1.25, f"compiled loss {r.loss_curve[-1][1]:.4f} vs eager {e.loss_curve[-1][1]:.4f}"
    return f"compiled forward trains (loss ratio to eager {ratio:.3f})"


def check_latency_events() -> str:
    """`measure_latency` on CUDA: CUDA events, cuDNN autotuning off during it and restored after;
    the fused SPAN-28 (the NTIRE 2026 baseline) against its training form at x4 on 256x256."""
    from srnas.arch import preset_config
    from srnas.arch.cost import measure_latency

    torch.backends.cudnn.benchmark = True
    model = build_model(preset_config("span", scale=4, n_feats=28)).cuda().eval()
    fused = measure_latency(model, (256, 256), device="cuda", repeats=5)
    unfused = measure_latency(model, (256, 256), device="cuda", repeats=5, fused=False)
    assert torch.backends.cudnn.benchmark is True, "cuDNN autotuning not restored"
    assert 0 < fused < 10_000 and 0 < unfused < 10_000, (fused, unfused)
    return f"SPAN-28 x4 on 256x256: fused {fused:.2f} ms, training form {unfused:.2f} ms (CUDA events)"


def check_cpu_seams() -> str:
    """What can run anywhere: the stand-in graph flow and the fp32 output stage on the CPU."""
    from srnas.train.graphs import RecordedGraphs

    t = Trainer(NET, DATA, VAL, schedule(8, batch=4, patch=12), graph_backend=RecordedGraphs())
    t.fit()
    assert t.graph_failure is None
    net = build_model(NET).eval()
    x = torch.rand(1, 3, 12, 12) * 255
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        y = net(x)
    assert y.dtype == torch.float32 and float((y - BicubicUpsample(2)(x)).abs().max()) < 1e-3
    return "stand-in graphs: 1 capture, replays train; fp32 output stage under CPU bf16 autocast"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, default=None, help="write the results here (after every check and row)")
    ap.add_argument("--quick", action="store_true", help="checks only, with fewer memory trials (no throughput table)")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    STATE.update(path=args.json, started=started)
    if args.quick:
        MEMORY_TRIALS.update({"graphs": 6, "eager fallback": 4, "compile": 3})
    card: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": sys.version.split()[0]}
    if CUDA:
        dev = torch.device("cuda")
        props = torch.cuda.get_device_properties(dev)
        card.update(name=props.name, capability=".".join(map(str, torch.cuda.get_device_capability(dev))),
                    memory_gib=round(props.total_memory / 2**30, 1), gpus=torch.cuda.device_count(),
                    native_bf16=native_bf16(dev), policy=policy_for("cuda").describe())
    else:
        card.update(name="no CUDA device", policy=policy_for("cpu").describe())
    print("card: " + ", ".join(f"{k} {v}" for k, v in card.items()), flush=True)
    STATE["card"] = card
    save()

    report("CPU seams (stand-in graphs, fp32 output stage)", check_cpu_seams, cuda=False)
    report("sampler parity with the CPU", check_sampler_parity)
    report("graphs vs eager losses", check_graphs_vs_eager)
    report("replays train", check_replays_train)
    report("lr changes take effect", check_lr_changes)
    report("MDSR per-scale graphs vs eager", check_mdsr_graphs)
    report("DeviceScorer on CUDA vs CPU metrics", check_device_scorer)
    report("bf16 output stage", check_bf16_output_stage)
    report("head and its input in fp32 under bf16", check_head_fp32)
    report("resume on CUDA", check_resume)
    report("capture fallback", check_capture_fallback)
    report("memory flat across trials (graphs, eager fallback, compile)", check_memory_flat)
    report("placement with CUDA_VISIBLE_DEVICES", check_placement)
    report("--devices cuda spreads over every GPU", check_devices_spread)
    report("torch.compile trains", check_compile)
    report("latency by CUDA events (NTIRE protocol)", check_latency_events)

    throughput: dict[str, Any] = {}
    if CUDA and not args.quick:
        import train_throughput as tt

        print("\nthroughput (CUDA):", flush=True)
        out = Path(tempfile.gettempdir()) / "srnas-train-throughput.json"

        def row_done(partial: dict[str, Any]) -> None:  # train_throughput calls this after every row
            STATE["throughput"] = partial
            save()

        try:
            tt.main(["--device", "cuda", "--json", str(out)], on_row=row_done)
            throughput = json.loads(out.read_text())
        except Exception as exc:
            throughput = {**STATE["throughput"], "error": f"{type(exc).__name__}: {exc}"}
            print(f"throughput failed: {throughput['error']}", flush=True)
        STATE["throughput"] = throughput
    failed = [r for r in RESULTS if r["status"] == "FAIL"]
    print(f"\n{len(RESULTS) - len(failed)} of {len(RESULTS)} checks passed or skipped, {len(failed)} failed; "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    save()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
