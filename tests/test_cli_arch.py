"""`srnas --help`, `srnas arch show`, `srnas space show`, and a light `import srnas`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from srnas.cli import main


def test_help_lists_commands(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "arch" in out and "space" in out


def test_arch_show_preset(capsys) -> None:
    assert main(["arch", "show", "edsr-baseline"]) == 0
    out = capsys.readouterr().out
    assert "1,369,859" in out and "316.25G" in out and "edsr-9c41d01931" in out


def test_arch_show_file_and_mdsr(tmp_path, capsys) -> None:
    path = tmp_path / "net.json"
    path.write_text(json.dumps({"family": "mdsr", "scales": [2, 3], "n_resblocks": 2, "n_feats": 8}))
    assert main(["arch", "show", str(path), "--hr-size", "48x48"]) == 0
    out = capsys.readouterr().out
    assert "x2" in out and "x3" in out and "total trainable parameters" in out


def test_arch_show_prints_block_lists_verbatim(tmp_path, capsys) -> None:
    path = tmp_path / "net.yaml"
    path.write_text("family: edsr\nn_resblocks: 2\nn_feats: 8\nblock: [rcab, dwsep]\n")
    assert main(["arch", "show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "block: [rcab, dwsep]" in out and "block=rcab/dwsep" in out


def test_space_show(capsys) -> None:
    assert main(["space", "show", "lightweight"]) == 0
    out = capsys.readouterr().out
    assert "5,376 configs" in out and "max_params = 1,400,000" in out and "edsr-baseline" in out


def test_arch_and_space_show_json(capsys) -> None:
    assert main(["arch", "show", "edsr-baseline", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["arch_id"] == "edsr-9c41d01931" and shown["config"]["n_feats"] == 64
    (cost,) = shown["costs"]
    assert cost["scale"] == 2 and cost["params"] == 1_369_859
    assert main(["space", "show", "lightweight", "--json"]) == 0
    space = json.loads(capsys.readouterr().out)
    assert space["name"] == "lightweight" and space["constraints"]["max_params"] == 1_400_000
    assert "edsr-baseline" in space["presets"] and space["size"] == 5376


@pytest.mark.parametrize(("argv", "message"), [
    (["space", "show", "galaxy"], "unknown search space 'galaxy'"),
    (["arch", "show", "vdsr"], "'vdsr' is neither a preset"),
    (["arch", "show", "missing.yaml"], "missing.yaml: config file not found"),
])
def test_bad_input_gives_one_line_and_exit_2(capsys, argv: list[str], message: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_import_srnas_is_light() -> None:
    code = ("import sys, srnas; import srnas.space, srnas.arch, srnas.cli;"
            "bad = [m for m in ('nni', 'onnx', 'onnxruntime', 'kaleido') if m in sys.modules];"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    code = "import sys, srnas; print('torch' in sys.modules, 'optuna' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


@pytest.mark.parametrize("argv", [["--help"], ["search", "--help"], ["retrain", "--help"], ["eval", "--help"]])
def test_help_is_light(argv: list[str]) -> None:
    # `srnas --help` builds every sub-parser (the settings modules of each workflow): it must import
    # neither torch nor Optuna nor numpy, which the libraries' module tops keep inside functions.
    code = (f"import contextlib, io, sys, srnas.cli\nwith contextlib.suppress(SystemExit), "
            f"contextlib.redirect_stdout(io.StringIO()):\n    srnas.cli.main({argv!r})\n"
            "print(','.join(m for m in ('torch', 'optuna', 'numpy') if m in sys.modules) or 'none')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "none"


def test_console_script_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "srnas", "space", "list"], capture_output=True, text=True)
    assert out.returncode == 0 and "tiny" in out.stdout
