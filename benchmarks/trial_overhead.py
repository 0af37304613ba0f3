"""Where a real search's trial time goes, from its study: per trained trial, its wall time from
start to end as the storage recorded it, the training's own split (prepare, train, validate:
`time_split`, pruned trials too) and the rest, which is srnas's and Optuna's per-trial work
(sampling, about 40 user attributes written, the claim, `get_trials` at every evaluation, the
artifact upload, the result). Prints the medians of the first trial and of the later ones.

    python benchmarks/trial_overhead.py TRIALS_DIR_OR_STUDY_DB [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any


def trial_rows(study: Any) -> list[dict[str, Any]]:
    from srnas.outcomes import is_trained

    rows = []
    for t in study.get_trials(deepcopy=False):
        split = t.user_attrs.get("time_split")
        if not is_trained(t) or not isinstance(split, dict) or t.datetime_start is None or t.datetime_complete is None:
            continue
        total = (t.datetime_complete - t.datetime_start).total_seconds()
        inside = sum(float(v) for v in split.values())
        rows.append({"trial": t.number, "state": t.state.name, "total_s": round(total, 4),
                     "train_s": float(split.get("train", 0.0)), "prepare_s": float(split.get("prepare", 0.0)),
                     "validate_s": float(split.get("validate", 0.0)), "outside_training_s": round(total - inside, 4),
                     "outside_share": (total - float(split.get("train", 0.0))) / total if total > 0 else None})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("where", type=Path, help="a trials folder (every study.db under it) or one study.db")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dbs = [args.where] if args.where.is_file() else sorted(args.where.glob("*/study.db"))
    if not dbs:
        print(f"trial_overhead.py: no study.db in {args.where}", file=sys.stderr)
        return 2
    out: dict[str, Any] = {}
    for db in dbs:
        storage = f"sqlite:///{db}"
        for summary in optuna.get_all_study_summaries(storage):
            rows = trial_rows(optuna.load_study(study_name=summary.study_name, storage=storage))
            if not rows:
                continue
            later = rows[1:] or rows
            med = lambda key, rs: statistics.median(r[key] for r in rs)  # noqa: E731
            out[summary.study_name] = {"trials": rows, "first": rows[0],
                                       "later_median": {k: med(k, later) for k in ("total_s", "train_s",
                                                                                    "outside_training_s")}}
            m = out[summary.study_name]["later_median"]
            print(f"{summary.study_name}: {len(rows)} trained trials; first {rows[0]['total_s']:.2f} s "
                  f"({rows[0]['outside_training_s']:.2f} s outside its training's own split); later ones median "
                  f"{m['total_s']:.2f} s, train {m['train_s']:.2f} s, srnas + Optuna per trial "
                  f"{m['outside_training_s']:.2f} s ({m['outside_training_s'] / m['total_s']:.1%})")
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
