"""`srnas data download div2k|benchmark|manga109` and `srnas data check DIR`."""

from __future__ import annotations

import argparse

from srnas.cli._args import add_command, add_group


def _scales(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
        if any(v < 1 for v in values):
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid scales {text!r}; expected e.g. 2,3,4") from None
    return values


def _register_data(sub: argparse._SubParsersAction) -> None:
    _data, data_sub = add_group(sub, "data", help="download and check data sets (DIV2K, benchmark sets)")

    dl = add_command(data_sub, "download", help="download, verify and extract DIV2K or the benchmark sets",
                     description="Download with resume (run again after an interruption), size/checksum "
                                 "verification and safe extraction. Off a terminal it prints the percentage "
                                 "every minute and a line for verifying and extracting. Manga109 prints the "
                                 "manual steps.")
    dl.add_argument("dataset", choices=("div2k", "benchmark", "manga109"))
    dl.add_argument("--root", default=None, metavar="DIR",
                    help="target folder (required for div2k and benchmark; no default)")
    dl.add_argument("--scales", type=_scales, default=(2, 3, 4), metavar="2,3,4",
                    help="DIV2K LR scales to fetch (default 2,3,4; benchmark.tar has all)")
    dl.add_argument("--base-url", default=None, metavar="URL",
                    help="server folder with the archives (default: the official one, or $SRNAS_DATA_BASE_URL)")
    dl.add_argument("--keep-archives", action="store_true",
                    help="keep the verified archives after extraction (default: delete them)")
    dl.add_argument("--no-progress", action="store_true",
                    help="no live progress bar on a terminal: plain lines instead")
    dl.set_defaults(func=_download)

    check = add_command(data_sub, "check", help="report which data sets and scales are present under DIR")
    check.add_argument("root", metavar="DIR")
    check.add_argument("--scales", type=_scales, default=(2, 3, 4), metavar="2,3,4",
                       help="scales to report LR images for (default 2,3,4)")
    check.set_defaults(func=_check)


COMMANDS = {"data": _register_data}


def _download(args: argparse.Namespace) -> int:
    from srnas.errors import DataError

    if args.dataset == "manga109":
        from srnas.api import manga109_instructions

        print(manga109_instructions(args.root))
        return 0
    if args.root is None:
        raise DataError(f"--root DIR is required to download {args.dataset}")
    from srnas.api import download_dataset

    placed = download_dataset(args.dataset, args.root, scales=args.scales, base_url=args.base_url,
                              progress=not args.no_progress, keep_archives=args.keep_archives)
    for path in placed:
        print(f"ready: {path}")
    print(f"check with: srnas data check {args.root}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from srnas.api import describe_data_root
    from srnas.errors import DataError

    found = describe_data_root(args.root, args.scales)
    if not any(s.hr_count for s in found):
        raise DataError(f"{args.root}: no data set found (expected DIV2K_train_HR/, DIV2K_valid_HR/ "
                        f"or benchmark/<Set>/HR/)")
    table = Table(title=f"Data under {args.root} (missing LR images are made with MATLAB bicubic)")
    table.add_column("data set")
    table.add_column("HR images", justify="right")
    for s in args.scales:
        table.add_column(f"LR x{s}", justify="right")
    table.add_column("status")
    table.add_column("path")
    incomplete = False
    for st in found:
        expected = f"/{st.expected}" if st.expected else ""
        if st.hr_count == 0:
            status = "missing"
        elif st.complete:
            status = "ok"
        else:
            status, incomplete = "incomplete", True
        lr = [f"{st.lr_counts[s]}" if st.lr_counts[s] else "-" for s in args.scales]
        table.add_row(st.name, f"{st.hr_count}{expected}", *lr, status, str(st.path))
    Console(width=160).print(table)
    if any(st.name == "Manga109" and st.hr_count == 0 for st in found):
        print("Manga109: see `srnas data download manga109` for the manual steps")
    return 1 if incomplete else 0
