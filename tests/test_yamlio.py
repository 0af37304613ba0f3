"""srnas.yamlio: the bounded YAML reader (no alias bombs, size and depth caps, line map, one-line
errors with FILE:LINE)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from srnas.errors import ConfigError
from srnas.yamlio import MAX_YAML_BYTES, MAX_YAML_DEPTH, load_yaml_file, load_yaml_with_lines

# "Billion laughs" on mappings: 9 levels of 10 aliases each; fully expanded, 10**9 leaves.
ALIAS_BOMB = "a0: &a0 {x: 1, y: 2}\n" + "".join(
    f"a{i}: &a{i} {{{', '.join(f'k{j}: *a{i - 1}' for j in range(10))}}}\n" for i in range(1, 10))


def test_line_map_of_nested_keys_and_list_items() -> None:
    text = textwrap.dedent("""\
        name: tiny
        parameters:
          n_feats: [8, 16]

          n_resblocks: {low: 1, high: 4}
        constraints:
          max_params: 1000000
        presets:
          - n_feats: 8
            n_resblocks: 2
        """)
    data, lines = load_yaml_with_lines(text, "space.yaml")
    assert data["constraints"]["max_params"] == 1_000_000
    assert data["presets"] == [{"n_feats": 8, "n_resblocks": 2}]
    assert lines["name"] == 1
    assert lines["parameters"] == 2
    assert lines["parameters.n_feats"] == 3
    assert lines["parameters.n_resblocks"] == 5
    assert lines["parameters.n_resblocks.high"] == 5
    assert lines["constraints.max_params"] == 7
    assert lines["presets.0"] == 9 and lines["presets.0.n_resblocks"] == 10
    assert load_yaml_with_lines("", "empty.yaml") == (None, {})


def test_alias_bomb_is_refused_at_the_first_anchor() -> None:
    assert len(ALIAS_BOMB) < 1500
    start = time.monotonic()
    with pytest.raises(ConfigError) as exc:
        load_yaml_with_lines(ALIAS_BOMB, "bomb.yaml")
    assert time.monotonic() - start < 1.0
    assert str(exc.value) == "bomb.yaml:1: YAML anchors and aliases (&a0) are not allowed; write the value out"
    # An alias whose anchor is refused anyway is named too (line of the '*').
    with pytest.raises(ConfigError, match=r"^b.yaml:2: YAML anchors and aliases \(\*x\)"):
        load_yaml_with_lines("a: 1\nb: *x\n", "b.yaml")


def test_alias_bomb_stays_within_a_small_memory_limit(tmp_path: Path) -> None:
    """Loaded under a 512 MiB address-space limit: an expanding walker would die of MemoryError."""
    resource = pytest.importorskip("resource")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(ALIAS_BOMB)
    code = textwrap.dedent(f"""\
        import resource
        resource.setrlimit(resource.RLIMIT_AS, ({512 << 20}, {512 << 20}))
        from srnas.errors import ConfigError
        from srnas.yamlio import load_yaml_file
        try:
            load_yaml_file({str(bomb)!r})
        except ConfigError as exc:
            print(exc)
        """)
    del resource
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == f"{bomb}:1: YAML anchors and aliases (&a0) are not allowed; write the value out"


@pytest.mark.parametrize("opener,closer", [("[", "]"), ("{a: ", "}")])
def test_deep_nesting_is_refused(opener: str, closer: str) -> None:
    ok = "x: " + opener * (MAX_YAML_DEPTH - 1) + "1" + closer * (MAX_YAML_DEPTH - 1)
    load_yaml_with_lines(ok, "ok.yaml")
    # 100000 levels would overflow PyYAML's recursive composer (RecursionError, a traceback).
    deep = "x: " + opener * 100_000 + "1" + closer * 100_000
    with pytest.raises(ConfigError, match=rf"^deep.yaml:1: YAML nested deeper than {MAX_YAML_DEPTH} levels$"):
        load_yaml_with_lines(deep, "deep.yaml")


def test_deep_block_nesting_names_its_line() -> None:
    text = "".join(f"{'  ' * i}k{i}:\n" for i in range(40)) + "  " * 40 + "v: 1\n"
    with pytest.raises(ConfigError, match=rf"^deep.yaml:{MAX_YAML_DEPTH + 1}: YAML nested deeper"):
        load_yaml_with_lines(text, "deep.yaml")


def test_huge_file_is_refused_by_size(tmp_path: Path) -> None:
    huge = tmp_path / "huge.yaml"
    with huge.open("w") as f:
        f.write("a: 1\n")
        f.truncate(64 << 20)  # 64 MiB (sparse): refused from its size, never read
    with pytest.raises(ConfigError, match=rf"huge.yaml: {64 << 20} bytes; the limit is {MAX_YAML_BYTES} bytes"):
        load_yaml_file(huge)
    with pytest.raises(ConfigError, match=r"^t.yaml: \d+ bytes; the limit"):
        load_yaml_with_lines("a: " + "x" * MAX_YAML_BYTES, "t.yaml")
    # Just under the limit is fine.
    data, _ = load_yaml_with_lines("a: " + "x" * (MAX_YAML_BYTES - 10), "t.yaml")
    assert len(data["a"]) == MAX_YAML_BYTES - 10


@pytest.mark.parametrize(("text", "message"), [
    ("a: 1\nb: [1, 2\n", r"^f.yaml:2: not valid YAML \(expected ',' or '\]', but got '<stream end>'\)$"),
    ("a: 1\n  b: 2\nc: 3\n", r"^f.yaml:2: not valid YAML \(mapping values are not allowed here\)$"),
    ("a:\n\tb: 1\n", r"^f.yaml:2: not valid YAML \(found character '\\t' that cannot start any token\)$"),
    ("a: 1\n---\nb: 2\n", r"^f.yaml:2: not valid YAML \(expected a single document in the stream, but found another"),
    ("a: 1\nb: \x00\n", r"^f.yaml:2: not valid YAML \(special characters are not allowed: character #x0000\)$"),
    ("a: 1\nb: !!python/object:os.system x\n", r"^f.yaml:2: not valid YAML \(could not determine a constructor"),
    ("a: 1\nb: 2020-13-45\n", r"^f.yaml:2: not valid YAML \(month must be in 1..12\)$"),
    ("a: 1\nb: 2\na: 3\n", r"^f.yaml:3: duplicate key 'a' \(first on line 1\)$"),
    ("p: {n: 1, n: 2}\n", r"^f.yaml:1: duplicate key 'n' \(first on line 1\)$"),
])
def test_bad_yaml_is_one_line_with_file_and_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as exc:
        load_yaml_with_lines(text, "f.yaml")
    assert "\n" not in str(exc.value)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing.yaml: search-space file not found$"):
        load_yaml_file(tmp_path / "missing.yaml", what="search-space file")
    with pytest.raises(ConfigError, match=r": is a folder, not a config file$"):
        load_yaml_file(tmp_path)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"a: 1\nname: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"latin.yaml:2: config file is not UTF-8 text \(byte 0xe9\)$"):
        load_yaml_file(latin)
    good = tmp_path / "good.yaml"
    good.write_text("a:\n  b: 2\n", encoding="utf-8")
    assert load_yaml_file(good) == ({"a": {"b": 2}}, {"a": 1, "a.b": 2})


def test_shipped_spaces_load_unchanged() -> None:
    yaml = pytest.importorskip("yaml")
    spaces = sorted((Path(__file__).resolve().parents[1] / "srnas" / "spaces").glob("*.yaml"))
    assert spaces
    for path in spaces:
        data, lines = load_yaml_file(path, what="search-space file")
        assert data == yaml.safe_load(path.read_text())
        assert lines
