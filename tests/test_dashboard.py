"""`srnas dashboard`: serves a study (and its artifacts) through optuna-dashboard; one clear line
for an unknown study."""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
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


def _make_study(trials_dir: Path) -> tuple[int, int, str]:
    """A one-trial study in the default layout (trials/<study>/study.db + artifacts/), made by
    hand as `srnas search` would leave it; returns (study id, trial id, artifact id)."""
    from optuna.artifacts import FileSystemArtifactStore, upload_artifact

    folder = trials_dir / STUDY
    (folder / "artifacts").mkdir(parents=True)
    study = optuna.create_study(study_name=STUDY, storage=f"sqlite:///{folder / 'study.db'}",
                                direction="maximize")
    trial = study.ask()
    trial.suggest_categorical("n_feats", [8, 16])
    trial.set_user_attr("arch_id", "edsr-test")
    sample = folder / "sample.png"
    sample.write_bytes(b"\x89PNG\r\n\x1a\n-not-really-an-image")
    artifact_id = upload_artifact(artifact_store=FileSystemArtifactStore(str(folder / "artifacts")),
                                  file_path=str(sample), study_or_trial=trial, mimetype="image/png")
    study.tell(trial, 30.5)
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
        assert _get(f"{base}/artifacts/{study_id}/{trial_id}/{artifact_id}") == b"\x89PNG\r\n\x1a\n-not-really-an-image"
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
