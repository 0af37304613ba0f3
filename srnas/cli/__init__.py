"""The ``srnas`` command. Thin: each sub-module of ``srnas.cli`` names its sub-commands in
``COMMANDS`` (name -> function that adds the sub-parser) and imports the library only inside
its handlers, so that ``srnas --help`` stays fast. Commands are listed in workflow order
(`WORKFLOW`); commands of new modules follow, by name."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Callable, Sequence

from srnas import __version__
from srnas.cli._args import add_common_options

#: The order ``srnas`` lists its commands in: the order of a session with it.
WORKFLOW = ("search", "confirm", "dashboard", "report", "retrain", "eval", "export", "upscale", "fidelity", "data",
            "arch", "space")

_OVERVIEW_EPILOG = """\
a session:
  srnas search --budget 200            search the demo space (re-run the same command to resume)
  srnas dashboard --study tiny-demo    watch it in the browser
  srnas report --study tiny-demo       trials/tiny-demo/report.html, works offline
  srnas retrain --study tiny-demo --top 3 --data DIV2K_ROOT
  srnas eval --model trials/tiny-demo/retrain/<arch_id>/paper --data BENCHMARK_ROOT
  srnas export --study tiny-demo --top 3 -o exported/

`srnas COMMAND --help` shows a command's options and their defaults."""


def _registrars() -> dict[str, Callable[[argparse._SubParsersAction], None]]:
    found: dict[str, Callable[[argparse._SubParsersAction], None]] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        found.update(getattr(module, "COMMANDS", {}))
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="srnas",
        description="Neural architecture search for single-image super-resolution (EDSR/MDSR space).",
        epilog=_OVERVIEW_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"srnas {__version__}")
    add_common_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands (in workflow order)")
    registrars = _registrars()
    for name in [n for n in WORKFLOW if n in registrars] + sorted(set(registrars) - set(WORKFLOW)):
        registrars[name](sub)

    def overview(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 0

    parser.set_defaults(func=overview)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from srnas.errors import SrnasError
    from srnas.log import configure

    parser = build_parser()
    args = parser.parse_args(argv)
    configure(args.verbosity)
    try:
        return int(args.func(args) or 0)
    except SrnasError as exc:
        print(f"srnas: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("srnas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
