"""`srnas arch show` and `srnas space show`."""

from __future__ import annotations

import argparse
from pathlib import Path

from srnas.cli._args import add_command, add_group
from srnas.units import human_count


def _hr_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
        if h <= 0 or w <= 0:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}; expected HxW, e.g. 720x1280") from None
    return h, w


def _register_arch(sub: argparse._SubParsersAction) -> None:
    _arch, arch_sub = add_group(sub, "arch", help="inspect architectures (presets or config files)")
    show = add_command(arch_sub, "show", help="print a config, its parameters, Mult-Adds and memory")
    show.add_argument("target", help="preset name (edsr-baseline, edsr, mdsr-baseline, mdsr) or a YAML/JSON config file")
    show.add_argument("--scale", type=int, default=None, help="scale of an EDSR preset (default 2)")
    show.add_argument("--hr-size", type=_hr_size, default=(720, 1280), metavar="HxW",
                      help="HR output size for Mult-Adds (default 720x1280, the NAS-for-SR convention)")
    show.add_argument("--batch", type=int, default=16, help="training batch for the memory estimate")
    show.add_argument("--patch", type=int, default=48, help="LR training patch for the memory estimate")
    show.add_argument("--latency", action="store_true", help="also measure forward latency (default: no)")
    show.add_argument("--device", default="cpu", help="device for --latency")
    show.set_defaults(func=_arch_show)


def _register_space(sub: argparse._SubParsersAction) -> None:
    _space, space_sub = add_group(sub, "space", help="inspect search spaces")
    sshow = add_command(space_sub, "show", help="print a space's parameters, size and cost range")
    sshow.add_argument("target", help="shipped space name (tiny, edsr, mdsr, lightweight, mixed) or a YAML file")
    sshow.set_defaults(func=_space_show)
    slist = add_command(space_sub, "list", help="list the shipped spaces")
    slist.set_defaults(func=_space_list)


COMMANDS = {"arch": _register_arch, "space": _register_space}


def load_arch_target(target: str, scale: int | None = None):
    """A preset name or a config file -> ArchConfig."""
    from srnas.arch.config import ArchConfig
    from srnas.arch.presets import PRESETS, preset_config
    from srnas.errors import ConfigError

    if target.lower().replace("_", "-") in PRESETS:
        return preset_config(target, scale=scale)
    if Path(target).suffix.lower() in (".yaml", ".yml", ".json") or Path(target).exists():
        cfg = ArchConfig.load(target)
        if scale is not None and scale not in cfg.scales:
            raise ConfigError(f"{target}: scale {scale} not in the config's scales {list(cfg.scales)}")
        return cfg
    raise ConfigError(f"{target!r} is neither a preset ({', '.join(PRESETS)}) nor a config file")


def _arch_show(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from srnas.arch.cost import cost_of, lr_size_for

    cfg = load_arch_target(args.target, args.scale)
    console = Console()
    console.print(f"[bold]{cfg.describe()}[/bold]   arch_id {cfg.arch_id}")
    console.print(cfg.to_yaml().rstrip(), markup=False, highlight=False)  # "[rcab, res]" is YAML, not markup
    table = Table(title=f"Cost (HR output {args.hr_size[0]}x{args.hr_size[1]}; memory at batch {args.batch}, LR patch {args.patch}, fp32)")
    for col in ("scale", "params", "Mult-Adds", "train activations"):
        table.add_column(col, justify="right")
    if args.latency:
        table.add_column(f"latency ({args.device})", justify="right")
    model = None
    for s in cfg.scales:
        c = cost_of(cfg, scale=s, hr_size=args.hr_size, batch=args.batch, patch=args.patch)
        row = [f"x{s}", f"{c.params:,}", f"{human_count(c.mult_adds)} ({c.mult_adds:,})",
               f"{c.activation_bytes / 2**20:,.1f} MiB"]
        if args.latency:
            from srnas.arch.cost import measure_latency
            from srnas.arch.networks import build_model

            model = model or build_model(cfg)
            row.append(f"{measure_latency(model, lr_size_for(args.hr_size, s), scale=s, device=args.device, repeats=3, warmup=1):.1f} ms")
        table.add_row(*row)
    console.print(table)
    if len(cfg.scales) > 1:
        console.print(f"total trainable parameters (all scales): {cost_of(cfg).params_total:,}")
    return 0


def _space_show(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from srnas.space import SearchSpace

    space = SearchSpace.load(args.target)
    summary = space.summary()
    console = Console()
    console.print(f"[bold]space {space.name}[/bold] ({space.source}): {space.family.upper()} "
                  f"x{','.join(map(str, space.scales))}" + (f", default proxy {space.proxy}" if space.proxy else ""))
    if space.description:
        console.print(space.description.strip())
    table = Table(title="parameters")
    table.add_column("parameter")
    table.add_column("choices")
    for key, text in space.describe_params():
        table.add_row(key, text)
    console.print(table)
    approx = "" if summary["exact"] else " (estimated from random samples)"
    console.print(f"size: {summary['size']:,} configs; satisfying constraints: {summary['feasible']:,}{approx}")
    if space.constraints:
        console.print("constraints: " + ", ".join(f"{k} = {v:,.0f}" for k, v in space.constraints.items()))
    if summary["params"]:
        (p0, p1), (m0, m1) = summary["params"], summary["mult_adds"]
        console.print(f"params: {p0:,} .. {p1:,}")
        console.print(f"Mult-Adds (x{space.scales[0]}, 720x1280 output): {human_count(m0)} .. {human_count(m1)}{approx}")
    presets = space.preset_assignments()
    if presets:
        console.print("presets enqueued first: " + ", ".join(label for label, _ in presets))
    return 0


def _space_list(args: argparse.Namespace) -> int:
    from srnas.space import SearchSpace, available_spaces

    for name in available_spaces():
        space = SearchSpace.load(name)
        print(f"{name:12s} {space.family:5s} x{','.join(map(str, space.scales)):6s} {space.size():>8,} configs")
    return 0
