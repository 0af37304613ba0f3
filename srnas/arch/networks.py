"""EDSR and MDSR (Lim et al. 2017) built from an `ArchConfig`, with the authors' state-dict names,
and `EfficientSR`, the skeleton of IMDN, RFDN, RLFN and SPAN; the body's blocks come from the
block registry (`srnas.arch.registry`)."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from srnas.arch.blocks import BicubicUpsample, MeanShift, Upsampler, activation, conv
from srnas.arch.config import ArchConfig
from srnas.arch.efficient_layers import RepConv
from srnas.arch.presets import preset_config
from srnas.arch.pretrained import load_pretrained
from srnas.arch.registry import DEFAULT_BLOCK, get_block
from srnas.errors import ConfigError


def _body(cfg: ArchConfig) -> nn.Sequential:
    blocks: list[nn.Module] = [
        get_block(name).build(cfg.n_feats, k, batch_norm=cfg.batch_norm, act=cfg.act, res_scale=cfg.res_scale)
        for name, k in zip(cfg.block, cfg.kernel_sizes)
    ]
    if cfg.family != "efficient":  # EDSR's body conv; the efficient trunks have their own
        blocks.append(conv(cfg.n_feats, cfg.n_feats, 3))
    return nn.Sequential(*blocks)


class _SRNet(nn.Module):
    """Shared parts: mean shift, head conv, body with global skip, optional bicubic skip."""

    def __init__(self, cfg: ArchConfig) -> None:
        super().__init__()
        self.config = cfg
        self.scales = cfg.scales
        self.sub_mean = MeanShift(cfg.rgb_range, cfg.n_colors, sign=-1)
        self.add_mean = MeanShift(cfg.rgb_range, cfg.n_colors, sign=+1)
        self.head = nn.Sequential(conv(cfg.n_colors, cfg.n_feats, 3))
        self.body = _body(cfg)
        self.bicubic = (
            nn.ModuleList([BicubicUpsample(s, cfg.n_colors) for s in cfg.scales])
            if cfg.global_skip == "bicubic" else None
        )

    def scale_index(self, scale: int | None) -> int:
        if scale is None:
            if len(self.scales) != 1:
                raise ValueError(f"this model serves scales {list(self.scales)}: pass scale=")
            return 0
        try:
            return self.scales.index(int(scale))
        except ValueError:
            raise ValueError(f"scale {scale} not served by this model (scales {list(self.scales)})") from None

    def _zero_last_conv(self, last: nn.Module) -> None:
        # With a bicubic skip an untrained net must equal bicubic exactly: zero the tail conv.
        assert isinstance(last, nn.Conv2d) and last.bias is not None
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def _start(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean-shifted input and the head conv's features, both in fp32 even under
        autocast (bf16 would round the 0-255 input to whole grey levels above 128)."""
        with _fp32(x):
            x = self.sub_mean(x.float())
            return x, self.head(x)

    def _finish(self, x_in: torch.Tensor, features: torch.Tensor, last: nn.Module, idx: int) -> torch.Tensor:
        """The output stage in fp32 even under autocast: the last conv, the bicubic skip and the
        mean shift (bf16 holds whole numbers only above 128, and an untrained bicubic-skip net
        must equal bicubic)."""
        with _fp32(features):
            y = last(features.float())
            if self.bicubic is not None:
                # add_mean then adds the mean back; the skip carries the mean-free bicubic image.
                y = y + self.bicubic[idx](x_in)
            return self.add_mean(y)


def _fp32(x: torch.Tensor) -> contextlib.AbstractContextManager[object]:
    """Autocast off on ``x``'s device (a no-op outside autocast). Meta tensors (shapes only, as
    the cost counts of big nets use them) have no autocast."""
    if x.device.type == "meta":
        return contextlib.nullcontext()
    return torch.autocast(x.device.type, enabled=False)


class EDSR(_SRNet):
    """sub_mean -> head -> B blocks + conv (+ head output) -> upsampler -> conv -> add_mean."""

    def __init__(self, cfg: ArchConfig) -> None:
        if cfg.family != "edsr":
            raise ValueError("EDSR needs family 'edsr'")
        super().__init__(cfg)
        self.tail = nn.Sequential(Upsampler(cfg.scale, cfg.n_feats), conv(cfg.n_feats, cfg.n_colors, 3))
        if cfg.global_skip == "bicubic":
            self._zero_last_conv(self.tail[1])

    def forward(self, x: torch.Tensor, scale: int | None = None) -> torch.Tensor:
        idx = self.scale_index(scale)
        x, h = self._start(x)
        res = self.body(h) + h
        return self._finish(x, self.tail[0](res), self.tail[1], idx)


class MDSR(_SRNet):
    """Shared head and body, per-scale pre-processing heads (``res`` blocks) and upsamplers,
    shared tail conv."""

    def __init__(self, cfg: ArchConfig) -> None:
        if cfg.family != "mdsr":
            raise ValueError("MDSR needs family 'mdsr'")
        super().__init__(cfg)
        self.pre_process = nn.ModuleList(
            nn.Sequential(*[
                get_block(DEFAULT_BLOCK).build(cfg.n_feats, cfg.head_kernel or 3, batch_norm=cfg.batch_norm,
                                               act=cfg.act)
                for _ in range(cfg.head_blocks or 0)
            ])
            for _ in cfg.scales
        )
        self.upsample = nn.ModuleList(Upsampler(s, cfg.n_feats) for s in cfg.scales)
        self.tail = nn.Sequential(conv(cfg.n_feats, cfg.n_colors, 3))
        if cfg.global_skip == "bicubic":
            self._zero_last_conv(self.tail[0])

    def forward(self, x: torch.Tensor, scale: int | None = None) -> torch.Tensor:
        idx = self.scale_index(scale)
        x, h = self._start(x)
        h = self.pre_process[idx](h)
        res = self.body(h) + h
        return self._finish(x, self.upsample[idx](res), self.tail[0], idx)


class EfficientSR(_SRNet):
    """sub_mean -> head -> blocks -> trunk (``cfg.trunk``, see `ArchConfig`) -> 3x3 conv to
    ``n_colors * s^2`` -> pixel shuffle -> add_mean: IMDN's, RFDN's, RLFN's and SPAN's layout,
    with the mean shift of the EDSR family (frozen, not counted) so that inputs are 0..rgb_range.

    Module names: ``head.0``, ``body.{i}``, ``aggregate`` (the 1x1 over block outputs, with its
    act for ``imdn``), ``trunk_conv`` (3x3; ``span``: re-parameterisable), ``tail.0``.
    """

    def __init__(self, cfg: ArchConfig) -> None:
        if cfg.family != "efficient":
            raise ValueError("EfficientSR needs family 'efficient'")
        super().__init__(cfg)
        f, c, s = cfg.n_feats, cfg.n_colors, cfg.scale
        self.trunk = cfg.trunk
        if cfg.trunk == "span":
            self.head = nn.Sequential(RepConv(c, f, 3))
            self.trunk_conv: nn.Module = RepConv(f, f, 3)
            self.aggregate: nn.Module | None = conv(4 * f, f, 1)
        else:
            self.trunk_conv = conv(f, f, 3)
            self.aggregate = (nn.Sequential(conv(cfg.n_resblocks * f, f, 1), activation(cfg.act))
                              if cfg.trunk == "imdn" else None)
        self.tail = nn.Sequential(conv(f, c * s * s, 3), nn.PixelShuffle(s))
        if cfg.global_skip == "bicubic":
            self._zero_last_conv(self.tail[0])

    def forward(self, x: torch.Tensor, scale: int | None = None) -> torch.Tensor:
        idx = self.scale_index(scale)
        x, h = self._start(x)
        if self.trunk == "rlfn":
            res = self.trunk_conv(self.body(h)) + h
        elif self.trunk == "imdn":
            outs, f = [], h
            for block in self.body:
                f = block(f)
                outs.append(f)
            assert self.aggregate is not None
            res = self.trunk_conv(self.aggregate(torch.cat(outs, dim=1))) + h
        else:  # span: [head, last conv of the last block's output, first block's output, the
            # last block's first activated conv (its input where the block has none)]
            f, first_out, inner = h, h, h
            for i, block in enumerate(self.body):
                if i == len(self.body) - 1:
                    inner = f
                    with_first = getattr(block, "forward_with_first", None)
                    if with_first is not None:
                        f, inner = with_first(f)
                    else:
                        f = block(f)
                else:
                    f = block(f)
                if i == 0:
                    first_out = f
            assert self.aggregate is not None
            res = self.aggregate(torch.cat([h, self.trunk_conv(f), first_out, inner], dim=1))
        return self._finish(x, res, self.tail, idx)


def build_model(config: ArchConfig | str, *, scale: int | None = None, pretrained: bool = False,
                weights_url: str | None = None) -> nn.Module:
    """Build the network for a config (or a preset name such as ``"edsr-baseline"``).

    ``pretrained=True`` (preset names only) loads the EDSR authors' released weights, downloaded
    once, SHA-256 checked and cached (`srnas.arch.pretrained`); ``weights_url`` names a mirror.

    >>> net = build_model("edsr-baseline", scale=2)
    >>> sum(p.numel() for p in net.parameters() if p.requires_grad)
    1369859
    """
    if weights_url is not None and not pretrained:
        raise ConfigError("weights_url= is where pretrained weights come from: pass pretrained=True too")
    preset = config if isinstance(config, str) else None
    if isinstance(config, str):
        config = preset_config(config, scale=scale)
    elif pretrained:
        raise ConfigError(f"pretrained=True needs a preset name (released weights exist for the presets), "
                          f"not the config {config.describe()}")
    elif scale is not None and scale not in config.scales:
        raise ValueError(f"scale {scale} not in config scales {list(config.scales)}")
    model = {"edsr": EDSR, "mdsr": MDSR, "efficient": EfficientSR}[config.family](config)
    if preset is not None and pretrained:
        load_pretrained(model, preset, scale, weights_url=weights_url)
    return model
