"""`srnas retrain`, `srnas eval` and `srnas upscale`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from srnas.cli._args import add_command, positive_int, stderr_console, stdout_console

if TYPE_CHECKING:
    from rich.console import Console

    from srnas.arch.config import ArchConfig
    from srnas.data import SRImageSet
    from srnas.train.evaluate import EvalResult
    from srnas.train.retrain import RetrainRun

DEFAULT_SETS = "Set5,Set14,B100,Urban100"


def _register_retrain(sub: argparse._SubParsersAction) -> None:
    r = add_command(sub, "retrain", help="train architectures fully (paper schedule) or on a proxy schedule",
                    description="Train a config file, a preset, or the best K trials of a study. Outputs go to "
                                "<out>/<study>/retrain/<arch_id>/<schedule>/: config.yaml, checkpoint.pt "
                                "(resumable), model.pt (final weights), metrics.json and retrain.log. Off a "
                                "terminal it prints a line every --log-every updates and at each evaluation.")
    what = r.add_mutually_exclusive_group(required=True)
    what.add_argument("--config", metavar="FILE", help="architecture config (YAML/JSON)")
    what.add_argument("--preset", metavar="NAME", help="edsr-baseline, edsr, mdsr-baseline or mdsr")
    what.add_argument("--top", type=positive_int, metavar="K", help="retrain the best K complete trials of --study")
    r.add_argument("--study", default=None,
                   help="study to read with --top; the output study name otherwise (default manual)")
    r.add_argument("--storage", default=None, help="Optuna storage URL of --study (default <out>/<study>/study.db)")
    r.add_argument("--scale", type=int, default=None, help="scale of an EDSR preset (default 2)")
    r.add_argument("--data", default="demo", help="demo, a DIV2K root, or a folder of images")
    r.add_argument("--schedule", default="paper",
                   help="paper (3e5 updates), paper-long (1e6), or proxy-tiny/short/medium")
    r.add_argument("--resume", action="store_true", help="continue from checkpoint.pt in the output folder")
    r.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    r.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="auto: bf16 on CUDA, fp32 on CPU")
    r.add_argument("--out", type=Path, default=None, metavar="DIR", help="root folder (default trials/)")
    r.add_argument("--seed", type=int, default=0, help="initialisation and training seed")
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
    e.add_argument("--json", type=Path, default=None, metavar="FILE",
                   help="also write per-image results as JSON (default: table only)")
    e.set_defaults(func=_eval)


def _register_upscale(sub: argparse._SubParsersAction) -> None:
    u = add_command(sub, "upscale", help="super-resolve image files with trained weights",
                    description="Write IN_x<scale>.png into OUTDIR for every image file (or every image of a "
                                "folder) given.")
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
    u.set_defaults(func=_upscale)


COMMANDS = {"retrain": _register_retrain, "eval": _register_eval, "upscale": _register_upscale}


# ---- retrain ------------------------------------------------------------------------------------


def _retrain(args: argparse.Namespace) -> int:
    from srnas.arch.presets import preset_config
    from srnas.cli.arch import load_arch_target
    from srnas.log import get_logger, log_file
    from srnas.studies import StudyHome, trials_root
    from srnas.train.retrain import RetrainRun, load_retrain_data
    from srnas.train.schedules import get_schedule

    log = get_logger("retrain")
    console = stderr_console(args)
    # An empty --study is refused by the name check, not taken as "manual".
    home = StudyHome("manual" if args.study is None else args.study, args.out if args.out is not None else trials_root())
    schedule = get_schedule(args.schedule)
    if args.max_updates is not None:
        schedule = schedule.shortened(args.max_updates)
    if args.top is not None:
        if not args.study:
            from srnas.errors import ConfigError

            raise ConfigError("--top needs --study NAME (the study whose best trials to retrain)")
        from srnas.results.frame import top_configs

        configs = top_configs(home.load(args.storage), args.top)
    elif args.preset is not None:
        configs = [preset_config(args.preset, scale=args.scale)]
    else:
        configs = [load_arch_target(args.config, args.scale)]
    data_cache: dict[tuple[int, ...], tuple[Any, Any]] = {}
    for i, cfg in enumerate(configs, 1):
        if cfg.scales not in data_cache:
            data_cache[cfg.scales] = load_retrain_data(args.data, cfg.scales)
        train, val = data_cache[cfg.scales]
        run = RetrainRun(cfg, schedule, home.retrain)
        with log_file(run.log):
            log.info(f"retrain {i}/{len(configs)} {cfg.describe()} ({cfg.arch_id}), schedule {schedule.name} "
                     f"({schedule.updates:,} updates), data {args.data} -> {run.folder}")
            init = args.init
            if init is None and getattr(schedule, "init_from_x2", False):
                found = run.x2_weights()
                if found is not None:
                    log.info(f"initialising from the x2 weights {found} (all but the upsampler)")
                    init = str(found)
                elif cfg.family == "edsr" and cfg.scale != 2:
                    log.warning(f"note: no x2 retrain of this architecture with schedule {schedule.name} in "
                                f"{home.retrain}; training x{cfg.scale} from scratch (the paper starts x3/x4 "
                                "from x2: pass --init)")
            _retrain_one(run, train, val, args, init, console)
    return 0


def _retrain_one(run: "RetrainRun", train: Any, val: Any, args: argparse.Namespace, init: str | None,
                 console: "Console") -> None:
    """Train one run: a live bar on a terminal, else a plain line every ``--log-every`` updates,
    at each evaluation and at least every minute (all of them in the run's retrain.log)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from srnas.log import FILE_ONLY, QUIET, VERBOSE_ONLY, ProgressClock, get_logger, verbosity
    from srnas.train.checkpoint import CHECKPOINT_NAME
    from srnas.train.trainer import TrainProgress
    from srnas.units import human_duration

    log = get_logger("retrain")
    if args.resume and not (run.folder / CHECKPOINT_NAME).is_file():
        log.info(f"no {CHECKPOINT_NAME} in {run.folder}: starting from update 0")
    live = not args.no_progress and console.is_terminal and verbosity() > QUIET
    progress_bar = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}  PSNR {task.fields[psnr]}"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=console, disable=not live, transient=False,
    )
    task = progress_bar.add_task("updates", total=run.schedule.updates, loss="-", lr="-", psnr="-")
    eval_points = set(run.schedule.eval_points())
    clock = ProgressClock(run.schedule.updates)
    route = VERBOSE_ONLY if live else None

    def on_progress(p: TrainProgress) -> None:
        progress_bar.update(task, completed=p.update, loss=f"{p.loss:.3f}", lr=f"{p.lr:.2e}",
                            psnr="-" if p.last_psnr is None else f"{p.last_psnr:.2f}")
        evaluated = p.update in eval_points
        if not (evaluated or p.update % args.log_every == 0 or p.update == p.total or clock.due()):
            return
        clock.mark()
        psnr = f", validation PSNR {p.last_psnr:.2f} dB" if evaluated and p.last_psnr is not None else ""
        log.info(f"update {p.update:,}/{p.total:,} ({100 * p.update / max(p.total, 1):.0f}%){psnr}, "
                 f"loss {p.loss:.3f}, lr {p.lr:.2e}, elapsed {human_duration(p.elapsed_s)}, "
                 f"ETA {human_duration(p.eta_s)}", extra=route)

    with progress_bar:
        result = run.train(train, val, data=args.data, device=args.device, precision=args.precision,
                           seed=args.seed, resume=args.resume, init=init,
                           checkpoint_every=args.checkpoint_every, progress=on_progress)
    final = result.final
    ssim = "" if final.get("ssim") is None else f", SSIM {final['ssim']:.4f}"
    scales = ",".join(str(s) for s in final["scales"])
    mean = " (mean over scales)" if len(final["scales"]) > 1 else ""
    done = (f"done: PSNR {final['psnr']:.2f} dB{ssim}{mean} on {final['val_set']} "
            f"({final['protocol']} protocol, x{scales}); bicubic {result.bicubic_psnr:.2f} dB; "
            f"{result.updates:,} updates in {human_duration(result.wall_time_s)} on {result.device} -> {run.folder}")
    print(done, flush=True)
    log.info(done, extra=FILE_ONLY)


# ---- eval ---------------------------------------------------------------------------------------


def _load(args: argparse.Namespace) -> tuple[Any, "ArchConfig", int]:
    from srnas.cli.arch import load_arch_target
    from srnas.errors import ConfigError
    from srnas.train.checkpoint import load_model
    from srnas.train.device import resolve_device

    if args.pretrained:
        model, cfg = _load_pretrained(args)
    else:
        if args.weights_url is not None:
            raise ConfigError("--weights-url is where --pretrained weights come from: add --pretrained")
        _check_not_a_preset(args.model)
        config = load_arch_target(args.config, args.scale) if args.config else None
        model, cfg = load_model(args.model, config=config, device=resolve_device(args.device))
    if args.scale is None:
        if len(cfg.scales) != 1:
            raise ConfigError(f"{args.model}: the model serves scales {list(cfg.scales)}; pass --scale")
        scale = cfg.scale
    elif args.scale not in cfg.scales:
        raise ConfigError(f"{args.model}: the model serves scales {list(cfg.scales)}, not {args.scale}")
    else:
        scale = args.scale
    return model, cfg, scale


def _load_pretrained(args: argparse.Namespace) -> tuple[Any, "ArchConfig"]:
    """The preset ``--model`` names, with the authors' released weights."""
    from srnas.arch.networks import build_model
    from srnas.errors import ConfigError
    from srnas.train.device import resolve_device

    if args.config:
        raise ConfigError(f"--pretrained: the architecture is the preset {args.model!r}; drop --config")
    model = build_model(args.model, scale=args.scale, pretrained=True, weights_url=args.weights_url)
    return model.to(resolve_device(args.device)).eval(), model.config


def _check_not_a_preset(model: str) -> None:
    """A preset name where a path is expected: say how to get its weights."""
    from srnas.arch.presets import PRESETS
    from srnas.errors import ConfigError

    if model.lower().replace("_", "-") in PRESETS and not Path(model).exists():
        raise ConfigError(f"--model {model}: a preset name, not a file; add --pretrained for the EDSR authors' "
                          f"released weights")


def _eval(args: argparse.Namespace) -> int:
    from srnas.arch.cost import count_params
    from srnas.data.layout import official_image_count
    from srnas.train.evaluate import evaluate_bicubic, evaluate_model

    console = stdout_console()
    model, cfg, scale = _load(args)
    sets, notes = _eval_sets(args.data, args.sets, scale)
    ours: dict[str, EvalResult] = {}
    bicubic: dict[str, EvalResult] = {}
    status = stderr_console(args)
    for name, data in sets.items():
        with status.status(f"{name} x{scale} ({len(data.hr)} images)"):
            ours[name] = evaluate_model(model, data, scale=scale, self_ensemble=args.self_ensemble,
                                        tile=args.tile, bf16=args.bf16)
            bicubic[name] = evaluate_bicubic(data, scale=scale)
    counts = {name: (len(data), official_image_count(name)) for name, data in sets.items()}
    label = f"{cfg.describe()}{' (+)' if args.self_ensemble else ''}"
    console.print(_results_table(ours, bicubic, scale, label, count_params(cfg), counts))
    for note in notes:
        console.print(f"note: {note}", markup=False, highlight=False)
    if args.json is not None:
        from srnas.fileio import atomic_write_text

        payload = {"model": str(args.model), "arch_id": cfg.arch_id, "config": cfg.to_dict(), "scale": scale,
                   "self_ensemble": args.self_ensemble, "tile": args.tile,
                   "results": {k: v.to_dict() for k, v in ours.items()},
                   "bicubic": {k: v.to_dict() for k, v in bicubic.items()},
                   "images": {k: {"found": n, "official": expected} for k, (n, expected) in counts.items()}}
        atomic_write_text(args.json, json.dumps(payload, indent=2) + "\n")
        console.print(f"per-image results -> {args.json}")
    return 0


def _eval_sets(spec: str, names: str | None, scale: int) -> tuple[dict[str, "SRImageSet"], list[str]]:
    """The sets ``--data``/``--sets`` name, and notes on default sets that are not there."""
    from srnas.errors import ConfigError

    wanted = None if names is None else [n.strip() for n in names.split(",") if n.strip()]
    if wanted == []:
        raise ConfigError(f"--sets {names!r}: give at least one set name, e.g. {DEFAULT_SETS}")
    if spec == "demo":
        if wanted is not None:
            raise ConfigError("--sets picks sets of a benchmark root; --data demo has one set (drop --sets)")
        from srnas.data import load_eval_set

        val = load_eval_set("demo", scale)
        return {val.name: val}, []
    from srnas.data import load_benchmark_sets, load_image_folder
    from srnas.data.layout import available_sets, data_folder, data_kind

    root = data_folder(spec)
    kind = data_kind(root)
    if kind in ("folder", "set"):  # one's own HR images, or one set folder: every image, one set
        if wanted is not None and [w.lower() for w in wanted] != [root.name.lower()]:
            raise ConfigError(f"--sets {names}: {root} is one folder of images, scored as the set "
                              f"{root.name!r}; drop --sets (or point --data at a benchmark root)")
        one = load_image_folder(root, scale)
        return {one.name: one}, []
    notes: list[str] = []
    if wanted is None:
        if kind == "div2k":
            wanted = ["DIV2K"]
        else:
            present = {s.lower() for s in available_sets(root)}
            defaults = DEFAULT_SETS.split(",")
            wanted = [s for s in defaults if s.lower() in present] or defaults
            missing = [s for s in defaults if s not in wanted]
            if missing and len(wanted) < len(defaults):
                notes.append(f"{', '.join(missing)} not found under {root} (`srnas data download benchmark`)")
    return {s.name: s for s in load_benchmark_sets(root, wanted, scale)}, notes


def _set_header(name: str, found: int, official: int | None) -> str:
    return name if official is None or found >= official else f"{name} ({found} of {official} images)"


def _results_table(ours: dict[str, "EvalResult"], bicubic: dict[str, "EvalResult"], scale: int, label: str,
                   params: int, counts: dict[str, tuple[int, int | None]]) -> Any:
    """The eval table: published rows (complete official sets only), bicubic and the model."""
    from rich.table import Table

    from srnas.train.published import BENCHMARK_SETS, PUBLISHED_DIV2K, published_rows

    names = list(ours)
    complete = {n for n in names if counts[n][1] is not None and counts[n][0] >= counts[n][1]}
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
    from srnas.data import load_image  # noqa: F401  (fail early if the data layer is missing)
    from srnas.data.images import is_image_file
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

    from srnas.data import load_image, save_image
    from srnas.train.evaluate import upscale_image

    console = Console()
    model, cfg, scale = _load(args)
    files = _inputs(args.inputs)
    args.out.mkdir(parents=True, exist_ok=True)
    for f in files:
        lr = load_image(f)
        sr = upscale_image(model, lr, scale=scale, tile=args.tile, self_ensemble=args.self_ensemble)
        target = args.out / f"{f.stem}_x{scale}.png"
        save_image(target, sr)
        console.print(f"{f} ({lr.shape[1]}x{lr.shape[0]}) -> {target} ({sr.shape[1]}x{sr.shape[0]})")
    return 0
