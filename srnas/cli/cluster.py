"""`srnas worker` and `srnas storage-proxy`: a search past one machine (docs/cluster.md)."""

from __future__ import annotations

import argparse

from srnas.cli._args import add_command, positive_int, stderr_console


def _register_worker(sub: argparse._SubParsersAction) -> None:
    w = add_command(sub, "worker", help="join an existing study and train its trials (one per cluster job or node)",
                    description="Join a study that srnas search created (--create-only trains nothing) and train "
                                "its trials until its budget is met, with the settings it recorded; exits 0 then, "
                                "also when the budget was met already. Uses the GPUs the scheduler gave "
                                "(CUDA_VISIBLE_DEVICES: one worker process each), else the CPU cores it gave "
                                "(SLURM_CPUS_PER_TASK). SIGTERM, SIGUSR1 or SIGUSR2 (pre-emption, a pre-timeout "
                                "signal) enqueues the running trial again for another worker and exits 75: "
                                "requeue the job. Recipes for SLURM, submitit and Kubernetes: examples/cluster/.")
    w.add_argument("--study", required=True, help="study name (created by srnas search --create-only)")
    w.add_argument("--storage", default=None,
                   help="storage URL shared by the workers: postgresql+psycopg://USER:PASS@HOST/DB, "
                        "grpc://HOST:PORT (srnas storage-proxy), mysql+pymysql://..., journal:FILE on a shared "
                        "disk (default trials/<study>/study.db: this machine only)")
    w.add_argument("--devices", default=None,
                   help="comma list, one worker process each, e.g. cuda:0,cuda:1 or cpu (default: every GPU the "
                        "scheduler gave, else the CPU)")
    w.add_argument("--no-progress", action="store_true", help="no live progress bar on a terminal: plain lines instead")
    w.set_defaults(func=_worker)


def _register_storage_proxy(sub: argparse._SubParsersAction) -> None:
    s = add_command(sub, "storage-proxy", help="serve a study database to many workers through Optuna's gRPC proxy",
                    description="Serve a storage (PostgreSQL, MySQL or SQLite; Optuna's proxy does not serve "
                                "journal files) through Optuna's gRPC storage proxy, so that hundreds of workers "
                                "share a few database connections and a cache of finished trials: workers, "
                                "search, studies, report and dashboard then use --storage grpc://HOST:PORT. "
                                "The proxy has no authentication or encryption: bind it to a private network.")
    s.add_argument("--storage", required=True, help="the database: postgresql+psycopg://USER:PASS@HOST/DB, ...")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for every interface)")
    s.add_argument("--port", type=positive_int, default=13000, help="TCP port")
    s.add_argument("--threads", type=positive_int, default=10, help="requests served at once")
    s.set_defaults(func=_storage_proxy)


COMMANDS = {"worker": _register_worker, "storage-proxy": _register_storage_proxy}


def _worker(args: argparse.Namespace) -> int:
    from srnas.api import REQUEUE_EXIT, run_worker

    code = run_worker(args.study, args.storage, devices=args.devices, console=stderr_console(args),
                      progress=not args.no_progress)
    if code == REQUEUE_EXIT:
        # Stopped by the scheduler, its trial requeued and recorded: leave now with the code the
        # recipes requeue on. Nothing that runs at interpreter shutdown (a stop signal re-sent
        # while the trial was requeued, a storage thread) may turn it into another (seen: -2).
        import logging
        import os
        import sys

        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _storage_proxy(args: argparse.Namespace) -> int:
    from srnas.api import serve_storage_proxy

    serve_storage_proxy(args.storage, host=args.host, port=args.port, threads=args.threads,
                        announce=lambda line: print(line, flush=True))
    return 0
