"""The ``srnas`` command. Thin: each sub-module of ``srnas.cli`` registers its sub-commands with
``register(subparsers)`` and imports the library only inside its handlers, so that
``srnas --help`` stays fast."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from srnas import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="srnas",
        description="Neural architecture search for single-image super-resolution (EDSR/MDSR space).",
    )
    parser.add_argument("--version", action="version", version=f"srnas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from srnas.errors import SrnasError

    parser = build_parser()
    args = parser.parse_args(argv)
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
