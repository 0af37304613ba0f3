"""srnas workers through submitit: a SLURM job array, or processes on this machine, on one study.

Create the study once, then start workers (each one `srnas worker`, one GPU on SLURM):

    export SRNAS_STORAGE=postgresql+psycopg://USER:PASS@DBHOST/srnas
    srnas search --study div2k-run --storage "$SRNAS_STORAGE" --data /shared/DIV2K --budget 500 \
        --artifacts /shared/srnas-artifacts --create-only
    python examples/cluster/submitit_workers.py --study div2k-run --workers 16                 # SLURM
    python examples/cluster/submitit_workers.py --study div2k-run --workers 2 --cluster local  # here

Needs ``pip install 'srnas[cluster]'`` (submitit). The storage URL comes from ``--storage`` or
SRNAS_STORAGE: PostgreSQL, or grpc://HOST:PORT of an ``srnas storage-proxy`` for hundreds of
workers; never a SQLite file on a network file system (srnas refuses it).

Pre-emption and time limits: submitit asks SLURM for SIGUSR2 ``--signal-delay`` seconds before
the limit, and on it (or on pre-emption) calls `SrnasWorker.checkpoint`: the worker process is
stopped (it enqueues its running trial again for another worker) and submitit requeues the task,
which starts a fresh worker (up to 3 times for time-outs, the submitit default). A task that
finds the budget met ends at once.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import time

import submitit

#: The exit code of a worker stopped by a signal (its trial enqueued again): requeue me.
REQUEUE_EXIT = 75


def _wait(proc: subprocess.Popen[bytes], timeout: float = math.inf) -> int | None:
    """The exit code of ``proc`` (None: still running after ``timeout`` s). Polls: `checkpoint`
    runs in a signal handler that may interrupt a ``Popen.wait``, whose lock it would wait on."""
    deadline = time.monotonic() + timeout
    while (code := proc.poll()) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    return code


class SrnasWorker(submitit.helpers.Checkpointable):
    """One ``srnas worker`` process, requeued by submitit when SLURM pre-empts it or its time runs out."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None

    def __call__(self, study: str, storage: str) -> int:
        # The same Python as the submitting process (submitit runs the job with it).
        self.proc = subprocess.Popen([sys.executable, "-m", "srnas", "worker", "--study", study, "--storage", storage,
                                      "--no-progress"])
        code = _wait(self.proc)
        if code == REQUEUE_EXIT:
            # SLURM signalled the worker directly (pre-emption sends SIGTERM to every process):
            # submitit's own signal follows and requeues this task (`checkpoint`) meanwhile.
            time.sleep(60)
        if code != 0:
            raise RuntimeError(f"srnas worker exited with {code}")
        return code

    def checkpoint(self, study: str, storage: str) -> submitit.helpers.DelayedSubmission:
        """Stop the worker (its running trial is enqueued again for another worker), then requeue."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if _wait(self.proc, timeout=60) is None:
                self.proc.kill()
        return submitit.helpers.DelayedSubmission(SrnasWorker(), study, storage)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Start srnas workers on a study through submitit.")
    parser.add_argument("--study", required=True, help="the study (created by srnas search --create-only)")
    parser.add_argument("--storage", default=os.environ.get("SRNAS_STORAGE"),
                        help="its storage URL (default: SRNAS_STORAGE)")
    parser.add_argument("--workers", type=int, default=4, help="array tasks (workers)")
    parser.add_argument("--cluster", default=None, choices=["slurm", "local", "debug"],
                        help="submitit's executor (default: SLURM where sbatch exists, else local)")
    parser.add_argument("--folder", default="submitit-logs/%j", help="submitit's logs and pickles")
    parser.add_argument("--gpus", type=int, default=1, help="GPUs per worker (0 on CPU nodes)")
    parser.add_argument("--cpus", type=int, default=8, help="CPU cores per worker")
    parser.add_argument("--timeout-min", type=int, default=24 * 60, help="time limit of each task, minutes")
    parser.add_argument("--signal-delay", type=int, default=120,
                        help="seconds before the time limit at which a worker is stopped and requeued")
    parser.add_argument("--partition", default=None, help="SLURM partition (default: the cluster's)")
    parser.add_argument("--wait", action="store_true", help="wait for every task and print their results")
    args = parser.parse_args(argv)
    if not args.storage:
        parser.error("--storage or SRNAS_STORAGE is needed: workers on several machines share a database")

    executor = submitit.AutoExecutor(folder=args.folder, cluster=args.cluster)
    executor.update_parameters(timeout_min=args.timeout_min, cpus_per_task=args.cpus, tasks_per_node=1,
                               slurm_signal_delay_s=args.signal_delay, slurm_array_parallelism=args.workers,
                               name=f"srnas-{args.study}")
    if args.gpus:
        executor.update_parameters(gpus_per_node=args.gpus)
    if args.partition:
        executor.update_parameters(slurm_partition=args.partition)
    jobs = executor.map_array(SrnasWorker(), [args.study] * args.workers, [args.storage] * args.workers)
    print(f"submitted {len(jobs)} workers on study {args.study}: {', '.join(job.job_id for job in jobs)}", flush=True)
    if args.wait:
        codes = [job.result() for job in jobs]
        print(f"workers done: {codes}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
