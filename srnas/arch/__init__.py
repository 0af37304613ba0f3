"""Architectures: `ArchConfig`, the block registry, EDSR/MDSR and efficient-family builders,
presets, cost model, re-parameterisation (`fuse`), the NTIRE efficiency score, checkpoint import.

Names are re-exported lazily: ``from srnas.arch import ArchConfig, count_params`` does not import
torch (building a network does).

>>> from srnas.arch import block_names, count_params, preset_config
>>> block_names()
('res', 'rcab', 'dwsep', 'imdb', 'rfdb', 'rlfb', 'bsconv', 'repconv', 'spab')
>>> count_params(preset_config("edsr-baseline", scale=2))
1369859
"""

from __future__ import annotations

from srnas._lazy import lazy_exports

_EXPORTS = {
    "ArchConfig": "srnas.arch.config",
    "BLOCKS": "srnas.arch.registry",
    "BlockType": "srnas.arch.registry",
    "block_names": "srnas.arch.registry",
    "get_block": "srnas.arch.registry",
    "register_block": "srnas.arch.registry",
    "Cost": "srnas.arch.cost",
    "ConfigCosts": "srnas.arch.cost",
    "activation_memory": "srnas.arch.cost",
    "cost_of": "srnas.arch.cost",
    "count_mult_adds": "srnas.arch.cost",
    "count_params": "srnas.arch.cost",
    "EDSR": "srnas.arch.networks",
    "EfficientSR": "srnas.arch.networks",
    "challenge_flops": "srnas.arch.efficiency",
    "ntire_score": "srnas.arch.efficiency",
    "MDSR": "srnas.arch.networks",
    "build_model": "srnas.arch.networks",
    "fuse": "srnas.arch.efficient_layers",
    "PRESETS": "srnas.arch.presets",
    "edsr": "srnas.arch.presets",
    "edsr_baseline": "srnas.arch.presets",
    "mdsr": "srnas.arch.presets",
    "mdsr_baseline": "srnas.arch.presets",
    "preset_config": "srnas.arch.presets",
    "load_weights": "srnas.arch.checkpoint",
    "read_state_dict": "srnas.arch.checkpoint",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
