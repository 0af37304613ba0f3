"""Search spaces: shipped files, sampling with Optuna, counting, constraints, bad files."""

from __future__ import annotations

import optuna
import pytest

from srnas.arch import count_params
from srnas.errors import ConfigError
from srnas.space import SearchSpace, available_spaces

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_four_shipped_spaces() -> None:
    assert set(available_spaces()) >= {"tiny", "edsr", "mdsr", "lightweight"}
    edsr = SearchSpace.load("edsr")
    assert set(edsr.params["kernel_size"].choices) == {3, 5}
    assert set(edsr.params["res_scale"].choices) == {0.1, 0.2, 0.5, 1.0}
    assert set(edsr.params["batch_norm"].choices) == {False, True}
    mdsr = SearchSpace.load("mdsr")
    assert mdsr.scales == (2, 3, 4) and set(mdsr.params["head_blocks"].choices) == {0, 1, 2, 3}
    light = SearchSpace.load("lightweight")
    assert light.constraints["max_params"] == 1_400_000
    tiny = SearchSpace.load("tiny")
    assert "bicubic" in tiny.params["global_skip"].choices


def test_sampling_with_optuna_is_conditional() -> None:
    space = SearchSpace.load("tiny")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        cfg = space.sample(trial)
        kernel_params = sorted(k for k in trial.params if k.startswith("kernel_size_b"))
        assert len(kernel_params) == cfg.n_resblocks  # only blocks that exist
        assert space.params_of(cfg) == trial.params
        study.tell(trial, 0.0)

    mdsr = SearchSpace.load("mdsr")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen_without_head = seen_with_head = False
    for _ in range(40):
        trial = study.ask()
        cfg = mdsr.sample(trial)
        if cfg.head_blocks == 0:
            assert "head_kernel" not in trial.params
            seen_without_head = True
        else:
            assert trial.params["head_kernel"] == cfg.head_kernel
            seen_with_head = True
        study.tell(trial, 0.0)
    assert seen_with_head and seen_without_head


def test_size_equals_enumeration() -> None:
    tiny = SearchSpace.load("tiny")
    configs = list(tiny.enumerate())
    assert len(configs) == tiny.size() == 5 * 3 * 2 * (2 + 4 + 8 + 16)
    assert len({c.arch_id for c in configs}) == len(configs)
    mdsr = SearchSpace.load("mdsr")
    assert mdsr.size() == sum(1 for _ in mdsr.enumerate())


def test_constraints_and_summary() -> None:
    light = SearchSpace.load("lightweight")
    summary = light.summary()
    assert summary["exact"] and summary["params"][1] <= 1_400_000
    assert 0 < summary["feasible"] < summary["size"]
    baseline_params = light.preset_assignments()
    assert [label for label, _ in baseline_params] == ["edsr-baseline"]
    tight = SearchSpace.load("tiny").constrained(max_params=20_000)
    for cfg in tight.enumerate():
        assert tight.satisfies(cfg) == (count_params(cfg) <= 20_000)
        v = tight.violations(cfg)["max_params"]
        assert v == count_params(cfg) - 20_000


def test_presets_inside_space_are_found() -> None:
    edsr = SearchSpace.load("edsr")
    labels = [label for label, _ in edsr.preset_assignments()]
    assert labels == ["edsr-baseline", "edsr"]
    tiny = SearchSpace.load("tiny")
    (label, params), = tiny.preset_assignments()
    assert label == "tiny-default"  # presets carry their names
    assert params["n_resblocks"] == 4 and params["global_skip"] == "bicubic"
    unnamed = SearchSpace.from_dict({"name": "s", "parameters": {"n_resblocks": [2], "n_feats": [8]},
                                     "presets": [{"n_resblocks": 2, "n_feats": 8}]})
    assert [label for label, _ in unnamed.preset_assignments()] == ["s preset 1"]


BAD_SPACES = [
    ("family: edsr\nscales: [2]\n", "parameters: missing or empty"),
    ("parameters:\n  n_resblocks: [2]\n  n_feats: [8]\n  depth: [3]\n", ":4: parameters.depth: unknown parameter"),
    ("parameters:\n  n_resblocks: [2]\n  n_feats: [8]\n  kernel_size: [3, 4]\n",
     ":4: parameters.kernel_size: invalid value 4; allowed: 1 | 3 | 5 | 7 | 9 | 11 | 13"),
    ("parameters:\n  n_resblocks: [2]\n  n_feats: [0, 8]\n", ":3: parameters.n_feats: invalid value 0"),
    ("scales: [5]\nparameters:\n  n_resblocks: [2]\n  n_feats: [8]\n", ":1: scales: invalid value [5]"),
    ("parameters:\n  n_resblocks: [2]\n  n_feats: [8]\n  res_scale: [0.0, 1.0]\n",
     "parameters.res_scale: invalid value 0.0; allowed: a number in (0, 1]"),
    ("family: vdsr\nparameters:\n  n_resblocks: [2]\n  n_feats: [8]\n", ":1: family: invalid value 'vdsr'"),
    ("parameters:\n  n_resblocks: [2]\n  n_feats: [8]\n  head_blocks: [1]\n", "parameters.head_blocks: applies to family 'mdsr' only"),
    ("parameters:\n  n_resblocks: [2]\n  n_feats: [8]\nconstraints:\n  max_flops: 3\n", ":5: constraints.max_flops: unknown constraint"),
    ("parameters:\n  n_resblocks: [2]\n  n_feats: [8]\nconstraints:\n  max_params: -1\n", "constraints.max_params: invalid value -1"),
    ("parameters:\n  n_resblocks: [2]\n  n_feats: {low: 8}\n", "parameters.n_feats: a mapping needs 'choices' or 'low' and 'high'"),
    ("parameters:\n  n_resblocks: [2]\n  n_feats: [8]\n  kernel_size: {choices: [3], per: row}\n", "per: invalid value 'row'"),
    ("parameters:\n  n_resblocks: [2]\n  n_feats: [8]\n  kernel_size: {choices: [3], per: stage}\n", "per: stage needs 'stages'"),
    ("parameters:\n  n_resblocks: [2]\n  n_feats: [8, 8]\n", "duplicate choices"),
    ("parameters:\n  n_resblocks: [2]\n  n_feats: [8]\npresets: [vdsr]\n", "presets: entry 0: unknown preset 'vdsr'"),
    ("parameters:\n  n_resblocks: [2]\n  n_feats: [8]\npresets: [edsr-baseline]\n", "preset 'edsr-baseline'"),
    ("parameters:\n  n_resblocks: [2]\n  n_feats: [8]\npresets: [{name: 3, n_resblocks: 2, n_feats: 8}]\n",
     "presets: entry 0: preset name must be a non-empty string, got 3"),
    ("parameters:\n  n_resblocks: [2\n", "not valid YAML"),
    ("- just\n- a list\n", "must be a YAML mapping"),
    ("parameters:\n  n_resblocks: [2]\n  n_feats: [8]\nbudget: 3\n", ":4: budget: unknown key"),
    ("parameters: &p\n  n_resblocks: [2]\n  n_feats: [8]\nx: *p\n", "anchors and aliases"),
]


@pytest.mark.parametrize(("text", "message"), BAD_SPACES)
def test_invalid_space_files_give_one_clear_error(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        SearchSpace.load(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_space_name_and_missing_file(tmp_path) -> None:
    shipped = "edsr, efficient, efficient-tiny, lightweight, mdsr, mixed, tiny, tiny-wide"
    with pytest.raises(ConfigError, match=f"unknown search space 'huge'; shipped spaces: {shipped}"):
        SearchSpace.load("huge")
    with pytest.raises(ConfigError, match="nothere.yaml: search-space file not found"):
        SearchSpace.load(tmp_path / "nothere.yaml")


def test_every_dimension_is_one_declaration_of_an_archconfig_field() -> None:
    import dataclasses

    from srnas.arch.config import ArchConfig
    from srnas.space import DIMENSIONS, PARAMETERS

    fields = {f.name for f in dataclasses.fields(ArchConfig)}
    assert all(d.field in fields for d in DIMENSIONS)
    assert PARAMETERS == tuple(d.name for d in DIMENSIONS) and len(set(PARAMETERS)) == len(PARAMETERS)


def test_block_types_are_searchable_per_stage() -> None:
    space = SearchSpace.load("mixed")
    assert space.params["block"].choices == ("res", "rcab", "dwsep") and space.params["block"].per == "stage"
    assert {f"block_s{i}" for i in range(4)} <= set(space.flat_choices())
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=4))
    seen: set[str] = set()
    for _ in range(15):
        trial = study.ask()
        cfg = space.sample(trial)
        seen |= set(cfg.block)
        assert len(cfg.block) == cfg.n_resblocks
        assert space.params_of(cfg) == trial.params
        assert space.config_from_flat({**{k: v[0] for k, v in space.flat_choices().items()}, **trial.params}) == cfg
        study.tell(trial, 0.0)
    assert seen == {"res", "rcab", "dwsep"}
    # A space without the key keeps EDSR's block and records no block parameter.
    tiny = SearchSpace.load("tiny")
    cfg = tiny.sample_random(1, seed=2)[0]
    assert set(cfg.block) == {"res"} and not [k for k in tiny.params_of(cfg) if k.startswith("block")]


def test_a_huge_range_is_refused_before_any_list_is_built(tmp_path) -> None:
    import subprocess
    import sys

    path = tmp_path / "huge.yaml"
    path.write_text("parameters:\n  n_resblocks: [2]\n  n_feats: {low: 8, high: 50000000}\n")
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); "
            "from srnas.space import SearchSpace; from srnas.errors import ConfigError\n"
            f"try:\n  SearchSpace.load({str(path)!r})\nexcept ConfigError as e:\n  print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-500:]
    assert f"{path}:3: parameters.n_feats: range low=8 high=50000000 step=1 has 49,999,993 values" in out.stdout
