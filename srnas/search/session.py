"""One search session, the same under every engine.

A `Session` resolves the settings once (the space with its constraints, the proxy schedule,
the study name and home), creates or resumes the study and checks that a resumed one searched
the same thing, enqueues the space's presets, keeps the budget accounting and fails trials
whose worker died. Engines (`srnas.search.engines`) receive a session and run it to its budget.

Budget accounting (`srnas.outcomes`): a trial counts once it trained an architecture to COMPLETE,
or PRUNED by the pruner. Configs that violate the space's constraints are recorded COMPLETE with
the user attribute ``infeasible`` and their constraint values (never trained), repeats FAIL with
``reused_from``: neither counts, nor do FAILED ones (a killed worker's trial is failed and
retried). A study that a development version before 0.1.0 wrote is refused in one line
(`Session.changes_from`).

Stale trials (`srnas.search.processes.StaleTrials`): a RUNNING trial whose worker is gone is
failed and retried by the next worker that looks (`Session.fail_stale`), on every storage.

Creation (`Session.create`): every check that can fail without a study (name, devices,
constraints against the space's smallest config, memory, data) runs first; then creators are
serialised (a lock file in the study folder, and `srnas.storages.storage_lock` on shared
storages), so two commands starting the same new study both succeed and enqueue the space's
presets once.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from srnas._version import __version__
from srnas.errors import ConfigError, SrnasError
from srnas.outcomes import Counts, study_counts
from srnas.search.memory import memory_shortfall, training_bytes
from srnas.search.ntire import check_ntire_space, ensure_baseline, ntire_settings
from srnas.search.objective import Objective, check_data
from srnas.search.processes import StaleTrials, worker_identity
from srnas.search.settings import OBJECTIVES, SearchSettings
from srnas.search.trial import TrialRunner, fail_and_retry
from srnas.arch.cost import CONSTRAINTS, ConfigCosts
from srnas.space.search_space import SearchSpace, canonical_changes
from srnas.artifacts import ARTIFACTS_ATTR, artifact_location, check_artifact_store, normalize_artifact_location
from srnas.studies import StudyError, StudyHome
from srnas.storages import refuse_network_sqlite, storage_errors, storage_lock
from srnas.train.schedules import PROXY_FIDELITIES, ProxySchedule, Schedule, get_schedule
from srnas.optuna_seams import storage_of

if TYPE_CHECKING:
    import optuna
    from rich.console import Console

    from srnas.arch.config import ArchConfig

#: Stop when this many infeasible configs were drawn per finished trial (constraints too tight).
MAX_INFEASIBLE_PER_BUDGET = 20


class Engine(Protocol):
    """A search engine: checks its own options, then runs a session until its budget is met."""

    name: ClassVar[str]

    def validate(self, settings: SearchSettings) -> SearchSettings:
        """``settings`` with engine defaults resolved (``workers="auto"``), or `ConfigError`."""
        ...

    def run(self, session: "Session", *, console: "Console", progress: bool) -> None: ...


def load_space(settings: SearchSettings) -> SearchSpace:
    """The settings' space with the command line's constraints added."""
    space = SearchSpace.load(settings.space)
    return space.constrained(max_params=settings.max_params, max_mult_adds=settings.max_mult_adds,
                             max_activation_mb=settings.max_activation_mb)


#: How each constraint's quantity is named in messages.
_CONSTRAINT_UNITS = {"max_params": "parameters", "max_mult_adds": "Mult-Adds", "max_activation_mb": "MB of activations"}


def _cost_of(cfg: ArchConfig, *, quantity: str) -> float:
    return float(getattr(ConfigCosts.of(cfg), quantity))


def check_constraints_reachable(space: SearchSpace, settings: SearchSettings) -> None:
    """`ConfigError` when a constraint is below the space's smallest config (no config could
    satisfy it: the search would only draw infeasible configs)."""
    given = {"max_params": settings.max_params, "max_mult_adds": settings.max_mult_adds,
             "max_activation_mb": settings.max_activation_mb}
    for key, limit in space.constraints.items():
        quantity = CONSTRAINTS[key]
        smallest = space.cheapest(functools.partial(_cost_of, quantity=quantity))
        least = float(getattr(ConfigCosts.of(smallest), quantity))
        if least <= limit:
            continue
        unit = _CONSTRAINT_UNITS[key]
        fmt = f"{least:,.1f}" if key == "max_activation_mb" else f"{least:,.0f}"
        asked = given[key]
        where = (f"--{key.replace('_', '-')} {asked:g}" if asked is not None and float(asked) == limit
                 else f"{space.source}: constraints.{key} {limit:g}")
        raise ConfigError(f"{where} is below the smallest config of space {space.name!r} ({fmt} {unit}: "
                          f"{smallest.describe()}): no config can satisfy it; use at least {fmt}")


def check_devices(settings: SearchSettings) -> list[Any]:
    """The settings' devices resolved (one per worker), or `ConfigError` naming ``--devices``."""
    from srnas.train.device import resolve_device  # lazy: torch (start-up)

    workers = settings.workers if isinstance(settings.workers, int) else 1
    resolved = {}
    for name in dict.fromkeys(settings.devices):
        try:
            resolved[name] = resolve_device(name)
        except ConfigError as exc:
            raise ConfigError(f"--devices {','.join(settings.devices)}: {exc}") from None
    return [resolved[settings.devices[i % len(settings.devices)]] for i in range(workers)]


def check_memory(space: SearchSpace, schedule: ProxySchedule, devices: list[Any]) -> None:
    """`ConfigError` when even the space's smallest config cannot train on a worker's device
    (its memory shared by the workers on it), before anything is built."""
    smallest = space.cheapest(lambda c: training_bytes(c, batch=schedule.batch, patch=schedule.patch))
    for device in dict.fromkeys(devices):
        share = sum(1 for d in devices if d == device)
        short = memory_shortfall(smallest, batch=schedule.batch, patch=schedule.patch, device=device, share=share,
                                 now=False)
        if short is not None:
            raise ConfigError(f"space {space.name!r}: even its smallest config ({smallest.describe()}, "
                              f"{ConfigCosts.of(smallest).params:,} parameters) cannot train with proxy "
                              f"{schedule.name}: {short}; use a smaller space, fewer workers or another device")


def resolve_proxy(settings: SearchSettings, space: SearchSpace) -> ProxySchedule:
    """The proxy schedule: ``--proxy``, else the space's default, else ``tiny``."""
    name = settings.proxy or space.proxy or "tiny"
    schedule: Schedule = get_schedule(name)
    if not isinstance(schedule, ProxySchedule):
        raise SrnasError(f"--proxy {name!r} is a full training schedule; a search needs a proxy fidelity "
                         f"({', '.join(PROXY_FIDELITIES)}, NAME@N, NAME*F)")
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
        self.space_size = space.size()
        self.stale = StaleTrials(grace=2 * settings.heartbeat)

    @property
    def name(self) -> str:
        return self.home.name

    # ---- construction ---------------------------------------------------------------------

    @classmethod
    def create(cls, settings: SearchSettings, *, run: Mapping[str, Any] | None = None) -> "Session":
        """Create or resume the study (checking that a resumed one searched the same thing)
        and enqueue the space's presets once. Everything that can fail without a study (name,
        devices, constraints, memory, data, the artifact store) fails before one is touched;
        creators of one study are serialised, so concurrent commands both succeed.

        ``run``: the settings as asked for (a run file's keys, `SearchSettings.run_options`),
        recorded in the study as ``run_settings`` (default: ``settings``'s own)."""
        if settings.artifacts is not None:
            location = normalize_artifact_location(settings.artifacts)
            settings = dataclasses.replace(settings, artifacts=location)
            check_artifact_store(location)
        space = load_space(settings)
        schedule = resolve_proxy(settings, space)
        home = StudyHome(settings.resolved_study(space.name), settings.root_path())
        check_constraints_reachable(space, settings)
        if "ntire" in settings.objectives:
            check_ntire_space(space)
        devices = check_devices(settings)
        check_memory(space, schedule, devices)
        check_data(settings.data, space.scales)
        refuse_network_sqlite(settings.storage or home.default_storage_url)
        directions = [OBJECTIVES[o].direction for o in settings.objectives]
        with home.creating(settings.storage):
            storage = home.storage(settings.storage)
            with storage_errors(storage), storage_lock(storage, home.name):
                study = cls._create_study(home, storage, directions)
                session = cls(settings, space, schedule, home, study)
                session._check_or_record_identity(directions)
                session._check_or_record_artifacts()
                session._record_run(run if run is not None else settings.run_options())
                for label, params in space.preset_assignments():
                    study.enqueue_trial(params, user_attrs={"preset": label}, skip_if_exists=True)
        if "ntire" in settings.objectives:  # before any worker starts: every trial needs its floor
            ensure_baseline(study, settings, space, schedule, device=str(devices[0]))
        return session

    @staticmethod
    def _create_study(home: StudyHome, storage: Any, directions: list[Any]) -> "optuna.Study":
        import optuna  # lazy: optuna (start-up)

        try:
            return optuna.create_study(study_name=home.name, storage=storage, directions=directions,
                                       load_if_exists=True)
        except Exception as exc:
            raise StudyError(f"study {home.name!r}: cannot create or open "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None

    @classmethod
    def attach(cls, settings: SearchSettings) -> "Session":
        """Open the existing study of ``settings`` (named in it), as a worker or ``srnas
        confirm`` does; one clear line when it does not exist. Engines set the study's sampler
        and pruner they need."""
        space = load_space(settings)
        schedule = resolve_proxy(settings, space)
        home = StudyHome(settings.resolved_study(space.name), settings.root_path())
        study = home.load(settings.storage)
        with storage_errors(storage_of(study)):
            study.user_attrs  # noqa: B018  (a broken storage fails here, with one line)
        return cls(settings, space, schedule, home, study)

    def identity(self) -> dict[str, Any]:
        """What gives a study's results their meaning: a resume must not change it."""
        mine = {"space": self.space.name, "space_canonical": self.space.canonical(),
                "objectives": list(self.settings.objectives), "proxy": self.schedule.name,
                "fidelity": self.schedule.fidelity_id, "data": self.settings.data}
        if "ntire" in self.settings.objectives:
            mine["ntire"] = ntire_settings(self.settings)
        return mine

    def changes_from(self, known: dict[str, Any]) -> list[str]:
        """How this session differs from what a study recorded (empty: it resumes the same search).
        `StudyError` for a study that a development version before srnas 0.1.0 wrote (it lacks
        part of the identity every release records): no release can read such a study."""
        mine = self.identity()
        missing = [key for key in mine if key not in known]
        if missing:
            raise StudyError(f"study {self.name!r} was written by a development version of srnas before 0.1.0 "
                             f"(it lacks {', '.join(missing)}): this srnas cannot resume it; pass --study NEW "
                             "(study= in Python) for a new study")
        out: list[str] = []
        if known["space"] != mine["space"]:
            out.append(f"space {known['space']} (now {mine['space']})")
        out += canonical_changes(known["space_canonical"], mine["space_canonical"])
        if known["objectives"] != mine["objectives"]:
            out.append(f"objectives {','.join(known['objectives'] or [])} (now {','.join(mine['objectives'])})")
        if known["fidelity"] != mine["fidelity"]:
            was = known["proxy"]
            if was == mine["proxy"]:  # same name, another definition: name the fields that changed
                before: dict[str, Any] = known["schedule"]
                now = self.schedule.to_dict()
                fields = [f"{k} {before[k]} -> {now[k]}" for k in now
                          if k not in ("name", "fidelity_id", "eval_every", "first_rung") and k in before and before[k] != now[k]]
                out.append(f"proxy {was} is defined differently now ({', '.join(fields)})" if fields else
                           f"proxy {was} with fidelity {known['fidelity']} (now {mine['fidelity']})")
            else:
                out.append(f"proxy {was} (now {mine['proxy']})")
        if known["data"] != mine["data"]:
            out.append(f"data {known['data']} (now {mine['data']})")
        if "ntire" in mine and known["ntire"] != mine["ntire"]:
            out += [f"--ntire-{k} {known['ntire'].get(k)} (now {v})" for k, v in mine["ntire"].items()
                    if known["ntire"].get(k) != v]
        return out

    def _check_or_record_identity(self, directions: list[str]) -> None:
        study, name = self.study, self.name
        known = study.user_attrs
        if known.get("srnas"):
            changes = self.changes_from(known)
            if changes:
                raise StudyError(f"study {name!r} was searched with another setup: {'; '.join(changes)}; "
                                 "resume with the same space and settings, or pass --study NEW (study= in Python) "
                                 "for a new study")
            return
        if [d.name.lower() for d in study.directions] != directions:
            raise StudyError(f"study {name!r} exists with other objectives; pass --study NEW (study= in Python)")
        for key, value in self.identity().items():
            study.set_user_attr(key, value)
        study.set_user_attr("protocol", None)
        study.set_user_attr("scales", list(self.space.scales))
        study.set_user_attr("schedule", self.schedule.to_dict())
        study.set_user_attr("space_file", str(self.space.source))
        study.set_user_attr("srnas", 1)
        study.set_metric_names([OBJECTIVES[o].metric for o in self.settings.objectives])

    def _check_or_record_artifacts(self) -> None:
        """Record ``--artifacts`` in a study that has none yet (so that every worker, the report
        and the dashboard use it); refuse another store than the one whose images it holds."""
        given, recorded = self.settings.artifacts, self.study.user_attrs.get(ARTIFACTS_ATTR)
        if given is None or given == recorded:
            return
        if recorded:
            raise StudyError(f"study {self.name!r} keeps its artifacts in {recorded}, not {given}: drop --artifacts "
                             "(the recorded store is used), or pass --study NEW (study= in Python) for a new study")
        if any("sample_artifact" in t.user_attrs for t in self.study.get_trials(deepcopy=False)):
            raise StudyError(f"study {self.name!r} keeps its sample images in {self.home.artifacts}: --artifacts "
                             f"{given} would split them; drop --artifacts, or pass --study NEW (study= in Python) "
                             "for a new study")
        self.study.set_user_attr(ARTIFACTS_ATTR, given)

    def _record_run(self, run: Mapping[str, Any]) -> None:
        """Record the settings this command runs with (``run_settings``: what ``srnas studies
        --show`` prints and a plain resume reuses, and ``srnas worker`` runs with) and the srnas
        version that runs it (``srnas_version``: workers of another version are refused); the
        storage URL is left out (the record lives in it, and it may hold a password)."""
        self.study.set_user_attr("run_settings", {k: v for k, v in run.items() if k not in ("storage", "root")})
        self.study.set_user_attr("srnas_version", __version__)

    @property
    def artifacts(self) -> str:
        """The artifact store of this search (`srnas.artifacts.artifact_location`)."""
        return self.settings.artifacts or artifact_location(self.study.user_attrs, self.home)

    # ---- accounting ------------------------------------------------------------------------

    def counts(self) -> Counts:
        return study_counts(self.study)

    def exhausted(self, counts: Counts | None = None) -> bool:
        """Whether every config of the space was proposed (no new architecture is left)."""
        counts = counts or self.counts()
        return counts.seen >= self.space_size

    def budget_left(self, counts: Counts | None = None) -> int:
        """Distinct architectures still to train (0: budget met, or the space exhausted);
        `SrnasError` when the constraints reject nearly every sampled config."""
        counts = counts or self.counts()
        if counts.infeasible > MAX_INFEASIBLE_PER_BUDGET * max(self.settings.budget, 1):
            raise SrnasError(f"study {self.name!r}: {counts.infeasible} sampled configs violated the "
                             "constraints or did not fit the device's memory; loosen --max-params/--max-mult-adds "
                             "or the space's constraints")
        if self.exhausted(counts) or self.compute_spent(counts):
            return 0
        return max(0, self.settings.budget - counts.finished)

    def compute_spent(self, counts: Counts | None = None) -> bool:
        """Whether the trials trained ``--max-updates`` updates (running ones counted in full)."""
        limit = self.settings.max_updates
        if limit is None:
            return False
        counts = counts or self.counts()
        return counts.updates + counts.running * self.schedule.updates >= limit

    def end_note(self) -> str:
        """One line on how the search ended (budget met, space exhausted, or stopped early)."""
        c = self.counts()
        trained = (f"{c.finished} distinct architectures trained ({c.pruned} pruned), "
                   f"{c.repeats} proposals were repeats")
        if c.finished >= self.settings.budget:
            return f"budget met: {trained}"
        if self.compute_spent(c):
            return f"compute budget met ({c.updates:,} of --max-updates {self.settings.max_updates:,} updates): {trained}"
        if self.exhausted(c):
            return (f"space exhausted: all {self.space_size:,} configs of space {self.space.name!r} were proposed; "
                    f"{trained} (budget {self.settings.budget})")
        return f"stopped before the budget: {trained} of {self.settings.budget}; re-run the same command to continue"

    def already_done_note(self) -> str | None:
        """The line to print instead of searching when nothing is left to do (None: go on)."""
        counts = self.counts()
        if self.budget_left(counts) > 0:
            return None
        if (self.exhausted(counts) or self.compute_spent(counts)) and counts.finished < self.settings.budget:
            return self.end_note()
        return (f"study {self.name!r} already holds {counts.finished} distinct architectures "
                f"(budget {self.settings.budget}): nothing to do; pass --budget N with N > {counts.finished} "
                "to extend it")

    def fail_stale(self) -> list[int]:
        """Fail (and re-enqueue) the RUNNING trials whose worker is gone (`StaleTrials`);
        returns their numbers."""
        from optuna.trial import TrialState  # lazy: optuna (start-up)

        running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return [t.number for t, reason in self.stale.find(running) if fail_and_retry(self.study, t, reason)]

    # ---- trials --------------------------------------------------------------------------

    def trial_runner(self, *, device: str, engine: str, threads: int | None = None,
                     requeue: bool = False) -> TrialRunner:
        """The objective and trial runner of one worker on ``device`` (``requeue``: an
        interrupted trial is enqueued again for another worker, `TrialRunner`)."""
        ntire = None
        if "ntire" in self.settings.objectives:
            ntire = ensure_baseline(self.study, self.settings, self.space, self.schedule, device=device)
        objective = Objective(self.space, self.schedule, data=self.settings.data,
                              objectives=self.settings.objectives, device=device,
                              seed=self.settings.seed or 0, engine=engine, sample_dir=self.home.tmp,
                              threads=threads, ntire=ntire)
        return TrialRunner(self.study, self.space, objective, artifacts=self.artifacts,
                           seed=self.settings.seed, device=device, worker=worker_identity(),
                           claim_lock=self.home.claim_lock, heartbeat=self.settings.heartbeat,
                           on_wait=self.fail_stale, requeue=requeue)

    def describe(self, engine: str) -> str:
        """The header line of a search."""
        s = self.settings
        return (f"study [bold]{self.name}[/bold]: space {self.space.name} ({self.space.size():,} configs), "
                f"proxy {self.schedule.name}, objectives {','.join(s.objectives)}, engine {engine}")
