"""Downloads against a local HTTP server (Range support, cut connections), and `srnas data`."""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from srnas.cli import main
from srnas.data import download as dl
from srnas.data import load_benchmark_sets, load_train_set
from srnas.data.download import Checksum, download_dataset
from srnas.errors import DataError


class _Files:
    """What the test server serves, and what it saw."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.cut_after: dict[str, int] = {}  # path -> bytes sent before the next response is cut
        self.ignore_range = False
        self.endless: set[str] = set()  # paths streamed as zeros without Content-Length, forever


def _handler(state: _Files) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # the http.server API names it so
            name = self.path.lstrip("/")
            rng = self.headers.get("Range")
            state.requests.append((name, rng))
            if name in state.endless:
                self.send_response(200)
                self.end_headers()
                try:
                    for _ in range(1 << 14):  # 1 GiB at most, should the client not stop
                        self.wfile.write(bytes(1 << 16))
                except OSError:
                    pass
                return
            data = state.files.get(name)
            if data is None:
                self.send_error(404, "Not Found")
                return
            start = 0
            if rng and not state.ignore_range:
                start = int(rng.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    self.send_error(416, "Range Not Satisfiable")
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            cut = state.cut_after.pop(name, None)
            if cut is not None:
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


@pytest.fixture()
def server() -> Iterator[tuple[str, _Files]]:
    state = _Files()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", state
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(autouse=True)
def _no_retry_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dl, "_RETRY_WAIT_S", 0.0)
    monkeypatch.delenv("SRNAS_DATA_BASE_URL", raising=False)


def _png(h: int, w: int, seed: int) -> bytes:
    from PIL import Image

    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _sha(data: bytes) -> Checksum:
    return Checksum("sha256", hashlib.sha256(data).hexdigest(), len(data))


def _serve_div2k(state: _Files) -> dict[str, Checksum]:
    state.files = {
        "DIV2K_train_HR.zip": _zip({"DIV2K_train_HR/0001.png": _png(24, 28, 1), "DIV2K_train_HR/0002.png": _png(20, 20, 2)}),
        "DIV2K_valid_HR.zip": _zip({"DIV2K_valid_HR/0801.png": _png(22, 26, 3)}),
        "DIV2K_train_LR_bicubic_X2.zip": _zip({"DIV2K_train_LR_bicubic/X2/0001x2.png": _png(12, 14, 4)}),
        "DIV2K_valid_LR_bicubic_X2.zip": _zip({"DIV2K_valid_LR_bicubic/X2/0801x2.png": _png(11, 13, 5)}),
    }
    return {name: _sha(data) for name, data in state.files.items()}


def _serve_benchmark(state: _Files, extra: dict[str, bytes] | None = None) -> dict[str, Checksum]:
    members = {"benchmark/Set5/HR/baby.png": _png(24, 24, 6),
               "benchmark/Set5/LR_bicubic/X2/babyx2.png": _png(12, 12, 7),
               "benchmark/Set14/HR/zebra.png": _png(20, 20, 8),
               "benchmark/B100/HR/3096.png": _png(20, 20, 9),
               "benchmark/Urban100/HR/img_001.png": _png(20, 20, 10), **(extra or {})}
    state.files = {"benchmark.tar": _tar(members)}
    data = state.files["benchmark.tar"]
    return {"benchmark.tar": Checksum("md5", hashlib.md5(data).hexdigest())}


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.endswith((".part", ".zip", ".tar")) or p.name.startswith(".srnas"))


def test_div2k_download_places_verified_folders(server: tuple[str, _Files], tmp_path: Path) -> None:
    url, state = server
    sums = _serve_div2k(state)
    root = tmp_path / "data"
    placed = download_dataset("div2k", root, scales=(2,), base_url=url, progress=False, checksums=sums)
    assert sorted(p.relative_to(root).as_posix() for p in placed) == [
        "DIV2K_train_HR", "DIV2K_train_LR_bicubic/X2", "DIV2K_valid_HR", "DIV2K_valid_LR_bicubic/X2"]
    assert _leftovers(root) == []
    data = load_train_set(root, 2, cache=False)
    assert data.names == ["0001", "0002"]
    # Idempotent: a second call finds everything in place and asks the server for nothing.
    seen = len(state.requests)
    download_dataset("div2k", root, scales=(2,), base_url=url, progress=False, checksums=sums)
    assert len(state.requests) == seen


def test_benchmark_tar_with_md5_and_progress_bar(server: tuple[str, _Files], tmp_path: Path) -> None:
    url, state = server
    sums = _serve_benchmark(state)
    download_dataset("benchmark", tmp_path, base_url=url, progress=True, checksums=sums)
    (set5,) = load_benchmark_sets(tmp_path, ["Set5"], 2, cache=False)
    assert set5.names == ["baby"]
    assert _leftovers(tmp_path) == []


def test_download_off_a_terminal_logs_size_percent_verify_and_extract(
        server: tuple[str, _Files], tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    url, state = server
    sums = _serve_benchmark(state)  # benchmark.tar: an MD5 but no size pinned
    size = len(state.files["benchmark.tar"])
    monkeypatch.setenv("SRNAS_PROGRESS_INTERVAL", "0.000001")
    caplog.set_level("INFO", logger="srnas")
    download_dataset("benchmark", tmp_path, base_url=url, progress=True, checksums=sums)
    lines = [r.getMessage() for r in caplog.records]
    kb = f"{size / 1e3:.1f} kB"
    assert f"downloading benchmark.tar ({kb})" in lines  # the size from Content-Length
    assert any(line.startswith(f"benchmark.tar: {kb} of {kb} (100%)") for line in lines), lines
    assert "verifying benchmark.tar" in " ".join(lines) and "verified benchmark.tar: size and md5 match" in lines
    assert f"extracting benchmark.tar into {tmp_path}" in lines
    assert any(line.startswith("extracted benchmark.tar in ") for line in lines), lines


def test_bad_checksum_removes_the_file(server: tuple[str, _Files], tmp_path: Path) -> None:
    url, state = server
    sums = _serve_benchmark(state)
    wrong = {"benchmark.tar": Checksum("md5", "0" * 32)}
    message = r"benchmark\.tar: md5 checksum mismatch \(got [0-9a-f]{32}, expected 0{32}\); the file was removed"
    with pytest.raises(DataError, match=message) as err:
        download_dataset("benchmark", tmp_path, base_url=url, progress=False, checksums=wrong)
    assert "\n" not in str(err.value)
    assert _leftovers(tmp_path) == [] and not (tmp_path / "benchmark").exists()
    download_dataset("benchmark", tmp_path, base_url=url, progress=False, checksums=sums)
    assert (tmp_path / "benchmark" / "Set5" / "HR" / "baby.png").is_file()


def test_size_mismatch_is_refused_before_downloading(server: tuple[str, _Files], tmp_path: Path) -> None:
    url, state = server
    sums = _serve_benchmark(state)
    pinned = Checksum("md5", sums["benchmark.tar"].digest, len(state.files["benchmark.tar"]) + 1)
    with pytest.raises(DataError, match=r"server offers \d+ bytes, expected \d+; wrong file or mirror"):
        download_dataset("benchmark", tmp_path, base_url=url, progress=False, checksums={"benchmark.tar": pinned})


def test_interrupted_download_resumes_with_range(server: tuple[str, _Files], tmp_path: Path) -> None:
    url, state = server
    sums = _serve_benchmark(state)
    total = len(state.files["benchmark.tar"])
    state.cut_after["benchmark.tar"] = 1000
    with pytest.raises(DataError, match=r"transfer interrupted after 1000 bytes .*run the command again to resume"):
        download_dataset("benchmark", tmp_path, base_url=url, progress=False, checksums=sums, retries=0)
    part = tmp_path / "benchmark.tar.part"
    assert part.stat().st_size == 1000
    assert not (tmp_path / "benchmark").exists() and not (tmp_path / "benchmark.tar").exists()
    download_dataset("benchmark", tmp_path, base_url=url, progress=False, checksums=sums)
    assert state.requests[-1] == ("benchmark.tar", "bytes=1000-")
    assert total > 1000 and (tmp_path / "benchmark" / "Set5" / "HR" / "baby.png").is_file()
    assert _leftovers(tmp_path) == []


def test_automatic_resume_within_one_call(server: tuple[str, _Files], tmp_path: Path) -> None:
    url, state = server
    sums = _serve_div2k(state)
    state.cut_after["DIV2K_valid_HR.zip"] = 100
    download_dataset("div2k", tmp_path, scales=(2,), base_url=url, progress=False, checksums=sums, retries=1)
    assert ("DIV2K_valid_HR.zip", "bytes=100-") in state.requests
    assert (tmp_path / "DIV2K_valid_HR" / "0801.png").is_file()


def test_server_ignoring_range_restarts_cleanly(server: tuple[str, _Files], tmp_path: Path) -> None:
    url, state = server
    sums = _serve_benchmark(state)
    (tmp_path / "benchmark.tar.part").write_bytes(b"stale bytes from another file")
    state.ignore_range = True
    download_dataset("benchmark", tmp_path, base_url=url, progress=False, checksums=sums)
    assert state.requests[-1][1] == "bytes=29-"
    assert (tmp_path / "benchmark" / "Set5" / "HR" / "baby.png").is_file()


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def test_unreachable_host_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = _closed_port_url()
    with pytest.raises(DataError, match=r"benchmark\.tar: cannot reach the host \(.*\); check the network"):
        download_dataset("benchmark", tmp_path, base_url=url, progress=False)
    assert _leftovers(tmp_path) == [] and not (tmp_path / "benchmark").exists()
    code = main(["data", "download", "benchmark", "--root", str(tmp_path), "--base-url", url, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("srnas: error: ") and err.count("\n") == 1 and "cannot reach the host" in err
    # A root this command created and nothing landed in is removed; one that existed stays.
    fresh = tmp_path / "new" / "root"
    assert main(["data", "download", "benchmark", "--root", str(fresh), "--base-url", url, "--no-progress"]) == 2
    assert not fresh.exists() and (tmp_path / "new").exists()


def test_a_server_streaming_garbage_stops_at_the_pinned_size(server: tuple[str, _Files], tmp_path: Path) -> None:
    url, files = server
    files.endless.add("benchmark.tar")
    with pytest.raises(DataError, match=r"benchmark\.tar: the server sent more than the pinned size of 4096 bytes"):
        download_dataset("benchmark", tmp_path / "root", base_url=url, progress=False,
                         checksums={"benchmark.tar": Checksum("md5", "0" * 32, size=4096)})
    assert not (tmp_path / "root").exists()  # no .part to append to: nothing left, the root it made removed


def test_http_error_and_bad_arguments(server: tuple[str, _Files], tmp_path: Path) -> None:
    url, _ = server
    with pytest.raises(DataError, match=r"benchmark\.tar: HTTP 404"):
        download_dataset("benchmark", tmp_path, base_url=url, progress=False)
    with pytest.raises(DataError, match=r"scales 2, 3, 4 only, not \[8\]"):
        download_dataset("div2k", tmp_path, scales=(2, 8), base_url=url, progress=False)
    with pytest.raises(DataError, match="unknown data set 'imagenet'"):
        download_dataset("imagenet", tmp_path)
    with pytest.raises(DataError, match="never downloaded automatically"):
        download_dataset("manga109", tmp_path)
    with pytest.raises(DataError, match="only http:// and https://"):
        download_dataset("benchmark", tmp_path, base_url="file:///etc/")


def test_base_url_from_environment(server: tuple[str, _Files], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, state = server
    sums = _serve_benchmark(state)
    monkeypatch.setenv("SRNAS_DATA_BASE_URL", url)
    download_dataset("benchmark", tmp_path, progress=False, checksums=sums)
    assert state.requests == [("benchmark.tar", None)]


def test_default_table_pins_reference_values() -> None:
    assert dl.CHECKSUMS["DIV2K_train_HR.zip"] == Checksum(
        "sha256", "9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335", 3530603713)
    assert dl.CHECKSUMS["benchmark.tar"].digest == "4ace41d33c2384b97e6b320cd0afd6ba"
    names = {a.filename for a in dl.archives_for("div2k", (2, 3, 4))}
    assert names == set(dl.CHECKSUMS) - {"benchmark.tar"}


@pytest.mark.parametrize("member", ["../evil.png", "/abs/evil.png", "a/../../evil.png"])
def test_zip_with_unsafe_paths_is_refused(tmp_path: Path, member: str) -> None:
    archive = tmp_path / "bad.zip"
    archive.write_bytes(_zip({"DIV2K_valid_HR/0801.png": b"x", member: b"evil"}))
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(DataError, match=r"bad\.zip: unsafe member"):
        dl._extract(archive, root, ("DIV2K_valid_HR",))
    assert list(root.iterdir()) == [] and not (tmp_path / "evil.png").exists()


def test_zip_with_a_link_is_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("DIV2K_valid_HR/link.png")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    archive = tmp_path / "link.zip"
    archive.write_bytes(buf.getvalue())
    with pytest.raises(DataError, match=r"member 'DIV2K_valid_HR/link\.png' is a link"):
        dl._extract(archive, tmp_path, ("DIV2K_valid_HR",))


def test_tar_with_unsafe_member_is_refused(server: tuple[str, _Files], tmp_path: Path) -> None:
    url, state = server
    sums = _serve_benchmark(state, extra={"../outside.txt": b"evil"})
    root = tmp_path / "root"
    with pytest.raises(DataError, match=r"benchmark\.tar: unsafe member"):
        download_dataset("benchmark", root, base_url=url, progress=False, checksums=sums)
    assert not (tmp_path / "outside.txt").exists() and not (root / "benchmark").exists()
    assert not any(p.name.startswith(".srnas-extract") for p in root.iterdir())


def test_archive_without_the_expected_folder(server: tuple[str, _Files], tmp_path: Path) -> None:
    url, state = server
    state.files = {"benchmark.tar": _tar({"other/Set5/HR/a.png": _png(8, 8, 0)})}
    sums = {"benchmark.tar": Checksum("md5", hashlib.md5(state.files["benchmark.tar"]).hexdigest())}
    with pytest.raises(DataError, match=r"does not contain benchmark/Set5/ \(top level: other\)"):
        download_dataset("benchmark", tmp_path, base_url=url, progress=False, checksums=sums)
    assert not (tmp_path / "other").exists()


def test_hand_placed_manga109_does_not_hide_missing_sets(server: tuple[str, _Files], tmp_path: Path) -> None:
    url, state = server
    sums = _serve_benchmark(state)
    manga = tmp_path / "benchmark" / "Manga109" / "HR"
    manga.mkdir(parents=True)
    (manga / "page.png").write_bytes(_png(20, 20, 0))
    placed = download_dataset("benchmark", tmp_path, base_url=url, progress=False, checksums=sums)
    assert sorted(p.name for p in placed) == ["B100", "Set14", "Set5", "Urban100"]
    assert (manga / "page.png").is_file()
    assert len(load_benchmark_sets(tmp_path, ["Set5", "Set14", "B100", "Urban100", "Manga109"], 2, cache=False)) == 5


def test_cli_download_uses_the_module_table(server: tuple[str, _Files], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    url, state = server
    monkeypatch.setitem(dl.CHECKSUMS, "benchmark.tar", _serve_benchmark(state)["benchmark.tar"])
    assert main(["data", "download", "benchmark", "--root", str(tmp_path), "--base-url", url, "--no-progress"]) == 0
    assert "ready:" in capsys.readouterr().out
    assert (tmp_path / "benchmark" / "Set5" / "HR" / "baby.png").is_file()


def test_cli_manga109_prints_steps_and_downloads_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "download", "manga109", "--root", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert "manga109.org" in out and str(tmp_path / "d" / "benchmark" / "Manga109" / "HR") in out
    assert not (tmp_path / "d").exists()


def test_cli_download_needs_root(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "download", "div2k"]) == 2
    assert "--root DIR is required" in capsys.readouterr().err


def test_cli_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from srnas.data import save_image

    base = tmp_path / "benchmark"
    for i, name in enumerate(["baby", "bird", "butterfly", "head", "woman"]):
        save_image(base / "Set5" / "HR" / f"{name}.png", np.zeros((8, 8, 3), np.uint8))
        if i < 2:
            save_image(base / "Set5" / "LR_bicubic" / "X2" / f"{name}x2.png", np.zeros((4, 4, 3), np.uint8))
    assert main(["data", "check", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Set5" in out and "5/5" in out and "Urban100" in out and "missing" in out
    save_image(base / "Set14" / "HR" / "zebra.png", np.zeros((8, 8, 3), np.uint8))
    assert main(["data", "check", str(tmp_path)]) == 1  # Set14 has 1 of 14 images
    assert "incomplete" in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["data", "check", str(empty)]) == 2
    assert "no data set found" in capsys.readouterr().err
