"""`srnas search` and `srnas dashboard`."""

from __future__ import annotations

import argparse

from srnas.cli._args import add_command, positive_int, stderr_console, stdout_console, workers


def _register_search(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "search", help="run an architecture search (Optuna by default, or NNI)",
                    description="Search a space with short proxy trainings. With no --data the embedded demo "
                                "photographs, the tiny space and the tiny proxy are used. Re-running the same "
                                "command resumes the study. Off a terminal (a file, nohup, a batch scheduler) "
                                "it prints one line per finished trial and a progress line every minute; "
                                "trials/<study>/search.log keeps the same lines.")
    p.add_argument("--budget", type=int, default=200,
                   help="distinct architectures the study should hold trained, all workers together")
    p.add_argument("--space", default="tiny", help="shipped space name or YAML file")
    p.add_argument("--data", default="demo", help="demo, a DIV2K root, or a folder of images")
    p.add_argument("--proxy", default=None,
                   help="proxy fidelity: tiny, short, medium; NAME@N cuts it to N updates, NAME*F trains F "
                        "times longer (default: the space's, else tiny)")
    p.add_argument("--study", default=None, help="study name (default <space>-<data>[-objectives])")
    p.add_argument("--storage", default=None, help="Optuna storage URL (default trials/<study>/study.db); "
                   "postgresql://..., mysql+pymysql://..., or journal:FILE")
    p.add_argument("--engine", default="optuna", help="optuna or nni")
    p.add_argument("--sampler", default="tpe", help="tpe, random, nsga2, gp")
    p.add_argument("--pruner", default=None,
                   help="hyperband, median, none (default: hyperband for one objective, none for several)")
    p.add_argument("--objectives", default="psnr", help="psnr, or psnr,params / psnr,macs / psnr,latency (Pareto)")
    p.add_argument("--workers", type=workers, default="auto",
                   help="local worker processes: a number, or auto (default: one per GPU, else one per CPU core, up to 8)")
    p.add_argument("--devices", default="auto", help="comma list, e.g. cuda:0,cuda:1 (workers cycle through it)")
    p.add_argument("--workers-per-device", type=positive_int, default=1, metavar="K",
                   help="with --workers auto: K workers per GPU (small proxies share a GPU well)")
    p.add_argument("--timeout", type=float, default=None,
                   help="stop starting trials after this many seconds (default: no limit)")
    p.add_argument("--seed", type=int, default=None,
                   help="sampler and training seed; one CPU worker is then reproducible (default: random)")
    p.add_argument("--max-params", type=float, default=None,
                   help="constraint: trainable parameters (default: the space's constraints only)")
    p.add_argument("--max-mult-adds", type=float, default=None,
                   help="constraint: Mult-Adds at 720p (default: the space's constraints only)")
    p.add_argument("--max-activation-mb", type=float, default=None,
                   help="constraint: training activation memory in MB (default: the space's constraints only)")
    p.add_argument("--nni-strategy", default="evolution", help="NNI strategy: evolution, random, tpe")
    p.add_argument("--nni-webui", type=int, default=None, metavar="PORT",
                   help="start NNI's web UI on PORT (default: no web UI)")
    p.add_argument("--heartbeat", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--no-progress", action="store_true",
                   help="no live progress bar on a terminal: plain lines instead")
    p.set_defaults(func=_search)


def _register_dashboard(sub: argparse._SubParsersAction) -> None:
    d = add_command(sub, "dashboard", help="open optuna-dashboard on a study (read-only unless --allow-edits)",
                    description="Serve optuna-dashboard on a study and its SR sample images. Read-only by "
                                "default: only GET/HEAD pass, and requests whose Host header is not the "
                                "bound address are refused (DNS rebinding).")
    d.add_argument("--study", required=True)
    d.add_argument("--storage", default=None, help="storage URL (default trials/<study>/study.db)")
    d.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 for all)")
    d.add_argument("--port", type=int, default=8080, help="TCP port")
    d.add_argument("--allow-edits", action="store_true",
                   help="let the dashboard rename/delete studies, tell trials, upload/delete artifacts, save notes "
                        "(default: read-only)")
    d.add_argument("--allow-host", action="append", default=[], metavar="NAME[:PORT]",
                   help="also answer this Host header (a reverse proxy or another DNS name); repeatable "
                        "(default: only the bound address)")
    d.set_defaults(func=_dashboard)


COMMANDS = {"search": _register_search, "dashboard": _register_dashboard}


def _search(args: argparse.Namespace) -> int:
    from srnas.search.engines import run_search
    from srnas.search.progress import summary_table
    from srnas.search.settings import SearchSettings
    from srnas.studies import HEARTBEAT_INTERVAL

    if args.budget < 1:
        from srnas.errors import ConfigError

        raise ConfigError(f"--budget must be a positive integer, got {args.budget}")
    settings = SearchSettings(
        study=args.study, space=args.space, budget=args.budget, data=args.data, proxy=args.proxy,
        engine=args.engine, sampler=args.sampler, pruner=args.pruner, objectives=args.objectives,
        storage=args.storage, workers=args.workers, devices=tuple(args.devices.split(",")),
        workers_per_device=args.workers_per_device,
        timeout=args.timeout, seed=args.seed, max_params=args.max_params,
        max_mult_adds=args.max_mult_adds, max_activation_mb=args.max_activation_mb,
        heartbeat=args.heartbeat or HEARTBEAT_INTERVAL, nni_strategy=args.nni_strategy,
        nni_webui=args.nni_webui,
    )
    study = run_search(settings, console=stderr_console(args), progress=not args.no_progress)
    out = stdout_console()
    out.print(summary_table(study))
    out.print(f"dashboard: srnas dashboard --study {study.study_name}   "
              f"report: srnas report --study {study.study_name}")
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from srnas.results.dashboard import serve_dashboard

    serve_dashboard(args.study, args.storage, host=args.host, port=args.port, allow_edits=args.allow_edits,
                    extra_hosts=args.allow_host, announce=lambda line: print(line, flush=True))
    return 0
