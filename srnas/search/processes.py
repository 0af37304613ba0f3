"""Worker processes: who runs a trial, whether that process still lives, and how workers end
with the command that started them.

- `worker_identity` is what a trial records about its worker: ``worker`` (``host:pid``),
  ``worker_ns`` (the boot and the PID namespace: containers on one host share a hostname, not
  this) and ``worker_start`` (the boot and the start time of that PID, Linux), so that a PID
  reused after the worker died (or after a reboot) is not taken for the worker (`worker_alive`).
- `die_with_parent` makes a worker process end when its coordinator ends, however it ends
  (SIGKILL included): Linux's parent-death signal, and a thread watching the parent PID
  elsewhere (and in case the parent died before the signal was armed).
- `terminate_as_interrupt` turns SIGTERM into `KeyboardInterrupt` (the same clean stop as
  Ctrl-C: the running trial is marked FAIL "interrupted", workers are stopped).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from srnas.optuna_seams import trial_id_of

#: Seconds between two looks of the parent watch.
PARENT_POLL_S = 1.0


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        return "?"


def process_start(pid: int) -> str | None:
    """``BOOT:TICKS``: which boot and when (clock ticks after it) process ``pid`` started;
    None where /proc is missing or the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # the command name may hold spaces and ")"
    if len(fields) < 20:
        return None
    return f"{_boot_id()}:{fields[19]}"  # field 22 of proc(5): starttime


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def pid_namespace() -> str:
    """Which machine and PID namespace this process lives in: the boot id and the namespace's
    inode (``/proc/self/ns/pid``). Containers on one host share the hostname but not this, and
    a PID means nothing outside its namespace."""
    try:
        ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        ns = "?"
    return f"{_boot_id()}/{ns}"


def worker_tag() -> str:
    """``host:pid`` of this process, recorded in each trial it runs (``worker``)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_identity() -> dict[str, str]:
    """The user attributes a trial records about the process that runs it (``slurm_job``: the
    SLURM job it runs in, when it does, as ``scancel`` names it: ``ARRAY_TASK`` for a task of
    a job array, whose own job id may equal the array's and so name every task)."""
    out = {"worker": worker_tag(), "worker_ns": pid_namespace()}
    start = process_start(os.getpid())
    if start is not None:
        out["worker_start"] = start
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        out["slurm_job"] = f"{array}_{task}"
    elif os.environ.get("SLURM_JOB_ID"):
        out["slurm_job"] = os.environ["SLURM_JOB_ID"]
    return out


def worker_alive(pid: int, start: str | None = None) -> bool:
    """Whether the worker process ``pid`` of this machine still runs: the PID exists, is no
    zombie, and (when ``start`` was recorded) is the same process, not a reused PID."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    if _zombie(pid):
        return False
    if start is not None:
        now = process_start(pid)
        if now is not None and now != start:
            return False
    return True


def _arm_parent_death_signal() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        return libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent(parent_pid: int) -> None:
    """Send this process SIGTERM when ``parent_pid`` (its coordinator) is gone: at once on Linux
    (PR_SET_PDEATHSIG), within `PARENT_POLL_S` elsewhere (a daemon thread watching the PID)."""
    _arm_parent_death_signal()
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os.kill(os.getpid(), signal.SIGTERM)
        return

    def watch() -> None:
        stop = threading.Event()
        while not stop.wait(PARENT_POLL_S):
            if os.getppid() != parent_pid:
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, name="srnas-parent-watch", daemon=True).start()


def _interrupt_once(signum: int, frame: object) -> None:
    # A worker stopping cleanly (failing its trial) must not be cut short by a second signal:
    # Ctrl-C reaches it directly and again through the coordinator's SIGTERM.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt(f"signal {signum}")


#: Seconds between two sendings of a stop signal that the worker has not acted on yet.
RESIGNAL_S = 1.0


def _stopping() -> bool:
    """True while the main thread handles (or unwinds through cleanup code with) a
    `KeyboardInterrupt`: a worker requeueing its trial must not be cut short."""
    exc = sys.exc_info()[1]
    while exc is not None:
        if isinstance(exc, KeyboardInterrupt):
            return True
        exc = exc.__context__
    return False


def _within(frame: Any, code: Any) -> bool:
    """True when ``frame`` or a frame that called it runs ``code``."""
    while frame is not None:
        if frame.f_code is code:
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def stop_as_interrupt(names: tuple[str, ...]) -> Iterator[dict[str, int]]:
    """Within the block the signals ``names`` (those this platform has) raise `KeyboardInterrupt`
    in the main thread; yields a dict whose ``signal`` is the number of the first signal received (0:
    none yet). The caller sets ``taken`` once it has caught the interrupt. Until then the signal
    is sent again every `RESIGNAL_S`: Python drops an exception raised while it runs a weakref
    callback or a ``__del__`` ("Exception ignored in"), and the worker would train on. Signals
    that find the interrupt being handled (the trial being requeued) are ignored."""
    got = {"signal": 0, "taken": 0}
    sigs = [getattr(signal, name) for name in names if hasattr(signal, name)]
    if threading.current_thread() is not threading.main_thread():
        yield got
        return
    main = threading.main_thread().ident
    done = threading.Event()
    sending = threading.Lock()  # no signal sent once the previous handlers are back

    def insist(signum: int) -> None:
        while not done.wait(RESIGNAL_S):
            with sending:
                if done.is_set() or got["taken"]:
                    return
                signal.pthread_kill(main, signum)  # type: ignore[arg-type]

    def stop(signum: int, frame: Any) -> None:
        if got["taken"] or (got["signal"] and (_stopping() or _within(frame, dropped.__code__))):
            return  # a signal landing in `dropped` would be dropped with a traceback: resent instead
        if not got["signal"]:
            got["signal"] = signum
            threading.Thread(target=insist, args=(signum,), name="srnas-stop-signal", daemon=True).start()
        raise KeyboardInterrupt(f"signal {signum}")

    hook = sys.unraisablehook

    def dropped(unraisable: Any) -> None:
        # Our own interrupt, dropped: no traceback in the job's log, it is sent again.
        if not (got["signal"] and isinstance(unraisable.exc_value, KeyboardInterrupt)):
            hook(unraisable)

    previous = {sig: signal.signal(sig, stop) for sig in sigs}
    sys.unraisablehook = dropped
    try:
        yield got
    finally:
        got["taken"] = 1  # a signal sent meanwhile finds nothing to stop
        with sending:
            done.set()
        for sig, old in previous.items():
            signal.signal(sig, old)
        sys.unraisablehook = hook


@contextlib.contextmanager
def terminate_as_interrupt(*, once: bool = False) -> Iterator[None]:
    """Within the block SIGTERM raises `KeyboardInterrupt` in the main thread, as Ctrl-C does
    (a no-op outside the main thread, where signals cannot be handled). ``once``: the first
    SIGTERM or SIGINT interrupts, later ones are ignored (worker processes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if not once:  # the interrupt insists until taken: one raised inside a __del__ is dropped
        with stop_as_interrupt(("SIGTERM",)):
            yield
        return
    previous = {sig: signal.signal(sig, _interrupt_once) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class StaleTrials:
    """Finds RUNNING trials whose worker is gone; one per process, since it remembers since when
    each trial's heartbeat has stood still.

    A trial is stale at once when its worker ran on this machine, in this PID namespace, and its
    PID is gone or now belongs to another process (a container on the same host has its own
    namespace, so its PIDs are never looked up here); otherwise once its ``heartbeat_at`` has not
    moved for ``grace`` seconds (twice the search's heartbeat, 40 s by default). Only how long a
    value stays the same is measured, on this machine's clock, so clocks of other machines need
    not agree."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self._since: dict[int, tuple[Any, float]] = {}

    def find(self, running: Iterable[Any]) -> list[tuple[Any, str]]:
        """(trial, reason) for each trial of ``running`` that is stale now."""
        host, ns, now = socket.gethostname(), pid_namespace(), time.monotonic()
        out, seen = [], set()
        for t in running:
            seen.add(trial_id_of(t))
            worker = t.user_attrs.get("worker")
            w_host, _, w_pid = worker.rpartition(":") if isinstance(worker, str) else ("", "", "")
            # A PID is checked only in the worker's own namespace (containers share hostnames).
            same = w_host == host and t.user_attrs.get("worker_ns") == ns
            if same and w_pid.isdigit():
                if not worker_alive(int(w_pid), t.user_attrs.get("worker_start")):
                    out.append((t, f"worker {worker} died (killed?)"))
                continue
            beat = t.user_attrs.get("heartbeat_at")
            since = self._since.get(trial_id_of(t))
            if since is None or since[0] != beat:
                self._since[trial_id_of(t)] = (beat, now)
            elif now - since[1] >= self.grace:
                out.append((t, f"worker {worker or '(unknown)'} sent no heartbeat for {self.grace:.0f} s "
                               "(its machine is down, or it was killed)"))
        for trial_id in set(self._since) - seen:
            del self._since[trial_id]
        return out
