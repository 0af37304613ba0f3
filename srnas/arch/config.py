"""`ArchConfig`: the typed, frozen, validated description of one EDSR-, MDSR- or efficient-family network."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from srnas.arch.registry import BLOCKS, DEFAULT_BLOCK
from srnas.errors import ConfigError
from srnas.yamlio import load_yaml_with_lines, read_config_text

FAMILIES = ("edsr", "mdsr", "efficient")
#: How an ``efficient`` net joins its blocks' features before the upsampler
#: (`srnas.arch.networks.EfficientSR`): named after the nets that do it so.
TRUNKS = ("imdn", "rlfn", "span")
SCALES = (2, 3, 4, 8)
#: Odd kernels; 9-13 are the large-kernel option of depthwise block types (``bsconv``).
KERNEL_SIZES = (1, 3, 5, 7, 9, 11, 13)
ACTIVATIONS = ("relu", "lrelu", "silu", "gelu")
GLOBAL_SKIPS = ("none", "bicubic")
N_COLORS = (1, 3)
MAX_RESBLOCKS = 256
MAX_FEATS = 1024
MAX_HEAD_BLOCKS = 8


def _fail(field: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"ArchConfig.{field}: invalid value {value!r}; allowed: {allowed}")


def _as_int(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise _fail(field, value, "an integer")
    return int(value)


@dataclasses.dataclass(frozen=True)
class ArchConfig:
    """One network of the EDSR/MDSR family.

    ``kernel_sizes`` may be given as one int (every residual block) or one int per block;
    ``block`` likewise one block-type name or one per block (`srnas.arch.registry.block_names`:
    ``res`` EDSR's block, the default, ``rcab``, ``dwsep``, and the efficient-SR types of
    `srnas.arch.efficient_blocks`). Both are stored as tuples. A config
    whose blocks are all ``res`` serialises without ``block``, so its `arch_id` is the one it had
    before block types existed.
    ``head_blocks``/``head_kernel`` describe MDSR's per-scale pre-processing heads (the paper:
    2 blocks of 5x5); they must stay unset for EDSR.
    Family ``efficient`` (one scale) is the skeleton of IMDN, RFDN, RLFN and SPAN: head conv,
    blocks, a ``trunk`` that joins their features (``imdn``: 1x1 conv over every block's output
    -> act -> 3x3 conv, plus the head's output; ``rlfn``: 3x3 conv of the last block's output
    plus the head's; ``span``: SPAN's re-parameterisable head and last conv, 1x1 conv over
    [head, last, first block, last block's first conv]) and one 3x3 conv to ``n_colors * s^2``
    channels before the pixel shuffle (no tail conv after it). ``trunk`` stays unset for the
    other families.

    >>> cfg = ArchConfig(family="edsr", scales=(2,), n_resblocks=16, n_feats=64)
    >>> cfg.arch_id.startswith("edsr-")
    True
    """

    family: str = "edsr"
    scales: tuple[int, ...] = (2,)
    n_resblocks: int = 16
    n_feats: int = 64
    kernel_sizes: tuple[int, ...] = 3  # type: ignore[assignment]  # an int stands for every block
    block: tuple[str, ...] = DEFAULT_BLOCK  # type: ignore[assignment]  # one name stands for every block
    batch_norm: bool = False
    res_scale: float = 1.0
    act: str = "relu"
    head_blocks: int | None = None
    head_kernel: int | None = None
    global_skip: str = "none"
    rgb_range: float = 255.0
    n_colors: int = 3
    trunk: str | None = None

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        if self.family not in FAMILIES:
            raise _fail("family", self.family, " | ".join(FAMILIES))
        scales = (self.scales,) if isinstance(self.scales, (int, float)) else self.scales
        if isinstance(scales, str) or not isinstance(scales, Iterable):
            raise _fail("scales", self.scales, f"a list of distinct values from {list(SCALES)}")
        scales = tuple(_as_int("scales", s) for s in scales)
        if not scales or any(s not in SCALES for s in scales) or len(set(scales)) != len(scales):
            raise _fail("scales", list(scales), f"a list of distinct values from {list(SCALES)}")
        if self.family in ("edsr", "efficient") and len(scales) != 1:
            raise _fail("scales", list(scales), f"exactly one scale for family {self.family!r} (use 'mdsr')")
        set_("scales", scales)

        b = _as_int("n_resblocks", self.n_resblocks)
        if not 1 <= b <= MAX_RESBLOCKS:
            raise _fail("n_resblocks", self.n_resblocks, f"an integer in 1..{MAX_RESBLOCKS}")
        set_("n_resblocks", b)
        f = _as_int("n_feats", self.n_feats)
        if not 1 <= f <= MAX_FEATS:
            raise _fail("n_feats", self.n_feats, f"an integer in 1..{MAX_FEATS}")
        set_("n_feats", f)

        ks = self.kernel_sizes
        if isinstance(ks, (int, float)) and not isinstance(ks, bool):
            ks = (ks,) * b
        if isinstance(ks, str) or not isinstance(ks, Iterable):
            raise _fail("kernel_sizes", self.kernel_sizes, f"an int or one int per block from {list(KERNEL_SIZES)}")
        ks = tuple(ks)
        if len(ks) != b:
            raise ConfigError(
                f"ArchConfig.kernel_sizes: {len(ks)} values given for n_resblocks={b}; "
                "allowed: one int, or exactly one int per block"
            )
        for k in ks:
            if isinstance(k, bool) or k not in KERNEL_SIZES:
                raise _fail("kernel_sizes", k, " | ".join(map(str, KERNEL_SIZES)))
        set_("kernel_sizes", tuple(int(k) for k in ks))

        names = (self.block,) * b if isinstance(self.block, str) else self.block
        if not isinstance(names, Iterable):
            raise _fail("block", self.block, f"a block-type name or one per block from {list(BLOCKS)}")
        names = tuple(names)
        if len(names) != b:
            raise ConfigError(
                f"ArchConfig.block: {len(names)} values given for n_resblocks={b}; "
                "allowed: one name, or exactly one name per block"
            )
        for name in names:
            if not isinstance(name, str) or name not in BLOCKS:
                raise _fail("block", name, " | ".join(BLOCKS))
        set_("block", names)

        if not isinstance(self.batch_norm, bool):
            raise _fail("batch_norm", self.batch_norm, "true | false")
        for name in dict.fromkeys(names):
            try:
                BLOCKS[name].check(f, batch_norm=self.batch_norm)
            except ConfigError as exc:
                raise ConfigError(f"ArchConfig.block: {exc}") from None
        rs = self.res_scale
        if isinstance(rs, bool) or not isinstance(rs, (int, float)) or not math.isfinite(rs) or not 0 < rs <= 1:
            raise _fail("res_scale", rs, "a number in (0, 1]")
        set_("res_scale", float(rs))
        if self.act not in ACTIVATIONS:
            raise _fail("act", self.act, " | ".join(ACTIVATIONS))

        if self.family == "efficient":
            trunk = "rlfn" if self.trunk is None else self.trunk
            if trunk not in TRUNKS:
                raise _fail("trunk", self.trunk, " | ".join(TRUNKS))
            set_("trunk", trunk)
        elif self.trunk is not None:
            raise _fail("trunk", self.trunk, "unset for family 'edsr' and 'mdsr' (family 'efficient' only)")
        if self.family in ("edsr", "efficient"):
            for name in ("head_blocks", "head_kernel"):
                if getattr(self, name) not in (None, 0) or (name == "head_kernel" and getattr(self, name) is not None):
                    raise _fail(name, getattr(self, name), f"unset for family {self.family!r} (MDSR heads only)")
            set_("head_blocks", 0)
            set_("head_kernel", None)
        else:
            hb = 2 if self.head_blocks is None else _as_int("head_blocks", self.head_blocks)
            if not 0 <= hb <= MAX_HEAD_BLOCKS:
                raise _fail("head_blocks", self.head_blocks, f"an integer in 0..{MAX_HEAD_BLOCKS}")
            set_("head_blocks", hb)
            if hb == 0:
                if self.head_kernel is not None:
                    raise _fail("head_kernel", self.head_kernel, "unset when head_blocks is 0")
            else:
                hk = 5 if self.head_kernel is None else self.head_kernel
                if isinstance(hk, bool) or hk not in KERNEL_SIZES:
                    raise _fail("head_kernel", hk, " | ".join(map(str, KERNEL_SIZES)))
                set_("head_kernel", int(hk))

        if self.global_skip not in GLOBAL_SKIPS:
            raise _fail("global_skip", self.global_skip, " | ".join(GLOBAL_SKIPS))
        rr = self.rgb_range
        if isinstance(rr, bool) or not isinstance(rr, (int, float)) or not math.isfinite(rr) or rr <= 0:
            raise _fail("rgb_range", rr, "a positive number (255 as the paper, or 1)")
        set_("rgb_range", float(rr))
        if self.n_colors not in N_COLORS or isinstance(self.n_colors, bool):
            raise _fail("n_colors", self.n_colors, " | ".join(map(str, N_COLORS)))

    # ---- identity and serialisation -------------------------------------------------------

    @property
    def min_lr_size(self) -> int:
        """Smallest LR height and width the network runs on (1; 15 with ESA blocks)."""
        return max(BLOCKS[name].min_size for name in self.block)

    @property
    def scale(self) -> int:
        """The first (for EDSR: the only) scale."""
        return self.scales[0]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-friendly dict (lists, not tuples)."""
        d = dataclasses.asdict(self)
        d["scales"] = list(self.scales)
        d["kernel_sizes"] = list(self.kernel_sizes)
        if set(self.block) == {DEFAULT_BLOCK}:
            del d["block"]  # keeps the JSON, and so the arch_id, of every config stored before blocks existed
        else:
            d["block"] = list(self.block)
        if self.trunk is None:
            del d["trunk"]  # likewise for configs stored before the efficient family existed
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "config") -> "ArchConfig":
        """Build from a dict; unknown keys are an error naming the key and ``source``."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: expected a mapping of ArchConfig fields, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"{source}: unknown key {unknown[0]!r}; allowed keys: {', '.join(sorted(known))}"
            )
        try:
            return cls(**dict(data))
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, *, source: str = "json") -> "ArchConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source}: not valid JSON ({exc})") from None
        return cls.from_dict(data, source=source)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    @classmethod
    def from_yaml(cls, text: str, *, source: str = "yaml") -> "ArchConfig":
        """Parse with `srnas.yamlio` (no aliases, bounded size and depth); an error names the
        line of the key at fault: ``cfg.yaml:3: n_feats: invalid value 0; allowed: ...``."""
        data, lines = load_yaml_with_lines(text, source)
        prefix = ""
        if isinstance(data, Mapping) and "arch" in data and isinstance(data["arch"], Mapping):
            data, prefix = data["arch"], "arch."  # exported files wrap the config with metadata
        try:
            return cls.from_dict(data, source=source)
        except ConfigError as exc:
            message = str(exc).removeprefix(f"{source}: ")
            found = re.match(r"ArchConfig\.(\w+): |unknown key (.+?); ", message)
            if found is None:
                raise
            keys = {repr(k): str(k) for k in data} if isinstance(data, Mapping) else {}
            key = found[1] or keys.get(found[2], "")
            line = lines.get(prefix + key)
            message = message.removeprefix("ArchConfig.")
            raise ConfigError(f"{source}:{line}: {message}" if line else f"{source}: {message}") from None

    @classmethod
    def load(cls, path: str | Path) -> "ArchConfig":
        """Read a ``.yaml``/``.yml``/``.json`` config file (at most 1 MiB)."""
        p = Path(path)
        text = read_config_text(p, what="config file")
        if p.suffix.lower() == ".json":
            return cls.from_json(text, source=str(p))
        return cls.from_yaml(text, source=str(p))

    def replace(self, **changes: Any) -> "ArchConfig":
        """A copy with some fields changed (re-validated)."""
        d = self.to_dict()
        if "n_resblocks" in changes:
            for name, values in (("kernel_sizes", self.kernel_sizes), ("block", self.block)):
                if name in changes:
                    continue
                if len(set(values)) != 1:
                    raise ConfigError(f"ArchConfig.replace: give {name} when changing n_resblocks of a config "
                                      f"with mixed {name}")
                d[name] = values[0]
        if changes.get("family") in ("edsr", "efficient"):
            d["head_blocks"] = d["head_kernel"] = None
        if changes.get("family") in ("edsr", "mdsr"):
            d.pop("trunk", None)
        d.update(changes)
        return ArchConfig.from_dict(d)

    @property
    def arch_id(self) -> str:
        """Stable short id: the same config gives the same id on every machine and process."""
        digest = hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()
        return f"{self.family}-{digest[:10]}"

    def describe(self) -> str:
        """One-line human summary."""
        ks = sorted(set(self.kernel_sizes))
        kdesc = str(ks[0]) if len(ks) == 1 else "/".join(map(str, self.kernel_sizes))
        parts = [
            f"{self.family.upper()} x{','.join(map(str, self.scales))}",
            f"B={self.n_resblocks}",
            f"F={self.n_feats}",
            f"k={kdesc}",
            f"res_scale={self.res_scale:g}",
        ]
        if set(self.block) != {DEFAULT_BLOCK}:
            parts.append(f"block={self.block[0] if len(set(self.block)) == 1 else '/'.join(self.block)}")
        if self.batch_norm:
            parts.append("BN")
        if self.act != "relu":
            parts.append(self.act)
        if self.family == "mdsr":
            parts.append(f"head={self.head_blocks}x{self.head_kernel or '-'}")
        if self.trunk is not None:
            parts.append(f"trunk={self.trunk}")
        if self.global_skip != "none":
            parts.append(f"skip={self.global_skip}")
        return " ".join(parts)
