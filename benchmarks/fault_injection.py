"""Random SIGKILLs against searches on SQLite and journal storage: nothing finished is lost, and
the study resumes to exactly its budget.

For each storage one study is searched by ``srnas search`` (demo data, tiny space, a short
proxy) again and again; each run is SIGKILLed at a random moment of one phase, the phases in
turn: start-up (imports, data, study creation), training (a random time into a trial's
training), recording (within half a second after a trial was recorded: the next claim, ask and
attributes); the run's workers die with it. After every kill the study is read back: every
trial that had finished before must still be there with the same values (else it counts as
lost), SQLite must pass ``PRAGMA integrity_check`` and the journal must replay. Finally the same command runs to the end: the study must hold exactly
the budget of trained architectures and no RUNNING trial.

    python benchmarks/fault_injection.py                      # 8 kills per storage, budget 12
    nice -n 19 python benchmarks/fault_injection.py --tries 20 --workers 2

Prints one line per kill and a JSON summary (one line, last) per storage: tries, runs killed
(by phase), runs that finished before their kill, finished trials lost, trials left RUNNING
after the final run, trained architectures at the end, and whether the storage stayed
readable. Exits 1 when anything was lost, left RUNNING or unreadable.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna

optuna.logging.set_verbosity(optuna.logging.ERROR)


def _url(storage: str, root: Path, name: str) -> str:
    if storage == "journal":
        return f"journal:{root / (name + '.log')}"
    return f"sqlite:///{root / 'trials' / name / 'study.db'}"


def _read(url: str, name: str) -> list[Any] | None:
    from srnas.studies import open_storage, sqlite_path

    db = sqlite_path(url)
    if db is not None and (not db.is_file() or db.stat().st_size == 0):
        return None  # killed before SQLite had the study: the next run takes the creation over
    try:
        return optuna.load_study(study_name=name, storage=open_storage(url)).get_trials()
    except KeyError:  # killed before the study existed
        return None


def _trained(trials: list[Any]) -> int:
    from srnas.outcomes import arch_of, is_trained

    return len({arch_of(t) for t in trials if is_trained(t)})


def _integrity(url: str) -> str:
    if not url.startswith("sqlite:///"):
        return "ok"
    path = url.removeprefix("sqlite:///")
    if not os.path.exists(path):
        return "ok"
    with sqlite3.connect(path) as db:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])


#: Moments of a run at which it is killed: while it starts (imports, data, study creation),
#: while a trial trains, or just after a trial was recorded (the next claim, ask, attributes).
PHASES = ("start-up", "training", "recording")


def _kill_moment(phase: str, proc: subprocess.Popen, url: str, name: str, args: argparse.Namespace,
                 rng: random.Random) -> str | None:
    """Wait until the moment to kill ``proc`` in ``phase`` comes; returns it in words, or None
    when the run ended first."""
    if phase == "start-up":
        delay = rng.uniform(args.min_wait, args.startup_wait)
        try:
            proc.wait(timeout=delay)
            return None
        except subprocess.TimeoutExpired:
            return f"{delay:.1f} s after start ({phase})"
    started = datetime.datetime.now()
    deadline = time.monotonic() + args.max_wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return None
        try:
            trials = _read(url, name) or []
        except Exception:  # the run is creating the study right now
            trials = []
        if phase == "training":
            hit = any(t.state.name == "RUNNING" and "heartbeat_at" in t.user_attrs
                      and t.datetime_start is not None and t.datetime_start >= started for t in trials)
            delay = rng.uniform(0, args.train_wait)
        else:
            hit = any(t.datetime_complete is not None and t.datetime_complete >= started
                      and t.state.name in ("COMPLETE", "PRUNED") for t in trials)
            delay = rng.uniform(0, 0.5)
        if hit:
            try:
                proc.wait(timeout=delay)
                return None
            except subprocess.TimeoutExpired:
                return f"{delay:.1f} s into {phase}"
        time.sleep(0.3)
    return f"{args.max_wait:.0f} s after start ({phase} not reached)"


def run_storage(storage: str, args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    name = f"fault-{storage}"
    url = _url(storage, args.root, name)
    command = [sys.executable, "-m", "srnas", "search", "--study", name, "--budget", str(args.budget),
               "--proxy", args.proxy, "--seed", str(args.seed), "--workers", str(args.workers),
               "--no-progress", "--heartbeat", "2"]
    if storage == "journal":
        command += ["--storage", url]
    env = {**os.environ, "SRNAS_TRIALS_DIR": str(args.root / "trials"), "OMP_NUM_THREADS": "1"}
    finished: dict[int, Any] = {}
    lost = killed = early = 0
    readable = True
    phases: dict[str, int] = {}
    for attempt in range(1, args.tries + 1):
        phase = PHASES[(attempt - 1) % len(PHASES)] if args.phases == "cycle" else rng.choice(PHASES)
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        moment = _kill_moment(phase, proc, url, name, args, rng)
        if moment is None:
            early += 1
            outcome = f"finished before the kill (exit {proc.returncode})"
        else:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed += 1
            phases[phase] = phases.get(phase, 0) + 1
            outcome = f"SIGKILL {moment}"
        time.sleep(1.0)  # the killed run's workers end (parent-death signal) before we look
        try:
            trials = _read(url, name)
        except Exception as exc:  # the storage itself is broken: the worst outcome
            readable = False
            print(f"{storage} try {attempt}: {outcome}; storage unreadable: {type(exc).__name__}: {exc}", flush=True)
            break
        trials = trials or []
        by_number = {t.number: t for t in trials}
        gone = [n for n, values in finished.items()
                if n not in by_number or by_number[n].values != values]
        lost += len(gone)
        for t in trials:
            if t.state.name == "COMPLETE":
                finished[t.number] = t.values
        integrity = _integrity(url)
        readable &= integrity == "ok"
        running = sum(1 for t in trials if t.state.name == "RUNNING")
        print(f"{storage} try {attempt}: {outcome}; {_trained(trials)} trained, {running} RUNNING, "
              f"{len(gone)} lost, integrity {integrity}", flush=True)
    final = subprocess.run(command, env=env, capture_output=True, text=True)
    trials = (_read(url, name) or []) if readable else []
    by_number = {t.number: t for t in trials}
    lost += sum(1 for n, values in finished.items() if n not in by_number or by_number[n].values != values)
    summary = {
        "tries": args.tries, "killed": killed, "killed_by_phase": phases, "finished_before_kill": early,
        "trials_lost": lost,
        "final_exit": final.returncode, "final_trained": _trained(trials), "budget": args.budget,
        "final_running": sum(1 for t in trials if t.state.name == "RUNNING"),
        "storage_readable": readable and _integrity(url) == "ok",
    }
    if final.returncode != 0:
        summary["final_error"] = final.stderr.strip().splitlines()[-1:] or [""]
    print(f"{storage}: final run exit {final.returncode}, {summary['final_trained']}/{args.budget} trained, "
          f"{summary['final_running']} RUNNING, {lost} finished trials lost", flush=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tries", type=int, default=8, help="kills per storage (default 8)")
    parser.add_argument("--storages", default="sqlite,journal", help="comma list of sqlite, journal")
    parser.add_argument("--budget", type=int, default=12, help="study budget (default 12)")
    parser.add_argument("--proxy", default="tiny@100", help="proxy fidelity (default tiny@100)")
    parser.add_argument("--workers", type=int, default=1, help="workers per run (default 1)")
    parser.add_argument("--phases", choices=("cycle", "random"), default="cycle",
                        help="kill moments: start-up, training, recording in turn (default), or drawn at random")
    parser.add_argument("--min-wait", type=float, default=0.5, help="earliest start-up kill, seconds after start")
    parser.add_argument("--startup-wait", type=float, default=8.0, help="latest start-up kill, seconds after start")
    parser.add_argument("--train-wait", type=float, default=3.0, help="latest kill into a training, seconds")
    parser.add_argument("--max-wait", type=float, default=180.0, help="kill anyway this many seconds after start")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times and of the searches")
    parser.add_argument("--root", type=Path, default=None, help="scratch folder (default a new temporary one)")
    args = parser.parse_args(argv)
    if args.root is None:
        import tempfile

        args.root = Path(tempfile.mkdtemp(prefix="srnas-faults-"))
    args.root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    t0 = time.monotonic()
    results = {s: run_storage(s, args, rng) for s in args.storages.split(",")}
    print(f"# {time.monotonic() - t0:.0f} s in {args.root}", flush=True)
    print(json.dumps(results), flush=True)
    bad = [s for s, r in results.items() if r["trials_lost"] or r["final_running"] or not r["storage_readable"]
           or r["final_trained"] != r["budget"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
