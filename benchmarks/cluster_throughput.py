"""Trials per minute of `srnas worker` processes on one study: PostgreSQL directly vs through
Optuna's gRPC storage proxy (``srnas storage-proxy``), with 4 and 8 local workers, all measured
in one run on the same machine (docs/cluster.md).

Each case creates a fresh study (``srnas search --create-only``, the shipped tiny space, a tiny
proxy cut to ``--updates`` updates, no pruning, no confirmation), starts the workers (one CPU
thread each) and waits for the budget. The rate counts trained trials between the first trial's
start and the last one's end as the storage recorded them (process start-up left out); the wall
time from launch to the last exit is printed beside it.

    SRNAS_TEST_POSTGRES_URL=postgresql+psycopg://srnas:srnas@127.0.0.1:5432/srnas_test \\
        python benchmarks/cluster_throughput.py [--budget 24] [--updates 20] [--workers 4,8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _srnas(*args: str, env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-m", "srnas", *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"cluster_throughput.py: srnas {' '.join(args[:3])} ... failed: {done.stderr.strip()[-500:]}")


def _proxy(database: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    port = _free_port()
    argv = [sys.executable, "-m", "srnas", "storage-proxy", "--storage", database, "--port", str(port)]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if f"grpc://127.0.0.1:{port}" not in line:
        proc.kill()
        raise SystemExit(f"cluster_throughput.py: the storage proxy did not start: {line}")
    return proc, f"grpc://127.0.0.1:{port}"


def measure(url: str, workers: int, *, budget: int, updates: int, env: dict[str, str]) -> dict[str, Any]:
    """One case: a fresh study on ``url``, ``workers`` worker processes until its budget is met."""
    import optuna

    from srnas.outcomes import is_trained
    from srnas.storages import open_storage

    name = f"throughput-{uuid.uuid4().hex[:8]}"
    _srnas("search", "--study", name, "--storage", url, "--space", "tiny", "--budget", str(budget),
           "--proxy", f"tiny@{updates}", "--pruner", "none", "--confirm", "0", "--sampler", "random",
           "--seed", "1", "--no-progress", "--create-only", env=env)
    start = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-m", "srnas", "worker", "--study", name, "--storage", url,
                               "--devices", "cpu", "--no-progress"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for _ in range(workers)]
    errors = [p.communicate()[1] for p in procs]
    wall = time.monotonic() - start
    bad = [(p.returncode, e.strip()[-300:]) for p, e in zip(procs, errors) if p.returncode != 0]
    if bad:
        raise SystemExit(f"cluster_throughput.py: workers failed on {url.split('://')[0]}: {bad}")
    trials = [t for t in optuna.load_study(study_name=name, storage=open_storage(url)).get_trials()
              if is_trained(t) and t.datetime_start and t.datetime_complete]
    first = min(t.datetime_start for t in trials)
    last = max(t.datetime_complete for t in trials)
    span = (last - first).total_seconds()
    return {"storage": "gRPC proxy -> PostgreSQL" if url.startswith("grpc://") else "PostgreSQL",
            "workers": workers, "trials": len(trials), "span_s": round(span, 1), "wall_s": round(wall, 1),
            "trials_per_min": round(len(trials) / span * 60, 1) if span > 0 else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--postgres", default=os.environ.get("SRNAS_TEST_POSTGRES_URL"),
                    help="the PostgreSQL URL (default: SRNAS_TEST_POSTGRES_URL)")
    ap.add_argument("--workers", default="4,8", help="worker counts, comma list")
    ap.add_argument("--budget", type=int, default=24, help="trained architectures per case")
    ap.add_argument("--updates", type=int, default=20, help="updates of each proxy training (tiny@N)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args(argv)
    if not args.postgres:
        print("cluster_throughput.py: give --postgres URL or set SRNAS_TEST_POSTGRES_URL", file=sys.stderr)
        return 2
    counts = [int(n) for n in args.workers.split(",") if n.strip()]
    with tempfile.TemporaryDirectory(prefix="srnas-throughput-") as root:
        env = {**os.environ, "SRNAS_TRIALS_DIR": root, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        proxy, grpc_url = _proxy(args.postgres, env)
        try:
            rows = [measure(url, n, budget=args.budget, updates=args.updates, env=env)
                    for n in counts for url in (args.postgres, grpc_url)]
        finally:
            proxy.terminate()
            proxy.wait(timeout=30)
    import torch

    machine = (f"{os.cpu_count()} CPU cores, {platform.machine()}, PyTorch {torch.__version__}, "
               f"Python {platform.python_version()}")
    print(f"trials per minute, {args.budget} trained trials per case (space tiny, proxy tiny@{args.updates}, "
          f"1 CPU thread per worker); {machine}")
    print("| storage | workers | trials/min | first start to last end | launch to last exit |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['storage']} | {r['workers']} | {r['trials_per_min']} | {r['span_s']} s | {r['wall_s']} s |")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
