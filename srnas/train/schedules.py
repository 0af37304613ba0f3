"""Training schedules: short proxy fidelities for the search, and the paper's schedule for retraining.

A schedule fixes everything that decides how a network is trained and scored: number of updates,
batch, LR patch size, Adam settings, learning-rate policy and how many validation images score
it. Two trials with equal `fidelity_id` were trained the same way and their scores compare.

>>> get_schedule("proxy-tiny").updates
300
>>> s = get_schedule("paper")
>>> s.lr_at(0), s.lr_at(200_000)
(0.0001, 5e-05)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any, TypeVar, Union

from srnas.errors import ConfigError
from srnas.registry import Registry, unknown_name

LR_POLICIES = ("step", "cosine")
LOSSES = ("l1", "l2")


_S = TypeVar("_S", bound="_Schedule")


@dataclasses.dataclass(frozen=True)
class _Schedule:
    """Fields and behaviour shared by `ProxySchedule` and `PaperSchedule`.

    ``lr_milestones`` are update counts at which the learning rate is multiplied by ``lr_gamma``
    (0.5: halved) under ``lr_policy="step"``; ``lr_policy="cosine"`` anneals from ``lr`` to
    ``lr * lr_min_factor`` over the run instead (``lr_milestones="cosine"`` is accepted as a
    shorthand). ``eval_every`` is the number of updates between validation evaluations (the
    points reported to a pruner); the last update is always evaluated. ``val_images`` limits the
    validation set (``None``: all images). ``first_rung`` is the earliest update at which a search
    may prune (None: the first evaluation point; `rungs_from` gives the evaluation point where
    pruning starts): where the proxy-fidelity study measured that the ranking carries signal
    (benchmarks/README.md, "Proxy fidelity"). Like ``eval_every`` it changes no trained weight
    nor score, so it is not part of ``fidelity_id``.
    """

    name: str
    updates: int
    batch: int = 16
    patch: int = 48
    lr: float = 1e-4
    lr_milestones: tuple[int, ...] = ()
    eval_every: int = 1000
    val_images: int | None = None
    lr_policy: str = "step"
    lr_gamma: float = 0.5
    lr_min_factor: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    loss: str = "l1"
    augment: bool = True
    first_rung: int | None = None

    kind = "schedule"

    def __post_init__(self) -> None:
        set_ = lambda field, value: object.__setattr__(self, field, value)  # noqa: E731
        where = f"schedule {self.name!r}"
        for field in ("updates", "batch", "patch", "eval_every"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < 1:
                raise ConfigError(f"{where}: {field} must be a positive integer, got {value!r}")
            set_(field, int(value))
        if self.val_images is not None:
            v = self.val_images
            if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or v < 1:
                raise ConfigError(f"{where}: val_images must be a positive integer or null, got {v!r}")
            set_("val_images", int(v))
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"{where}: lr must be a positive number, got {self.lr!r}")
        set_("lr", float(self.lr))
        milestones: Any = self.lr_milestones
        if milestones == "cosine":
            set_("lr_policy", "cosine")
            milestones = ()
        if isinstance(milestones, (int, float)):
            milestones = (milestones,)
        try:
            ms = tuple(int(m) for m in milestones)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: lr_milestones must be a list of update counts or 'cosine', got {milestones!r}") from None
        if any(m < 1 for m in ms) or list(ms) != sorted(set(ms)):
            raise ConfigError(f"{where}: lr_milestones must be increasing positive update counts, got {list(ms)}")
        set_("lr_milestones", ms)
        if self.lr_policy not in LR_POLICIES:
            raise ConfigError(f"{where}: lr_policy {self.lr_policy!r} unknown; allowed: {', '.join(LR_POLICIES)}")
        if not 0 < self.lr_gamma <= 1:
            raise ConfigError(f"{where}: lr_gamma must be in (0, 1], got {self.lr_gamma!r}")
        if not 0 <= self.lr_min_factor <= 1:
            raise ConfigError(f"{where}: lr_min_factor must be in [0, 1], got {self.lr_min_factor!r}")
        b1, b2 = (float(b) for b in self.betas)
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ConfigError(f"{where}: betas must lie in [0, 1), got {self.betas!r}")
        set_("betas", (b1, b2))
        set_("eps", float(self.eps))
        if self.loss not in LOSSES:
            raise ConfigError(f"{where}: loss {self.loss!r} unknown; allowed: {', '.join(LOSSES)}")
        if self.first_rung is not None:
            r = self.first_rung
            if isinstance(r, bool) or not isinstance(r, (int, float)) or int(r) != r or not 1 <= r <= self.updates:
                raise ConfigError(f"{where}: first_rung must be an update count in 1..{self.updates}, got {r!r}")
            set_("first_rung", int(r))

    # ---- learning rate ------------------------------------------------------------------------

    def lr_at(self, update: int) -> float:
        """Learning rate used for update number ``update`` (0-based: the first update is 0)."""
        if self.lr_policy == "cosine":
            t = min(max(update, 0), self.updates) / self.updates
            low = self.lr * self.lr_min_factor
            return low + 0.5 * (self.lr - low) * (1.0 + math.cos(math.pi * t))
        halvings = sum(1 for m in self.lr_milestones if update >= m)
        return self.lr * self.lr_gamma ** halvings

    def eval_points(self) -> list[int]:
        """Update counts after which the validation set is scored (always includes the last)."""
        points = list(range(self.eval_every, self.updates + 1, self.eval_every))
        if not points or points[-1] != self.updates:
            points.append(self.updates)
        return points

    # ---- identity and serialisation -----------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly dict, with ``kind`` and ``fidelity_id``."""
        d = dataclasses.asdict(self)
        d["lr_milestones"] = list(self.lr_milestones)
        d["betas"] = list(self.betas)
        d["kind"] = self.kind
        d["fidelity_id"] = self.fidelity_id
        return d

    @property
    def fidelity_id(self) -> str:
        """Stable id of how a network is trained and scored (the name and ``eval_every`` excluded).

        Readable prefix plus a hash of every field that changes the trained weights or the score.
        """
        d = dataclasses.asdict(self)
        for field in ("name", "eval_every", "first_rung"):
            d.pop(field)
        d["lr_milestones"] = list(self.lr_milestones)
        d["betas"] = list(self.betas)
        digest = hashlib.sha256(json.dumps(d, sort_keys=True).encode("utf-8")).hexdigest()[:8]
        return f"u{self.updates}-b{self.batch}-p{self.patch}-lr{self.lr:g}-{self.lr_policy}-{digest}"

    def replace(self: _S, **changes: Any) -> _S:
        """A copy with some fields changed (re-validated)."""
        return dataclasses.replace(self, **changes)

    def lengthened(self: _S, factor: int) -> _S:
        """The schedule trained ``factor`` times longer: updates, lr milestones and evaluation
        interval scaled; named ``NAME*F`` (its ``fidelity_id`` changes too)."""
        if factor == 1:
            return self
        return dataclasses.replace(self, name=f"{self.name}*{factor}", updates=self.updates * factor,
                                   lr_milestones=tuple(m * factor for m in self.lr_milestones),
                                   eval_every=self.eval_every * factor,
                                   first_rung=None if self.first_rung is None else self.first_rung * factor)

    def shortened(self: _S, max_updates: int) -> _S:
        """The same schedule cut to at most ``max_updates`` updates (smoke runs, benchmarks).

        Milestones past the end are dropped and ``eval_every`` is clipped so that the short run
        still evaluates; the name gets a ``@N`` suffix so that results are never mistaken for
        the full schedule's (the ``fidelity_id`` changes too).
        """
        if max_updates >= self.updates:
            return self
        short = dataclasses.replace(self, name=f"{self.name}@{max_updates}", updates=max_updates,
                                    lr_milestones=tuple(m for m in self.lr_milestones if m < max_updates),
                                    eval_every=min(self.eval_every, max_updates), first_rung=None)
        # The measured rung holds for the full schedule; a cut one keeps it while it ends later.
        if self.first_rung is not None and self.first_rung < max_updates:
            short = dataclasses.replace(short, first_rung=self.first_rung)
        return short

    def rungs_from(self) -> int:
        """The first evaluation point at which a pruner may stop a run: the first at or after
        ``first_rung`` (without one, the first evaluation point)."""
        points = self.eval_points()
        if self.first_rung is None:
            return points[0]
        return next(p for p in points if p >= self.first_rung)


@dataclasses.dataclass(frozen=True)
class ProxySchedule(_Schedule):
    """A short training run that scores a candidate during the search (a "fidelity").

    >>> ProxySchedule(name="mine", updates=500, batch=16, patch=24, lr=1e-3).fidelity_id.startswith("u500-")
    True
    """

    patch: int = 24
    lr: float = 2e-3
    eval_every: int = 100

    kind = "proxy"


@dataclasses.dataclass(frozen=True)
class PaperSchedule(_Schedule):
    """The EDSR paper's schedule (docs/reference.md section 2).

    Adam (0.9, 0.999, 1e-8), lr 1e-4 halved every ``halve_every`` updates, batch 16, LR patches
    48x48, L1 loss, all 8 dihedral augmentations; an "epoch" (evaluation interval) of 1000
    updates on 10 validation images as the authors' code. x3/x4 models start from x2 weights
    (``init_from_x2``); `Trainer` does that when given ``init_weights``.
    """

    halve_every: int = 200_000
    init_from_x2: bool = True
    val_images: int | None = 10

    kind = "paper"

    def __post_init__(self) -> None:
        if isinstance(self.halve_every, bool) or int(self.halve_every) < 1:
            raise ConfigError(f"schedule {self.name!r}: halve_every must be a positive integer, got {self.halve_every!r}")
        object.__setattr__(self, "halve_every", int(self.halve_every))
        if not self.lr_milestones and self.lr_policy == "step":
            object.__setattr__(self, "lr_milestones", tuple(range(self.halve_every, int(self.updates), self.halve_every)))
        super().__post_init__()


Schedule = Union[ProxySchedule, PaperSchedule]

#: The two 300-update CPU proxies compared in benchmarks/README.md ("Proxy fidelity").
#: ``tiny-step`` keeps the first ``tiny``'s definition (and fidelity id): studies recorded with it
#: compare with it. ``tiny-cosine`` has the same budget with the lr annealed to zero, scored on
#: the first validation image: the design the fidelity study chose for the ``tiny`` space.
_TINY_STEP = ProxySchedule(name="tiny-step", updates=300, batch=16, patch=24, lr=2e-3,
                           lr_milestones=(200,), eval_every=50, val_images=4)
#: The fidelity study (benchmarks/README.md, "Proxy fidelity") measured the ranking at update 50
#: as not distinguishable from the final one for both 300-update designs, in both CPU spaces,
#: overall and within skip groups: pruning may start there.
_TINY_COSINE = ProxySchedule(name="tiny-cosine", updates=300, batch=16, patch=24, lr=2e-3,
                             lr_policy="cosine", lr_min_factor=0.0, eval_every=50, val_images=1, first_rung=50)

#: Named proxy fidelities. ``tiny`` is ``tiny-step`` scored on the first validation image (the
#: selection image) with pruning from update 50: the design the fidelity study chose for the
#: ``tiny-wide`` space (benchmarks/README.md, "Proxy fidelity"; ``tiny-cosine`` ranked the same
#: within the interval, and the rule takes the cheaper). With the bicubic global skip it leaves the
#: better demo candidates above bicubic in seconds (docs/reference.md section 6). ``short`` and
#: ``medium`` are meant for a GPU.
PROXY_FIDELITIES: Registry[ProxySchedule] = Registry("proxy fidelity", {
    "tiny": dataclasses.replace(_TINY_STEP, name="tiny", val_images=1, first_rung=50),
    "tiny-step": _TINY_STEP,
    "tiny-cosine": _TINY_COSINE,
    "short": ProxySchedule(name="short", updates=2000, batch=16, patch=32, lr=1e-3,
                           lr_milestones=(1200, 1600), eval_every=250, val_images=5),
    "medium": ProxySchedule(name="medium", updates=10_000, batch=16, patch=48, lr=5e-4,
                            lr_milestones=(6000, 8000), eval_every=1000, val_images=10),
})

#: The paper's schedules: the authors' code (3e5 updates) and the paper's final models (1e6).
PAPER_SCHEDULES: Registry[PaperSchedule] = Registry("schedule", {
    "paper": PaperSchedule(name="paper", updates=300_000),
    "paper-long": PaperSchedule(name="paper-long", updates=1_000_000),
})


def schedule_names() -> list[str]:
    """Every name `get_schedule` accepts (aliases ``tiny`` = ``proxy-tiny`` included)."""
    return [*PAPER_SCHEDULES, *(f"proxy-{k}" for k in PROXY_FIDELITIES), *PROXY_FIDELITIES]


def get_schedule(name: "str | Schedule") -> "Schedule":
    """A schedule by name: ``paper``, ``paper-long``, ``proxy-<fidelity>`` or the bare fidelity;
    ``NAME*F`` trains F times longer (`lengthened`), ``NAME@N`` is cut to N updates
    (`shortened`, for smoke runs); ``NAME*F@N`` combines both.

    A schedule object is returned unchanged.

    >>> get_schedule("proxy-tiny@20").name, get_schedule("tiny@20").updates
    ('tiny@20', 20)
    """
    if isinstance(name, _Schedule):
        return name
    if not isinstance(name, str):
        raise unknown_name("schedule", name, schedule_names())
    base, sep, count = name.partition("@")
    if sep:
        if not count.strip().isdigit() or int(count) < 1:
            raise ConfigError(f"schedule {name!r}: expected NAME@UPDATES with a positive integer, e.g. tiny@100")
        return get_schedule(base).shortened(int(count))
    base, star, factor = name.partition("*")
    if star:
        if not factor.strip().isdigit() or int(factor) < 1:
            raise ConfigError(f"schedule {name!r}: expected NAME*FACTOR with a positive integer, e.g. tiny*10")
        return get_schedule(base).lengthened(int(factor))
    key = name.strip().lower().replace("_", "-")
    if key in PAPER_SCHEDULES:
        return PAPER_SCHEDULES[key]
    key = key.removeprefix("proxy-")
    if key in PROXY_FIDELITIES:
        return PROXY_FIDELITIES[key]
    raise unknown_name("schedule", name, schedule_names())


def schedule_from_dict(data: Mapping[str, Any]) -> "Schedule":
    """Inverse of ``to_dict`` (``kind`` picks the class; ``fidelity_id`` is recomputed)."""
    d = dict(data)
    kind = d.pop("kind", "proxy")
    d.pop("fidelity_id", None)
    cls = {"proxy": ProxySchedule, "paper": PaperSchedule}.get(kind)
    if cls is None:
        raise ConfigError(f"schedule: unknown kind {kind!r}; allowed: proxy, paper")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"schedule: unknown key {unknown[0]!r}; allowed keys: {', '.join(sorted(known))}")
    for field in ("lr_milestones", "betas"):
        if isinstance(d.get(field), list):
            d[field] = tuple(d[field])
    return cls(**d)
