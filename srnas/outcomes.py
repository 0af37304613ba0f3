"""How a study's trials are read, the same for the search (budget, summary) and the results
(report, export): what counts as a trained architecture, which trials are repeats, which
results stand for an architecture, and Pareto sets with bicubic as the reference point.

Rules
- An architecture is *trained* at the study's fidelity by a trial that is COMPLETE, or PRUNED by
  the pruner, that is not ``infeasible`` and that trained it itself (no ``reused_from``). The
  budget counts distinct trained architectures; a *repeat* (``reused_from``) is a proposal of a
  known architecture: it ends FAIL (no sampler learns from it) and counts nothing.
- An *infeasible* config (``infeasible``: a constraint or the device's memory rules it out) is
  never trained. It ends COMPLETE with its constraint values set, so that constrained samplers
  see it as infeasible; its values are placeholders that no result reads.
- A result of record is a COMPLETE, feasible trial: a net trained to the last evaluation (the
  pruner acts at intermediate rungs only).
- Results of record are ranked by their *confirmed* score where they have one (trained again
  with fresh seeds, scored on validation images the search did not select on; recorded in the
  study as ``confirmed:<arch_id>`` since a finished trial cannot change: `srnas.search.confirm`),
  ahead of the others, which are ranked by their own PSNR.
- Bicubic upsampling is a free reference point (no parameters, ~no Mult-Adds): a net that does
  not beat it is never on a Pareto set nor called best.

Optuna is imported lazily; trials are `optuna.trial.FrozenTrial` objects.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial


def arch_of(t: "FrozenTrial") -> str:
    """The trial's architecture id (its number when it recorded none)."""
    return str(t.user_attrs.get("arch_id") or f"#{t.number}")


def is_infeasible(t: "FrozenTrial") -> bool:
    return "infeasible" in t.user_attrs


def is_repeat(t: "FrozenTrial") -> bool:
    """A proposal answered with an earlier trial's result (not trained again)."""
    return "reused_from" in t.user_attrs


def is_trained(t: "FrozenTrial") -> bool:
    """COMPLETE or PRUNED by the pruner, trained by this trial itself."""
    state = t.state.name
    if state not in ("COMPLETE", "PRUNED") or is_repeat(t):
        return False
    return not is_infeasible(t)


#: Study user attribute prefix of the confirmed record of an architecture.
CONFIRMED_PREFIX = "confirmed:"


def confirmed_records(study_attrs: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """arch_id -> confirmed record, from a study's user attributes."""
    return {k[len(CONFIRMED_PREFIX):]: v for k, v in study_attrs.items()
            if k.startswith(CONFIRMED_PREFIX) and isinstance(v, dict)}


def confirmed_psnr(t: "FrozenTrial", confirmed: Mapping[str, Mapping[str, Any]] | None) -> float | None:
    """The confirmed score of a trial's architecture (mean PSNR of its fresh-seed trainings on
    held-out images), or None when it was not confirmed."""
    record = (confirmed or {}).get(arch_of(t))
    try:
        value = float(record["psnr"]) if record is not None else None
    except (KeyError, TypeError, ValueError):
        return None
    return value if value is not None and math.isfinite(value) else None


def last_step(t: "FrozenTrial") -> int | None:
    curve = t.user_attrs.get("psnr_curve") or []
    steps = [int(p[0]) for p in curve if isinstance(p, (list, tuple)) and p]
    steps += [int(s) for s in t.intermediate_values]
    return max(steps) if steps else None


@dataclasses.dataclass(frozen=True)
class Counts:
    """A study's trials by how they count.

    ``finished``: distinct architectures trained (complete or pruned: the budget); ``pruned``:
    of those, pruned by the pruner; ``repeats``: proposals answered with a known result;
    ``seen``: distinct architectures proposed (trained, repeated or infeasible);
    ``running``, ``failed``, ``infeasible``: trials in those states; ``updates``: training
    updates the trained architectures ran (a pruned one up to its last evaluation): the compute
    spent.
    """

    finished: int = 0
    running: int = 0
    failed: int = 0
    infeasible: int = 0
    pruned: int = 0
    repeats: int = 0
    seen: int = 0
    updates: int = 0


def count_trials(trials: Iterable["FrozenTrial"]) -> Counts:
    trained: dict[str, str] = {}
    seen: set[str] = set()
    running = failed = infeasible = repeats = updates = 0
    for t in trials:
        state = t.state.name
        if state == "RUNNING":
            running += 1
            continue
        if state == "FAIL" and not is_repeat(t):
            failed += 1
            continue
        if state not in ("COMPLETE", "PRUNED", "FAIL"):
            continue
        seen.add(arch_of(t))
        if is_repeat(t):
            repeats += 1
        elif is_infeasible(t):
            infeasible += 1
        elif is_trained(t) and arch_of(t) not in trained:
            trained[arch_of(t)] = state
            updates += last_step(t) or 0
    pruned = sum(1 for s in trained.values() if s == "PRUNED")
    return Counts(len(trained), running, failed, infeasible, pruned, repeats, len(seen), updates)


def study_counts(study: "optuna.Study") -> Counts:
    return count_trials(study.get_trials(deepcopy=False))


def results_of_record(trials: Iterable["FrozenTrial"],
                      confirmed: Mapping[str, Mapping[str, Any]] | None = None) -> list["FrozenTrial"]:
    """COMPLETE feasible trials with values and a config, one per architecture: those of
    ``confirmed`` architectures (`confirmed_records`) first, best confirmed PSNR first, then the
    others, best PSNR first."""
    complete = [t for t in trials if t.state.name == "COMPLETE" and t.values and "config" in t.user_attrs
                and not is_infeasible(t)]

    def rank(t: "FrozenTrial") -> tuple[bool, float, float, int]:
        score = confirmed_psnr(t, confirmed)
        return (score is None, -(score or 0.0), -float(t.values[0]), t.number)

    complete.sort(key=rank)
    seen: set[str] = set()
    out = []
    for t in complete:
        if arch_of(t) not in seen:
            seen.add(arch_of(t))
            out.append(t)
    return out


def beats_reference(t: "FrozenTrial") -> bool:
    """Whether the trial's PSNR is above bicubic on the same images (true when unknown)."""
    ref = t.user_attrs.get("bicubic_psnr")
    try:
        return ref is None or not math.isfinite(float(ref)) or float(t.values[0]) > float(ref)
    except (TypeError, ValueError):
        return True


def pareto_mask(costs: Sequence[Sequence[float]] | Sequence[float], scores: Sequence[float], *,
                reference: float | None = None) -> list[bool]:
    """Non-dominated points when every cost is minimised and the score maximised.

    A point is dominated when another is at least as good in every coordinate and better in
    one; equal points are all kept. ``reference``: the score of a free point (bicubic: zero
    cost) that dominates every point not above it.

    >>> pareto_mask([1, 2, 3, 2], [30.0, 31.0, 30.5, 30.0])
    [True, True, False, False]
    >>> pareto_mask([1, 2], [30.0, 31.0], reference=30.5)
    [False, True]
    """
    pts = [([float(c)] if isinstance(c, (int, float)) else [float(x) for x in c]) for c in costs]
    mask = []
    for i, (ci, si) in enumerate(zip(pts, scores)):
        if reference is not None and si <= reference:
            mask.append(False)
            continue
        dominated = any(all(a <= b for a, b in zip(cj, ci)) and sj >= si and
                        (any(a < b for a, b in zip(cj, ci)) or sj > si)
                        for j, (cj, sj) in enumerate(zip(pts, scores)) if j != i)
        mask.append(not dominated)
    return mask


def reference_psnr(trials: Iterable["FrozenTrial"]) -> float | None:
    """The bicubic PSNR the trials were scored against (None when none recorded it)."""
    values = []
    for t in trials:
        raw = t.user_attrs.get("bicubic_psnr")
        try:
            v = float(raw) if raw is not None else math.nan
        except (TypeError, ValueError):
            continue
        if math.isfinite(v):
            values.append(v)
    return max(values) if values else None


def pareto_trials(trials: Iterable["FrozenTrial"], *, cost_keys: Sequence[str] = ("params",)) -> list["FrozenTrial"]:
    """The Pareto set of the results of record (PSNR vs the study's cost objectives, or vs
    ``cost_keys`` user attributes for a single-objective study), bicubic as reference; best
    PSNR first."""
    rows = results_of_record(trials)
    if not rows:
        return []
    if len(rows[0].values) > 1:
        costs: list[list[float]] = [[float(v) for v in t.values[1:]] for t in rows]
    else:
        costs = [[float(t.user_attrs.get(k, math.inf)) for k in cost_keys] for t in rows]
    mask = pareto_mask(costs, [float(t.values[0]) for t in rows], reference=reference_psnr(rows))
    return [t for t, keep in zip(rows, mask) if keep]
