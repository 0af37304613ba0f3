"""`srnas report`, `srnas export` and `srnas fidelity`."""

from __future__ import annotations

import argparse
from pathlib import Path

from srnas.cli._args import add_command, non_negative_int, positive_int, trial_number


def _register_report(sub: argparse._SubParsersAction) -> None:
    r = add_command(sub, "report", help="write an offline HTML report of a study (and trials.csv)",
                    description="One self-contained HTML file (works offline): optimisation history, Pareto "
                                "fronts, parameter importances (res_scale), PSNR curves, best trials with their "
                                "LR | SR | HR samples, retrained results and proxy-vs-retrained rank "
                                "correlation; trials.csv next to it.")
    r.add_argument("--study", required=True)
    r.add_argument("--storage", default=None, help="Optuna storage URL (default trials/<study>/study.db)")
    r.add_argument("-o", "--out", default=None, metavar="FILE",
                   help="HTML file, or a folder for report.html (default trials/<study>/report.html)")
    r.add_argument("--top", type=positive_int, default=20, help="rows of the best-trials table")
    r.add_argument("--samples", type=non_negative_int, default=6, metavar="K",
                   help="embed the LR | SR | HR strips of the best K architectures (0: none)")
    r.add_argument("--no-png", action="store_true",
                   help="do not try static PNGs (default: try them when kaleido and a Chromium are installed)")
    r.set_defaults(func=_report)


def _register_export(sub: argparse._SubParsersAction) -> None:
    e = add_command(sub, "export", help="export found architectures: config, weights, ONNX, model card",
                    description="Per architecture a folder <DIR>/<arch_id>/ with config.yaml/json, weights "
                                "when it was retrained (otherwise the model card says UNTRAINED), an ONNX file "
                                "with dynamic height/width checked against PyTorch, and model_card.md.")
    e.add_argument("--study", required=True)
    e.add_argument("--storage", default=None, help="Optuna storage URL (default trials/<study>/study.db)")
    which = e.add_mutually_exclusive_group(required=True)
    which.add_argument("--top", type=positive_int, metavar="K", help="the best K distinct architectures")
    which.add_argument("--trial", type=trial_number, metavar="N", help="one trial by number")
    which.add_argument("--pareto", action="store_true", help="the Pareto set (PSNR vs the cost objectives, or params)")
    e.add_argument("--format", default=None,
                   help="comma list of yaml, json, pt, safetensors, onnx (default: every one whose package is "
                        "installed; a skipped one is named with the extra that brings it)")
    e.add_argument("-o", "--out", type=Path, required=True, metavar="DIR")
    e.set_defaults(func=_export)


def _register_fidelity(sub: argparse._SubParsersAction) -> None:
    from srnas.api import PAPER_SCHEDULES, PROXY_FIDELITIES

    f = add_command(sub, "fidelity", help="measure how well proxy designs rank architectures (vs a longer training)",
                    description="Samples N architectures stratified over the space's dimensions (distinct parameter "
                                "counts, every value of every dimension), trains each with every --proxy (--seeds "
                                "seeds) and the --reference (--reference-seeds seeds) and reports, per design (each "
                                "proxy trained once or with its seeds averaged, its curve extrapolated, synflow, "
                                "grad-norm, #params, Mult-Adds, the bicubic-skip bit): Kendall tau with a bootstrap "
                                "95% interval against the reference scored on held-out validation images, overall, "
                                "inside 10% parameter bands and within skip groups; paired intervals against the "
                                "chosen design; the reference's seed-to-seed tau (noise ceiling); tau at every "
                                "evaluation point and the first pruning rung. Resumable. Fidelities: "
                                f"{', '.join([*PROXY_FIDELITIES, *PAPER_SCHEDULES])}; NAME*F trains F times longer, "
                                "NAME@N cuts to N updates.")
    f.add_argument("--space", default="tiny", help="shipped space name or YAML file")
    f.add_argument("--n", type=positive_int, required=True, help="number of architectures (>= 3)")
    f.add_argument("--proxy", default="tiny", help="proxy fidelities, comma-separated (NAME, NAME@N, NAME*F)")
    f.add_argument("--reference", default="tiny*10", help="reference fidelity (NAME, NAME@N, NAME*F)")
    f.add_argument("--seeds", type=positive_int, default=2, help="training seeds per proxy")
    f.add_argument("--reference-seeds", type=positive_int, default=3,
                   help="training seeds of the reference (its mean is the truth; 2 or more give its noise ceiling)")
    f.add_argument("--select-images", type=positive_int, default=1,
                   help="the first K validation images score the proxies, the others the reference (held out)")
    f.add_argument("--fix", action="append", default=[], metavar="KEY=VALUE",
                   help="also study the space with this dimension fixed, e.g. global_skip=bicubic (repeatable)")
    f.add_argument("--data", default="demo", help="demo, a DIV2K root, or a folder of images")
    f.add_argument("-o", "--out", type=Path, default=None, metavar="DIR",
                   help="output folder (default trials/fidelity/<space>-<proxies>-vs-<reference>)")
    f.add_argument("--seed", type=int, default=0, help="sampling seed; training seeds start here")
    f.add_argument("--workers", type=positive_int, default=1, help="training processes (CPU cores split among them)")
    f.add_argument("--no-train", action="store_true",
                   help="train nothing: write the tables from the runs already recorded (a study cut short)")
    f.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    f.set_defaults(func=_fidelity)


COMMANDS = {"report": _register_report, "export": _register_export, "fidelity": _register_fidelity}


def _report(args: argparse.Namespace) -> int:
    from srnas.api import write_report

    result = write_report(args.study, out=args.out, storage=args.storage, top=args.top,
                          static_images=not args.no_png, samples=args.samples)
    print(f"report: {result.html} ({result.n_trials} trials, {result.n_trained} trained)")
    print(f"table:  {result.csv}")
    for note in result.notes:
        print(f"note: {note}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from srnas.api import export_study, installed_formats

    exported = export_study(args.study, args.out, top=args.top, trial=args.trial, pareto=args.pareto,
                            formats=args.format, storage=args.storage)
    if args.format is None:
        for fmt, why in installed_formats()[1].items():
            print(f"note: {fmt} skipped: {why}")
    for item in exported:
        status = "trained" if item.trained else "UNTRAINED (no retrained weights; see model_card.md)"
        onnx = "".join(f", {name} max |ONNX-PyTorch| {diff:.1e}" for name, diff in item.onnx_max_abs_diff.items())
        print(f"trial {item.trial} {item.arch_id}: {status} -> {item.folder} ({', '.join(item.files)}{onnx})")
    return 0


def _fidelity(args: argparse.Namespace) -> int:
    from srnas.api import parse_fix, run_fidelity
    from srnas.log import get_logger

    result = run_fidelity(args.space, args.n, args.proxy, args.reference, data=args.data, out_dir=args.out,
                          seed=args.seed, seeds=args.seeds, reference_seeds=args.reference_seeds,
                          select_images=args.select_images, fix=parse_fix(args.fix), device=args.device,
                          workers=args.workers, train=not args.no_train, log=get_logger("fidelity").info)

    def interval(value: float | None, lo: float | None, hi: float | None) -> str:
        if value is None:
            return f"{'-':>22s}"
        ci = f"[{lo:+.2f}, {hi:+.2f}]" if lo is not None and hi is not None else "[-]"
        return f"{value:+.3f} {ci:>15s}"

    for variant, res in result.variants.items():
        rows = res["designs"]
        pairs = next((d.get("band_pairs") for d in rows if d.get("band_pairs") is not None), 0)
        print(f"{variant}: Kendall tau with the held-out reference over {res['n']} architectures (95% bootstrap CI); "
              f"inside 10% parameter bands over {pairs} pairs; within skip groups; tau minus the chosen design's:")
        for d in rows:
            group = f"   skip {interval(d.get('group_tau'), d.get('group_lo'), d.get('group_hi'))}" \
                if "group_tau" in d else ""
            print(f"  {d['label']:46s} tau {interval(d.get('tau'), d.get('tau_lo'), d.get('tau_hi'))}   band "
                  f"{interval(d.get('band_tau'), d.get('band_lo'), d.get('band_hi'))}{group}   vs chosen "
                  f"{interval(d.get('vs_chosen'), d.get('vs_chosen_lo'), d.get('vs_chosen_hi'))}   "
                  f"{d['cpu_s']:8.1f} CPU s/arch")
        ceiling = res.get("noise_ceiling")
        if ceiling:
            print(f"  reference seed vs seed (noise ceiling)         tau "
                  f"{interval(ceiling['tau'], ceiling['tau_lo'], ceiling['tau_hi'])}")
        for c in res["checkpoints"]:
            print(f"  {c['schedule']} at update {c['update']:<6d} tau {interval(c['tau'], c['tau_lo'], c['tau_hi'])}"
                  f"   minus final {interval(c['vs_final'], c['vs_final_lo'], c['vs_final_hi'])}")
        chosen = next((d["label"] for d in rows if d["design"] == res["chosen"]), "none")
        print(f"  chosen by the rule: {chosen}; first pruning rung: {res['first_rung'] or '-'}")
    return 0
