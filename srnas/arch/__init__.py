"""Architectures: `ArchConfig`, EDSR/MDSR builders, presets, cost model, checkpoint import."""

from srnas.arch.checkpoint import load_weights, read_state_dict
from srnas.arch.config import ArchConfig
from srnas.arch.cost import Cost, activation_memory, cost_of, count_mult_adds, count_params
from srnas.arch.networks import EDSR, MDSR, build_model
from srnas.arch.presets import PRESETS, edsr, edsr_baseline, mdsr, mdsr_baseline, preset_config

__all__ = [
    "ArchConfig", "Cost", "EDSR", "MDSR", "PRESETS", "activation_memory", "build_model",
    "cost_of", "count_mult_adds", "count_params", "edsr", "edsr_baseline", "load_weights",
    "mdsr", "mdsr_baseline", "preset_config", "read_state_dict",
]
