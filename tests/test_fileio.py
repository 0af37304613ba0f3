"""The one atomic writer (`srnas.fileio`): modes follow the umask, failures leave the old file and
no temporary behind, a full disk is one line naming the file."""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from srnas.data import ImageCache, save_image
from srnas.errors import SrnasError, StorageFullError, WriteError
from srnas.fileio import atomic_folder, atomic_path, atomic_write, atomic_write_bytes, atomic_write_text
from srnas.train import checkpoint as ckpt

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the test under the umask; give the umask (022: files 0644, folders 0755; 077: 0600, 0700)."""
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _full(*_args: object, **_kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_helper_files_and_folders_follow_the_umask(tmp_path: Path, umask: int) -> None:
    written = [
        atomic_write_text(tmp_path / "new" / "trials.csv", "a,b\n1,2\n"),
        atomic_write_bytes(tmp_path / "report.html", b"<html></html>"),
        atomic_write(tmp_path / "blob.bin", lambda handle: handle.write(b"x")),
    ]
    with atomic_path(tmp_path / "weights.npy") as tmp:
        np.save(tmp, np.arange(3))
    written.append(tmp_path / "weights.npy")
    with atomic_folder(tmp_path / "export") as folder:
        atomic_write_text(folder / "config.yaml", "a: 1\n")
    for path in [*written, tmp_path / "export" / "config.yaml"]:
        assert _mode(path) == {0o022: 0o644, 0o077: 0o600}[umask], path
    assert _mode(tmp_path / "export") == {0o022: 0o755, 0o077: 0o700}[umask]
    # Replacing a file gives the new one the umask's mode too (not the old file's).
    os.chmod(written[0], 0o640)
    atomic_write_text(written[0], "again\n")
    assert _mode(written[0]) == 0o666 & ~umask
    assert np.array_equal(np.load(tmp_path / "weights.npy"), np.arange(3))


def test_library_files_follow_the_umask(tmp_path: Path, umask: int) -> None:
    net = torch.nn.Conv2d(3, 3, 1)
    ckpt.save_checkpoint(tmp_path / "checkpoint.pt", {"model": net.state_dict(), "update": 1})
    ckpt.save_weights(tmp_path / "model.pt", net)
    image = np.zeros((8, 8, 3), np.uint8)
    save_image(tmp_path / "up" / "sr.png", image)
    cache = ImageCache(tmp_path / "cache")
    cache.image(tmp_path / "up" / "sr.png")
    [entry] = (tmp_path / "cache").rglob("*.npy")
    for path in (tmp_path / "checkpoint.pt", tmp_path / "model.pt", tmp_path / "up" / "sr.png", entry):
        assert _mode(path) == 0o666 & ~umask, path
    assert ckpt.load_checkpoint(tmp_path / "checkpoint.pt")["update"] == 1


def test_report_and_export_follow_the_umask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask: int) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from test_export import _complete, _fake_retrain
    from test_report import build_study

    from srnas.arch import ArchConfig
    from srnas.results.export import export_study
    from srnas.results.report import write_report

    root = tmp_path / "trials"
    monkeypatch.setenv("SRNAS_TRIALS_DIR", str(root))
    study = build_study(root, "hand", n_complete=3)
    result = write_report("hand", static_images=False)
    trial = _complete(study)[0]
    _fake_retrain(root, "hand", ArchConfig.from_dict(trial.user_attrs["config"]))
    [item] = export_study("hand", tmp_path / "export", trial=trial.number, formats="yaml,pt,safetensors")
    for path in (result.html, result.csv, *(item.folder / name for name in item.files)):
        assert _mode(path) == 0o666 & ~umask, path
    assert _mode(item.folder) == 0o777 & ~umask


def test_full_disk_keeps_the_old_file_and_says_so_in_one_line(tmp_path: Path) -> None:
    target = atomic_write_text(tmp_path / "metrics.json", "old\n")

    def half_then_full(handle: object) -> None:
        handle.write(b"half a fi")  # type: ignore[attr-defined]
        _full()

    with pytest.raises(StorageFullError) as err:
        atomic_write(target, half_then_full)
    message = str(err.value)
    assert message.startswith(f"{target}: disk full") and "\n" not in message
    assert isinstance(err.value, SrnasError) and isinstance(err.value, OSError) and err.value.errno == errno.ENOSPC
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary left behind


def test_full_disk_through_libraries_and_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture) -> None:
    # A library that wraps the OSError (its cause) is still a full disk.
    def wrapped(_handle: object) -> None:
        try:
            _full()
        except OSError as exc:
            raise RuntimeError("PytorchStreamWriter failed writing file") from exc

    with pytest.raises(StorageFullError, match=r"model\.pt: disk full"):
        atomic_write(tmp_path / "model.pt", wrapped)
    with pytest.raises(StorageFullError, match=r"w\.npy: disk full"), atomic_path(tmp_path / "w.npy") as tmp:
        tmp.write_bytes(b"part")
        _full()
    with pytest.raises(StorageFullError, match=r"sr\.png: disk full"):
        monkeypatch.setattr("PIL.Image.Image.save", _full)
        save_image(tmp_path / "sr.png", np.zeros((4, 4, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []  # no temporaries left behind

    # The CLI prints it as one line (exit 2), no traceback.
    from srnas.arch import ArchConfig, build_model
    from srnas.cli import main

    monkeypatch.undo()
    run = tmp_path / "run"
    cfg = ArchConfig(family="edsr", scales=(2,), n_resblocks=1, n_feats=8)
    atomic_write_text(run / "config.yaml", cfg.to_yaml())
    ckpt.save_weights(run / "model.pt", build_model(cfg))
    source = save_image(tmp_path / "lr.png", np.zeros((6, 6, 3), np.uint8))
    monkeypatch.setattr("PIL.Image.Image.save", _full)
    code = main(["upscale", "--model", str(run), "-o", str(tmp_path / "out"), str(source)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("srnas: error: ") and "disk full" in err and err.count("\n") == 1


def test_other_failures_remove_the_temporary_file(tmp_path: Path) -> None:
    target = atomic_write_text(tmp_path / "a.txt", "old")

    def bad(handle: object) -> None:
        handle.write(b"x")  # type: ignore[attr-defined]
        raise ValueError("not serialisable")

    with pytest.raises(ValueError, match="not serialisable"):  # not a write error: unchanged
        atomic_write(target, bad)
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise KeyboardInterrupt
    with pytest.raises(WriteError, match=r"a\.txt: cannot write \(Permission denied\)"):
        atomic_write(target, lambda _h: (_ for _ in ()).throw(PermissionError(errno.EACCES, "Permission denied")))
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    # A file where the folder should be: one line naming the target.
    with pytest.raises(WriteError, match=r"a\.txt/b\.txt: cannot write"):
        atomic_write_text(target / "b.txt", "x")


def test_atomic_folder_replaces_an_old_folder_or_keeps_it(tmp_path: Path) -> None:
    final = tmp_path / "arch"
    with atomic_folder(final) as folder:
        (folder / "old.txt").write_text("1")
    with pytest.raises(RuntimeError), atomic_folder(final) as folder:
        (folder / "new.txt").write_text("2")
        raise RuntimeError("export check failed")
    assert sorted(p.name for p in final.iterdir()) == ["old.txt"]
    with atomic_folder(final) as folder:
        (folder / "new.txt").write_text("2")
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["arch"]  # neither the new nor the old temporary is left
    (tmp_path / "file").write_text("x")
    with pytest.raises(WriteError, match="exists and is not a folder"), atomic_folder(tmp_path / "file"):
        pass
