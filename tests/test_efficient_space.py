"""Search spaces of the ``efficient`` family: per-stage block choice among the efficient-SR types,
width, kernel, trunk, activation, under a parameter cap counted on the inference (fused) form,
with the published presets as anchors."""

from __future__ import annotations

import pytest
import torch

from srnas.arch import build_model, count_mult_adds, count_params, fuse
from srnas.arch.cost import measure_mult_adds, module_params
from srnas.errors import ConfigError
from srnas.arch.cost import ConfigCosts
from srnas.space import SearchSpace

EFFICIENT_X4 = {
    "name": "efficient-test",
    "family": "efficient",
    "scales": [4],
    "parameters": {
        "n_resblocks": [2, 4, 6],
        "n_feats": [28, 48, 50, 52, 64],
        "kernel_size": {"choices": [3, 5], "per": "stage", "stages": 2},
        "block": {"choices": ["imdb", "rfdb", "rlfb", "bsconv", "repconv", "spab"], "per": "stage", "stages": 2},
        "trunk": ["imdn", "rlfn", "span"],
        "act": ["lrelu", "silu"],
    },
    "constraints": {"max_params": 800_000},
    "presets": ["imdn", "rfdn", "rlfn", "rlfn-s", "span"],
}

#: A CPU-sized variant for the demo data (x2, a few narrow blocks).
EFFICIENT_TINY = {
    "name": "efficient-tiny-test",
    "family": "efficient",
    "scales": [2],
    "parameters": {
        "n_resblocks": [1, 2, 3],
        "n_feats": [8, 12, 16],
        "kernel_size": {"choices": [3, 5], "per": "block"},
        "block": {"choices": ["res", "imdb", "bsconv", "repconv", "spab", "rlfb"], "per": "block"},
        "trunk": ["imdn", "rlfn", "span"],
        "act": "lrelu",
        "global_skip": ["none", "bicubic"],
    },
    "presets": [{"name": "tiny-span", "n_resblocks": 2, "n_feats": 12, "kernel_size": 3, "block": "spab",
                 "trunk": "span", "act": "lrelu", "global_skip": "bicubic"}],
}


@pytest.mark.parametrize(("name", "tested"), [("efficient", EFFICIENT_X4), ("efficient-tiny", EFFICIENT_TINY)])
def test_the_shipped_spaces_are_the_tested_ones(name: str, tested: dict) -> None:
    shipped = SearchSpace.load(name)
    assert shipped.canonical() == SearchSpace.from_dict(tested).canonical()
    assert shipped.preset_assignments() == SearchSpace.from_dict(tested).preset_assignments()


def test_the_published_presets_are_anchors_inside_the_space() -> None:
    space = SearchSpace.from_dict(EFFICIENT_X4)
    labels = [label for label, _ in space.preset_assignments()]
    assert labels == ["imdn", "rfdn", "rlfn", "rlfn-s", "span"]
    for label, params in space.preset_assignments():
        from srnas.arch.presets import preset_config
        from srnas.space import FixedChooser

        assert space.sample(FixedChooser(params)) == preset_config(label, scale=4)
        assert space.satisfies(preset_config(label, scale=4))  # under 800K, SPAN counted fused


def test_costs_are_counted_on_the_inference_form() -> None:
    from srnas.arch.presets import preset_config

    span = preset_config("span", scale=4)
    costs = ConfigCosts.of(span)
    assert costs.params == 426_288 == count_params(span, fused=True) < count_params(span)
    assert costs.mult_adds == count_mult_adds(span, fused=True) < count_mult_adds(span)
    edsr = preset_config("edsr-baseline", scale=2)  # nets without branches: as before
    assert ConfigCosts.of(edsr).params == 1_369_859 and ConfigCosts.of(edsr).mult_adds == 316_248_883_200


def test_sampled_configs_build_and_cost_what_they_count() -> None:
    space = SearchSpace.from_dict(EFFICIENT_TINY)
    assert space.size() == 3 * (3 * (2 * 6) + 3 * (2 * 6) ** 2 + 3 * (2 * 6) ** 3) * 2
    configs = space.sample_random(12, seed=5)
    assert {c.trunk for c in configs} == {"imdn", "rlfn", "span"}
    assert len({b for c in configs for b in c.block}) >= 4
    x = torch.rand(1, 3, 15, 16) * 255  # ESA (rlfb) needs 15x15 LR maps
    for cfg in configs:
        model = build_model(cfg).train()
        assert module_params(model) == count_params(cfg)
        assert measure_mult_adds(model, x) == count_mult_adds(cfg, hr_size=(30, 32))
        model(x).mean().backward()
        fuse(model)
        assert module_params(model) == count_params(cfg, fused=True) == ConfigCosts.of(cfg).params


def test_trunk_is_a_dimension_of_the_efficient_family_only() -> None:
    space = SearchSpace.from_dict(EFFICIENT_TINY)
    assert space.flat_choices()["trunk"] == ("imdn", "rlfn", "span")
    assert ("trunk", "imdn, rlfn, span") in space.describe_params()
    cfg = space.config_from_flat({**{k: v[0] for k, v in space.flat_choices().items()}, "trunk": "span"})
    assert cfg.family == "efficient" and cfg.trunk == "span"
    with pytest.raises(ConfigError, match="parameters.trunk: applies to family 'efficient' only"):
        SearchSpace.from_dict({"family": "edsr", "parameters": {"n_resblocks": [1], "n_feats": [8], "trunk": ["imdn"]}})
    with pytest.raises(ConfigError, match="parameters.trunk: .*allowed: imdn \\| rlfn \\| span"):
        SearchSpace.from_dict({**EFFICIENT_TINY, "parameters": {**EFFICIENT_TINY["parameters"], "trunk": ["dense"]}})
    with pytest.raises(ConfigError, match="family: invalid value 'esr'; allowed: edsr \\| mdsr \\| efficient"):
        SearchSpace.from_dict({**EFFICIENT_TINY, "family": "esr"})


@pytest.mark.slow
def test_short_search_over_the_cpu_sized_efficient_space(tmp_path, monkeypatch) -> None:
    """Two trials on the demo data with a cut proxy: the anchor preset first, then a sampled net."""
    import optuna
    import yaml

    from srnas.arch.config import ArchConfig
    from srnas.cli import main
    from srnas.outcomes import is_trained

    monkeypatch.setenv("SRNAS_TRIALS_DIR", str(tmp_path / "trials"))
    space_file = tmp_path / "efficient-tiny.yaml"
    space_file.write_text(yaml.safe_dump(EFFICIENT_TINY, sort_keys=False), encoding="utf-8")
    argv = ["search", "--confirm", "0", "--space", str(space_file), "--budget", "2", "--study", "eff", "--seed", "3",
            "--proxy", "tiny@20", "--no-progress", "--workers", "1", "--pruner", "none"]
    assert main(argv) == 0
    study = optuna.load_study(study_name="eff", storage=f"sqlite:///{tmp_path / 'trials' / 'eff' / 'study.db'}")
    finished = [t for t in study.get_trials() if is_trained(t)]
    assert len(finished) == 2
    assert study.trials[0].user_attrs.get("preset") == "tiny-span"
    for t in finished:
        cfg = ArchConfig.from_dict(t.user_attrs["config"])
        assert cfg.family == "efficient" and cfg.trunk in ("imdn", "rlfn", "span")
        assert t.user_attrs["params"] == count_params(cfg, fused=True)
        assert t.values[0] == pytest.approx(t.user_attrs["psnr"]) and t.values[0] > 20
