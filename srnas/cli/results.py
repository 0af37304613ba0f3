"""`srnas report`, `srnas export` and `srnas fidelity`."""

from __future__ import annotations

import argparse
from pathlib import Path

from srnas.cli._args import positive_int, trial_number


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("report", help="write an offline HTML report of a study (and trials.csv)",
                       description="One self-contained HTML file (works offline): optimisation history, Pareto "
                                   "fronts, parameter importances (res_scale), PSNR curves, best trials, retrained "
                                   "results and proxy-vs-retrained rank correlation; trials.csv next to it.")
    r.add_argument("--study", required=True)
    r.add_argument("--storage", default=None, help="Optuna storage URL (default trials/<study>/study.db)")
    r.add_argument("-o", "--out", type=Path, default=None, metavar="FILE",
                   help="HTML file (default trials/<study>/report.html)")
    r.add_argument("--top", type=positive_int, default=20, help="rows of the best-trials table (default 20)")
    r.add_argument("--no-png", action="store_true", help="do not try static PNGs (kaleido + Chromium)")
    r.set_defaults(func=_report)

    e = sub.add_parser("export", help="export found architectures: config, weights, ONNX, model card",
                       description="Per architecture a folder <DIR>/<arch_id>/ with config.yaml/json, weights "
                                   "when it was retrained (otherwise the model card says UNTRAINED), an ONNX file "
                                   "with dynamic height/width checked against PyTorch, and model_card.md.")
    e.add_argument("--study", required=True)
    e.add_argument("--storage", default=None, help="Optuna storage URL (default trials/<study>/study.db)")
    which = e.add_mutually_exclusive_group(required=True)
    which.add_argument("--top", type=positive_int, metavar="K", help="the best K distinct architectures")
    which.add_argument("--trial", type=trial_number, metavar="N", help="one trial by number")
    which.add_argument("--pareto", action="store_true", help="the Pareto set (PSNR vs the cost objectives, or params)")
    e.add_argument("--format", default="yaml,json,pt,safetensors,onnx",
                   help="comma list of yaml, json, pt, safetensors, onnx (default all)")
    e.add_argument("-o", "--out", type=Path, required=True, metavar="DIR")
    e.set_defaults(func=_export)

    f = sub.add_parser("fidelity", help="measure how well a proxy ranks architectures (vs a longer training)",
                       description="Samples N architectures stratified by parameter count, trains each at both "
                                   "fidelities and reports Kendall tau / Spearman rho of proxy vs reference PSNR next "
                                   "to ranking by params, Mult-Adds, synflow and grad-norm. Resumable. Fidelities: "
                                   "tiny, short, medium, paper; NAME*F trains F times longer, NAME@N cuts to N updates.")
    f.add_argument("--space", default="tiny", help="shipped space name or YAML file (default tiny)")
    f.add_argument("--n", type=positive_int, required=True, help="number of architectures (>= 3)")
    f.add_argument("--proxy", default="tiny", help="proxy fidelity (default tiny)")
    f.add_argument("--reference", default="tiny*10", help="reference fidelity (default tiny*10)")
    f.add_argument("--data", default="demo", help="demo (default), a DIV2K root, or a folder of images")
    f.add_argument("-o", "--out", type=Path, default=None, metavar="DIR",
                   help="output folder (default trials/fidelity/<space>-<proxy>-vs-<reference>)")
    f.add_argument("--seed", type=int, default=0, help="sampling, initialisation and training seed")
    f.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")
    f.set_defaults(func=_fidelity)


def _report(args: argparse.Namespace) -> int:
    from srnas.results.report import write_report

    result = write_report(args.study, out=args.out, storage=args.storage, top=args.top,
                          static_images=not args.no_png)
    print(f"report: {result.html} ({result.n_trials} trials, {result.n_trained} trained)")
    print(f"table:  {result.csv}")
    for note in result.notes:
        print(f"note: {note}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from srnas.results.export import export_study

    exported = export_study(args.study, args.out, top=args.top, trial=args.trial, pareto=args.pareto,
                            formats=args.format, storage=args.storage)
    for item in exported:
        status = "trained" if item.trained else "UNTRAINED (no retrained weights; see model_card.md)"
        onnx = "".join(f", {name} max |ONNX-PyTorch| {diff:.1e}" for name, diff in item.onnx_max_abs_diff.items())
        print(f"trial {item.trial} {item.arch_id}: {status} -> {item.folder} ({', '.join(item.files)}{onnx})")
    return 0


def _fidelity(args: argparse.Namespace) -> int:
    from srnas.results.fidelity import PREDICTORS, run_fidelity

    result = run_fidelity(args.space, args.n, args.proxy, args.reference, data=args.data, out_dir=args.out,
                          seed=args.seed, device=args.device, log=lambda msg: print(msg, flush=True))
    print(f"rank correlation with the reference PSNR over {len(result.rows)} architectures:")
    for key, label in PREDICTORS.items():
        c = result.correlations[key]
        tau = "-" if c["kendall_tau"] is None else f"{c['kendall_tau']:+.3f}"
        rho = "-" if c["spearman_rho"] is None else f"{c['spearman_rho']:+.3f}"
        print(f"  {label:12s} Kendall tau {tau:>7s}   Spearman rho {rho:>7s}")
    print(f"csv: {result.csv}\njson: {result.json}\nplot: {result.html}")
    return 0
