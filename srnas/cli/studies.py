"""`srnas studies`: every study under trials/ (or of one storage) with its counts, best result
and fidelity; ``--show NAME`` prints the run file a study recorded."""

from __future__ import annotations

import argparse
from typing import Any

from srnas.cli._args import add_command, print_json, stdout_console


def _register_studies(sub: argparse._SubParsersAction) -> None:
    s = add_command(sub, "studies", help="list the studies with their counts, best result and fidelity",
                    description="One row per study under trials/ (or in --storage): trials, distinct "
                                "architectures trained, complete ones, the best PSNR above bicubic and its "
                                "architecture, the proxy fidelity and the space. --show NAME prints the run file "
                                "the study's last search ran with (srnas search --run FILE reuses it).")
    s.add_argument("--show", default=None, metavar="NAME",
                   help="one study: its summary and recorded run file (default: list every study)")
    s.add_argument("--storage", default=None, metavar="URL",
                   help="list the studies of this storage (default: every trials/<study>/study.db)")
    s.add_argument("--json", action="store_true", help="JSON on stdout instead of a table")
    s.set_defaults(func=_studies)


COMMANDS = {"studies": _register_studies}


def _psnr(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}"


def _studies(args: argparse.Namespace) -> int:
    from srnas.api import list_studies, overview_of

    if args.show is not None:
        overview = overview_of(args.show, storage=args.storage)
        if args.json:
            print_json(overview)
        else:
            _show(overview)
        return 0
    rows = list_studies(storage=args.storage)
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        from srnas.api import trials_root

        print(f"no studies in {args.storage or f'{trials_root()}/'}: run srnas search first")
        return 0
    from rich.table import Table
    from rich.text import Text

    from srnas.units import printable

    table = Table(title=f"{len(rows)} studies")
    for col in ("study", "trials", "trained", "complete", "best PSNR", "bicubic", "best architecture",
                "fidelity", "space", "objectives"):
        table.add_column(col, justify="right" if col in ("trials", "trained", "complete", "best PSNR", "bicubic")
                         else "left")
    for row in rows:
        # Names come from the storage (a shared database may hold any): shown, never obeyed.
        name = Text(printable(row["study"]))
        if "error" in row:
            table.add_row(name, "-", "-", "-", "-", "-", Text(printable(row["error"]), style="red"), "", "", "")
            continue
        best = row["best"] or {}
        table.add_row(name, str(row["trials"]), str(row["trained"]), str(row["complete"]),
                      _psnr(best.get("psnr")), _psnr(row["bicubic_psnr"]), _best_text(best),
                      str(row["fidelity"] or "-"), str(row["space"] or "-"), ",".join(row["objectives"] or []))
    stdout_console().print(table)
    return 0


def _best_text(best: dict[str, Any]) -> str:
    """``B4 F32 k3 ... (preset tiny-default, edsr-984aaaaeaa)``, or ``-``."""
    if not best:
        return "-"
    what = best.get("describe") or best.get("arch_id") or "-"
    tags = [f"preset {best['preset']}"] if best.get("preset") else []
    if best.get("describe") and best.get("arch_id"):
        tags.append(str(best["arch_id"]))
    return what + (f" ({', '.join(tags)})" if tags else "")


def _confirmed(best: dict[str, Any]) -> str:
    c = best.get("confirmed")
    if not c:
        return ""
    return (f"; confirmed {c['psnr']:.3f} dB on {c['on']} images over {len(c['seeds'])} fresh seeds, "
            f"winner's-curse gap {c['gap']:+.3f} dB")


def _show(overview: dict[str, Any]) -> None:
    from srnas.api import dump_run_file

    best = overview["best"]
    from srnas.units import printable

    lines = [f"study {printable(overview['study'])} ({overview['storage']}): space {overview['space']}, "
             f"fidelity {overview['fidelity']}, data {overview['data']}, objectives {','.join(overview['objectives'])}",
             f"{overview['trials']} trials, {overview['trained']} distinct architectures trained "
             f"({overview['pruned']} pruned), {overview['complete']} complete, {overview['repeats']} repeats, "
             f"{overview['failed']} failed, {overview['running']} running",
             "best: " + (f"trial {best['trial']} {_best_text(best)}: {best['psnr']:.3f} dB "
                         f"(bicubic {_psnr(overview['bicubic_psnr'])} dB)" + _confirmed(best)
                         if best else "none above bicubic yet")]
    if overview.get("artifacts"):
        lines.append(f"artifacts: {overview['artifacts']}")
    run = overview.get("run_settings")
    if not run:
        print("\n".join(lines))
        print("no run file recorded (searched by an srnas older than run files)")
        return
    print(dump_run_file(run, header="\n".join(lines) + "\n\nthe run file of its last search "
                                    "(srnas search --run FILE resumes with it):"), end="")
