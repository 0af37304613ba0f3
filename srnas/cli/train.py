"""`srnas retrain`, `srnas eval` and `srnas upscale`."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from srnas.api import DEFAULT_SETS
from srnas.cli._args import (
    add_command,
    add_run_file_options,
    given,
    positive_int,
    stderr_console,
    stdout_console,
    track_given,
    write_run_file,
)

if TYPE_CHECKING:
    from srnas.api import EvalResult, RetrainRun, TrainProgress


def _register_retrain(sub: argparse._SubParsersAction) -> None:
    from srnas.api import RetrainSettings

    r = add_command(sub, "retrain", help="train architectures fully (paper schedule) or on a proxy schedule",
                    description="Train a config file, a preset, or the best K trials of a study. Outputs go to "
                                "<out>/<study>/retrain/<arch_id>/<schedule>/: config.yaml, checkpoint.pt "
                                "(resumable), model.pt (final weights), metrics.json and retrain.log. Off a "
                                "terminal it prints a line every --log-every updates and at each evaluation.")
    d = {f.name: f.default for f in dataclasses.fields(RetrainSettings)}  # one source of defaults
    what = r.add_mutually_exclusive_group()  # one of them, here or in the --run file
    what.add_argument("--config", metavar="FILE",
                      help="architecture config (YAML/JSON); one of --config, --preset, --top (default: the run file's)")
    what.add_argument("--preset", metavar="NAME", help="edsr-baseline, edsr, mdsr-baseline or mdsr (default: none)")
    what.add_argument("--top", type=positive_int, metavar="K",
                      help="retrain the best K complete trials of --study (default: none)")
    r.add_argument("--study", default=None,
                   help="study to read with --top; the output study name otherwise (default manual)")
    r.add_argument("--storage", default=None, help="Optuna storage URL of --study (default <out>/<study>/study.db)")
    r.add_argument("--scale", type=int, default=None, help="scale of an EDSR preset (default 2)")
    r.add_argument("--data", default=d["data"], help="demo, a DIV2K root, or a folder of images")
    r.add_argument("--schedule", default=d["schedule"],
                   help="paper (3e5 updates), paper-long (1e6), or proxy-tiny/short/medium")
    r.add_argument("--resume", action="store_true", help="continue from checkpoint.pt in the output folder")
    r.add_argument("--device", default=d["device"], help="auto, cpu, cuda, cuda:N")
    r.add_argument("--precision", default=d["precision"], choices=["auto", "fp32", "tf32", "bf16"],
                   help="auto: bf16 on CUDA, fp32 on CPU")
    r.add_argument("--out", default=d["out"], metavar="DIR", help="root folder (default trials/)")
    r.add_argument("--seed", type=int, default=d["seed"], help="initialisation and training seed")
    r.add_argument("--init", default=None, metavar="WEIGHTS",
                   help="start from these weights (x3/x4 from x2: all but the upsampler); by default the paper "
                        "schedule uses an x2 retrain of the same architecture in the study when present")
    r.add_argument("--checkpoint-every", type=positive_int, default=None, metavar="N",
                   help="updates between checkpoints (default: at every evaluation)")
    r.add_argument("--max-updates", type=positive_int, default=None, metavar="N",
                   help="cut the schedule to N updates (smoke runs; the result is labelled schedule@N; "
                        "default: the whole schedule)")
    r.add_argument("--log-every", type=positive_int, default=1000, metavar="N",
                   help="updates between plain progress lines (also one at each evaluation and at least one a "
                        "minute)")
    r.add_argument("--no-progress", action="store_true",
                   help="no live progress bar on a terminal: plain lines instead")
    r.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=d["tensorboard"],
                   help="TensorBoard scalars (train/loss, train/lr, val/psnr) in <run folder>/tensorboard/ "
                        "(default: when the tensorboard package is installed, pip install 'srnas[tensorboard]')")
    add_run_file_options(r, "retrain", "--config-file")
    track_given(r)
    r.set_defaults(func=_retrain)


def _register_eval(sub: argparse._SubParsersAction) -> None:
    e = add_command(sub, "eval", help="evaluate trained weights on benchmark sets beside published numbers",
                    description="PSNR/SSIM of a model on benchmark sets (paper protocol: 8-bit output, Y channel, "
                                "crop = scale), next to bicubic measured on the same images and the published "
                                "numbers of the same sets. A set with fewer images than the official one is "
                                "marked with its count and shown without published numbers. --data FOLDER of "
                                "one's own HR images evaluates all of them (LR made with MATLAB bicubic).")
    e.add_argument("--model", required=True, metavar="PATH",
                   help="a retrain output folder, a weights file (.pt, .safetensors), or a preset name with "
                        "--pretrained")
    e.add_argument("--pretrained", action="store_true",
                   help="--model names a preset: use the EDSR authors' released weights (downloaded once, "
                        "SHA-256 checked, cached)")
    e.add_argument("--weights-url", default=None, metavar="URL",
                   help="mirror of the authors' weights folder (default $SRNAS_WEIGHTS_URL, else their server)")
    e.add_argument("--config", default=None, metavar="FILE",
                   help="architecture (YAML/JSON or preset name) when no config.yaml lies next to the weights "
                        "(default: that config.yaml)")
    e.add_argument("--data", default="demo",
                   help="demo, a benchmark root (with Set5/, Set14/ ...), a DIV2K root, or a folder of HR images")
    e.add_argument("--sets", default=None,
                   help=f"comma list of sets in a benchmark root (default {DEFAULT_SETS}; a folder of images is "
                        "one set named after it)")
    e.add_argument("--scale", type=int, default=None, help="scale (default: the model's only scale)")
    e.add_argument("--self-ensemble", action="store_true", help="x8 self-ensemble ('+' results)")
    e.add_argument("--tile", type=positive_int, default=None, metavar="N",
                   help="tiled inference with N x N LR tiles (default: whole images)")
    e.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    e.add_argument("--bf16", action="store_true", help="bf16 inference (CUDA only; default fp32)")
    e.add_argument("--per-image", action="store_true",
                   help="also print each image's PSNR / SSIM, beside bicubic's, under the table")
    e.add_argument("--json", type=Path, default=None, metavar="FILE",
                   help="also write per-image results as JSON (default: table only)")
    e.set_defaults(func=_eval)


def _register_upscale(sub: argparse._SubParsersAction) -> None:
    u = add_command(sub, "upscale", help="super-resolve image files with trained weights",
                    description="Write IN_x<scale>.png into OUTDIR for every image file (or every image of a "
                                "folder) given. A grayscale input gives a grayscale output (the network sees it as "
                                "RGB); an alpha channel is upscaled with MATLAB bicubic and kept. Existing outputs "
                                "are refused unless --overwrite.")
    u.add_argument("inputs", nargs="+", metavar="IN", help="image files or folders of images")
    u.add_argument("-o", "--out", required=True, type=Path, metavar="OUTDIR")
    u.add_argument("--model", required=True, metavar="PATH",
                   help="a retrain output folder, a weights file, or a preset name with --pretrained")
    u.add_argument("--pretrained", action="store_true",
                   help="--model names a preset: use the EDSR authors' released weights")
    u.add_argument("--weights-url", default=None, metavar="URL",
                   help="mirror of the authors' weights folder (default $SRNAS_WEIGHTS_URL, else their server)")
    u.add_argument("--config", default=None, metavar="FILE",
                   help="architecture when no config.yaml lies next to the weights (default: that config.yaml)")
    u.add_argument("--scale", type=int, default=None, help="scale (default: the model's only scale)")
    u.add_argument("--tile", type=positive_int, default=None, metavar="N",
                   help="tiled inference with N x N LR tiles (default: whole images)")
    u.add_argument("--self-ensemble", action="store_true", help="x8 self-ensemble")
    u.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    u.add_argument("--overwrite", action="store_true", help="replace output files that exist (default: refuse)")
    u.set_defaults(func=_upscale)


COMMANDS = {"retrain": _register_retrain, "eval": _register_eval, "upscale": _register_upscale}


# ---- retrain ------------------------------------------------------------------------------------


def _retrain(args: argparse.Namespace) -> int:
    """Parse, call `srnas.api.run_retrain` with a live bar on a terminal, else a plain line
    every ``--log-every`` updates, at each evaluation and at least every minute (all of them
    in each run's retrain.log), and print each run's result line."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from srnas.api import RETRAIN_OUTPUT, resolve_retrain, retrain_progress_lines, retrain_schema, run_retrain
    from srnas.log import QUIET, VERBOSE_ONLY, verbosity

    settings, output = resolve_retrain(getattr(args, "run", None), **given(args, retrain_schema()))
    output = {"no_progress": False, "log_every": 1000, **output}
    if hasattr(args, "print_config"):
        from srnas.api import dump_run_file

        text = dump_run_file({**settings.run_options(), **{k: output[k] for k in RETRAIN_OUTPUT}},
                             header="srnas retrain run file: srnas retrain --run FILE (flags given override it)")
        write_run_file(args.print_config, text)
        return 0
    console = stderr_console(args)
    live = not output["no_progress"] and console.is_terminal and verbosity() > QUIET
    progress_bar = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}  PSNR {task.fields[psnr]}"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=console, disable=not live, transient=False,
    )
    route = VERBOSE_ONLY if live else None
    lines = retrain_progress_lines(log_every=output["log_every"], route=route)
    bars: dict[str, Any] = {}

    def on_progress(run: "RetrainRun", p: "TrainProgress") -> None:
        if bars.get("run") is not run:  # a new run: its own bar
            bars.update(run=run, task=progress_bar.add_task(run.config.arch_id, total=run.schedule.updates, loss="-",
                                                            lr="-", psnr="-"))
        progress_bar.update(bars["task"], completed=p.update, loss=f"{p.loss:.3f}", lr=f"{p.lr:.2e}",
                            psnr="-" if p.last_psnr is None else f"{p.last_psnr:.2f}")
        lines(run, p)

    with progress_bar:
        run_retrain(settings, progress=on_progress, on_done=lambda done: print(done.summary, flush=True))
    return 0


# ---- eval ---------------------------------------------------------------------------------------


def _eval(args: argparse.Namespace) -> int:
    from srnas.api import atomic_write_text, evaluate

    status = stderr_console(args)
    result = evaluate(args.model, data=args.data, sets=args.sets, scale=args.scale, self_ensemble=args.self_ensemble,
                      tile=args.tile, device=args.device, bf16=args.bf16, pretrained=args.pretrained,
                      weights_url=args.weights_url, config=args.config, status=status.status)
    console = stdout_console()
    label = f"{result.config.describe()}{' (+)' if args.self_ensemble else ''}"
    console.print(_results_table(result.results, result.bicubic, result.scale, label, result.params, result.counts))
    if args.per_image:
        console.print(_per_image_table(result.results, result.bicubic, result.scale))
    for note in result.notes:
        console.print(f"note: {note}", markup=False, highlight=False)
    if args.json is not None:
        atomic_write_text(args.json, json.dumps(result.to_dict(), indent=2) + "\n")
        console.print(f"per-image results -> {args.json}")
    return 0


def _set_header(name: str, found: int, official: int | None) -> str:
    return name if official is None or found >= official else f"{name} ({found} of {official} images)"


def _per_image_table(ours: dict[str, "EvalResult"], bicubic: dict[str, "EvalResult"], scale: int) -> Any:
    """One row per image of every set: the model's PSNR / SSIM and bicubic's."""
    from rich.table import Table

    table = Table(title=f"per image, x{scale}")
    for col in ("set", "image", "PSNR (dB)", "SSIM", "bicubic PSNR", "bicubic SSIM"):
        table.add_column(col, justify="left" if col in ("set", "image") else "right")
    for name, res in ours.items():
        ref = {r.name: r for r in bicubic[name].rows} if name in bicubic else {}
        for row in res.rows:
            b = ref.get(row.name)
            table.add_row(name, row.name, f"{row.psnr:.3f}", "-" if row.ssim is None else f"{row.ssim:.4f}",
                          "-" if b is None else f"{b.psnr:.3f}",
                          "-" if b is None or b.ssim is None else f"{b.ssim:.4f}")
    return table


def _results_table(ours: dict[str, "EvalResult"], bicubic: dict[str, "EvalResult"], scale: int, label: str,
                   params: int, counts: dict[str, tuple[int, int | None]]) -> Any:
    """The eval table: published rows (complete official sets only), bicubic and the model."""
    from rich.table import Table

    from srnas.api import BENCHMARK_SETS, PUBLISHED_DIV2K, published_rows

    names = list(ours)
    complete = {n for n in names if (total := counts[n][1]) is not None and counts[n][0] >= total}
    incomplete = [n for n in names if counts[n][1] is not None and n not in complete]
    protocols = sorted({r.protocol for r in ours.values()})
    protocol = protocols[0] if len(protocols) == 1 else "/".join(protocols)
    what = {"benchmark": "Y channel, crop = scale", "div2k": "RGB, crop = scale + 6"}.get(protocol, protocol)
    table = Table(title=f"PSNR (dB) / SSIM, x{scale}, {protocol} protocol ({what})"
                        f"{', self-ensemble' if any(r.self_ensemble for r in ours.values()) else ''}")
    table.add_column("model")
    table.add_column("params", justify="right")
    for n in names:
        table.add_column(_set_header(n, *counts[n]), justify="right")

    def published_cell(psnr: dict[str, float], ssim: dict[str, float], n: str) -> str:
        if n not in complete or n not in psnr:
            return ""
        return f"{psnr[n]:.2f} / " + (f"{ssim[n]:.4f}" if n in ssim else "-")

    shown = 0
    published_cells: list[str] = []
    if protocol == "benchmark":
        for row in published_rows(scale):
            cells = [published_cell(row.psnr, row.ssim, n) for n in names]
            if any(cells):
                table.add_row(f"{row.model} (published)", row.params, *cells, style="dim")
                published_cells += cells
                shown += 1
    elif protocol == "div2k":
        for model, by_scale in PUBLISHED_DIV2K.items():
            if scale in by_scale:
                cells = [published_cell({n: by_scale[scale]}, {}, n) for n in names]
                if any(cells):
                    table.add_row(f"{model} (published, DIV2K val)", "-", *cells, style="dim")
                    published_cells += cells
                    shown += 1
    table.add_section()

    def cell(r: "EvalResult") -> str:
        return f"{r.psnr:.2f}" + ("" if r.ssim is None else f" / {r.ssim:.4f}")

    table.add_row("Bicubic (measured)", "-", *[cell(bicubic[n]) for n in names])
    table.add_row(f"[bold]{label}[/bold]", f"{params:,}", *[cell(ours[n]) for n in names])
    captions = []
    if incomplete:
        captions.append(f"{', '.join(incomplete)}: incomplete (see `srnas data check`), so no published numbers "
                        "beside them: those are for the complete sets")
    own = [n for n in names if counts[n][1] is None]
    if own and protocol == "benchmark":
        captions.append(f"no published numbers on record for {', '.join(own)}; published x{scale} results "
                        f"exist for {', '.join(BENCHMARK_SETS)} (--data BENCHMARK_ROOT --sets ...)")
    if shown and any(" / -" in c for c in published_cells):
        captions.append("published SSIM '-': not on record (docs/reference.md section 3)")
    table.caption = "; ".join(captions) or None
    return table


# ---- upscale ------------------------------------------------------------------------------------


def _inputs(paths: list[str]) -> list[Path]:
    from srnas.api import is_image_file
    from srnas.errors import DataError

    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if is_image_file(q))
            if not found:
                raise DataError(f"{p}: no image files in this folder")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"{p}: no such file or folder")
    return files


def _upscale(args: argparse.Namespace) -> int:
    from rich.console import Console

    import numpy as np

    from srnas.api import image_kind, imresize, load_for_inference, load_image, save_image, upscale_image
    from srnas.errors import DataError

    console = Console()
    files = _inputs(args.inputs)
    scale_hint = args.scale
    if not args.overwrite and scale_hint is not None:  # refuse before loading a model
        taken = [args.out / f"{f.stem}_x{scale_hint}.png" for f in files if (args.out / f"{f.stem}_x{scale_hint}.png").exists()]
        if taken:
            raise DataError(f"{taken[0]}: exists; pass --overwrite to replace it")
    model, cfg, scale = load_for_inference(args.model, pretrained=args.pretrained, weights_url=args.weights_url,
                                           config=args.config, scale=args.scale, device=args.device)
    targets = [args.out / f"{f.stem}_x{scale}.png" for f in files]
    taken = [t for t in targets if t.exists()]
    if taken and not args.overwrite:
        raise DataError(f"{taken[0]}: exists; pass --overwrite to replace it")
    args.out.mkdir(parents=True, exist_ok=True)
    for f, target in zip(files, targets):
        lr = load_image(f)
        grey, alpha = image_kind(f)
        try:
            sr = upscale_image(model, lr, scale=scale, tile=args.tile, self_ensemble=args.self_ensemble)
        except (MemoryError, RuntimeError) as exc:
            if not isinstance(exc, MemoryError) and "memory" not in str(exc).lower() and "alloc" not in str(exc).lower():
                raise
            need = lr.shape[0] * lr.shape[1] * cfg.n_feats * 4 * scale * scale * 3 / 2**30
            raise DataError(f"{f}: not enough memory to upscale {lr.shape[1]}x{lr.shape[0]} at once (the "
                            f"upsampler alone holds about {need:.1f} GB); pass --tile 256") from None
        kept = []
        if grey:  # BT.601 luma of the RGB output
            sr = np.floor(np.clip(sr.astype(np.float64) @ np.array([0.299, 0.587, 0.114]), 0, 255) + 0.5).astype(np.uint8)
            kept.append("grayscale")
        if alpha is not None:
            up = imresize(alpha, scale)
            sr = np.dstack([sr, up])  # grey + alpha, or RGB + alpha
            kept.append("alpha upscaled bicubically")
        save_image(target, sr)
        console.print(f"{f} ({lr.shape[1]}x{lr.shape[0]}) -> {target} ({sr.shape[1]}x{sr.shape[0]}"
                      + (f", {', '.join(kept)}" if kept else "") + ")")
    return 0
