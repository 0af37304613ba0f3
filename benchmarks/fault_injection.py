"""Faults injected into real srnas runs: nothing finished is lost, nothing is left RUNNING, no
user file is damaged, and the work resumes to exactly its budget.

Scenarios (``--scenarios``, a comma list; default all of them):

- ``sigkill-sqlite``, ``sigkill-journal``: one study is searched by ``srnas search`` (demo data,
  the tiny space or ``--space``, a short proxy) again and again; each run is SIGKILLed at a random
  moment of one phase, the phases in turn: start-up (imports, data, study creation), training (a random time
  into a trial's training), recording (within half a second after a trial was recorded: the next
  claim, ask and attributes); the run's workers die with it. After every kill the study is read
  back: every trial that had finished before must still be there with the same values (else it
  counts as lost), SQLite must pass ``PRAGMA integrity_check`` and the journal must replay.
  Finally the same command runs to the end.
- ``postgres-outage``: a search on PostgreSQL whose server is stopped (``pg_ctl stop -m fast``:
  every connection cut) for a random 5-20 s, in turn a random time into a training and just
  after a trial was recorded, then started again. The server is a private throwaway cluster
  (``initdb`` in a temporary folder, a free port on 127.0.0.1, run as the ``postgres`` user
  when this runs as root), never a server someone else uses; skipped with a line when no
  PostgreSQL is installed. A second study in the same database must come through unchanged, and
  the runs' stderr must hold no traceback, no SQL statement (Optuna's fallback warning) and no
  storage call that gave up.
- ``s3-outage``: a search whose sample images go to an S3-compatible store (moto's server on
  127.0.0.1, ``--artifacts s3://...``) that is stopped (its socket closed: connections refused)
  a random time into a training and kept down until a trial finished while it was down (at
  least 5-20 s), then started again on the same port. Every trained trial must keep its result,
  with its image in the store or ``sample_missing`` saying why; ``srnas report`` must name every
  missing image; objects already in the bucket must be byte-identical.
- ``retrain-sigterm``: ``srnas retrain`` of a tiny net (demo data, ``proxy-tiny`` cut to
  ``--retrain-updates``) is sent SIGTERM and SIGUSR1 (SLURM's pre-timeout signal) in turn at a
  random update; each must exit 75 with a verified checkpoint at the update it stopped at, and
  ``--resume`` (itself signalled by the next injection) must continue from there; the last
  resume finishes. The final ``metrics.json`` (strict JSON, finite PSNR), ``model.pt`` and
  ``checkpoint.pt`` must be valid and equal to an uninterrupted run of the same command.

Every scenario also keeps user files beside its data (a photo, notes, a table, in the trials
folder, beside the journal, in the retrain folder): each must stay byte-identical.

    python benchmarks/fault_injection.py                      # every scenario, 8 injections each
    nice -n 19 python benchmarks/fault_injection.py --scenarios postgres-outage,s3-outage --tries 3 --workers 2

Prints one line per injection, one JSON summary line per scenario (``"scenario"``,
``injections``, ``survived``, ``trials_lost``, ``running_left``, ``files_damaged``, ``wall_s``,
``ok`` and what the scenario adds), a Markdown table of every scenario (fault, injected, survived,
what happened, pass or fail) and a last JSON line with every summary keyed by scenario (the
SIGKILL ones by their storage, ``sqlite`` and ``journal``, as before ``--scenarios`` existed;
``--storages`` still selects those). Exits 1 when anything was lost, left RUNNING or damaged, or
an injection was not survived.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

optuna.logging.set_verbosity(optuna.logging.ERROR)

SCENARIOS = ("sigkill-sqlite", "sigkill-journal", "postgres-outage", "s3-outage", "retrain-sigterm")


def _url(storage: str, root: Path, name: str) -> str:
    if storage == "journal":
        return f"journal:{root / (name + '.log')}"
    return f"sqlite:///{root / 'trials' / name / 'study.db'}"


#: One plain RDB storage per database server: opened once (a connection pool that survives the
#: server's restarts, pool_pre_ping), uncached (Optuna's cache would hide a lost trial).
_SERVER_READERS: dict[str, Any] = {}


def _read(url: str, name: str) -> list[Any] | None:
    from srnas.storages import open_storage, sqlite_path

    if url.startswith(("postgresql", "mysql")):
        if url not in _SERVER_READERS:
            _SERVER_READERS[url] = optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
        storage = _SERVER_READERS[url]
    else:
        db = sqlite_path(url)
        if db is not None and (not db.is_file() or db.stat().st_size == 0):
            return None  # killed before SQLite had the study: the next run takes the creation over
        storage = open_storage(url)
    try:
        return optuna.load_study(study_name=name, storage=storage).get_trials()
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


def _gone(finished: dict[int, Any], trials: list[Any]) -> list[int]:
    """Numbers of trials that had finished (``finished``: number -> values) and are no longer
    there with the same values."""
    by_number = {t.number: t for t in trials}
    return [n for n, values in finished.items() if n not in by_number or by_number[n].values != values]


def _running(trials: list[Any]) -> int:
    return sum(1 for t in trials if t.state.name == "RUNNING")


class Bystanders:
    """Files a user keeps beside a run (a photo, notes, a table) with their SHA-256: a file that
    changed or went away is damage."""

    def __init__(self, *folders: Path) -> None:
        rng = random.Random(7)
        contents = {"holiday.png": b"\x89PNG\r\n\x1a\n" + bytes(rng.randrange(256) for _ in range(4000)),
                    "notes.txt": "keep: the run of Tuesday\n".encode(), "results.csv": b"arch,psnr\na,31.2\nb,31.5"}
        self.digests: dict[Path, str] = {}
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
            for name, data in contents.items():
                path = folder / name
                path.write_bytes(data)
                self.digests[path] = hashlib.sha256(data).hexdigest()

    def damaged(self) -> list[str]:
        return [str(p) for p, digest in self.digests.items()
                if not p.is_file() or hashlib.sha256(p.read_bytes()).hexdigest() != digest]


def _summary(scenario: str, t0: float, *, injections: int, survived: int, lost: int, running: int,
             damaged: list[str], ok: bool, **extra: Any) -> dict[str, Any]:
    summary = {"scenario": scenario, "injections": injections, "survived": survived, "trials_lost": lost,
               "running_left": running, "files_damaged": len(damaged), "wall_s": round(time.monotonic() - t0)}
    if damaged:
        summary["damaged"] = damaged
    summary.update(extra)
    summary["ok"] = bool(ok and survived == injections and not lost and not running and not damaged)
    return summary


#: Moments of a run at which it is killed: while it starts (imports, data, study creation),
#: while a trial trains, or just after a trial was recorded (the next claim, ask, attributes).
PHASES = ("start-up", "training", "recording")


def _kill_moment(phase: str, proc: subprocess.Popen, url: str, name: str, args: argparse.Namespace,
                 rng: random.Random) -> str | None:
    """Wait until the moment to kill ``proc`` in ``phase`` comes (for training and recording: a
    trial that started, or was recorded, from now on); returns it in words, or None when the run
    ended first."""
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


def _space_option(args: argparse.Namespace) -> list[str]:
    return ["--space", args.space] if args.space is not None else []


def _search_options(args: argparse.Namespace) -> list[str]:
    """``--space`` and ``--confirm`` of the SIGKILLed searches, where given (else srnas's defaults)."""
    return [*_space_option(args), *(["--confirm", str(args.confirm)] if args.confirm is not None else [])]


def _search_env(args: argparse.Namespace, **extra: str) -> dict[str, str]:
    return {**os.environ, "SRNAS_TRIALS_DIR": str(args.root / "trials"), "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1", **extra}


# ---- SIGKILL of searches on SQLite and journal files ---------------------------------------------


def run_storage(storage: str, args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    t0 = time.monotonic()
    scenario = f"sigkill-{storage}"
    name = f"fault-{storage}"
    url = _url(storage, args.root, name)
    command = [sys.executable, "-m", "srnas", "search", "--study", name, "--budget", str(args.budget),
               "--proxy", args.proxy, "--seed", str(args.seed), "--workers", str(args.workers),
               "--no-progress", "--heartbeat", "2", *_search_options(args)]
    if storage == "journal":
        command += ["--storage", url]
    bystanders = Bystanders(args.root, args.root / "trials")
    env = _search_env(args)
    finished: dict[int, Any] = {}
    lost: set[int] = set()
    killed = early = survived = 0
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
            at = "phase not reached" if moment.endswith("not reached)") else phase  # killed at --max-wait
            phases[at] = phases.get(at, 0) + 1
            outcome = f"SIGKILL {moment}"
        time.sleep(1.0)  # the killed run's workers end (parent-death signal) before we look
        try:
            trials = _read(url, name)
        except Exception as exc:  # the storage itself is broken: the worst outcome
            readable = False
            print(f"{scenario} {attempt}: {outcome}; storage unreadable: {type(exc).__name__}: {exc}", flush=True)
            break
        trials = trials or []
        gone = _gone(finished, trials)
        lost.update(gone)
        for t in trials:
            if t.state.name == "COMPLETE":
                finished[t.number] = t.values
        integrity = _integrity(url)
        readable &= integrity == "ok"
        damaged = bystanders.damaged()
        survived += bool(moment is not None and not gone and integrity == "ok" and not damaged)
        print(f"{scenario} {attempt}: {outcome}; {_trained(trials)} trained, {_running(trials)} RUNNING, "
              f"{len(gone)} lost, integrity {integrity}, {len(damaged)} user files damaged", flush=True)
    final = subprocess.run(command, env=env, capture_output=True, text=True)
    trials = (_read(url, name) or []) if readable else []
    lost.update(_gone(finished, trials))
    readable = readable and _integrity(url) == "ok"
    damaged = bystanders.damaged() + ([] if readable else [url])
    summary = _summary(
        scenario, t0, injections=killed, survived=survived, lost=len(lost), running=_running(trials),
        damaged=damaged, ok=final.returncode == 0 and _trained(trials) == args.budget,
        tries=args.tries, killed=killed, killed_by_phase=phases, finished_before_kill=early,
        final_exit=final.returncode, final_trained=_trained(trials), budget=args.budget,
        final_running=_running(trials), storage_readable=readable)
    if final.returncode != 0:
        summary["final_error"] = final.stderr.strip().splitlines()[-1:] or [""]
    print(f"{scenario}: final run exit {final.returncode}, {summary['final_trained']}/{args.budget} trained, "
          f"{summary['final_running']} RUNNING, {len(lost)} finished trials lost", flush=True)
    return summary


# ---- outages of a database server and of an artifact store during one search --------------------


def _wait_or_kill(proc: subprocess.Popen, timeout: float) -> int:
    """``proc``'s exit code, killing it first if it has not ended within ``timeout`` seconds."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return proc.returncode


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateCluster:
    """A throwaway PostgreSQL cluster in a temporary folder on a free port of 127.0.0.1 (trust
    authentication, its socket in its own folder), run as ``postgres`` when this runs as root
    (the server refuses root); `stop` and `start` it at will, `close` removes it."""

    def __init__(self, bindir: Path, folder: Path, user: str | None) -> None:
        self.bindir, self.folder, self.user = bindir, folder, user
        self.data = folder / "data"
        self.port = _free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/srnas_faults"

    @classmethod
    def create(cls) -> "PrivateCluster | str":
        """The running cluster, or why there is none (one line)."""
        candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: _version_key(p.parent.name))
        found = [p for p in candidates if (p / "initdb").is_file() and (p / "pg_ctl").is_file()]
        if not found and shutil.which("initdb") and shutil.which("pg_ctl"):
            found = [Path(shutil.which("initdb")).parent]  # type: ignore[arg-type]
        if not found:
            return "no PostgreSQL server installed (initdb and pg_ctl in /usr/lib/postgresql/*/bin or on PATH)"
        user = None
        if os.geteuid() == 0:
            try:
                import pwd

                pwd.getpwnam("postgres")
            except KeyError:
                return "running as root and there is no postgres user to run a private cluster as"
            if shutil.which("runuser") is None:
                return "running as root and runuser is missing (needed to run the cluster as postgres)"
            user = "postgres"
        folder = Path(tempfile.mkdtemp(prefix="srnas-faults-pg-"))
        if user is not None:
            shutil.chown(folder, user, user)
        cluster = cls(found[-1], folder, user)
        try:
            cluster._pg("initdb", "-D", str(cluster.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
            cluster.start()
            cluster._pg("createdb", "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres", "srnas_faults")
        except subprocess.CalledProcessError as exc:
            cluster.close()
            return f"could not start a private cluster: {' '.join(exc.cmd[:3])}...: {(exc.stderr or '').strip()[-300:]}"
        return cluster

    def _pg(self, tool: str, *args: str) -> None:
        command = [str(self.bindir / tool), *args]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        subprocess.run(command, check=True, capture_output=True, text=True, cwd=self.folder, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"), "-w", "-t", "120",
                 "-o", options, "start")

    def stop(self) -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "120", "stop")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", name)) or (0,)


class S3Store:
    """moto's S3 server on 127.0.0.1 with one bucket; `stop` closes its socket (connections are
    refused, as when the store's process is gone), `start` serves the same objects again on the
    same port."""

    def __init__(self) -> None:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request

        self._server_class = ThreadedMotoServer
        self.port = _free_port()
        self.server: Any = None
        self.start()
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.server = self._server_class(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def stop(self) -> None:
        self.server.stop()
        self.server._server.server_close()  # stop() leaves the socket listening: callers would hang, not fail


def _outage_search(scenario: str, args: argparse.Namespace, rng: random.Random, *, url: str, storage: list[str],
                   env: dict[str, str], down: Callable[[], None], up: Callable[[], None],
                   phases: tuple[str, ...], until_recorded: bool,
                   watch: tuple[tuple[str, str], ...]) -> tuple[dict[str, Any], list[Any], str]:
    """Search one study while `down` and `up` cut its server (or store) away and back,
    ``args.tries`` times, each at the moment of a phase in turn; a run that ends before all are
    injected is followed by the same command with ``args.budget`` more (it resumes the study).
    ``until_recorded``: keep it down until a trial was recorded meanwhile (at least the drawn
    time). ``watch``: (label, text) of the lines to count in the runs' stderr per injection.
    Returns the counts, the final trials and the runs' stderr."""
    name = f"fault-{scenario}"
    log = args.root / f"{scenario}.stderr"
    finished: dict[int, Any] = {}
    lost: set[int] = set()
    injections = survived = runs = 0
    budget = args.budget
    exits: list[int] = []
    outages: list[float] = []
    while True:
        runs += 1
        command = [sys.executable, "-m", "srnas", "search", "--study", name, "--budget", str(budget), "--proxy",
                   args.proxy, "--seed", str(args.seed), "--workers", str(args.workers), "--no-progress",
                   "--heartbeat", "2", "--confirm", "0", *_space_option(args), *storage]
        with open(log, "a") as err:
            proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True)
        while injections < args.tries:
            phase = phases[injections % len(phases)]
            moment = _kill_moment(phase, proc, url, name, args, rng)
            if moment is None:
                break  # this run ended first: the next one (a larger budget) takes the rest
            before = _read(url, name) or []
            for t in before:
                if t.state.name == "COMPLETE":
                    finished[t.number] = t.values
            notes_before = log.read_text()
            outage = rng.uniform(args.outage_min, args.outage_max)
            down_at = datetime.datetime.now()
            t_down = time.monotonic()
            down()
            injections += 1
            time.sleep(outage)
            recorded_meanwhile = False
            while until_recorded and time.monotonic() - t_down < args.max_wait and proc.poll() is None:
                recorded_meanwhile = any(t.datetime_complete is not None and t.datetime_complete >= down_at
                                         and t.state.name == "COMPLETE" for t in (_read(url, name) or []))
                if recorded_meanwhile:
                    time.sleep(rng.uniform(0, 3))
                    break
                time.sleep(0.5)
            up()
            stopped = time.monotonic() - t_down
            outages.append(round(stopped, 1))
            back_at = datetime.datetime.now()
            # Survived: the search goes on after the outage (a trial recorded since, or the run's end with exit 0).
            deadline = time.monotonic() + args.max_wait
            trials: list[Any] = []
            went_on = False
            while time.monotonic() < deadline:
                ended = proc.poll() is not None
                trials = _read(url, name) or []
                if ended:
                    went_on = proc.returncode == 0
                    break
                if any(t.datetime_complete is not None and t.datetime_complete >= back_at for t in trials):
                    went_on = True
                    break
                time.sleep(0.5)
            gone = _gone(finished, trials)
            lost.update(gone)
            notes = log.read_text()[len(notes_before):]
            crashed = "Traceback" in notes or "giving up" in notes
            survived += bool(went_on and not gone and not crashed)
            said = ", ".join(f"{label} {notes.count(text)}" for label, text in watch)
            print(f"{scenario} {injections}: down {stopped:.1f} s from {moment}; {said}; "
                  f"the search {'went on' if went_on else 'did NOT go on'}"
                  f"{', with a traceback' if crashed else ''}; {_trained(trials)} trained, {_running(trials)} RUNNING, "
                  f"{len(gone)} lost", flush=True)
        exits.append(_wait_or_kill(proc, args.final_timeout))
        if injections >= args.tries or proc.returncode != 0 or runs > args.tries + 1:
            break
        budget += args.budget
    trials = _read(url, name) or []
    lost.update(_gone(finished, trials))
    stderr = log.read_text()
    counts = {"injections": injections, "survived": survived, "lost": len(lost), "running": _running(trials),
              "runs": runs, "exits": exits, "budget": budget, "trained": _trained(trials),
              "traceback": "Traceback" in stderr, "outages_s": outages}
    return counts, trials, stderr


def run_postgres_outage(args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    t0 = time.monotonic()
    scenario = "postgres-outage"
    cluster = PrivateCluster.create()
    if isinstance(cluster, str):
        print(f"{scenario}: skipped: {cluster}", flush=True)
        return {"scenario": scenario, "skipped": cluster, "ok": True}
    try:
        url = cluster.url
        # Another study in the same database, written before: it must come through unchanged.
        other = optuna.create_study(study_name="bystander", storage=url, directions=["maximize"])
        for x in (0.1, 0.5, 0.9):
            other.enqueue_trial({"x": x})
        other.optimize(lambda t: t.suggest_float("x", 0, 1) ** 2, n_trials=3)
        other_before = [(t.number, t.state.name, t.params, t.values) for t in other.get_trials()]
        bystanders = Bystanders(args.root / "trials")
        counts, trials, stderr = _outage_search(
            scenario, args, rng, url=url, storage=["--storage", url], env=_search_env(args), down=cluster.stop,
            up=cluster.start, phases=("training", "recording"), until_recorded=False,
            watch=(("lines 'is unreachable'", "is unreachable"), ("'answers again'", "answers again")))
        from srnas.storages import open_storage

        damaged = bystanders.damaged()
        other_unchanged = False
        try:  # readable the way a user reads it, and the other study intact
            optuna.load_study(study_name=f"fault-{scenario}", storage=open_storage(url)).get_trials()
            again = optuna.load_study(study_name="bystander", storage=open_storage(url)).get_trials()
            other_unchanged = [(t.number, t.state.name, t.params, t.values) for t in again] == other_before
            if not other_unchanged:
                damaged.append("study 'bystander' in the same database")
        except Exception as exc:
            damaged.append(f"{url}: unreadable ({type(exc).__name__}: {exc})")
        for engine in [getattr(s, "engine", None) for s in _SERVER_READERS.values()]:
            if engine is not None:
                engine.dispose()
        _SERVER_READERS.clear()
    finally:
        cluster.close()
    summary = _summary(scenario, t0, injections=counts["injections"], survived=counts["survived"],
                       lost=counts["lost"], running=counts["running"], damaged=damaged,
                       ok=counts["exits"][-1:] == [0] and counts["trained"] == counts["budget"]
                       and not counts["traceback"] and "[SQL:" not in stderr and "giving up" not in stderr,
                       waits=stderr.count("is unreachable"), back=stderr.count("answers again"),
                       sql_dumps=stderr.count("[SQL:"),
                       gave_up=stderr.count("giving up"), outages_s=counts["outages_s"],
                       other_study_unchanged=other_unchanged, workers=args.workers,
                       runs=counts["runs"], exits=counts["exits"], final_trained=counts["trained"],
                       budget=counts["budget"], traceback=counts["traceback"])
    print(f"{scenario}: exit {counts['exits']}, {counts['trained']}/{counts['budget']} trained, "
          f"{counts['running']} RUNNING, {counts['lost']} finished trials lost", flush=True)
    return summary


def run_s3_outage(args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    t0 = time.monotonic()
    scenario = "s3-outage"
    try:
        import boto3
        import moto.server  # noqa: F401
    except ImportError as exc:
        why = f"needs boto3 and moto[server] ({exc})"
        print(f"{scenario}: skipped: {why}", flush=True)
        return {"scenario": scenario, "skipped": why, "ok": True}
    store = S3Store()
    aws = {"AWS_ENDPOINT_URL": store.endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.pop(k, None) for k in (*aws, "AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN")}
    os.environ.update(aws)
    try:
        client = boto3.client("s3")
        client.create_bucket(Bucket="shared")
        theirs = {"user/holiday.png": b"\x89PNG\r\n\x1a\n" + os.urandom(3000), "runs/README.txt": b"do not remove\n"}
        for key, body in theirs.items():
            client.put_object(Bucket="shared", Key=key, Body=body)
        name = f"fault-{scenario}"
        url = _url("sqlite", args.root, name)
        bystanders = Bystanders(args.root / "trials")
        counts, trials, stderr = _outage_search(
            scenario, args, rng, url=url, storage=["--artifacts", "s3://shared/runs/faults"], env=_search_env(args),
            down=store.stop, up=store.start, phases=("training",), until_recorded=True,
            watch=(("images not stored", "could not be stored"),))
        damaged = bystanders.damaged()
        bucket_unchanged = True
        for key, body in theirs.items():
            try:
                same = client.get_object(Bucket="shared", Key=key)["Body"].read() == body
            except Exception:
                same = False
            if not same:
                bucket_unchanged = False
                damaged.append(f"s3://shared/{key}")
        if _integrity(url) != "ok":
            damaged.append(url)
        done = [t for t in trials if t.state.name == "COMPLETE" and "reused_from" not in t.user_attrs
                and "infeasible" not in t.user_attrs]
        missing = [t.number for t in done if t.user_attrs.get("sample_missing")]
        stored = [t for t in done if t.user_attrs.get("sample_artifact")]
        unreadable = []
        for t in stored:
            try:
                key = f"runs/faults/{t.user_attrs['sample_artifact']}"
                body = client.get_object(Bucket="shared", Key=key)["Body"].read()
                if not body.startswith(b"\x89PNG"):
                    unreadable.append(t.number)
            except Exception:
                unreadable.append(t.number)
        no_word = [t.number for t in done if t not in stored and t.number not in missing]
        report = subprocess.run([sys.executable, "-m", "srnas", "report", "--study", name, "--no-png", "--samples",
                                 str(len(done) + 1)], env=_search_env(args), capture_output=True, text=True)
        html = (args.root / "trials" / name / "report.html")
        text = html.read_text() if html.is_file() else ""
        unnamed = [n for n in missing if f"#{n} (" not in text.partition("Sample images missing:")[2]]
    finally:
        store.stop()
        os.environ.update({k: v for k, v in saved.items() if v is not None})
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
    summary = _summary(scenario, t0, injections=counts["injections"], survived=counts["survived"],
                       lost=counts["lost"], running=counts["running"], damaged=damaged,
                       ok=counts["exits"][-1:] == [0] and counts["trained"] == counts["budget"]
                       and not counts["traceback"] and report.returncode == 0 and not unreadable and not no_word
                       and not unnamed,
                       images_missing=len(missing), images_stored=len(stored), images_unreadable=unreadable,
                       results_without_image_or_reason=no_word, report_exit=report.returncode,
                       missing_not_named_in_report=unnamed, bucket_objects_unchanged=bucket_unchanged,
                       outages_s=counts["outages_s"], workers=args.workers, runs=counts["runs"], exits=counts["exits"],
                       final_trained=counts["trained"], budget=counts["budget"], traceback=counts["traceback"])
    print(f"{scenario}: exit {counts['exits']}, {counts['trained']}/{counts['budget']} trained, "
          f"{counts['running']} RUNNING, {counts['lost']} finished trials lost; {len(stored)} images stored, "
          f"{len(missing)} missing ({len(missing) - len(unnamed)} named by the report)", flush=True)
    return summary


# ---- SIGTERM / SIGUSR1 of a retrain ---------------------------------------------------------------


_UPDATE = re.compile(r"^update ([\d,]+)/([\d,]+)", re.M)


def _updates_logged(text: str) -> list[int]:
    return [int(m.group(1).replace(",", "")) for m in _UPDATE.finditer(text)]


def _strict_json(path: Path) -> Any:
    def no_constant(value: str) -> Any:
        raise ValueError(f"{value} is not JSON")

    return json.loads(path.read_text(), parse_constant=no_constant)


def _retrain_outputs(folder: Path, updates: int) -> tuple[list[str], dict[str, Any]]:
    """What is wrong with a finished retrain folder (empty: valid), and its metrics and weights."""
    import torch

    from srnas.arch import ArchConfig
    from srnas.train.checkpoint import load_checkpoint

    wrong: list[str] = []
    found: dict[str, Any] = {}
    try:
        metrics = _strict_json(folder / "metrics.json")
        found["psnr"] = metrics["final"]["psnr"] if isinstance(metrics.get("final"), dict) else metrics.get("psnr")
        if not isinstance(found["psnr"], (int, float)) or not math.isfinite(found["psnr"]):
            wrong.append(f"metrics.json: PSNR {found['psnr']!r}")
    except Exception as exc:
        wrong.append(f"metrics.json: {type(exc).__name__}: {exc}")
    try:
        found["weights"] = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
        if not all(bool(torch.isfinite(v).all()) for v in found["weights"].values() if v.is_floating_point()):
            wrong.append("model.pt: non-finite weights")
    except Exception as exc:
        wrong.append(f"model.pt: {type(exc).__name__}: {exc}")
    try:
        if (update := load_checkpoint(folder / "checkpoint.pt")["update"]) != updates:
            wrong.append(f"checkpoint.pt: update {update}, not {updates}")
    except Exception as exc:
        wrong.append(f"checkpoint.pt: {exc}")
    try:
        ArchConfig.load(folder / "config.yaml")
    except Exception as exc:
        wrong.append(f"config.yaml: {exc}")
    return wrong, found


def run_retrain_sigterm(args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    import torch

    from srnas.arch import ArchConfig
    from srnas.train.checkpoint import load_checkpoint

    t0 = time.monotonic()
    scenario = "retrain-sigterm"
    base = args.root / "retrain"
    base.mkdir(parents=True, exist_ok=True)
    config = base / "tiny.yaml"
    config.write_text(ArchConfig(n_resblocks=1, n_feats=8, global_skip="bicubic").to_yaml())
    total = args.retrain_updates
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "srnas", "retrain", "--config", str(config), "--schedule", "proxy-tiny",
                "--max-updates", str(total), "--data", "demo", "--device", "cpu", "--seed", str(args.seed),
                "--out", str(out), "--no-progress", "--log-every", "1"]

    interrupted, reference = base / "interrupted", base / "uninterrupted"
    bystanders = Bystanders(interrupted, interrupted / "manual" / "retrain")
    damaged: list[str] = []
    signals = (signal.SIGTERM, signal.SIGUSR1)
    # Signal moments: one random update in each of tries equal slices of the schedule (last: before its end).
    slices = [(1 + i * (total - 2) // args.tries, (i + 1) * (total - 2) // args.tries) for i in range(args.tries)]
    injections = survived = updates_lost = 0
    stopped_at = 0
    folder: Path | None = None
    exits: list[int] = []
    for i in range(args.tries + 1):
        resume = ["--resume"] if i else []
        out_file = base / f"run{i}.out"
        with open(out_file, "w") as out:
            proc = subprocess.Popen([*command(interrupted), *resume], env=env, stdout=out, stderr=subprocess.STDOUT)
        if i == args.tries:  # the last resume runs to the end
            exits.append(_wait_or_kill(proc, args.final_timeout))
            break
        sig = signals[i % len(signals)]
        target = max(rng.randint(*slices[i]), stopped_at + 1)
        deadline = time.monotonic() + args.max_wait + 120
        logged = 0
        while proc.poll() is None and time.monotonic() < deadline:
            seen = _updates_logged(out_file.read_text())
            logged = seen[-1] if seen else 0
            if logged >= target:
                break
            time.sleep(0.05)
        if proc.poll() is not None:
            exits.append(proc.returncode)
            print(f"{scenario} {i + 1}: the run ended (exit {proc.returncode}) before update {target}", flush=True)
            break
        time.sleep(rng.uniform(0, 0.2))
        proc.send_signal(sig)
        injections += 1
        exits.append(_wait_or_kill(proc, args.max_wait))
        text = out_file.read_text()
        seen = _updates_logged(text)
        first = seen[0] if seen else None
        folder = next((p.parent for p in (interrupted / "manual" / "retrain").rglob("retrain.log")), None)
        problems = []
        if proc.returncode != 75:
            problems.append(f"exit {proc.returncode}, not 75")
        if i and first != stopped_at + 1:
            problems.append(f"the resume began at update {first}, not {stopped_at + 1}")
        try:
            update = load_checkpoint(folder / "checkpoint.pt")["update"] if folder else None
        except Exception as exc:
            update = None
            problems.append(f"checkpoint: {exc}")
            damaged.append(f"{folder}/checkpoint.pt")
        if update is not None and (update < logged or f"stopped at update {update:,} of" not in text):
            problems.append(f"checkpoint at update {update}, signalled at {logged}")
            updates_lost += max(0, logged - update)
        if folder is not None and any((folder / f).exists() for f in ("model.pt", "metrics.json")):
            problems.append("a stopped run wrote model.pt or metrics.json")
        if i == 0 and folder is not None:  # a user's note put into the run folder while it trains
            bystanders.digests.update(Bystanders(folder).digests)
        survived += not problems
        stopped_at = update if update is not None else stopped_at
        print(f"{scenario} {i + 1}: {signal.Signals(sig).name} at update {logged}/{total} (aimed at {target}); "
              f"exit {proc.returncode}, checkpoint at update {update}"
              f"{'; ' + '; '.join(problems) if problems else ', verified'}", flush=True)
    final_ok = exits[-1:] == [0] and folder is not None
    wrong, mine = _retrain_outputs(folder, total) if folder is not None else (["no run folder"], {})
    damaged += [f"{folder}: {w}" for w in wrong]
    damaged += bystanders.damaged()
    ref = subprocess.run(command(reference), env=env, capture_output=True, text=True, timeout=args.final_timeout)
    ref_folder = next((p.parent for p in (reference / "manual" / "retrain").rglob("metrics.json")), None)
    same = None
    if ref.returncode == 0 and ref_folder is not None and not wrong:
        _, theirs = _retrain_outputs(ref_folder, total)
        same = mine.get("psnr") == theirs.get("psnr") and mine["weights"].keys() == theirs["weights"].keys() and \
            all(torch.equal(mine["weights"][k], theirs["weights"][k]) for k in mine["weights"])
    summary = _summary(scenario, t0, injections=injections, survived=survived, lost=0, running=0, damaged=damaged,
                       ok=final_ok and same is True and not updates_lost, updates_lost=updates_lost, exits=exits,
                       updates=total, final_psnr=mine.get("psnr"),
                       equals_uninterrupted=same, uninterrupted_exit=ref.returncode)
    print(f"{scenario}: exits {exits}, final PSNR {mine.get('psnr')}, equal to an uninterrupted run: {same}, "
          f"{len(damaged)} files damaged", flush=True)
    return summary


RUNNERS: dict[str, Callable[[argparse.Namespace, random.Random], dict[str, Any]]] = {
    "sigkill-sqlite": lambda args, rng: run_storage("sqlite", args, rng),
    "sigkill-journal": lambda args, rng: run_storage("journal", args, rng),
    "postgres-outage": run_postgres_outage,
    "s3-outage": run_s3_outage,
    "retrain-sigterm": run_retrain_sigterm,
}


def _seconds(values: list[float]) -> str:
    return f"{min(values):.0f}-{max(values):.0f} s" if values else "-"


def _workers(r: dict[str, Any]) -> str:
    return f"{r['workers']} worker{'s' if r['workers'] != 1 else ''}"


def _what_happened(r: dict[str, Any]) -> tuple[str, str]:
    """The fault injected and what the run observed, in words, from a scenario's summary."""
    scenario = r["scenario"]
    common = (f"{r['trials_lost']} finished trials lost, {r['running_left']} RUNNING left, "
              f"{r['files_damaged']} user files damaged")
    if scenario.startswith("sigkill-"):
        storage = {"sigkill-sqlite": "SQLite", "sigkill-journal": "a journal file"}[scenario]
        by_phase = " / ".join(str(r["killed_by_phase"].get(p, 0)) for p in PHASES)
        check = "integrity_check ok" if scenario == "sigkill-sqlite" else "journal replays"
        late = r["killed_by_phase"].get("phase not reached", 0)
        fault = (f"SIGKILL of `srnas search` on {storage} ({r['killed']} kills: start-up / training / recording "
                 f"{by_phase}{f', {late} at --max-wait with its phase not reached' if late else ''})")
        happened = (f"{check} after every kill: {'yes' if r['storage_readable'] else 'NO'}; final run exit "
                    f"{r['final_exit']}, {r['final_trained']} of {r['budget']} trained; {common}")
    elif scenario == "postgres-outage":
        fault = (f"PostgreSQL (a private cluster) stopped {r['injections']} times mid-search for "
                 f"{_seconds(r['outages_s'])}, {_workers(r)}")
        happened = (f"{r['survived']} of {r['injections']} outages survived: {r['waits']} 'unreachable, retrying' "
                    f"and {r['back']} 'answers again' lines, {r['gave_up']} gave up, "
                    f"{'a traceback' if r['traceback'] else 'no traceback'}, {r['sql_dumps']} SQL statements dumped; "
                    f"exits {r['exits']}, "
                    f"{r['final_trained']} of {r['budget']} trained; another study in the database "
                    f"{'unchanged' if r['other_study_unchanged'] else 'CHANGED'}; {common}")
    elif scenario == "s3-outage":
        named = r["images_missing"] - len(r["missing_not_named_in_report"])
        fault = (f"S3 artifact store (moto) stopped {r['injections']} times mid-training, down until a trial "
                 f"finished ({_seconds(r['outages_s'])}), {_workers(r)}")
        happened = (f"{r['survived']} of {r['injections']} outages survived, "
                    f"{'a traceback' if r['traceback'] else 'no traceback'}; exits {r['exits']}, "
                    f"{r['final_trained']} of {r['budget']} trained; images: {r['images_stored']} "
                    f"stored ({len(r['images_unreadable'])} unreadable), {r['images_missing']} recorded missing with the "
                    f"reason ({named} named by `srnas report`), "
                    f"{len(r['results_without_image_or_reason'])} without image or reason; objects already in the "
                    f"bucket {'unchanged' if r['bucket_objects_unchanged'] else 'CHANGED'}; {common}")
    else:
        signals = " / ".join(("SIGTERM", "SIGUSR1")[i % 2] for i in range(r["injections"]))
        fault = f"`srnas retrain` ({r['updates']} updates) sent {signals}, each resumed with `--resume`"
        same = {True: "equal to", False: "NOT equal to", None: "not compared with"}[r["equals_uninterrupted"]]
        happened = (f"exits {r['exits']}; {r['survived']} of {r['injections']} stopped with a verified checkpoint at "
                    f"the signalled update, {r['updates_lost']} updates lost; final PSNR {r['final_psnr']:.4f} dB, "
                    f"weights and PSNR {same} an uninterrupted run; {r['files_damaged']} files damaged"
                    if isinstance(r.get("final_psnr"), float) else
                    f"exits {r['exits']}; {r['survived']} of {r['injections']} stopped with a verified checkpoint; "
                    f"no valid final result; {r['files_damaged']} files damaged")
    return fault, happened


def table(results: dict[str, dict[str, Any]]) -> list[str]:
    """The run's summaries as a Markdown table: fault, what happened, pass or fail."""
    lines = ["| fault | injected | survived | what happened | result |", "|---|---|---|---|---|"]
    for r in results.values():
        if "skipped" in r:
            lines.append(f"| {r['scenario']} | 0 | - | skipped: {r['skipped']} | skipped |")
            continue
        fault, happened = _what_happened(r)
        lines.append(f"| {fault} | {r['injections']} | {r['survived']} | {happened} | "
                     f"{'pass' if r['ok'] else 'FAIL'} |")
    return lines


def _key(scenario: str) -> str:
    """The key of a scenario in the last JSON line: the SIGKILL ones by storage, as before."""
    return scenario.removeprefix("sigkill-")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default=None,
                        help=f"comma list of {', '.join(SCENARIOS)} (default: all; --storages alone: those SIGKILLs)")
    parser.add_argument("--tries", type=int, default=8, help="injections per scenario (default 8)")
    parser.add_argument("--storages", default=None,
                        help="comma list of sqlite, journal: the SIGKILL scenarios to run (kept for old commands)")
    parser.add_argument("--budget", type=int, default=12, help="study budget (default 12)")
    parser.add_argument("--proxy", default="tiny@100", help="proxy fidelity (default tiny@100)")
    parser.add_argument("--workers", type=int, default=1, help="workers per search (default 1)")
    parser.add_argument("--space", default=None,
                        help="search space of the searches, a name or YAML file (default srnas's, tiny)")
    parser.add_argument("--confirm", type=int, default=None,
                        help="architectures the SIGKILLed searches confirm at their end (default srnas's, 3; "
                             "the outage scenarios confirm none)")
    parser.add_argument("--phases", choices=("cycle", "random"), default="cycle",
                        help="kill moments: start-up, training, recording in turn (default), or drawn at random")
    parser.add_argument("--min-wait", type=float, default=0.5, help="earliest start-up kill, seconds after start")
    parser.add_argument("--startup-wait", type=float, default=8.0, help="latest start-up kill, seconds after start")
    parser.add_argument("--train-wait", type=float, default=3.0, help="latest kill into a training, seconds")
    parser.add_argument("--max-wait", type=float, default=180.0, help="kill anyway this many seconds after start")
    parser.add_argument("--outage-min", type=float, default=5.0, help="shortest outage, seconds (default 5)")
    parser.add_argument("--outage-max", type=float, default=20.0, help="longest drawn outage, seconds (default 20)")
    parser.add_argument("--retrain-updates", type=int, default=200,
                        help="updates of the signalled retrain (proxy-tiny cut to it; default 200)")
    parser.add_argument("--final-timeout", type=float, default=1800.0,
                        help="seconds a run may take to finish after the last injection (default 1800)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the injection times and of the runs")
    parser.add_argument("--root", type=Path, default=None, help="scratch folder (default a new temporary one)")
    args = parser.parse_args(argv)
    if args.scenarios is not None:
        scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    elif args.storages is not None:
        scenarios = [f"sigkill-{s.strip()}" for s in args.storages.split(",") if s.strip()]
    else:
        scenarios = list(SCENARIOS)
    unknown = [s for s in scenarios if s not in RUNNERS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)} "
                     "(--storages: sqlite, journal)")
    if args.confirm is not None and args.confirm < 0:
        parser.error(f"--confirm: {args.confirm} is negative (0: no confirmation)")
    if args.space is not None:  # refused here in one line, not by every search the scenarios start
        from srnas.errors import ConfigError  # lazy: only with --space (the script imports srnas where used)
        from srnas.space import SearchSpace  # lazy: as above

        try:
            SearchSpace.load(args.space)
        except ConfigError as exc:
            parser.error(f"--space: {exc}")
    if args.root is None:
        args.root = Path(tempfile.mkdtemp(prefix="srnas-faults-"))
    args.root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    t0 = time.monotonic()
    results: dict[str, dict[str, Any]] = {}
    for scenario in scenarios:
        results[_key(scenario)] = summary = RUNNERS[scenario](args, rng)
        print(json.dumps(summary), flush=True)
    print(f"# {time.monotonic() - t0:.0f} s in {args.root}", flush=True)
    print("\n".join(table(results)), flush=True)
    print(json.dumps(results), flush=True)
    return 0 if all(r["ok"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
