"""What a fidelity study concludes from its runs: every design's ranking against the reference,
paired comparisons between designs, the reference's own noise, tau at every evaluation point, and
the defaults the stated rule picks.

Selection and truth are kept apart: proxy designs are scored on the *selection* images (the
first validation images, the ones a search scores on: coffee in the demo) and the reference on
the other, *held-out* images (china and flower), as the mean over its training seeds.

Designs (one row each):

- ``proxy``: a proxy schedule trained once, scored on the selection images; its tau is the mean
  of the taus its training seeds get one by one (the spread of those taus is reported), or the
  schedule with ``S`` seeds averaged (``|sS``);
- ``extrapolation``: each seed's validation curve extrapolated to the reference length;
- ``zero-cost``: synflow and grad-norm at initialisation (`srnas.results.zero_cost`);
- ``cost``: #params, Mult-Adds with the bicubic skip's own Mult-Adds counted (as a search
  records them) and Mult-Adds of the learned layers only;
- ``indicator``: 1 for nets with the bicubic global skip, 0 without (where the skip is searched).

For each design: Kendall tau-b with a bootstrap 95% interval overall, over the pairs whose
parameter counts lie within 10% (``band``) and over the pairs with the same skip (``group``),
and tau minus the chosen design's tau with a paired bootstrap interval (``vs_chosen``).

The rule (`choose`): among the proxy designs a search can run (one training per trial), start at
the cheapest one (of designs within 10% of its CPU cost, the one with the higher tau) and move
to a costlier one only where the paired 95% interval of its tau minus the current one's lies
above 0. The first pruning rung (`first_rung`) is the earliest evaluation point of the chosen
schedule from which on no point's tau is distinguishable from the final one's (every paired
interval of tau(point) - tau(final) reaches 0, overall and within skip groups: the skip bit
alone must not be what a rung ranks by).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from srnas.arch.config import ArchConfig
from srnas.results.fidelity.stats import (
    BOOTSTRAP, band_pairs, extrapolate_curve, group_pairs, mean_tau, paired_difference, percentile_interval,
    rank_stats, resample_indices, tau_samples,
)

#: Designs within this fraction of the cheapest one's CPU seconds count as equally cheap.
COST_TIE = 0.10


@dataclasses.dataclass(frozen=True)
class Design:
    """One way to score an architecture (see the module docstring for ``kind``). ``seeds`` is 1
    for a design trained once (its tau: the mean over the study's seeds) or the number of
    training seeds averaged; ``field`` names the architecture column a cost, zero-cost or
    indicator design reads."""

    key: str
    label: str
    kind: str
    schedule: str | None = None
    seeds: int = 1
    field: str | None = None

    @property
    def searchable(self) -> bool:
        """Whether a search can use it as its trial score (one proxy training per trial)."""
        return self.kind == "proxy" and self.seeds == 1


def design_grid(proxies: Sequence[str], seeds: int, *, skip_searched: bool) -> list[Design]:
    """Each proxy trained once and (with ``seeds`` > 1) with its seeds averaged, its curve
    extrapolated, then the zero-cost scores, the cost baselines and the skip indicator."""
    out = []
    for name in proxies:
        out.append(Design(f"{name}|s1", f"{name}, 1 seed", "proxy", name, 1))
        if seeds > 1:
            out.append(Design(f"{name}|s{seeds}", f"{name}, {seeds} seeds averaged", "proxy", name, seeds))
        out.append(Design(f"{name}|extrapolated", f"{name} curve extrapolated", "extrapolation", name))
    out += [Design("synflow", "synflow (at init)", "zero-cost", field="synflow"),
            Design("grad_norm", "grad-norm (at init)", "zero-cost", field="grad_norm"),
            Design("params", "#params", "cost", field="params"),
            Design("mult_adds", "Mult-Adds (bicubic skip counted)", "cost", field="mult_adds"),
            Design("mult_adds_learned", "Mult-Adds of learned layers (skip not counted)", "cost",
                   field="mult_adds_learned")]
    if skip_searched:
        out.append(Design("skip", "has the bicubic skip (1 bit)", "indicator", field="skip"))
    return out


@dataclasses.dataclass
class ArchRecord:
    """One architecture of a variant with every run the study asks for (``proxies``: schedule
    name -> one run per training seed; ``reference``: one run per reference seed)."""

    config: ArchConfig
    arch: Mapping[str, Any]
    proxies: Mapping[str, Sequence[Mapping[str, Any]]]
    reference: Sequence[Mapping[str, Any]]


def image_mean(run: Mapping[str, Any], names: Sequence[str]) -> float:
    """A run's mean PSNR over the validation images ``names``."""
    return float(sum(run["images"][n] for n in names) / len(names))


def reference_vectors(records: Sequence[ArchRecord], held_out: Sequence[str]) -> list[list[float]]:
    """One vector per reference seed: each architecture's PSNR on the held-out images."""
    seeds = len(records[0].reference) if records else 0
    return [[image_mean(r.reference[j], held_out) for r in records] for j in range(seeds)]


def design_scores(design: Design, records: Sequence[ArchRecord], select: Sequence[str],
                  reference_updates: int) -> tuple[list[list[float]], float]:
    """(score vectors: one per seed, or one; mean CPU seconds per architecture) of ``design``."""
    if design.kind in ("cost", "zero-cost", "indicator"):
        values = [float(r.arch[design.field or ""]) for r in records]
        cpu = [float(r.arch.get(f"{design.field}_cpu_s", 0.0) or 0.0) for r in records]
        return [values], float(np.mean(cpu)) if cpu else 0.0
    runs = [r.proxies[design.schedule or ""] for r in records]
    seeds = len(runs[0]) if runs else 0

    def cost(run: Mapping[str, Any]) -> float:
        # Scoring more selection images costs their measured time at every evaluation point.
        return float(run["fit_cpu_s"]) + int(run["eval_points"]) * sum(float(run["eval_cpu_s"][n]) for n in select[1:])

    if design.kind == "extrapolation":
        vectors = [[extrapolate_curve(rs[j]["curve"], reference_updates) for rs in runs] for j in range(seeds)]
        return vectors, float(np.mean([np.mean([float(rs[j]["fit_cpu_s"]) for j in range(seeds)]) for rs in runs]))
    if design.seeds == 1:
        vectors = [[image_mean(rs[j], select) for rs in runs] for j in range(seeds)]
        return vectors, float(np.mean([np.mean([cost(rs[j]) for j in range(seeds)]) for rs in runs]))
    k = design.seeds
    vector = [float(np.mean([image_mean(rs[j], select) for j in range(k)])) for rs in runs]
    return [vector], float(np.mean([sum(cost(rs[j]) for j in range(k)) for rs in runs]))


def choose(rows: Sequence[Mapping[str, Any]], scores: Mapping[str, Any], y: Sequence[float], *,
           resamples: int = BOOTSTRAP, seed: int = 0) -> tuple[str | None, list[dict[str, Any]]]:
    """The rule of the module docstring over ``rows`` (design statistics with ``design``,
    ``searchable``, ``tau``, ``cpu_s``): the chosen design key and the steps taken."""
    eligible = sorted((r for r in rows if r["searchable"] and r["tau"] is not None), key=lambda r: r["cpu_s"])
    if not eligible:
        return None, []
    cheapest = eligible[0]["cpu_s"]
    tied = [r for r in eligible if r["cpu_s"] <= cheapest * (1 + COST_TIE)]
    current = max(tied, key=lambda r: r["tau"])
    steps: list[dict[str, Any]] = [{"design": current["design"], "why": "cheapest (highest tau among those within "
                                    f"{COST_TIE:.0%} of the cheapest CPU cost)"}]
    for row in eligible:
        if row in tied or row["cpu_s"] <= current["cpu_s"]:
            continue
        d = paired_difference(scores[row["design"]], scores[current["design"]], y, resamples=resamples, seed=seed)
        step = {"design": row["design"], "against": current["design"], **d}
        if d["lo"] is not None and d["lo"] > 0:
            step["why"] = "its paired interval against the cheaper design lies above 0"
            current = row
        else:
            step["why"] = "not preferred: its paired interval against the cheaper design holds 0"
        steps.append(step)
    return current["design"], steps


def checkpoint_taus(records: Sequence[ArchRecord], schedule: str, y: Sequence[float], groups: Sequence[Any] | None,
                    *, resamples: int = BOOTSTRAP, seed: int = 0) -> list[dict[str, Any]]:
    """Tau against the reference at every evaluation point of ``schedule``'s recorded curves
    (one training seed at a time, averaged), with its interval, within skip groups, and minus the
    final point's tau with a paired interval."""
    if not records:
        return []
    runs = [r.proxies[schedule] for r in records]
    seeds = len(runs[0])
    points = [int(u) for u, _ in runs[0][0]["curve"]]
    at = lambda u: [[_curve_at(rs[j]["curve"], u) for rs in runs] for j in range(seeds)]  # noqa: E731
    final = at(points[-1])
    idx = resample_indices(len(y), resamples, seed)
    group = group_pairs(groups) if groups is not None else None
    out = []
    for u in points:
        scores = at(u)
        row: dict[str, Any] = {"schedule": schedule, "update": u, "tau": mean_tau(scores, y)}
        ci = percentile_interval(tau_samples(scores, y, idx))
        row["tau_lo"], row["tau_hi"] = (ci[0], ci[1]) if ci else (None, None)
        if group is not None:
            row["group_tau"] = mean_tau(scores, y, group)
            gci = percentile_interval(tau_samples(scores, y, idx, group))
            row["group_lo"], row["group_hi"] = (gci[0], gci[1]) if gci else (None, None)
            gdiff = paired_difference(scores, final, y, pairs=group, resamples=resamples, seed=seed)
            row["group_vs_final"], row["group_vs_final_lo"], row["group_vs_final_hi"] = \
                gdiff["diff"], gdiff["lo"], gdiff["hi"]
        diff = paired_difference(scores, final, y, resamples=resamples, seed=seed)
        row["vs_final"], row["vs_final_lo"], row["vs_final_hi"] = diff["diff"], diff["lo"], diff["hi"]
        out.append(row)
    return out


def _curve_at(curve: Sequence[Sequence[float]], update: int) -> float:
    for u, p in curve:
        if int(u) == update:
            return float(p)
    raise KeyError(f"no evaluation at update {update}")


def first_rung(points: Sequence[Mapping[str, Any]]) -> int | None:
    """The earliest update from which on every point's paired interval against the final point
    reaches 0, overall and (where the skip is searched) within skip groups: no later point ranks
    distinguishably worse than the final one, also among nets that differ in more than the skip."""
    rung = None
    for row in reversed(points):
        his = [row["vs_final_hi"], *([row["group_vs_final_hi"]] if "group_vs_final_hi" in row else [])]
        if any(hi is None or hi < 0 for hi in his):
            break
        rung = row["update"]
    return rung


def reference_curve_taus(records: Sequence[ArchRecord], held_out: Sequence[str], *,
                         resamples: int = BOOTSTRAP, seed: int = 0) -> list[dict[str, Any]]:
    """Tau of the reference runs' own curves (on the selection image) at each of their evaluation
    points against the held-out score of the *other* reference seeds: what longer training of
    the proxy's kind would buy, free of the seed the reference shares with itself."""
    if not records or len(records[0].reference) < 2:
        return []
    ref = reference_vectors(records, held_out)
    seeds = len(ref)
    points = sorted({int(u) for u, _ in records[0].reference[0]["curve"]})
    if len(points) < 2:
        return []
    idx = resample_indices(len(records), resamples, seed)
    out = []
    for u in points:
        try:
            curves = [[_curve_at(r.reference[j]["curve"], u) for r in records] for j in range(seeds)]
        except KeyError:
            continue
        per_seed, samples = [], []
        for j in range(seeds):
            others = np.mean([ref[k] for k in range(seeds) if k != j], axis=0)
            per_seed.append(mean_tau(curves[j], others))
            samples.append(tau_samples(curves[j], others, idx))
        ci = percentile_interval(np.mean(samples, axis=0))
        out.append({"update": u, "tau": None if None in per_seed else float(np.mean(per_seed)),  # type: ignore[arg-type]
                    "tau_lo": ci[0] if ci else None, "tau_hi": ci[1] if ci else None})
    return out


def noise_ceiling(ref: Sequence[Sequence[float]], params: Sequence[float], groups: Sequence[Any] | None, *,
                  resamples: int = BOOTSTRAP, seed: int = 0) -> dict[str, Any] | None:
    """Tau of one reference seed against another (mean over seed pairs, with a bootstrap
    interval), overall, inside bands and within skip groups: how far the reference agrees with
    itself, the ceiling of any design's tau against one reference seed."""
    if len(ref) < 2:
        return None
    pairs = list(itertools.combinations(range(len(ref)), 2))
    idx = resample_indices(len(ref[0]), resamples, seed)
    masks: dict[str, np.ndarray | None] = {"tau": None, "band_tau": band_pairs(params)}
    if groups is not None:
        masks["group_tau"] = group_pairs(groups)
    out: dict[str, Any] = {"seed_pairs": len(pairs)}
    for key, mask in masks.items():
        taus = [mean_tau(ref[a], ref[b], mask) for a, b in pairs]
        out[key] = None if None in taus else float(np.mean(taus))  # type: ignore[arg-type]
        ci = percentile_interval(np.mean([tau_samples(ref[a], ref[b], idx, mask) for a, b in pairs], axis=0))
        prefix = key.removesuffix("tau")
        out[(prefix or "tau_") + "lo"] = ci[0] if ci else None
        out[(prefix or "tau_") + "hi"] = ci[1] if ci else None
    return out


def analyse(label: str, records: Sequence[ArchRecord], designs: Sequence[Design], *, select: Sequence[str],
            held_out: Sequence[str], reference_updates: int, skip_searched: bool, resamples: int = BOOTSTRAP,
            seed: int = 0) -> dict[str, Any]:
    """Everything one variant's tables show: ``designs`` (statistics per design), ``chosen`` and
    the rule's ``steps``, ``checkpoints`` (tau per evaluation point of every proxy schedule),
    ``first_rung`` (of the chosen schedule) and ``first_rungs`` (of every proxy schedule),
    ``reference_curve``, ``noise_ceiling`` and ``table``
    (one row per architecture with every design's score)."""
    n = len(records)
    ref = reference_vectors(records, held_out)
    y = list(np.mean(ref, axis=0)) if ref else []
    params = [float(r.arch["params"]) for r in records]
    groups = [r.config.global_skip for r in records] if skip_searched else None
    scores: dict[str, list[list[float]]] = {}
    rows: list[dict[str, Any]] = []
    for i, d in enumerate(designs):
        if n < 3:
            rows.append({"variant": label, "design": d.key, "label": d.label, "kind": d.kind,
                         "searchable": d.searchable, "n": n, "tau": None, "cpu_s": 0.0})
            continue
        vectors, cpu = design_scores(d, records, select, reference_updates)
        scores[d.key] = vectors
        stats = rank_stats(vectors, y, params, groups=groups, resamples=resamples, seed=seed + i)
        rows.append({"variant": label, "design": d.key, "label": d.label, "kind": d.kind, "searchable": d.searchable,
                     **stats, "cpu_s": round(cpu, 3)})
    chosen, steps = choose(rows, scores, y, resamples=resamples, seed=seed) if n >= 3 else (None, [])
    for row in rows:
        if chosen is not None and row["design"] in scores:
            diff = paired_difference(scores[row["design"]], scores[chosen], y, resamples=resamples, seed=seed)
            row["vs_chosen"], row["vs_chosen_lo"], row["vs_chosen_hi"] = diff["diff"], diff["lo"], diff["hi"]
    checkpoints: list[dict[str, Any]] = []
    if n >= 3:
        for name in dict.fromkeys(d.schedule for d in designs if d.kind == "proxy"):
            checkpoints += checkpoint_taus(records, name or "", y, groups, resamples=resamples, seed=seed)
    chosen_schedule = next((d.schedule for d in designs if d.key == chosen), None)
    rungs = {name: first_rung([c for c in checkpoints if c["schedule"] == name])
             for name in dict.fromkeys(c["schedule"] for c in checkpoints)}
    rung = rungs.get(chosen_schedule) if chosen_schedule else None
    table = []
    for j, r in enumerate(records):
        row = {"variant": label, "arch_id": r.config.arch_id, "describe": r.config.describe(),
               "params": int(r.arch["params"]), "global_skip": r.config.global_skip, "reference_psnr": y[j] if y else None}
        for s, vec in enumerate(ref):
            row[f"reference_seed{s}"] = vec[j]
        for key, vectors in scores.items():
            row[key] = float(np.mean([v[j] for v in vectors]))
        table.append(row)
    return {"variant": label, "n": n, "designs": rows, "chosen": chosen, "steps": steps, "checkpoints": checkpoints,
            "first_rung": rung, "first_rungs": rungs, "chosen_schedule": chosen_schedule,
            "reference_curve": reference_curve_taus(records, held_out, resamples=resamples, seed=seed) if n >= 3 else [],
            "noise_ceiling": noise_ceiling(ref, params, groups, resamples=resamples, seed=seed) if n >= 3 else None,
            "table": table}
