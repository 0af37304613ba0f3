"""ArchConfig: validation, round trips and a stable arch_id."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from srnas.arch import ArchConfig, preset_config
from srnas.errors import ConfigError


@pytest.mark.parametrize("cfg", [
    preset_config("edsr-baseline", scale=3),
    preset_config("mdsr"),
    ArchConfig(n_resblocks=3, n_feats=12, kernel_sizes=(3, 5, 7), batch_norm=True, res_scale=0.2,
               act="lrelu", global_skip="bicubic", rgb_range=1),
    ArchConfig(family="mdsr", scales=(2, 4), n_resblocks=2, n_feats=8, head_blocks=0),
    ArchConfig(n_resblocks=3, n_feats=12, block="rcab"),
    ArchConfig(family="mdsr", scales=(2, 3), n_resblocks=3, n_feats=8, block=("dwsep", "res", "rcab")),
])
def test_round_trips(cfg: ArchConfig, tmp_path) -> None:
    assert ArchConfig.from_yaml(cfg.to_yaml()) == cfg
    assert ArchConfig.from_json(cfg.to_json()) == cfg
    assert ArchConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    for suffix, text in ((".yaml", cfg.to_yaml()), (".json", cfg.to_json())):
        path = tmp_path / f"c{suffix}"
        path.write_text(text)
        loaded = ArchConfig.load(path)
        assert loaded == cfg and loaded.arch_id == cfg.arch_id


def test_arch_id_is_stable_across_processes() -> None:
    cfg = ArchConfig(n_resblocks=4, n_feats=32, kernel_sizes=(3, 5, 5, 3), res_scale=0.5)
    code = ("from srnas.arch import ArchConfig;"
            "print(ArchConfig(n_resblocks=4, n_feats=32, kernel_sizes=(3,5,5,3), res_scale=0.5).arch_id)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", "PATH": ""})
    assert out.stdout.strip() == cfg.arch_id
    # Pinned: a change of these values breaks every stored study's de-duplication.
    assert cfg.arch_id == "edsr-6af12d3287"
    assert preset_config("edsr-baseline", scale=2).arch_id == "edsr-9c41d01931"
    assert len(cfg.arch_id) == len("edsr-") + 10


def test_equivalent_spellings_share_an_id() -> None:
    a = ArchConfig(n_resblocks=2, n_feats=8, kernel_sizes=3, res_scale=1)
    b = ArchConfig(n_resblocks=2.0, n_feats=8, kernel_sizes=[3, 3], res_scale=1.0, scales=[2])
    assert a == b and a.arch_id == b.arch_id
    assert a.arch_id != a.replace(res_scale=0.5).arch_id


@pytest.mark.parametrize(("kw", "message"), [
    ({"scales": (5,)}, "scales: invalid value \\[5\\]; allowed: a list of distinct values from \\[2, 3, 4, 8\\]"),
    ({"kernel_sizes": 4}, "kernel_sizes: invalid value 4; allowed: 1 \\| 3 \\| 5 \\| 7"),
    ({"n_feats": 0}, "n_feats: invalid value 0; allowed: an integer in 1..1024"),
    ({"res_scale": 0}, "res_scale: invalid value 0; allowed: a number in \\(0, 1\\]"),
    ({"res_scale": -0.1}, "res_scale: invalid value -0.1"),
    ({"family": "rcan"}, "family: invalid value 'rcan'; allowed: edsr \\| mdsr"),
    ({"scales": (2, 3)}, "exactly one scale for family 'edsr'"),
    ({"n_resblocks": 0}, "n_resblocks: invalid value 0"),
    ({"n_resblocks": 2, "kernel_sizes": (3, 3, 3)}, "3 values given for n_resblocks=2"),
    ({"act": "tanh"}, "act: invalid value 'tanh'"),
    ({"global_skip": "nearest"}, "global_skip: invalid value 'nearest'; allowed: none \\| bicubic"),
    ({"head_blocks": 2}, "head_blocks: invalid value 2; allowed: unset for family 'edsr'"),
    ({"family": "mdsr", "scales": (2,), "head_kernel": 4}, "head_kernel: invalid value 4"),
    ({"batch_norm": "yes"}, "batch_norm: invalid value 'yes'"),
    ({"rgb_range": 0}, "rgb_range: invalid value 0"),
    ({"n_colors": 4}, "n_colors: invalid value 4"),
    ({"n_feats": 2.5}, "n_feats: invalid value 2.5; allowed: an integer"),
    ({"block": "rcan"}, "block: invalid value 'rcan'; allowed: res \\| rcab \\| dwsep"),
    ({"n_resblocks": 2, "block": ("res", 3)}, "block: invalid value 3; allowed: res \\| rcab \\| dwsep"),
    ({"n_resblocks": 2, "block": ("res",)}, "block: 1 values given for n_resblocks=2; allowed: one name"),
    ({"block": 7}, "block: invalid value 7; allowed: a block-type name or one per block"),
])
def test_invalid_configs_name_field_and_allowed_values(kw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ArchConfig(**kw)


def test_unknown_key_and_bad_files(tmp_path) -> None:
    with pytest.raises(ConfigError, match="unknown key 'depth'"):
        ArchConfig.from_dict({"depth": 3})
    bad = tmp_path / "bad.yaml"
    bad.write_text("family: [edsr\n")
    with pytest.raises(ConfigError, match="bad.yaml:1: not valid YAML"):
        ArchConfig.load(bad)
    with pytest.raises(ConfigError, match="missing.yaml: config file not found"):
        ArchConfig.load(tmp_path / "missing.yaml")
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"n_feats": -1}')
    with pytest.raises(ConfigError, match="wrong.json: ArchConfig.n_feats: invalid value -1"):
        ArchConfig.load(wrong)


def test_config_file_errors_name_the_line(tmp_path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("family: edsr\nscales: [2]\nn_feats: 0\nn_resblocks: 4\n")
    with pytest.raises(ConfigError) as exc:
        ArchConfig.load(cfg)
    assert str(exc.value) == f"{cfg}:3: n_feats: invalid value 0; allowed: an integer in 1..1024"

    cfg.write_text("family: edsr\n\nn_resblocks: 2\nkernel_sizes: [3, 3, 3]\n")
    with pytest.raises(ConfigError, match=r"cfg.yaml:4: kernel_sizes: 3 values given for n_resblocks=2"):
        ArchConfig.load(cfg)

    cfg.write_text("family: edsr\nn_feats: 8\ndepth: 3\n")
    with pytest.raises(ConfigError, match=r"cfg.yaml:3: unknown key 'depth'; allowed keys: .*n_feats"):
        ArchConfig.load(cfg)

    # Exported files wrap the config under `arch:`; the line is still the key's.
    cfg.write_text("arch_id: edsr-x\narch:\n  family: edsr\n  act: tanh\n")
    with pytest.raises(ConfigError, match=r"cfg.yaml:4: act: invalid value 'tanh'"):
        ArchConfig.load(cfg)

    cfg.write_text("family: edsr\nbase: &b 8\nn_feats: *b\n")
    with pytest.raises(ConfigError, match=r"cfg.yaml:2: YAML anchors and aliases \(&b\) are not allowed"):
        ArchConfig.load(cfg)

    # JSON configs keep their messages (no line map).
    js = tmp_path / "cfg.json"
    js.write_text('{"family": "edsr", "depth": 3}')
    with pytest.raises(ConfigError, match=r"cfg.json: unknown key 'depth'"):
        ArchConfig.load(js)


def test_oversized_config_file_is_refused_before_reading(tmp_path) -> None:
    from srnas.yamlio import MAX_YAML_BYTES

    big = tmp_path / "big.yaml"
    big.write_text("family: edsr\n" + "#" * MAX_YAML_BYTES + "\n")
    with pytest.raises(ConfigError, match=r"big.yaml: \d+ bytes; the limit is 1048576 bytes"):
        ArchConfig.load(big)


def test_block_names_normalise_and_all_res_configs_keep_their_serialisation() -> None:
    default = ArchConfig(n_resblocks=3, n_feats=8)
    spelled = ArchConfig(n_resblocks=3, n_feats=8, block=["res", "res", "res"])
    assert default.block == ("res",) * 3 and spelled == default
    assert spelled.to_json() == default.to_json() and spelled.arch_id == default.arch_id
    assert "block" not in default.to_dict() and "\nblock:" not in default.to_yaml()
    # Configs stored before block types existed load unchanged.
    assert ArchConfig.from_json(default.to_json()).block == ("res",) * 3
    rcab = ArchConfig(n_resblocks=3, n_feats=8, block="rcab")
    assert rcab.block == ("rcab",) * 3 and rcab.to_dict()["block"] == ["rcab"] * 3
    assert rcab.arch_id != default.arch_id
    assert rcab.arch_id == "edsr-5e899f2b45"  # pinned, as the ids of stored studies are
    mixed = ArchConfig(n_resblocks=3, n_feats=8, block=("res", "dwsep", "res"))
    assert ArchConfig.from_yaml(mixed.to_yaml()) == mixed and "block: [res, dwsep, res]" in mixed.to_yaml()


def test_describe_and_replace_with_blocks() -> None:
    cfg = ArchConfig(n_resblocks=2, n_feats=8)
    assert "block" not in cfg.describe()
    assert cfg.replace(block="rcab").describe().endswith("res_scale=1 block=rcab")
    mixed = cfg.replace(block=("rcab", "dwsep"))
    assert "block=rcab/dwsep" in mixed.describe()
    deeper = cfg.replace(block="dwsep").replace(n_resblocks=4)
    assert deeper.block == ("dwsep",) * 4 and deeper.kernel_sizes == (3,) * 4
    assert cfg.replace(n_resblocks=5).block == ("res",) * 5
    with pytest.raises(ConfigError, match="give block when changing n_resblocks"):
        mixed.replace(n_resblocks=3)
    assert mixed.replace(n_resblocks=3, block="res") == ArchConfig(n_resblocks=3, n_feats=8)


def test_config_and_analytic_costs_need_no_torch() -> None:
    code = ("import sys; from srnas.arch import ArchConfig, count_params, cost_of, block_names;"
            "cfg = ArchConfig(n_resblocks=2, n_feats=8, block=block_names()[1:3]);"
            "cost_of(cfg); print(count_params(cfg), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[1] == "False", out.stdout
