"""The ``srnas`` command. Thin: each sub-module of ``srnas.cli`` names its sub-commands in
``COMMANDS`` (name -> function that adds the sub-parser) and imports the library only inside
its handlers, so that ``srnas --help`` stays fast. Commands are listed in workflow order
(`WORKFLOW`); commands of new modules follow, by name."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import typing
from collections.abc import Callable, Sequence

from srnas._version import __version__
from srnas.cli._args import add_common_options

#: The order ``srnas`` lists its commands in: the order of a session with it.
WORKFLOW = ("search", "worker", "storage-proxy", "confirm", "dashboard", "report", "retrain", "eval", "export",
            "upscale", "fidelity", "data", "arch", "space")

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


class CommandParser(argparse.ArgumentParser):
    """Usage errors as one line naming the command, with a "did you mean" for a misspelt option
    or choice (sub-commands use this class too)."""

    def error(self, message: str) -> "typing.NoReturn":
        self.exit(2, f"{self.prog}: error: {message}{_suggestion(self, message)}\n")


def _suggestion(parser: argparse.ArgumentParser, message: str) -> str:
    import difflib
    import re

    unknown = re.match(r"unrecognized arguments: (.*)", message)
    if unknown:
        options = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
        for token in unknown.group(1).split():
            close = difflib.get_close_matches(token.split("=")[0], options, n=1, cutoff=0.6)
            if token.startswith("--") and close:
                return f" (did you mean {close[0]}?)"
        return f"; see {parser.prog} --help"
    choice = re.match(r"argument (\S+): invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if choice:
        choices = [c.strip().strip("'") for c in choice.group(3).split(",")]
        close = difflib.get_close_matches(choice.group(2), choices, n=1, cutoff=0.5)
        if close:
            return f" (did you mean {close[0]}?)"
    return ""


class _OverviewFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps each command's line whole: argparse indents the command names two columns more than
    it measures them, so the longest (``storage-proxy``) would push its help to the next line."""

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if isinstance(action, argparse._SubParsersAction):
            self._action_max_length = max(self._action_max_length,
                                          2 + self._current_indent + max(map(len, action.choices), default=0))


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="srnas",
        description="Neural architecture search for single-image super-resolution (EDSR/MDSR space).",
        epilog=_OVERVIEW_EPILOG, formatter_class=_OverviewFormatter,
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
    args, extra = parser.parse_known_args(argv)
    if extra:  # the sub-command's own parser names its options in the suggestion
        sub = next((a.choices.get(args.command) for a in parser._actions
                    if isinstance(a, argparse._SubParsersAction) and getattr(args, "command", None)), None)
        (sub or parser).error(f"unrecognized arguments: {' '.join(extra)}")
    configure(args.verbosity)
    try:
        return int(args.func(args) or 0)
    except SrnasError as exc:
        print(f"srnas: error: {exc}", file=sys.stderr)
        return int(getattr(exc, "EXIT_CODE", 2))  # 75: stopped with a checkpoint, resume me
    except KeyboardInterrupt:
        print("srnas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
