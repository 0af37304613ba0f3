"""Winners confirmed: the top architectures of a search trained again with fresh seeds and scored
on validation images the search did not select on.

A search picks its best trial by one training seed's score on its selection images (the
proxy's ``val_images``: coffee for the demo's ``tiny``). That maximum over noisy draws is biased
upwards (the winner's curse), and it is measured on the image it was chosen on. Confirmation
trains each of the ``top`` architectures ``seeds`` more times at the study's fidelity, with seeds
no search trial uses, and scores each run on the selection images and on the held-out images
(the rest of the validation set, at most `MAX_HELD_OUT`). The study then records for the trial of
record's architecture ``confirmed:<arch_id>`` (a finished trial cannot change): the trial's
number, the mean held-out PSNR over the fresh seeds (``psnr``, the confirmed score), its
spread (``sd``), the ``seeds`` and per-seed ``runs``, and the winner's-curse ``gap``: the trial's
own selection score minus the fresh seeds' mean on the same selection images. Every ranking of
srnas (`srnas.outcomes.results_of_record`: the summary, ``srnas studies``, the report, ``export
--top``, ``retrain --top``) puts confirmed trials first, by their confirmed score.

Each (architecture, seed) run is a unit recorded in the study as the user attribute
``confirm:<arch_id>:<seed>``, so confirmation resumes where it stopped and several workers share
it: a worker claims a unit (``confirm-claim:<arch_id>:<seed>``, with a heartbeat) under the
study's claim lock; a claim whose worker died is taken over as stale trials are
(`srnas.search.session.StaleTrials`).
"""

from __future__ import annotations

import statistics
import time
import types
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from srnas.arch.config import ArchConfig
from srnas.errors import SrnasError
from srnas.outcomes import CONFIRMED_PREFIX, arch_of, pareto_trials, results_of_record
from srnas.search.objective import load_search_data
from srnas.search.processes import StaleTrials, worker_identity
from srnas.search.trial import Heartbeat
from srnas.optuna_seams import storage_of, study_id_of, trial_id_of

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from srnas.search.session import Session

#: Seeds of confirmation runs start here (search trials use ``seed * 100003 + trial number``).
SEED_BASE = 2_000_000_011
#: Most held-out validation images a confirmation run is scored on.
MAX_HELD_OUT = 10
RESULT_PREFIX, CLAIM_PREFIX = "confirm:", "confirm-claim:"
#: Seconds between two looks at units other workers hold.
POLL_S = 1.0


def confirm_seeds(search_seed: int | None, n: int) -> list[int]:
    """The ``n`` fresh seeds of a study's confirmation runs (the same for every worker)."""
    return [SEED_BASE + 1009 * (search_seed or 0) + j for j in range(n)]


def candidates(trials: Sequence["FrozenTrial"], top: int, extra: Sequence[int] = ()) -> list["FrozenTrial"]:
    """The ``top`` results of record by their own (selection) PSNR (of a multi-objective study,
    the Pareto set's first ``top`` by PSNR), then the results of record of trials ``extra``
    (e.g. the space's preset, to compare with)."""
    multi = any(len(t.values or ()) > 1 for t in trials if t.state.name == "COMPLETE")
    rows = pareto_trials(trials) if multi else results_of_record(trials)
    out = sorted(rows, key=lambda t: (-float(t.values[0]), t.number))[:top]
    record = {arch_of(t): t for t in results_of_record(trials)}
    for number in extra:
        match = [t for t in trials if t.number == number]
        if not match or arch_of(match[0]) not in record:
            raise SrnasError(f"trial {number} is not a COMPLETE trial with a result of record; "
                             "confirm a trained, COMPLETE trial (srnas report lists them)")
        t = record[arch_of(match[0])]
        if t not in out:
            out.append(t)
    return out


class Confirmation:
    """Runs and records the confirmation of one session's study (see the module docstring)."""

    def __init__(self, session: "Session", *, top: int, seeds: int, device: str, threads: int | None = None,
                 extra: Sequence[int] = (), log: Callable[[str], None] | None = None) -> None:
        self.session = session
        self.study = session.study
        self.top = top
        self.extra = tuple(extra)
        self.seeds = confirm_seeds(session.settings.seed, seeds)
        self.device = device
        self.threads = threads
        self.log = log or (lambda _line: None)
        self._load = lambda: load_search_data(session.settings.data, session.space.scales)
        self._data: tuple[Any, Any] | None = None
        # Claims have their own timers (StaleTrials remembers what it saw last per id).
        self._stale = StaleTrials(grace=2 * session.settings.heartbeat)

    # ---- units ----------------------------------------------------------------------------

    def units(self) -> list[tuple["FrozenTrial", str, int]]:
        """(trial of record, arch_id, seed) of every run the confirmation asks for."""
        if self.top < 1 and not self.extra:
            return []
        return [(t, arch_of(t), s) for t in candidates(self.study.get_trials(deepcopy=False), self.top, self.extra)
                for s in self.seeds]

    def _results(self) -> dict[str, Any]:
        return {k: v for k, v in self.study.user_attrs.items() if k.startswith(RESULT_PREFIX)}

    def pending(self) -> list[tuple["FrozenTrial", str, int]]:
        done = self._results()
        return [u for u in self.units() if f"{RESULT_PREFIX}{u[1]}:{u[2]}" not in done]

    def run(self) -> int:
        """Claim and train units until none is left (waiting for units other live workers
        hold); returns how many this worker trained. Records the confirmed scores at the end."""
        trained = 0
        lock = self.session.home.claim_lock
        lock.parent.mkdir(parents=True, exist_ok=True)
        while True:
            todo = self.pending()
            if not todo:
                break
            with FileLock(str(lock)):
                unit = self._claim(todo)
            if unit is None:  # every unit left is held by a live worker
                time.sleep(POLL_S)
                continue
            trial, arch, seed = unit
            key = f"{CLAIM_PREFIX}{arch}:{seed}"
            claim = {**worker_identity(), "heartbeat_at": round(time.time(), 1)}
            storage, study_id = storage_of(self.study), study_id_of(self.study)

            def beat() -> None:
                # Runs only inside this iteration's `with Heartbeat`, so the loop's current values.
                storage.set_study_user_attr(study_id, key, {**claim, "heartbeat_at": round(time.time(), 1)})  # noqa: B023

            with Heartbeat(beat, self.session.settings.heartbeat):
                result = self._train(trial, seed)
            self.study.set_user_attr(f"{RESULT_PREFIX}{arch}:{seed}", result)
            trained += 1
            self.log(f"confirmed trial {trial.number} ({arch}) seed {seed}: {result['psnr']:.3f} dB on "
                     f"{result['on']} images, {result['selection']:.3f} dB on the selection images")
        self.record()
        return trained

    def _claim(self, todo: Sequence[tuple["FrozenTrial", str, int]]) -> tuple["FrozenTrial", str, int] | None:
        """The first unit nobody holds (or whose holder is gone); claimed for this worker."""
        attrs = self.study.user_attrs
        held = [types.SimpleNamespace(_trial_id=f"{CLAIM_PREFIX}{a}:{s}", user_attrs=attrs[f"{CLAIM_PREFIX}{a}:{s}"])
                for _, a, s in todo if isinstance(attrs.get(f"{CLAIM_PREFIX}{a}:{s}"), dict)]
        stale = {trial_id_of(c) for c, _ in self._stale.find(held)}
        for trial, arch, seed in todo:
            key = f"{CLAIM_PREFIX}{arch}:{seed}"
            if key in stale or not isinstance(attrs.get(key), dict):
                self.study.set_user_attr(key, {**worker_identity(), "heartbeat_at": round(time.time(), 1)})
                return trial, arch, seed
        return None

    def _train(self, trial: "FrozenTrial", seed: int) -> dict[str, Any]:
        # lazy: torch (start-up)
        from srnas.train.evaluate import psnr_per_image
        from srnas.train.trainer import Trainer

        if self._data is None:
            self._data = self._load()
        train, val = self._data
        val_sets = val if isinstance(val, dict) else {self.session.space.scales[0]: val}
        cfg = ArchConfig.from_dict(trial.user_attrs["config"]) if isinstance(trial.user_attrs["config"], dict) \
            else ArchConfig.from_json(trial.user_attrs["config"])
        schedule = self.session.schedule
        names = next(iter(val_sets.values())).names
        selection = names[:schedule.val_images] if schedule.val_images else list(names)
        held_out = [n for n in names if n not in selection][:MAX_HELD_OUT]
        t0 = time.perf_counter()
        kwargs: dict[str, Any] = {"threads": self.threads} if self.threads else {}
        # Scored once at the end: the evaluation interval is not part of the fidelity.
        result = Trainer(cfg, train, val, schedule.replace(eval_every=schedule.updates), device=self.device,
                         seed=seed, **kwargs).fit()
        wanted = [names.index(n) for n in [*selection, *held_out]]
        scores, _ = psnr_per_image(result.model, val_sets, indices=wanted)
        sel = sum(scores[n] for n in selection) / len(selection)
        on = held_out or selection
        return {"seed": seed, "psnr": sum(scores[n] for n in on) / len(on), "selection": sel,
                "on": "held-out" if held_out else "selection", "scored": on, "selection_images": selection,
                "images": scores,
                "wall_time_s": round(time.perf_counter() - t0, 3), "worker": worker_identity()["worker"]}

    # ---- the record -----------------------------------------------------------------------

    def record(self) -> list[dict[str, Any]]:
        """Record ``confirmed:<arch_id>`` in the study for every candidate whose runs are all
        done (a finished trial cannot change); returns the records."""
        attrs = self.study.user_attrs
        out = []
        for trial in candidates(self.study.get_trials(deepcopy=False), self.top, self.extra):
            runs = [attrs.get(f"{RESULT_PREFIX}{arch_of(trial)}:{s}") for s in self.seeds]
            if any(not isinstance(r, dict) for r in runs):
                continue
            record = summarise(trial, runs)  # type: ignore[arg-type]
            key = f"{CONFIRMED_PREFIX}{arch_of(trial)}"
            if attrs.get(key) != record:
                self.study.set_user_attr(key, record)
            out.append({"arch_id": arch_of(trial), **record})
        return out


def summarise(trial: "FrozenTrial", runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The ``confirmed`` record of ``trial`` from its confirmation ``runs``."""
    scores = [float(r["psnr"]) for r in runs]
    selection = [float(r["selection"]) for r in runs]
    mean_sel = sum(selection) / len(selection)
    return {"trial": trial.number, "psnr": sum(scores) / len(scores), "sd": statistics.stdev(scores) if len(scores) > 1 else 0.0,
            "seeds": [int(r["seed"]) for r in runs], "runs": [round(s, 4) for s in scores],
            "on": runs[0]["on"], "images": list(runs[0]["scored"]),
            "selection_images": list(runs[0]["selection_images"]),
            "selection_psnr": mean_sel, "gap": float(trial.values[0]) - mean_sel}


def confirm_session(session: "Session", *, device: str | None = None, threads: int | None = None,
                    top: int | None = None, seeds: int | None = None, extra: Sequence[int] = (),
                    log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Confirm ``session``'s study with its settings' ``confirm`` and ``confirm_seeds`` (or
    ``top``/``seeds``, and the trials ``extra``); returns the confirmed records (best first)."""
    settings = session.settings
    top = settings.confirm if top is None else top
    seeds = settings.confirm_seeds if seeds is None else seeds
    if top < 1 and not extra:
        return []
    from srnas.train.device import resolve_device  # lazy: torch (start-up)

    device = device or str(resolve_device(settings.devices[0] if settings.devices else "auto"))
    runner = Confirmation(session, top=top, seeds=seeds, device=device, threads=threads, extra=extra, log=log)
    runner.run()
    return sorted(runner.record(), key=lambda r: -r["psnr"])
