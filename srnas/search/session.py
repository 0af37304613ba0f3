"""One search session, the same under every engine.

A `Session` resolves the settings once (the space with its constraints, the proxy schedule,
the study name and home), creates or resumes the study and checks that a resumed one searched
the same thing, enqueues the space's presets, keeps the budget accounting and fails trials
whose worker died. Engines (`srnas.search.engines`) receive a session and run it to its budget.

Budget accounting: a trial counts once it is COMPLETE, or PRUNED by the pruner. Trials that
violate the space's constraints are recorded as PRUNED with the user attribute ``infeasible``
(never trained) and do not count, nor do FAILED ones (a killed worker's trial is failed and
retried).
"""

from __future__ import annotations

import dataclasses
import os
import socket
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from srnas.errors import SrnasError
from srnas.search.objective import Objective, check_data
from srnas.search.settings import METRIC_NAMES, OBJECTIVES, SearchSettings
from srnas.search.trial import TrialRunner
from srnas.space import SearchSpace
from srnas.studies import StudyError, StudyHome
from srnas.train.schedules import ProxySchedule, Schedule, get_schedule

if TYPE_CHECKING:
    import optuna
    from rich.console import Console

#: Stop when this many infeasible configs were drawn per finished trial (constraints too tight).
MAX_INFEASIBLE_PER_BUDGET = 20


class Engine(Protocol):
    """A search engine: checks its own options, then runs a session until its budget is met."""

    name: ClassVar[str]

    def validate(self, settings: SearchSettings) -> SearchSettings:
        """``settings`` with engine defaults resolved (``workers="auto"``), or `ConfigError`."""
        ...

    def run(self, session: "Session", *, console: "Console", progress: bool) -> None: ...


@dataclasses.dataclass(frozen=True)
class Counts:
    """Trials of a study by how they count: ``finished`` = COMPLETE + PRUNED by the pruner."""

    finished: int = 0
    running: int = 0
    failed: int = 0
    infeasible: int = 0
    pruned: int = 0


def study_counts(study: "optuna.Study") -> Counts:
    from optuna.trial import TrialState

    finished = running = failed = infeasible = pruned = 0
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.COMPLETE:
            finished += 1
        elif t.state == TrialState.PRUNED:
            if "infeasible" in t.user_attrs:
                infeasible += 1
            else:
                finished += 1
                pruned += 1
        elif t.state == TrialState.RUNNING:
            running += 1
        elif t.state == TrialState.FAIL:
            failed += 1
    return Counts(finished, running, failed, infeasible, pruned)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def worker_tag() -> str:
    """``host:pid`` of this process, recorded in each trial it runs (``worker``)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def fail_dead_local_trials(study: "optuna.Study") -> list[int]:
    """Fail RUNNING trials whose worker process on this host is gone (and re-enqueue them).

    The local counterpart of the RDB heartbeat: immediate, and it also covers the journal
    storage, which has no heartbeat.
    """
    import optuna
    from optuna.trial import TrialState

    host = socket.gethostname()
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker")
        if not isinstance(worker, str) or ":" not in worker:
            continue
        w_host, _, w_pid = worker.rpartition(":")
        if w_host != host or not w_pid.isdigit() or _pid_alive(int(w_pid)):
            continue
        try:
            study._storage.set_trial_user_attr(t._trial_id, "error", f"worker {worker} died (killed?)")
            ok = study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        except Exception:  # another worker failed it first
            continue
        if ok:
            failed.append(t.number)
            optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2)(study, study._storage.get_trial(t._trial_id))
    return failed


def load_space(settings: SearchSettings) -> SearchSpace:
    """The settings' space with the command line's constraints added."""
    space = SearchSpace.load(settings.space)
    return space.constrained(max_params=settings.max_params, max_mult_adds=settings.max_mult_adds,
                             max_activation_mb=settings.max_activation_mb)


def resolve_proxy(settings: SearchSettings, space: SearchSpace) -> ProxySchedule:
    """The proxy schedule: ``--proxy``, else the space's default, else ``tiny``."""
    name = settings.proxy or space.proxy or "tiny"
    schedule: Schedule = get_schedule(name)
    if not isinstance(schedule, ProxySchedule):
        raise SrnasError(f"--proxy {name!r} is a full training schedule; a search needs a proxy fidelity "
                         "(tiny, short, medium, NAME@N, NAME*F)")
    return schedule


class Session:
    """The resolved settings, the study and its accounting, shared by every engine.

    Build it with `Session.create` (the command that starts a search: creates or resumes the
    study) or `Session.attach` (a worker process: opens the study that `create` prepared).
    """

    def __init__(self, settings: SearchSettings, space: SearchSpace, schedule: ProxySchedule,
                 home: StudyHome, study: "optuna.Study") -> None:
        self.settings = settings
        self.space = space
        self.schedule = schedule
        self.home = home
        self.study = study

    @property
    def name(self) -> str:
        return self.home.name

    # ---- construction ---------------------------------------------------------------------

    @classmethod
    def create(cls, settings: SearchSettings) -> "Session":
        """Create or resume the study (checking that a resumed one searched the same thing)
        and enqueue the space's presets idempotently. Bad data fails before a study is touched."""
        import optuna

        space = load_space(settings)
        schedule = resolve_proxy(settings, space)
        home = StudyHome(settings.resolved_study(space.name), settings.root_path())
        check_data(settings.data, space.scales)
        storage = home.storage(settings.storage, heartbeat=settings.heartbeat)
        directions = [OBJECTIVES[o] for o in settings.objectives]
        try:
            study = optuna.create_study(study_name=home.name, storage=storage, directions=directions,
                                        load_if_exists=True)
        except Exception as exc:
            raise StudyError(f"study {home.name!r}: cannot create or open "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
        session = cls(settings, space, schedule, home, study)
        session._check_or_record_identity(directions)
        for label, params in space.preset_assignments():
            study.enqueue_trial(params, user_attrs={"preset": label}, skip_if_exists=True)
        return session

    @classmethod
    def attach(cls, settings: SearchSettings) -> "Session":
        """Open the study of ``settings`` (named in it) as a worker; engines set the study's
        sampler and pruner they need."""
        import optuna

        space = load_space(settings)
        schedule = resolve_proxy(settings, space)
        home = StudyHome(settings.resolved_study(space.name), settings.root_path())
        storage = home.storage(settings.storage, heartbeat=settings.heartbeat)
        study = optuna.load_study(study_name=home.name, storage=storage)
        return cls(settings, space, schedule, home, study)

    def identity(self) -> dict[str, Any]:
        """What gives a study's results their meaning: a resume must not change it."""
        return {"space": self.space.name, "objectives": list(self.settings.objectives),
                "fidelity": self.schedule.fidelity_id, "data": self.settings.data}

    def _check_or_record_identity(self, directions: list[str]) -> None:
        study, name = self.study, self.name
        expected = self.identity()
        known = study.user_attrs
        if known.get("srnas"):
            for key, value in expected.items():
                if known.get(key) != value:
                    raise StudyError(f"study {name!r} exists with {key} = {known.get(key)!r}, not {value!r}: "
                                     "re-run with the same settings to resume, or pass --study NEW")
            return
        if [d.name.lower() for d in study.directions] != directions:
            raise StudyError(f"study {name!r} exists with other objectives; pass --study NEW")
        for key, value in expected.items():
            study.set_user_attr(key, value)
        study.set_user_attr("protocol", None)
        study.set_user_attr("scales", list(self.space.scales))
        study.set_user_attr("schedule", self.schedule.to_dict())
        study.set_user_attr("space_file", str(self.space.source))
        study.set_user_attr("srnas", 1)
        study.set_metric_names([METRIC_NAMES[o] for o in self.settings.objectives])

    # ---- accounting ------------------------------------------------------------------------

    def counts(self) -> Counts:
        return study_counts(self.study)

    def budget_left(self, counts: Counts | None = None) -> int:
        """Finished trials still wanted (0: budget met); `SrnasError` when the constraints
        reject nearly every sampled config."""
        counts = counts or self.counts()
        if counts.infeasible > MAX_INFEASIBLE_PER_BUDGET * max(self.settings.budget, 1):
            raise SrnasError(f"study {self.name!r}: {counts.infeasible} sampled configs violated the "
                             "constraints; loosen --max-params/--max-mult-adds or the space's constraints")
        return max(0, self.settings.budget - counts.finished)

    def fail_stale(self) -> list[int]:
        """Fail (and re-enqueue) trials whose worker died: on this host at once, elsewhere
        after the RDB heartbeat's grace period."""
        import optuna

        failed = fail_dead_local_trials(self.study)
        try:
            optuna.storages.fail_stale_trials(self.study)
        except Exception:  # storages without a heartbeat
            pass
        return failed

    # ---- trials --------------------------------------------------------------------------

    def trial_runner(self, *, device: str, engine: str, threads: int | None = None) -> TrialRunner:
        """The objective and trial runner of one worker on ``device``."""
        objective = Objective(self.space, self.schedule, data=self.settings.data,
                              objectives=self.settings.objectives, device=device,
                              seed=self.settings.seed or 0, engine=engine, sample_dir=self.home.tmp,
                              threads=threads)
        return TrialRunner(self.study, self.space, objective, artifacts=self.home.artifacts,
                           seed=self.settings.seed, device=device, worker_tag=worker_tag())

    def describe(self, engine: str) -> str:
        """The header line of a search."""
        s = self.settings
        return (f"study [bold]{self.name}[/bold]: space {self.space.name} ({self.space.size():,} configs), "
                f"proxy {self.schedule.name}, objectives {','.join(s.objectives)}, engine {engine}")
