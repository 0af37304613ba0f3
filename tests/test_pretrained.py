"""Pretrained presets: the authors' released file names, hash-checked download from a local HTTP
server (good, tampered, missing, unreachable), the cache, `build_model(pretrained=True)` and
`srnas eval/upscale --model PRESET --pretrained`."""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import json
import socket
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

from srnas.arch import build_model
from srnas.arch import pretrained as pt
from srnas.cli import main
from srnas.data import load_image, save_image
from srnas.errors import ConfigError, DownloadError
from srnas.fetch import Checksum


class _Mirror:
    """A folder served over HTTP on 127.0.0.1, and the paths requested from it."""

    def __init__(self, folder: Path, url: str, requests: list[str]) -> None:
        self.folder, self.url, self.requests = folder, url, requests


@pytest.fixture()
def mirror(tmp_path: Path) -> Iterator[_Mirror]:
    folder = tmp_path / "mirror"
    folder.mkdir()
    requests: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # the http.server API names it so
            requests.append(self.path.lstrip("/"))
            super().do_GET()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield _Mirror(folder, f"http://127.0.0.1:{httpd.server_address[1]}/", requests)
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private srnas cache; the weights land in ``<cache>/weights``."""
    root = tmp_path / "cache"
    monkeypatch.setenv("SRNAS_CACHE_DIR", str(root))
    monkeypatch.delenv("SRNAS_WEIGHTS_URL", raising=False)
    return root / "weights"


def _weights(preset: str, scale: int | None, seed: int) -> dict[str, torch.Tensor]:
    """A state dict as the authors release it: every tensor of the preset, non-trivial values."""
    torch.manual_seed(seed)
    net = build_model(preset, scale=scale)
    with torch.no_grad():
        for p in net.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.01)
    return {k: v.clone() for k, v in net.state_dict().items()}


def _saved(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _publish(mirror: _Mirror, monkeypatch: pytest.MonkeyPatch, preset: str, scale: int | None, data: bytes,
             *, name_from: bytes | None = None) -> str:
    """Serve ``data`` under a torch.hub name carrying the SHA-256 prefix of ``name_from`` (default
    ``data`` itself) and make it the released file of ``preset`` at ``scale``."""
    released = pt.released_file(preset, scale)
    stem = released.rsplit("-", 1)[0]
    name = f"{stem}-{hashlib.sha256(data if name_from is None else name_from).hexdigest()[:8]}.pt"
    (mirror.folder / name).write_bytes(data)
    key = (preset, None if preset.startswith("mdsr") else (scale or 2))
    monkeypatch.setitem(pt.RELEASED_FILES, key, name)
    return name


# ---- the released table --------------------------------------------------------------------------


def test_released_names_follow_the_torch_hub_convention() -> None:
    assert pt.released_file("edsr-baseline", 2) == "edsr_baseline_x2-1bc95232.pt"
    assert pt.released_file("EDSR_baseline") == "edsr_baseline_x2-1bc95232.pt"  # preset names as preset_config reads them
    assert pt.released_file("edsr", 4) == "edsr_x4-4f62e9ef.pt"
    assert {pt.released_file("mdsr-baseline", s) for s in (None, 2, 3, 4)} == {"mdsr_baseline-a00cab12.pt"}
    assert len(set(pt.RELEASED_FILES.values())) == len(pt.RELEASED_FILES) == 8
    for name in pt.RELEASED_FILES.values():
        checksum = Checksum.from_hub_name(name)
        assert checksum.algorithm == "sha256" and checksum.prefix and len(checksum.digest) == 8
        assert name.endswith(f"-{checksum.digest}.pt")


@pytest.mark.parametrize("preset, scale, message", [
    ("srresnet", 2, "unknown preset 'srresnet'"),
    ("edsr-baseline", 8, "released weights for x2, x3, x4, not x8"),
    ("mdsr", 5, "released weights for x2, x3, x4, not x5"),
    ("imdn", 2, "srnas has no released weights for preset 'imdn'; presets with released weights: edsr-baseline"),
])
def test_no_released_file_is_one_line(preset: str, scale: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        pt.pretrained_weights(preset, scale)
    assert "\n" not in str(err.value)


def test_a_name_without_hash_prefix_is_refused() -> None:
    with pytest.raises(DownloadError, match="carries no SHA-256 prefix"):
        Checksum.from_hub_name("edsr_baseline_x2.pt")


# ---- download, verify, cache ---------------------------------------------------------------------


def test_build_model_pretrained_downloads_verifies_and_caches(mirror: _Mirror, cache: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    state = _weights("edsr-baseline", 2, seed=1)
    # The authors trained with DataParallel: their keys may carry "module.".
    name = _publish(mirror, monkeypatch, "edsr-baseline", 2, _saved({f"module.{k}": v for k, v in state.items()}))
    net = build_model("edsr-baseline", scale=2, pretrained=True, weights_url=mirror.url)
    got = net.state_dict()
    assert got.keys() == state.keys() and all(torch.equal(got[k], state[k]) for k in state)
    assert sorted(p.name for p in cache.iterdir()) == [name]  # verified file only, no .part left
    assert mirror.requests == [name]
    # Cached: verified again on use, never fetched again (the mirror is not even asked).
    build_model("edsr-baseline", scale=2, pretrained=True, weights_url="http://127.0.0.1:9/unused/")
    assert mirror.requests == [name]
    # Same network as building it and loading the file by hand.
    ref = build_model("edsr-baseline", scale=2).eval()
    ref.load_state_dict(state)
    x = torch.rand(1, 3, 12, 10) * 255
    with torch.no_grad():
        assert torch.equal(net.eval()(x), ref(x))


def test_mdsr_file_serves_every_scale(mirror: _Mirror, monkeypatch: pytest.MonkeyPatch) -> None:
    state = _weights("mdsr-baseline", None, seed=2)
    name = _publish(mirror, monkeypatch, "mdsr-baseline", None, _saved(state))
    for s in (3, 4):
        net = build_model("mdsr-baseline", scale=s, pretrained=True, weights_url=mirror.url)
        got = net.state_dict()
        assert got.keys() == state.keys() and all(torch.equal(got[k], state[k]) for k in state)
    assert mirror.requests == [name]


def test_tampered_file_is_refused_and_not_cached(mirror: _Mirror, cache: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    good = _saved(_weights("edsr-baseline", 2, seed=3))
    tampered = bytearray(good)
    tampered[len(tampered) // 2] ^= 0xFF  # one flipped byte inside a tensor: still a loadable file
    name = _publish(mirror, monkeypatch, "edsr-baseline", 2, bytes(tampered), name_from=good)
    with pytest.raises(DownloadError, match=rf"{name}: sha256 is [0-9a-f]{{64}}, but the file name promises one "
                                            rf"starting with [0-9a-f]{{8}}; the file was refused and removed") as err:
        build_model("edsr-baseline", scale=2, pretrained=True, weights_url=mirror.url)
    assert "\n" not in str(err.value)
    assert not cache.exists() or list(cache.iterdir()) == []
    rc = main(["eval", "--model", "edsr-baseline", "--pretrained", "--weights-url", mirror.url, "--device", "cpu"])
    err_text = capsys.readouterr().err
    # Progress lines of the transfer come first; the error is one line, the last.
    errors = [line for line in err_text.splitlines() if line.startswith("srnas: error: ")]
    assert rc == 2 and len(errors) == 1 and err_text.endswith(errors[0] + "\n") and "refused" in errors[0]
    assert "Traceback" not in err_text
    assert not cache.exists() or list(cache.iterdir()) == []
    # The good file under the same name then loads.
    (mirror.folder / name).write_bytes(good)
    build_model("edsr-baseline", scale=2, pretrained=True, weights_url=mirror.url)
    assert [p.name for p in cache.iterdir()] == [name]


def test_a_file_under_the_real_released_name_must_match_its_hash(mirror: _Mirror, cache: Path) -> None:
    """The real table: a file served as edsr_baseline_x2-1bc95232.pt must hash to 1bc95232..."""
    (mirror.folder / "edsr_baseline_x2-1bc95232.pt").write_bytes(_saved(_weights("edsr-baseline", 2, seed=4)))
    with pytest.raises(DownloadError, match="promises one starting with 1bc95232"):
        pt.pretrained_weights("edsr-baseline", 2, weights_url=mirror.url)
    assert not cache.exists() or list(cache.iterdir()) == []


def test_a_damaged_cached_copy_is_fetched_again(mirror: _Mirror, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = _publish(mirror, monkeypatch, "edsr-baseline", 3, _saved(_weights("edsr-baseline", 3, seed=5)))
    path = pt.pretrained_weights("edsr-baseline", 3, weights_url=mirror.url)
    path.write_bytes(path.read_bytes()[:-10])  # truncated in the cache
    assert pt.pretrained_weights("edsr-baseline", 3, weights_url=mirror.url) == path
    assert mirror.requests == [name, name]
    assert path.read_bytes() == (mirror.folder / name).read_bytes()


def test_mirror_from_the_environment(mirror: _Mirror, monkeypatch: pytest.MonkeyPatch) -> None:
    name = _publish(mirror, monkeypatch, "edsr-baseline", 4, _saved(_weights("edsr-baseline", 4, seed=6)))
    monkeypatch.setenv("SRNAS_WEIGHTS_URL", mirror.url.rstrip("/"))  # with or without the trailing slash
    assert pt.pretrained_weights("edsr-baseline", 4).name == name
    assert mirror.requests == [name]


def test_pickled_objects_are_never_unpickled(mirror: _Mirror, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hash only proves the file is the one named; loading still uses weights_only."""
    data = _saved({"head.0.weight": argparse.Namespace(evil=True)})
    _publish(mirror, monkeypatch, "edsr-baseline", 2, data)
    with pytest.raises(ConfigError, match="holds pickled Python objects, not only tensors; srnas loads weights "
                                          "with weights_only=True and never unpickles objects") as err:
        build_model("edsr-baseline", scale=2, pretrained=True, weights_url=mirror.url)
    assert "\n" not in str(err.value) and "weights_only=False" not in str(err.value)


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def test_missing_file_unreachable_host_and_bad_url_are_one_line(mirror: _Mirror, cache: Path) -> None:
    with pytest.raises(DownloadError, match=r"edsr_x2-0edfb8a3\.pt: HTTP 404"):
        pt.pretrained_weights("edsr", 2, weights_url=mirror.url)
    with pytest.raises(DownloadError, match=r"cannot reach the host \(.*\); check the network, or pass --weights-url"):
        pt.pretrained_weights("edsr", 2, weights_url=_closed_port_url())
    with pytest.raises(DownloadError, match="--weights-url file:///tmp/: only http:// and https://"):
        pt.pretrained_weights("edsr", 2, weights_url="file:///tmp/")
    assert not cache.exists() or list(cache.iterdir()) == []
    with pytest.raises(ConfigError, match="needs a preset name"):
        build_model(build_model("edsr-baseline").config, pretrained=True)
    with pytest.raises(ConfigError, match="pass pretrained=True too"):
        build_model("edsr-baseline", weights_url=mirror.url)


# ---- the command line ----------------------------------------------------------------------------


def test_cli_eval_and_upscale_with_a_pretrained_preset(mirror: _Mirror, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    state = _weights("edsr-baseline", 2, seed=7)
    data = _saved(state)
    name = _publish(mirror, monkeypatch, "edsr-baseline", 2, data)
    by_hand = tmp_path / "by_hand.pt"
    by_hand.write_bytes(data)
    common = ["--data", "demo", "--device", "cpu"]
    assert main(["eval", "--model", "edsr-baseline", "--pretrained", "--weights-url", mirror.url, *common,
                 "--json", str(tmp_path / "pre.json")]) == 0
    assert main(["eval", "--model", str(by_hand), "--config", "edsr-baseline", *common,
                 "--json", str(tmp_path / "hand.json")]) == 0
    pre, hand = (json.loads((tmp_path / f"{n}.json").read_text())["results"]["demo-val"] for n in ("pre", "hand"))
    assert pre["psnr"] == hand["psnr"] and pre["ssim"] == hand["ssim"]
    image = save_image(tmp_path / "in.png", (np.random.default_rng(0).random((9, 13, 3)) * 255).astype(np.uint8))
    assert main(["upscale", str(image), "-o", str(tmp_path / "a"), "--model", "edsr-baseline", "--pretrained",
                 "--weights-url", mirror.url, "--device", "cpu"]) == 0
    assert main(["upscale", str(image), "-o", str(tmp_path / "b"), "--model", str(by_hand), "--config",
                 "edsr-baseline", "--device", "cpu"]) == 0
    a, b = load_image(tmp_path / "a" / "in_x2.png"), load_image(tmp_path / "b" / "in_x2.png")
    assert a.shape == (18, 26, 3) and np.array_equal(a, b)
    assert mirror.requests == [name]  # the second pretrained command used the cache


@pytest.mark.parametrize("argv, message", [
    (["--model", "srresnet", "--pretrained"], "unknown preset 'srresnet'"),
    (["--model", "edsr-baseline", "--pretrained", "--scale", "8"], "released weights for x2, x3, x4, not x8"),
    (["--model", "edsr-baseline", "--pretrained", "--config", "edsr"], "drop --config"),
    (["--model", "edsr-baseline"], "a preset name, not a file; add --pretrained"),
    (["--model", "x.pt", "--weights-url", "http://127.0.0.1:9/"], "add --pretrained"),
    (["--model", "edsr", "--pretrained", "--scale", "2"], "HTTP 404"),
])
def test_cli_errors_are_one_line(mirror: _Mirror, argv: list[str], message: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    extra = ["--weights-url", mirror.url] if "--pretrained" in argv else []
    rc = main(["eval", *argv, *extra, "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("srnas: error: ") and err.count("\n") == 1 and message in err, err
