"""`srnas arch show` and `srnas space show`."""

from __future__ import annotations

import argparse

from srnas.cli._args import add_command, add_group, print_json
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
    show.add_argument("--json", action="store_true", help="JSON on stdout (config, arch_id, costs per scale)")
    show.set_defaults(func=_arch_show)


def _register_space(sub: argparse._SubParsersAction) -> None:
    _space, space_sub = add_group(sub, "space", help="inspect search spaces")
    sshow = add_command(space_sub, "show", help="print a space's parameters, size and cost range")
    sshow.add_argument("target", help="shipped space name (tiny, edsr, mdsr, lightweight, mixed) or a YAML file")
    sshow.add_argument("--json", action="store_true",
                       help="JSON on stdout (parameters, size, feasible count, cost ranges, constraints, presets)")
    sshow.set_defaults(func=_space_show)
    slist = add_command(space_sub, "list", help="list the shipped spaces")
    slist.set_defaults(func=_space_list)


COMMANDS = {"arch": _register_arch, "space": _register_space}


def _arch_show(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from srnas.api import cost_of, load_arch, lr_size_for

    cfg = load_arch(args.target, args.scale)
    costs = [cost_of(cfg, scale=s, hr_size=args.hr_size, batch=args.batch, patch=args.patch) for s in cfg.scales]
    latency: dict[int, float] = {}
    if args.latency:
        from srnas.api import build_model, measure_latency

        model = build_model(cfg)
        latency = {s: measure_latency(model, lr_size_for(args.hr_size, s), scale=s, device=args.device, repeats=3,
                                      warmup=1) for s in cfg.scales}
    if args.json:
        print_json({"arch_id": cfg.arch_id, "describe": cfg.describe(), "config": cfg.to_dict(),
                    "hr_size": list(args.hr_size), "batch": args.batch, "patch": args.patch,
                    "costs": [{**c.to_dict(), "activation_mb": c.activation_bytes / 2**20,
                               **({"latency_ms": latency[c.scale], "device": args.device} if latency else {})}
                              for c in costs]})
        return 0
    console = Console()
    console.print(f"[bold]{cfg.describe()}[/bold]   arch_id {cfg.arch_id}")
    console.print(cfg.to_yaml().rstrip(), markup=False, highlight=False)  # "[rcab, res]" is YAML, not markup
    table = Table(title=f"Cost (HR output {args.hr_size[0]}x{args.hr_size[1]}; memory at batch {args.batch}, LR patch {args.patch}, fp32)")
    for col in ("scale", "params", "Mult-Adds", "train activations"):
        table.add_column(col, justify="right")
    if args.latency:
        table.add_column(f"latency ({args.device})", justify="right")
    for c in costs:
        row = [f"x{c.scale}", f"{c.params:,}", f"{human_count(c.mult_adds)} ({c.mult_adds:,})",
               f"{c.activation_bytes / 2**20:,.1f} MiB"]
        if latency:
            row.append(f"{latency[c.scale]:.1f} ms")
        table.add_row(*row)
    console.print(table)
    if len(cfg.scales) > 1:
        console.print(f"total trainable parameters (all scales): {cost_of(cfg).params_total:,}")
    return 0


def _space_show(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from srnas.api import SearchSpace

    space = SearchSpace.load(args.target)
    summary = space.summary()
    presets = space.preset_assignments()
    if args.json:
        print_json({"name": space.name, "source": str(space.source), "family": space.family,
                    "scales": list(space.scales), "proxy": space.proxy, "description": space.description,
                    "parameters": dict(space.describe_params()), "canonical": space.canonical(),
                    "constraints": dict(space.constraints), "presets": [label for label, _ in presets],
                    **{k: list(v) if isinstance(v, tuple) else v for k, v in summary.items()}})
        return 0
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
    if presets:
        console.print("presets enqueued first: " + ", ".join(label for label, _ in presets))
    return 0


def _space_list(args: argparse.Namespace) -> int:
    from srnas.api import SearchSpace, available_spaces

    for name in available_spaces():
        space = SearchSpace.load(name)
        print(f"{name:12s} {space.family:5s} x{','.join(map(str, space.scales)):6s} {space.size():>8,} configs")
    return 0
