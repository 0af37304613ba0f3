"""The one registry behind every named choice (srnas/registry.py): block types, engines, proxies,
presets, objectives, storages; one error format with the nearest name; block types checked for
their cost methods when registered."""

from __future__ import annotations

import pytest

from srnas.arch.block_type import BLOCKS, BlockType, register_block
from srnas.arch.presets import PRESETS, preset_config
from srnas.cli import main
from srnas.errors import ConfigError, StudyError
from srnas.registry import Registry, UnknownName
from srnas.search.engines import ENGINES, get_engine
from srnas.search.settings import OBJECTIVES, parse_objectives
from srnas.storages import STORAGES, open_storage
from srnas.train.schedules import PROXY_FIDELITIES, get_schedule


def test_a_registry_keeps_order_refuses_a_taken_name_and_names_the_nearest() -> None:
    r: Registry[int] = Registry("colour", {"red": 1, "green": 2}, flag="--colour")
    assert r.register("blue", 3) == 3 and r.names() == ("red", "green", "blue") and list(r) == list(r.names())
    assert r["green"] == 2 and "blue" in r and len(r) == 3 and dict(r.items()) == {"red": 1, "green": 2, "blue": 3}
    r.register("blue", 3)  # the same item again: fine
    with pytest.raises(ValueError, match="colour 'blue' is already registered"):
        r.register("blue", 4)
    assert r.register("blue", 4, replace=True) == 4
    with pytest.raises(UnknownName) as err:
        r.get("gren")
    assert str(err.value) == "--colour: unknown colour 'gren'; allowed: red, green, blue (did you mean 'green'?)"
    assert isinstance(err.value, ConfigError) and isinstance(err.value, KeyError)
    with pytest.raises(KeyError):
        r["purple"]
    assert "did you mean" not in str(r.unknown("purple")) and "did you mean" not in str(r.unknown(7))
    assert r.unregister("blue") == 4 and "blue" not in r


def test_every_named_choice_is_a_registry_with_the_same_error() -> None:
    for registry in (BLOCKS, ENGINES, PROXY_FIDELITIES, PRESETS, OBJECTIVES, STORAGES):
        assert isinstance(registry, Registry) and len(registry) > 1
    cases = [(lambda: get_engine("optnua"), "--engine: unknown engine 'optnua'", "'optuna'"),
             (lambda: get_schedule("tinny"), "unknown schedule 'tinny'", "'tiny'"),
             (lambda: preset_config("edsr-basline"), "unknown preset 'edsr-basline'", "'edsr-baseline'"),
             (lambda: parse_objectives("psnr,param"), "--objectives: unknown objective 'param'", "'params'"),
             (lambda: BLOCKS.get("rcb"), "unknown block type 'rcb'; allowed: res | rcab", "'rcab'")]
    for call, start, nearest in cases:
        with pytest.raises(ConfigError) as err:
            call()
        assert start in str(err.value) and f"(did you mean {nearest}?)" in str(err.value), str(err.value)
    with pytest.raises(StudyError, match=r"storage postgres://u:\*\*\*@h/db: unknown storage 'postgres'; allowed: .*"
                                         r"\(did you mean 'postgresql'\?\)"):
        open_storage("postgres://u:secret@h/db")


def test_a_typo_on_the_command_line_is_one_line_with_the_nearest_name(
        trials_dir, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "--engine", "optnua", "--budget", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown engine 'optnua'" in err and "did you mean 'optuna'" in err
    assert main(["search", "--sampler", "tpee", "--budget", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--sampler: unknown sampler 'tpee'" in err and "did you mean 'tpe'" in err


class _NoCosts(BlockType):
    name = "test-no-costs"

    @classmethod
    def build(cls, n_feats, kernel_size, *, batch_norm=False, act="relu", res_scale=1.0):  # type: ignore[override]
        raise AssertionError("never built")

    @classmethod
    def params(cls, n_feats: int, kernel_size: int, *, batch_norm: bool = False) -> int:
        return 0


class _FusableWithoutFusedCosts(_NoCosts):
    name = "test-fusable"
    fusable = True

    @classmethod
    def mult_adds(cls, n_feats, kernel_size, *, pixels, size=None):  # type: ignore[override]
        return 0

    @classmethod
    def saved_elements(cls, n_feats, kernel_size, *, batch_norm=False, act="relu", pixels, size=None):  # type: ignore[override]
        return 0


def test_registering_a_block_type_checks_that_it_states_its_costs() -> None:
    with pytest.raises(TypeError, match=r"_NoCosts \('test-no-costs'\) does not override mult_adds, saved_elements"):
        register_block(_NoCosts)
    with pytest.raises(TypeError, match=r"does not override fused_params, fused_mult_adds \(a fusable type"):
        register_block(_FusableWithoutFusedCosts)
    assert "test-no-costs" not in BLOCKS and "test-fusable" not in BLOCKS
