"""`SearchSettings`: what one ``srnas search`` asks for, validated, JSON-serialisable so that
worker processes receive it whole. Engine-specific options (``nni_*``) are validated by their
engine (`srnas.search.engines`); everything else here, before any study is touched."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from srnas.errors import ConfigError
from srnas.studies import HEARTBEAT_INTERVAL, check_study_name, safe_study_name
from srnas.registry import Registry, unknown_name

@dataclasses.dataclass(frozen=True)
class ObjectiveKind:
    """What a search objective is: its direction, the metric name Optuna shows, and the trial
    user attribute that holds its value (`srnas.search.objective.Objective` records it)."""

    direction: str
    metric: str
    attr: str


#: The search objectives (``--objectives psnr,NAME``). ``ntire``: the NTIRE efficient-SR
#: challenge's score against a baseline preset (`srnas.search.ntire`). A new objective is one
#: entry here, and the measurement of its attribute in `srnas.search.objective`.
OBJECTIVES: Registry[ObjectiveKind] = Registry("objective", {
    "psnr": ObjectiveKind("maximize", "PSNR (dB)", "psnr"),
    "params": ObjectiveKind("minimize", "params", "params"),
    "macs": ObjectiveKind("minimize", "Mult-Adds", "mult_adds"),
    "latency": ObjectiveKind("minimize", "latency (ms)", "latency_ms"),
    "ntire": ObjectiveKind("minimize", "NTIRE score", "ntire_score"),
}, flag="--objectives")
SAMPLERS = ("tpe", "random", "nsga2", "gp")
#: ``asha``: successive halving from the proxy's measured first rung (one bracket: the sampler
#: sees every trial); ``hyperband`` gives a sampler only the trials of a trial's own bracket.
PRUNERS = ("asha", "hyperband", "median", "none")
#: Most CPU worker processes ``--workers auto`` starts.
MAX_AUTO_CPU_WORKERS = 8


def parse_objectives(text: str | Sequence[str]) -> tuple[str, ...]:
    names = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if not names or names[0] != "psnr":
        raise ConfigError(f"--objectives must start with psnr, got {','.join(names) or 'nothing'}; "
                          f"allowed: psnr, {', '.join('psnr,' + n for n in OBJECTIVES if n != 'psnr')}")
    for n in names:
        OBJECTIVES.get(n)
    if len(set(names)) != len(names):
        raise ConfigError(f"duplicate objective in {','.join(names)}")
    return tuple(names)


@dataclasses.dataclass
class SearchSettings:
    """Everything a search and its workers need (the CLI flags of ``srnas search``).

    ``workers`` may be ``"auto"`` until the engine resolves it (`Engine.validate`). The
    defaults here are the command's defaults (the CLI shows them in ``--help``).
    """

    study: str | None = None
    space: str = "tiny"
    budget: int = 200
    data: str = "demo"
    proxy: str | None = None
    engine: str = "optuna"
    sampler: str = "tpe"
    pruner: str | None = None
    objectives: tuple[str, ...] = ("psnr",)
    storage: str | None = None
    #: The artifact store for the trials' sample images: a folder (on a shared file system) or
    #: ``s3://bucket/prefix``; None: the one the study recorded, else ``trials/<study>/artifacts``.
    artifacts: str | None = None
    #: Local worker processes, or ``"auto"`` (one per GPU, else one per CPU core up to 8).
    workers: int | str = "auto"
    devices: tuple[str, ...] = ("auto",)
    workers_per_device: int = 1
    timeout: float | None = None
    seed: int | None = None
    max_params: float | None = None
    max_mult_adds: float | None = None
    max_activation_mb: float | None = None
    #: Stop once the trials trained this many updates in all (pruned ones count the updates they
    #: ran): a compute budget beside ``budget`` (distinct architectures).
    max_updates: int | None = None
    #: Architectures confirmed at the end (trained again with fresh seeds, scored on validation
    #: images the search did not select on); 0: none.
    confirm: int = 3
    #: Fresh seeds per confirmed architecture.
    confirm_seeds: int = 2
    #: Seconds between a running trial's heartbeats; twice this is the grace period after
    #: which a RUNNING trial of another machine with a silent heartbeat is failed.
    heartbeat: float = HEARTBEAT_INTERVAL
    #: The ``ntire`` objective's baseline, ``PRESET[:WIDTH]`` (`srnas.arch.efficiency.baseline_config`).
    ntire_baseline: str = "span:28"
    #: The challenge year whose weights the ``ntire`` objective uses (2024, 2025, 2026).
    ntire_year: int = 2026
    #: dB under the baseline's proxy PSNR that a net may fall before it is infeasible (``ntire``).
    ntire_margin: float = 0.04
    nni_strategy: str = "evolution"
    nni_webui: int | None = None
    root: str | None = None

    def __post_init__(self) -> None:
        if self.study is not None:
            check_study_name(self.study)  # before anything is written, whatever the storage
        self.objectives = parse_objectives(self.objectives)
        self.devices = tuple(self.devices)
        if isinstance(self.budget, bool) or not isinstance(self.budget, int) or self.budget < 1:
            raise ConfigError(f"--budget must be a positive integer, got {self.budget!r}")
        if self.workers != "auto" and (isinstance(self.workers, bool) or not isinstance(self.workers, int)
                                       or self.workers < 1):
            raise ConfigError(f"--workers must be a positive integer or auto, got {self.workers!r}")
        k = self.workers_per_device
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"--workers-per-device must be a positive integer, got {k!r}")
        if self.sampler not in SAMPLERS:
            raise unknown_name("sampler", self.sampler, SAMPLERS, flag="--sampler")
        if self.pruner is not None and self.pruner not in PRUNERS:
            raise unknown_name("pruner", self.pruner, PRUNERS, flag="--pruner")
        if self.multi_objective and self.pruner not in (None, "none"):
            raise ConfigError("pruning is not available for multi-objective searches (Optuna raises "
                              "there); drop --pruner or use --objectives psnr")
        if isinstance(self.heartbeat, bool) or not isinstance(self.heartbeat, (int, float)) or self.heartbeat <= 0:
            raise ConfigError(f"--heartbeat must be positive seconds, got {self.heartbeat!r}")
        if self.artifacts is not None and (not isinstance(self.artifacts, str) or not self.artifacts.strip()):
            raise ConfigError(f"--artifacts must be a folder or s3://BUCKET/PREFIX, got {self.artifacts!r}")
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigError(f"--timeout must be positive seconds, got {self.timeout}")
        self._check_ntire()
        for name, value, low in (("--max-updates", self.max_updates, 1), ("--confirm", self.confirm, 0),
                                 ("--confirm-seeds", self.confirm_seeds, 1)):
            if value is None and name == "--max-updates":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                what = "a positive integer" if low else "an integer >= 0"
                raise ConfigError(f"{name} must be {what}, got {value!r}")

    def _check_ntire(self) -> None:
        from srnas.arch.efficiency import NTIRE_WEIGHTS  # lazy: keeps srnas --help off yaml (srnas.arch.config)

        if isinstance(self.ntire_year, bool) or self.ntire_year not in NTIRE_WEIGHTS:
            raise ConfigError(f"--ntire-year: unknown challenge year {self.ntire_year!r}; allowed: "
                              f"{' | '.join(map(str, NTIRE_WEIGHTS))}")
        m = self.ntire_margin
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not math.isfinite(m) or m < 0:
            raise ConfigError(f"--ntire-margin must be a number of dB >= 0, got {m!r}")
        if not isinstance(self.ntire_baseline, str) or not self.ntire_baseline.strip():
            raise ConfigError(f"--ntire-baseline must be PRESET or PRESET:WIDTH, got {self.ntire_baseline!r}")
        if "ntire" in self.objectives:
            from srnas.arch.efficiency import baseline_config  # lazy: keeps srnas --help off yaml (srnas.arch.config)

            baseline_config(self.ntire_baseline, 4)  # the name and width, one line when wrong

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def effective_pruner(self) -> str:
        if self.multi_objective:
            return "none"
        return self.pruner or "asha"

    def resolved_study(self, space_name: str) -> str:
        """``--study``, or ``<space>-<data>[-objectives]`` made a valid name."""
        if self.study is not None:
            return self.study
        data = "demo" if self.data == "demo" else Path(self.data).name or "data"
        name = f"{space_name}-{data}"
        if self.multi_objective:
            name += "-" + "-".join(self.objectives)
        return safe_study_name(name)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    def run_options(self) -> dict[str, Any]:
        """The settings as the keys of a run file (``srnas search --run FILE``: each flag's name
        with underscores), tuples as lists; ``root`` (a Python-only choice of folder) left out."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items() if k != "root"}

    @classmethod
    def from_json(cls, text: str) -> "SearchSettings":
        return cls(**json.loads(text))

    def root_path(self) -> Path | None:
        return Path(self.root) if self.root else None


def expand_devices(devices: Sequence[str]) -> tuple[str, ...]:
    """``cuda`` without an index stands for every visible GPU (``cuda:0``, ``cuda:1``, ...), so
    that workers spread over them instead of all landing on the first; others unchanged."""
    out: list[str] = []
    for d in devices:
        if str(d).strip().lower() == "cuda":
            import torch  # lazy: torch (start-up)

            if torch.cuda.is_available() and torch.cuda.device_count() > 0:
                out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
                continue
        out.append(d)
    return tuple(dict.fromkeys(out))


def auto_workers(devices: Sequence[str], per_device: int = 1) -> tuple[int, tuple[str, ...]]:
    """``--workers auto``: ``per_device`` workers per visible GPU (several small proxies share a
    GPU better than one leaves it busy), else one single-threaded worker per CPU core (up to 8):
    short proxies of small nets train ~1.4x faster in total that way than one worker using every
    core (measured on 2 cores, benchmarks/README.md). Workers cycle through the devices."""
    if tuple(devices) == ("auto",):
        import torch  # lazy: torch (start-up)

        if torch.cuda.is_available():
            n = torch.cuda.device_count()
            return n * per_device, tuple(f"cuda:{i}" for i in range(n))
        return max(1, min(MAX_AUTO_CPU_WORKERS, os.cpu_count() or 1)), ("cpu",)
    devices = expand_devices(devices)
    if all(d.startswith("cuda") for d in devices):
        return len(devices) * per_device, tuple(devices)
    return max(1, min(MAX_AUTO_CPU_WORKERS, os.cpu_count() or 1)), tuple(devices)
