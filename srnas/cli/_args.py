"""Argument types shared by the command modules."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def positive_int(text: str) -> int:
    """An integer >= 1 (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def trial_number(text: str) -> int:
    """An Optuna trial number: an integer >= 0 (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a trial number (0, 1, ...), got {text!r}")
    return value


def workers(text: str) -> int | str:
    """``auto`` or a positive integer (argparse type)."""
    return text if text == "auto" else positive_int(text)


# ---- parsers -------------------------------------------------------------------------------


class HelpFormatter(argparse.HelpFormatter):
    """Shows each option's default: ``(default: X)`` is appended unless the help already says
    what the default is (options whose default is computed say so in words)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if text == argparse.SUPPRESS or "default" in text.lower():
            return action.help
        default = getattr(action, "shown_default", action.default)
        if not action.option_strings or any(default is v for v in (None, False, True, argparse.SUPPRESS)):
            return action.help
        if isinstance(default, (tuple, list)):
            shown = ",".join(map(str, default)) or "none"
        else:
            shown = str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


def _verbosity_options(parser: argparse.ArgumentParser, default: object) -> None:
    from srnas.log import QUIET, VERBOSE

    group = parser.add_argument_group("output")
    group.add_argument("-q", "--quiet", dest="verbosity", action="store_const", const=QUIET, default=default,
                       help="only warnings, errors and results (no progress lines or bars)")
    group.add_argument("-v", "--verbose", dest="verbosity", action="store_const", const=VERBOSE, default=default,
                       help="more detail: every trial, evaluation and step also on a terminal")


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """-q/-v on the top-level parser (default: normal output)."""
    from srnas.log import NORMAL

    _verbosity_options(parser, NORMAL)


def add_command(sub: "argparse._SubParsersAction[argparse.ArgumentParser]", name: str, *, help: str,
                description: str | None = None) -> argparse.ArgumentParser:
    """A sub-command with a one-line ``help`` (the overview), a description (``help`` when none
    is given), defaults shown in --help, and -q/-v."""
    parser = sub.add_parser(name, help=help, formatter_class=HelpFormatter,
                            description=description or (help[0].upper() + help[1:] + "."))
    # SUPPRESS: "srnas -v search" keeps the top-level value unless the sub-command sets one.
    _verbosity_options(parser, argparse.SUPPRESS)
    return parser


def add_group(sub: "argparse._SubParsersAction[argparse.ArgumentParser]", name: str, *, help: str,
              metavar: str = "ACTION") -> "tuple[argparse.ArgumentParser, argparse._SubParsersAction[argparse.ArgumentParser]]":
    """A command with actions of its own (``srnas data download``); alone it prints its help."""
    parser = add_command(sub, name, help=help)
    actions = parser.add_subparsers(dest=f"{name}_command", metavar=metavar, title="actions")

    def show_help(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 0

    parser.set_defaults(func=show_help)
    return parser, actions


def track_given(parser: argparse.ArgumentParser, *, keep: tuple[str, ...] = ("help", "verbosity")) -> None:
    """Leave an option's attribute unset unless the command line gives it (its default
    becomes ``argparse.SUPPRESS``; ``--help`` still shows the real one), so that a handler can
    tell given flags, which override a run file and a study's record, from defaults."""
    for action in parser._actions:
        if action.option_strings and action.dest not in keep and action.default is not argparse.SUPPRESS:
            action.shown_default = action.default  # type: ignore[attr-defined]
            action.default = argparse.SUPPRESS


def given(args: argparse.Namespace, keys: Any) -> dict[str, Any]:
    """The options among ``keys`` that the command line gave (see `track_given`)."""
    return {key: getattr(args, key) for key in keys if hasattr(args, key)}


def add_run_file_options(parser: argparse.ArgumentParser, command: str, *aliases: str) -> None:
    """``--run FILE`` (and ``aliases``) and ``--print-config [FILE]`` for a command whose flags
    a run file may hold."""
    group = parser.add_argument_group("run files")
    group.add_argument("--run", *aliases, dest="run", metavar="FILE",
                       help=f"YAML run file: every flag of srnas {command} is a key (max_params or max-params); "
                            "flags on the command line override it (default: none)")
    group.add_argument("--print-config", nargs="?", const="-", metavar="FILE",
                       help="write the effective run file (YAML) to stdout, or to FILE, and exit (default: run)")


def write_run_file(target: str, text: str) -> None:
    """``--print-config``: ``text`` to stdout (``-``) or to the file ``target``."""
    if target == "-":
        sys.stdout.write(text)
        return
    from srnas.api import atomic_write_text

    atomic_write_text(target, text)
    print(f"run file: {target}")


def print_json(data: Any) -> None:
    """``--json`` output: ``data`` as indented JSON on stdout."""
    import json

    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def stderr_console(args: argparse.Namespace) -> Any:
    """The rich console for progress and notes: stderr, silent with -q; off a terminal lines
    are not wrapped at 80 columns (a log file is read whole)."""
    from rich.console import Console

    from srnas.log import QUIET, is_terminal

    return Console(stderr=True, quiet=getattr(args, "verbosity", 0) <= QUIET, soft_wrap=not is_terminal())


def stdout_console() -> Any:
    """The rich console for results: off a terminal tables get 160 columns instead of 80, so
    that a file or a pipe receives them unwrapped."""
    from rich.console import Console

    from srnas.log import is_terminal

    return Console() if is_terminal(sys.stdout) else Console(width=160)
