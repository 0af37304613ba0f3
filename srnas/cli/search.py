"""`srnas search` and `srnas dashboard`."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from srnas.cli._args import (
    add_command,
    add_run_file_options,
    given,
    positive_int,
    print_json,
    stderr_console,
    stdout_console,
    track_given,
    workers,
    write_run_file,
)


def _register_search(sub: argparse._SubParsersAction) -> None:
    from srnas.api import PROXY_FIDELITIES, SearchSettings

    d: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(SearchSettings)}  # one source of defaults
    p = add_command(sub, "search", help="run an architecture search (Optuna by default, or NNI)",
                    description="Search a space with short proxy trainings. With no --data the embedded demo "
                                "photographs, the tiny space and the tiny proxy are used. Re-running the same "
                                "command resumes the study with the settings it recorded (flags given override "
                                "them). Off a terminal (a file, nohup, a batch scheduler) it prints one line per "
                                "finished trial and a progress line every minute; trials/<study>/search.log "
                                "keeps the same lines.")
    p.add_argument("--budget", type=int, default=d["budget"],
                   help="distinct architectures the study should hold trained, all workers together")
    p.add_argument("--space", default=d["space"], help="shipped space name or YAML file")
    p.add_argument("--data", default=d["data"], help="demo, a DIV2K root, or a folder of images")
    p.add_argument("--proxy", default=d["proxy"],
                   help=f"proxy fidelity: {', '.join(PROXY_FIDELITIES)}; NAME@N cuts it to N updates, NAME*F "
                        "trains F times longer (default: the space's, else tiny)")
    p.add_argument("--study", default=d["study"], help="study name (default <space>-<data>[-objectives])")
    p.add_argument("--storage", default=d["storage"], help="Optuna storage URL (default trials/<study>/study.db); "
                   "postgresql://..., mysql+pymysql://..., or journal:FILE")
    p.add_argument("--artifacts", default=d["artifacts"], metavar="URL",
                   help="artifact store of the sample images, shared by every worker, the report and the "
                        "dashboard: a folder (shared file system) or s3://BUCKET/PREFIX (pip install 'srnas[s3]'; "
                        "AWS_ENDPOINT_URL for MinIO and the like); recorded in the study (default: the recorded "
                        "one, else trials/<study>/artifacts)")
    p.add_argument("--engine", default=d["engine"], help="optuna or nni")
    p.add_argument("--sampler", default=d["sampler"], help="tpe, random, nsga2, gp")
    p.add_argument("--pruner", default=d["pruner"],
                   help="asha, hyperband, median, none (default: asha, successive halving from the proxy's measured "
                        "first rung, for one objective; none for several)")
    p.add_argument("--objectives", default=",".join(d["objectives"]),
                   help="psnr, or psnr,params / psnr,macs / psnr,latency / psnr,ntire (Pareto; ntire: the NTIRE "
                        "efficient-SR challenge score against --ntire-baseline, docs/blocks.md)")
    p.add_argument("--ntire-baseline", default=d["ntire_baseline"], metavar="PRESET[:WIDTH]",
                   help="the ntire objective's baseline, trained once with the study's proxy for the PSNR floor "
                        "(default span:28, the NTIRE 2026 baseline)")
    p.add_argument("--ntire-year", type=int, default=d["ntire_year"], metavar="YEAR",
                   help="the challenge year whose weights score runtime, FLOPs and parameters: 2024, 2025 "
                        "(0.7/0.15/0.15) or 2026 (0.8/0.1/0.1)")
    p.add_argument("--ntire-margin", type=float, default=d["ntire_margin"], metavar="DB",
                   help="a net more than DB under the baseline's proxy PSNR is infeasible (ntire objective)")
    p.add_argument("--workers", type=workers, default=d["workers"],
                   help="local worker processes: a number, or auto (default: one per GPU, else one per CPU core, up to 8)")
    p.add_argument("--devices", default=",".join(d["devices"]),
                   help="comma list, e.g. cuda:0,cuda:1 (workers cycle through it)")
    p.add_argument("--workers-per-device", type=positive_int, default=d["workers_per_device"], metavar="K",
                   help="with --workers auto: K workers per GPU (small proxies share a GPU well)")
    p.add_argument("--max-updates", type=positive_int, default=d["max_updates"], metavar="N",
                   help="compute budget: stop once the trials trained N updates in all, pruned ones counting the "
                        "updates they ran (default: none; --budget counts distinct architectures)")
    p.add_argument("--confirm", type=int, default=d["confirm"], metavar="K",
                   help="at the end, train the top K architectures again with fresh seeds and score them on "
                        "validation images the search did not select on; rankings use that score (0: off)")
    p.add_argument("--confirm-seeds", type=positive_int, default=d["confirm_seeds"], metavar="S",
                   help="fresh seeds per confirmed architecture")
    p.add_argument("--timeout", type=float, default=d["timeout"],
                   help="stop starting trials after this many seconds (default: no limit)")
    p.add_argument("--seed", type=int, default=d["seed"],
                   help="sampler and training seed; one CPU worker is then reproducible (default: random)")
    p.add_argument("--max-params", type=float, default=d["max_params"],
                   help="constraint: trainable parameters (default: the space's constraints only)")
    p.add_argument("--max-mult-adds", type=float, default=d["max_mult_adds"],
                   help="constraint: Mult-Adds at 720p (default: the space's constraints only)")
    p.add_argument("--max-activation-mb", type=float, default=d["max_activation_mb"],
                   help="constraint: training activation memory in MB (default: the space's constraints only)")
    p.add_argument("--nni-strategy", default=d["nni_strategy"], help="NNI strategy: evolution, random, tpe")
    p.add_argument("--nni-webui", type=int, default=d["nni_webui"], metavar="PORT",
                   help="start NNI's web UI on PORT (default: no web UI)")
    p.add_argument("--heartbeat", type=float, default=d["heartbeat"], help=argparse.SUPPRESS)
    p.add_argument("--no-progress", action="store_true",
                   help="no live progress bar on a terminal: plain lines instead")
    p.add_argument("--json", action="store_true",
                   help="print the summary as JSON on stdout (counts, best result, fidelity) instead of a table")
    p.add_argument("--create-only", action="store_true",
                   help="create the study with these settings and train nothing: workers started anywhere join it "
                        "(srnas worker --study NAME --storage URL; see docs/cluster.md)")
    add_run_file_options(p, "search", "--config")
    track_given(p)
    p.set_defaults(func=_search)


def _register_dashboard(sub: argparse._SubParsersAction) -> None:
    d = add_command(sub, "dashboard", help="open optuna-dashboard on every study, or one (read-only unless --allow-edits)",
                    description="Serve optuna-dashboard with the SR sample images: without --study every study "
                                "under trials/ side by side (each study's own file, new ones appear on reload), "
                                "or every study of --storage; with --study that study. Read-only by default: "
                                "only GET/HEAD pass, and requests whose Host header is not the bound address "
                                "are refused (DNS rebinding).")
    d.add_argument("--study", default=None, help="one study (default: all studies under trials/, or of --storage)")
    d.add_argument("--storage", default=None,
                   help="storage URL (default trials/<study>/study.db; without --study: all its studies)")
    d.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 for all)")
    d.add_argument("--port", type=int, default=8080, help="TCP port")
    d.add_argument("--allow-edits", action="store_true",
                   help="let the dashboard rename/delete studies, tell trials, upload/delete artifacts, save notes "
                        "(default: read-only)")
    d.add_argument("--allow-host", action="append", default=[], metavar="NAME[:PORT]",
                   help="also answer this Host header (a reverse proxy or another DNS name); repeatable "
                        "(default: only the bound address)")
    d.set_defaults(func=_dashboard)


def _register_confirm(sub: argparse._SubParsersAction) -> None:
    c = add_command(sub, "confirm", help="train a study's top architectures again on fresh seeds, score them held out",
                    description="The winner's curse: a search's best score is the maximum of noisy draws, measured on "
                                "the images it was chosen on. This trains the top K architectures of the study "
                                "again at its fidelity with S fresh seeds and scores them on the validation images "
                                "the search did not select on (the selection images too, for the gap). The trials "
                                "record the confirmed mean, spread and seeds; the summary, srnas studies, the "
                                "report, export --top and retrain --top rank by it. Resumable; several commands "
                                "(or machines) on one study share the work.")
    c.add_argument("--study", required=True, help="study name")
    c.add_argument("--top", type=int, default=3, help="architectures to confirm (by their search score; 0: none)")
    c.add_argument("--trial", type=int, action="append", default=[], metavar="N",
                   help="also confirm this trial (e.g. 0, the space's preset, to compare with); repeatable")
    c.add_argument("--seeds", type=positive_int, default=None,
                   help="fresh seeds per architecture (default: the study's --confirm-seeds, 2)")
    c.add_argument("--storage", default=None, help="storage URL (default trials/<study>/study.db)")
    c.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N (default: the study's first device)")
    c.add_argument("--json", action="store_true", help="print the confirmed records as JSON")
    c.set_defaults(func=_confirm)


COMMANDS = {"search": _register_search, "confirm": _register_confirm, "dashboard": _register_dashboard}


def _confirm(args: argparse.Namespace) -> int:
    from srnas.api import confirm

    records = confirm(args.study, storage=args.storage, top=args.top, seeds=args.seeds, extra=args.trial,
                      device=args.device)
    if args.json:
        print_json(records)
        return 0
    out = stdout_console()
    if not records:
        out.print(f"study {args.study!r}: no COMPLETE architecture to confirm")
    for r in records:
        out.print(f"trial {r['trial']} {r['arch_id']}: confirmed {r['psnr']:.3f} dB (sd {r['sd']:.3f}, seeds "
                  f"{', '.join(map(str, r['seeds']))}; {r['on']} images {', '.join(r['images'])}); "
                  f"winner's-curse gap {r['gap']:+.3f} dB")
    return 0


def _search(args: argparse.Namespace) -> int:
    from srnas.api import SEARCH_OUTPUT, resolve_search, run_search, search_schema, summary_table

    settings, output = resolve_search(getattr(args, "run", None), **given(args, search_schema()))
    output = {**{key: False for key in SEARCH_OUTPUT}, **output}
    if hasattr(args, "print_config"):
        from srnas.api import dump_run_file

        text = dump_run_file({**settings.run_options(), **output},
                             header="srnas search run file: srnas search --run FILE (flags given override it)")
        write_run_file(args.print_config, text)
        return 0
    study = run_search(settings, console=stderr_console(args), progress=not output["no_progress"],
                       create_only=output["create_only"])
    if output["create_only"] and not output["json"]:
        return 0
    if output["json"]:
        from srnas.api import study_overview

        print_json(study_overview(study))
        return 0
    out = stdout_console()
    out.print(summary_table(study))
    out.print(f"dashboard: srnas dashboard --study {study.study_name}   "
              f"report: srnas report --study {study.study_name}")
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from srnas.api import serve_dashboard

    serve_dashboard(args.study, args.storage, host=args.host, port=args.port, allow_edits=args.allow_edits,
                    extra_hosts=args.allow_host, announce=lambda line: print(line, flush=True))
    return 0
