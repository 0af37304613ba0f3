"""`srnas dashboard`: serves a study (and its artifacts) through optuna-dashboard; one clear line
for an unknown study or a busy port; read-only by default (writes refused unless allow_edits) and
only for its own Host header (DNS rebinding)."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")
pytest.importorskip("optuna_dashboard")

STUDY = "dash-test"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(trials_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["SRNAS_TRIALS_DIR"] = str(trials_dir)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _get(url: str, timeout: float = 5.0) -> bytes:
    """GET with Accept-Encoding (optuna-dashboard 0.21 answers 500 without one); gunzips."""
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        body = answer.read()
        if answer.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        return body


def _make_study(trials_dir: Path, name: str = STUDY, value: float = 30.5,
                artifacts: Path | None = None) -> tuple[int, int, str]:
    """A one-trial study in the default layout (trials/<study>/study.db + artifacts/, or the
    store ``artifacts`` recorded as --artifacts does), made by hand as `srnas search` would leave
    it; returns (study id, trial id, artifact id)."""
    from optuna.artifacts import FileSystemArtifactStore, upload_artifact

    folder = trials_dir / name
    store = artifacts or folder / "artifacts"
    folder.mkdir(parents=True)
    store.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{folder / 'study.db'}",
                                direction="maximize")
    if artifacts is not None:
        study.set_user_attr("artifacts", str(artifacts))
    trial = study.ask()
    trial.suggest_categorical("n_feats", [8, 16])
    trial.set_user_attr("arch_id", "edsr-test")
    sample = folder / "sample.png"
    sample.write_bytes(b"\x89PNG\r\n\x1a\n-not-really-an-image-of-" + name.encode())
    artifact_id = upload_artifact(artifact_store=FileSystemArtifactStore(str(store)),
                                  file_path=str(sample), study_or_trial=trial, mimetype="image/png")
    study.tell(trial, value)
    return study._study_id, trial._trial_id, artifact_id


def test_dashboard_serves_study_and_artifacts(tmp_path: Path) -> None:
    study_id, trial_id, artifact_id = _make_study(tmp_path)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "srnas", "dashboard", "--study", STUDY, "--port", str(port), "--host", "127.0.0.1"],
        env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        body = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"dashboard exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
            try:
                body = _get(f"{base}/api/studies")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.3)
        assert body is not None, "dashboard did not answer within 60 s"
        studies = json.loads(body)["study_summaries"]
        assert [s["study_name"] for s in studies] == [STUDY]
        assert studies[0]["directions"] == ["maximize"]

        detail = json.loads(_get(f"{base}/api/studies/{study_id}"))
        assert [t["values"] for t in detail["trials"]] == [[30.5]]
        # The study's artifacts folder is served too (the SR sample images of the trials).
        assert _get(f"{base}/artifacts/{study_id}/{trial_id}/{artifact_id}") == \
            b"\x89PNG\r\n\x1a\n-not-really-an-image-of-" + STUDY.encode()
    finally:
        proc.terminate()
        try:
            out, _err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _err = proc.communicate()
    assert f"http://127.0.0.1:{port}/dashboard/" in out


def test_dashboard_unknown_study_is_one_line(tmp_path: Path) -> None:
    _make_study(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "srnas", "dashboard", "--study", "no-such-study",
                           "--port", str(_free_port())],
                          env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("srnas: error:")
    assert "no-such-study" in lines[0] and STUDY in lines[0]  # names the study and lists those found
    assert "Traceback" not in proc.stderr


@pytest.fixture()
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
           request: pytest.FixtureRequest) -> Iterator[tuple[int, int, str, int]]:
    """An in-process dashboard on a free port (parametrise indirectly with allow_edits);
    yields (port, study id, artifact id, trial id)."""
    from srnas.results.dashboard import make_dashboard_server
    from srnas.studies import StudyHome, load_study

    monkeypatch.setenv("SRNAS_TRIALS_DIR", str(tmp_path))
    study_id, trial_id, artifact_id = _make_study(tmp_path)
    server = make_dashboard_server(load_study(STUDY), StudyHome(STUDY).artifacts, host="127.0.0.1", port=0,
                                   allow_edits=getattr(request, "param", False))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], study_id, artifact_id, trial_id
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _call(port: int, method: str, path: str, *, host: str | None = None, body: dict | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    sent = {"Accept-Encoding": "gzip", "Host": host or f"127.0.0.1:{port}", **(headers or {})}
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        sent["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=payload, headers=sent)
        answer = conn.getresponse()
        data = answer.read()
        if answer.getheader("Content-Encoding") == "gzip":
            data = gzip.decompress(data)
        return answer.status, data
    finally:
        conn.close()


def _study_names(port: int) -> list[str]:
    status, body = _call(port, "GET", "/api/studies")
    assert status == 200
    return [s["study_name"] for s in json.loads(body)["study_summaries"]]


def test_read_only_by_default_get_works_writes_refused(served: tuple[int, int, str, int]) -> None:
    port, study_id, artifact_id, trial_id = served
    assert _study_names(port) == [STUDY]
    status, page = _call(port, "GET", "/dashboard/")
    assert status == 200 and b"<html" in page.lower()  # the UI itself loads
    assert _call(port, "HEAD", "/api/studies")[0] == 200
    assert _call(port, "GET", f"/artifacts/{study_id}/{trial_id}/{artifact_id}")[0] == 200

    status, body = _call(port, "POST", f"/api/studies/{study_id}/rename", body={"study_name": "renamed"})
    assert status == 403
    assert "--allow-edits" in json.loads(body)["reason"]  # the UI shows this reason
    assert _call(port, "DELETE", f"/api/studies/{study_id}")[0] == 403
    assert _call(port, "DELETE", f"/api/artifacts/{study_id}/{trial_id}/{artifact_id}")[0] == 403
    assert _call(port, "PUT", f"/api/studies/{study_id}/note", body={"version": 1, "body": "x"})[0] == 403
    # Nothing changed: the study and its artifact are still there.
    assert _study_names(port) == [STUDY]
    assert _call(port, "GET", f"/artifacts/{study_id}/{trial_id}/{artifact_id}")[0] == 200
    # Unknown ids in an artifact URL: a 404 naming what is missing, not a 500 with a traceback.
    assert _call(port, "GET", f"/artifacts/{study_id + 99}/{trial_id}/{artifact_id}") == \
        (404, f"not found: no study {study_id + 99}\n".encode())
    assert _call(port, "GET", f"/artifacts/{study_id}/{trial_id + 99}/{artifact_id}") == \
        (404, f"not found: no trial {trial_id + 99}\n".encode())


@pytest.mark.parametrize("served", [True], indirect=True)
def test_allow_edits_lets_writes_through(served: tuple[int, int, str, int]) -> None:
    port, study_id, artifact_id, trial_id = served
    # A cross-site form post is still refused, edits allowed or not.
    status, _ = _call(port, "POST", f"/api/studies/{study_id}/rename", body={"study_name": "renamed"},
                      headers={"Origin": "http://evil.example"})
    assert status == 403
    assert _study_names(port) == [STUDY]
    status, _ = _call(port, "POST", f"/api/studies/{study_id}/rename", body={"study_name": "renamed"},
                      headers={"Origin": f"http://localhost:{port}"})
    assert status == 201
    (renamed,) = json.loads(_call(port, "GET", "/api/studies")[1])["study_summaries"]
    assert renamed["study_name"] == "renamed"
    assert _call(port, "DELETE", f"/api/studies/{renamed['study_id']}")[0] == 204
    assert _study_names(port) == []


@pytest.mark.parametrize("host", ["evil.example:{port}", "127.0.0.1.nip.io:{port}", "127.0.0.1:1", ""])
def test_foreign_host_header_refused(served: tuple[int, int, str, int], host: str) -> None:
    port = served[0]
    status, body = _call(port, "GET", "/api/studies", host=host.format(port=port) or " ")
    assert status == 421
    assert "not this dashboard's address" in json.loads(body)["reason"]
    for alias in (f"localhost:{port}", f"LOCALHOST:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        assert _call(port, "GET", "/api/studies", host=alias)[0] == 200, alias


def test_allowed_hosts() -> None:
    from srnas.results.dashboard import DashboardGuard, allowed_hosts

    assert allowed_hosts("192.168.1.5", 9000) == {"192.168.1.5:9000"}
    assert allowed_hosts("::1", 80) == {"[::1]:80", "localhost:80", "127.0.0.1:80"}
    assert allowed_hosts("10.0.0.1", 9000, ["proxy.lab", "Other:443", "fe80::1", "[fe80::2]"]) == {
        "10.0.0.1:9000", "proxy.lab:9000", "other:443", "[fe80::1]:9000", "[fe80::2]:9000"}
    wildcard = DashboardGuard(lambda e, s: [], allowed_hosts=allowed_hosts("0.0.0.0", 9000),
                              accept_ip_literals=True)
    assert wildcard._host_ok("10.1.2.3:9000") and wildcard._host_ok("[fe80::1]:9000")
    assert wildcard._host_ok("localhost:9000")
    assert not wildcard._host_ok("10.1.2.3:9001") and not wildcard._host_ok("evil.example:9000")
    port80 = DashboardGuard(lambda e, s: [], allowed_hosts=allowed_hosts("127.0.0.1", 80))
    assert port80._host_ok("localhost") and not port80._host_ok("evil.example")


def test_dashboard_busy_port_is_one_line(tmp_path: Path) -> None:
    _make_study(tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "srnas", "dashboard", "--study", STUDY, "--port", str(port)],
                              env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"srnas: error: port {port} on 127.0.0.1 is in use; pass --port N"]
    assert proc.stdout == ""


def test_all_studies_side_by_side_each_with_its_own_artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`srnas dashboard` without --study: every study under trials/ (each its own SQLite file)
    in one optuna-dashboard, each serving the images of its own store; new studies appear."""
    from srnas.results.dashboard import make_dashboard_server
    from srnas.results.dashboard_storage import StudiesStorage

    monkeypatch.setenv("SRNAS_TRIALS_DIR", str(tmp_path))
    made = {"alpha": _make_study(tmp_path, "alpha", 30.5), "beta": _make_study(tmp_path, "beta", 31.25),
            "gamma": _make_study(tmp_path, "gamma", 29.0, artifacts=tmp_path / "shared-store")}
    assert {ids[0] for ids in made.values()} == {1}  # every file numbers its study 1: the dashboard must not
    server = make_dashboard_server(StudiesStorage(tmp_path), None, host="127.0.0.1", port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        status, body = _call(port, "GET", "/api/studies")
        assert status == 200
        summaries = {s["study_name"]: s for s in json.loads(body)["study_summaries"]}
        assert sorted(summaries) == ["alpha", "beta", "gamma"]
        assert len({s["study_id"] for s in summaries.values()}) == 3
        for name, value in (("alpha", 30.5), ("beta", 31.25), ("gamma", 29.0)):
            study_id = summaries[name]["study_id"]
            detail = json.loads(_call(port, "GET", f"/api/studies/{study_id}")[1])
            (trial,) = detail["trials"]
            assert trial["values"] == [value] and trial["study_id"] == study_id
            artifact_id = made[name][2]
            status, image = _call(port, "GET", f"/artifacts/{study_id}/{trial['trial_id']}/{artifact_id}")
            assert status == 200 and image.endswith(name.encode()), name  # from the study's own store
            # Another study's artifact id under this study is not served.
            other = made["beta" if name == "alpha" else "alpha"][2]
            assert _call(port, "GET", f"/artifacts/{study_id}/{trial['trial_id']}/{other}")[0] == 404
        # Read-only: writes refused as for one study.
        alpha = summaries["alpha"]["study_id"]
        assert _call(port, "POST", f"/api/studies/{alpha}/rename", body={"study_name": "x"})[0] == 403
        # A study created while the dashboard runs shows at the next listing.
        _make_study(tmp_path, "delta", 28.0)
        assert "delta" in _study_names(port)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_dashboard_without_studies_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from srnas.cli import main

    monkeypatch.setenv("SRNAS_TRIALS_DIR", str(tmp_path / "empty"))
    assert main(["dashboard", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no studies in" in err and "srnas search" in err and "\n" not in err
