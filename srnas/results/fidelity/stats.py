"""Rank statistics of a fidelity study: Kendall tau-b over chosen pairs, percentile bootstrap
intervals (architectures resampled), paired bootstrap differences between two designs, and the
pair masks the study uses (parameter bands, groups such as "same bicubic skip").

A design's score may come from several training seeds: it is then a list of score vectors and
its tau is the mean over them of each vector's tau (the tau one training seed gets, averaged),
so a one-seed design is reported by the mean of its seeds' taus, not by a lucky seed.

>>> kendall_tau_b([1, 2, 3], [1, 3, 2])
0.3333333333333333
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

#: Two architectures are in one parameter band when their counts differ by at most this fraction.
BAND_TOLERANCE = 0.10
#: Bootstrap resamples for the 95% intervals.
BOOTSTRAP = 2000
#: Pair entries (resamples x n x n) `tau_samples` holds at once.
_CHUNK = 1_000_000

Scores = Sequence[float] | Sequence[Sequence[float]]


def _signs(values: np.ndarray) -> np.ndarray:
    return np.sign(values[:, None] - values[None, :])


def band_pairs(params: Sequence[float], tolerance: float = BAND_TOLERANCE) -> np.ndarray:
    """``n x n`` mask of the pairs whose parameter counts differ by at most ``tolerance``
    (larger / smaller <= 1 + tolerance); the diagonal is False."""
    p = np.asarray(params, dtype=float)
    hi, lo = np.maximum(p[:, None], p[None, :]), np.minimum(p[:, None], p[None, :])
    mask = hi <= lo * (1 + tolerance) + 1e-9
    np.fill_diagonal(mask, False)
    return mask


def group_pairs(labels: Sequence[Any]) -> np.ndarray:
    """``n x n`` mask of the pairs with equal labels (e.g. both with the bicubic skip, or both
    without); the diagonal is False."""
    lab = np.asarray([str(v) for v in labels])
    mask = lab[:, None] == lab[None, :]
    np.fill_diagonal(mask, False)
    return mask


def kendall_tau_b(x: "Sequence[float] | np.ndarray", y: "Sequence[float] | np.ndarray",
                  pairs: np.ndarray | None = None) -> float | None:
    """Kendall tau-b of ``x`` vs ``y``, over every pair or only the pairs ``pairs`` marks
    (an ``n x n`` boolean mask); None where undefined (no pair untied in ``x`` or in ``y``)."""
    sx, sy = _signs(np.asarray(x, dtype=float)), _signs(np.asarray(y, dtype=float))
    mask = np.triu(np.ones_like(sx, dtype=bool), 1) if pairs is None else np.triu(pairs, 1)
    return _tau(sx[mask], sy[mask])


def _tau(bx: np.ndarray, by: np.ndarray) -> float | None:
    denom = math.sqrt(float(np.abs(bx).sum()) * float(np.abs(by).sum()))
    return float((bx * by).sum() / denom) if denom > 0 else None


def _vectors(scores: Scores) -> list[np.ndarray]:
    """One score vector, or one per training seed."""
    arr = np.asarray(scores, dtype=float)
    return [arr] if arr.ndim == 1 else list(arr)


def mean_tau(scores: Scores, y: Sequence[float], pairs: np.ndarray | None = None) -> float | None:
    """Mean over the score vectors (seeds) of `kendall_tau_b` against ``y`` (None if undefined)."""
    taus = [kendall_tau_b(v, y, pairs) for v in _vectors(scores)]
    return None if any(t is None for t in taus) else float(np.mean(taus))  # type: ignore[arg-type]


def seed_taus(scores: Scores, y: Sequence[float], pairs: np.ndarray | None = None) -> list[float | None]:
    """`kendall_tau_b` of each score vector (seed) against ``y``."""
    return [kendall_tau_b(v, y, pairs) for v in _vectors(scores)]


def resample_indices(n: int, resamples: int = BOOTSTRAP, seed: int = 0) -> np.ndarray:
    """``resamples x n`` architecture indices drawn with replacement (shared by paired statistics)."""
    return np.random.default_rng(seed).integers(0, n, (resamples, n))


def tau_samples(scores: Scores, y: Sequence[float], idx: np.ndarray, pairs: np.ndarray | None = None) -> np.ndarray:
    """The design's tau (mean over its seeds) on each resample of ``idx``; NaN where a resample
    leaves it undefined. Pairs of an architecture with its own copy count as ties in both
    rankings (in no denominator); with ``pairs`` only the marked pairs count.

    All resamples at once (in chunks of about `_CHUNK` pair entries): the signs are -1, 0 or 1,
    so every sum is an exact integer and each tau equals `kendall_tau_b`'s on that resample."""
    signs = [_signs(v) for v in _vectors(scores)]
    sy_f = _signs(np.asarray(y, dtype=float))
    # A pair with a NaN score leaves the tau of a resample that keeps it undefined.
    nans = [np.isnan(sx) | np.isnan(sy_f) for sx in signs]
    vectors = [np.nan_to_num(sx).astype(np.int8) for sx in signs]
    sy = np.nan_to_num(sy_f).astype(np.int8)
    n = sy.shape[0]
    idx = np.asarray(idx)
    upper = np.triu(np.ones((n, n), dtype=bool), 1)
    out = np.full(len(idx), np.nan)
    step = max(1, _CHUNK // max(n * n, 1))
    for start in range(0, len(idx), step):
        ix = idx[start:start + step]
        rows, cols = ix[:, :, None], ix[:, None, :]
        keep = upper & (rows != cols)
        if pairs is not None:
            keep &= pairs[rows, cols]
        by = sy[rows, cols] * keep
        abs_y = np.abs(by).sum(axis=(1, 2), dtype=np.int64).astype(float)
        taus = np.empty((len(vectors), len(ix)))
        for j, sx in enumerate(vectors):
            bx = sx[rows, cols] * keep
            denom = np.sqrt(np.abs(bx).sum(axis=(1, 2), dtype=np.int64).astype(float) * abs_y)
            agree = (bx * by).sum(axis=(1, 2), dtype=np.int64).astype(float)
            taus[j] = np.where(denom > 0, agree / np.where(denom > 0, denom, 1.0), np.nan)
            if nans[j].any():
                taus[j][(nans[j][rows, cols] & keep).any(axis=(1, 2))] = np.nan
        defined = ~np.isnan(taus).any(axis=0)
        out[start:start + len(ix)][defined] = taus[:, defined].mean(axis=0)
    return out


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float] | None:
    """Percentile interval of the finite ``samples``; None when more than half are undefined."""
    finite = samples[np.isfinite(samples)]
    if len(finite) < len(samples) / 2 or not len(finite):
        return None
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(finite, [tail, 100 - tail])
    return float(lo), float(hi)


def bootstrap_tau(x: Scores, y: Sequence[float], params: Sequence[float] | None = None, *,
                  pairs: np.ndarray | None = None, resamples: int = BOOTSTRAP, seed: int = 0,
                  level: float = 0.95) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the tau of ``x`` (one score vector, or one per seed) vs
    ``y``, architectures resampled with replacement. With ``params`` the tau is taken over the
    pairs of one parameter band (`band_pairs`), with ``pairs`` over the pairs that mask marks.
    None when more than half of the resamples leave the statistic undefined."""
    n = len(y)
    if n < 2:
        return None
    mask = band_pairs(params) if params is not None else pairs
    return percentile_interval(tau_samples(x, y, resample_indices(n, resamples, seed), mask), level)


def paired_difference(a: Scores, b: Scores, y: Sequence[float], *, pairs: np.ndarray | None = None,
                      resamples: int = BOOTSTRAP, seed: int = 0, level: float = 0.95) -> dict[str, float | None]:
    """tau(a) - tau(b) against ``y`` with a paired percentile bootstrap interval: both designs
    are scored on the same resamples of architectures, so what they share cancels."""
    ta, tb = mean_tau(a, y, pairs), mean_tau(b, y, pairs)
    diff = None if ta is None or tb is None else ta - tb
    idx = resample_indices(len(y), resamples, seed)
    ci = percentile_interval(tau_samples(a, y, idx, pairs) - tau_samples(b, y, idx, pairs), level)
    return {"diff": diff, "lo": ci[0] if ci else None, "hi": ci[1] if ci else None}


def rank_stats(x: Scores, y: Sequence[float], params: Sequence[float], *, groups: Sequence[Any] | None = None,
               resamples: int = BOOTSTRAP, seed: int = 0) -> dict[str, Any]:
    """Kendall tau-b (mean over seeds) with its bootstrap 95% interval overall, inside parameter
    bands and, with ``groups``, over the pairs of one group (``group_tau``); the spread of the
    seeds' taus (``tau_min``, ``tau_max``); the number of band and group pairs; Spearman rho
    (of the seed-mean scores)."""
    from scipy.stats import spearmanr  # lazy: scipy.stats (0.8 s to import)

    idx = resample_indices(len(y), resamples, seed) if len(y) >= 2 else np.zeros((0, len(y)), dtype=int)
    masks: dict[str, np.ndarray | None] = {"": None, "band_": band_pairs(params)}
    if groups is not None:
        masks["group_"] = group_pairs(groups)
    out: dict[str, Any] = {"n": len(y)}
    for prefix, mask in masks.items():
        key = prefix + "tau" if prefix else "tau"
        out[key] = mean_tau(x, y, mask)
        ci = percentile_interval(tau_samples(x, y, idx, mask)) if len(idx) else None
        out[(prefix or "tau_") + "lo"] = ci[0] if ci else None
        out[(prefix or "tau_") + "hi"] = ci[1] if ci else None
        if mask is not None:
            out[prefix + "pairs"] = int(np.triu(mask, 1).sum())
    per_seed = [t for t in seed_taus(x, y) if t is not None]
    out["seeds"] = len(_vectors(x))
    out["tau_min"] = min(per_seed) if per_seed else None
    out["tau_max"] = max(per_seed) if per_seed else None
    mean_scores = np.mean(np.asarray(_vectors(x)), axis=0)
    rho = None
    if len(set(mean_scores.tolist())) > 1 and len(set(y)) > 1:
        value = float(spearmanr(mean_scores, y).statistic)
        rho = value if math.isfinite(value) else None
    out["rho"] = rho
    return out


def extrapolate_curve(curve: Sequence[Sequence[float]], to_updates: int) -> float:
    """PSNR at ``to_updates`` from ``a + b ln(update)`` fitted to the curve points at or after a
    third of the run (the last point alone when fewer than two)."""
    points = [(float(u), float(p)) for u, p in curve]
    if not points:
        raise ValueError("empty curve")
    last = points[-1][0]
    tail = [(u, p) for u, p in points if u >= last / 3]
    if len(tail) < 2:
        return points[-1][1]
    lu = np.log([u for u, _ in tail])
    b, a = np.polyfit(lu, [p for _, p in tail], 1)
    return float(a + b * math.log(to_updates))
