"""Shared artifact stores (``--artifacts``): a folder or ``s3://bucket/prefix``, recorded in the
study so that workers, the report and the dashboard use the same one. The S3 store is tested
against moto's S3 server started here on 127.0.0.1 (no network beyond it)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from srnas.cli import main
from srnas.errors import MissingExtraError
from srnas.studies import StudyError, StudyHome
from srnas.artifacts import normalize_artifact_location, open_artifact_store

pytestmark = pytest.mark.slow

FAST = ["--budget", "2", "--proxy", "tiny@10", "--no-progress", "--heartbeat", "2", "--workers", "1", "--seed", "0",
        "--devices", "cpu"]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """moto's S3 server on 127.0.0.1 (a free port), the AWS environment pointing at it, and a
    boto3 client with the bucket ``shared`` created."""
    pytest.importorskip("boto3")
    pytest.importorskip("moto.server")
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for key, value in {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    client = boto3.client("s3")
    client.create_bucket(Bucket="shared")
    try:
        yield client
    finally:
        server.stop()


def _complete(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials() if t.state.name == "COMPLETE" and "reused_from" not in t.user_attrs]


def test_locations_are_normalised(tmp_path: Path) -> None:
    assert normalize_artifact_location("s3://bucket/a/b/") == "s3://bucket/a/b"
    assert normalize_artifact_location("s3://bucket") == "s3://bucket"
    assert normalize_artifact_location(f"file://{tmp_path}/x") == str(tmp_path / "x")
    assert normalize_artifact_location("rel") == str(Path("rel").resolve())
    for bad in ("s3://", "gs://bucket/x", ""):
        with pytest.raises(StudyError, match="--artifacts"):
            normalize_artifact_location(bad)


def test_s3_without_boto3_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import optuna.artifacts  # noqa: F401  (imported with boto3 present, as in a real process)

    monkeypatch.setitem(sys.modules, "boto3", None)  # import boto3 now raises ImportError
    with pytest.raises(MissingExtraError, match=r"srnas\[s3\]"):
        open_artifact_store("s3://bucket/prefix")


def test_shared_folder_is_recorded_and_used_by_every_reader(trials_dir: Path, tmp_path: Path, capsys) -> None:
    shared = tmp_path / "nfs" / "artifacts"
    assert main(["search", "--confirm", "0", "--study", "shared-folder", "--artifacts", str(shared), *FAST]) == 0
    home = StudyHome("shared-folder")
    study = home.load()
    assert study.user_attrs["artifacts"] == str(shared.resolve())
    ids = [t.user_attrs["sample_artifact"] for t in _complete(study)]
    assert ids and all((shared / i).read_bytes().startswith(PNG) for i in ids)
    assert not home.artifacts.exists()  # nothing in the default folder
    # The report reads the recorded store.
    assert main(["report", "--study", "shared-folder", "--no-png"]) == 0
    assert home.report.read_text().count("<figure class='sample'>") == len(ids)
    # A resume that names another store is refused in one line; none resumes with the recorded one.
    capsys.readouterr()
    assert main(["search", "--confirm", "0", "--study", "shared-folder", "--artifacts", str(tmp_path / "other"), *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert "keeps its artifacts in" in err and str(shared.resolve()) in err and "\n" not in err
    assert main(["search", "--confirm", "0", "--study", "shared-folder", *FAST]) == 0


def test_default_study_refuses_a_new_store_once_it_holds_images(trials_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["search", "--confirm", "0", "--study", "local", *FAST]) == 0
    capsys.readouterr()
    assert main(["search", "--confirm", "0", "--study", "local", "--artifacts", str(tmp_path / "s"), *FAST]) == 2
    assert "would split them" in capsys.readouterr().err


def test_s3_store_serves_search_report_and_dashboard(trials_dir: Path, s3, capsys) -> None:
    import urllib.request

    from srnas.results.dashboard import make_dashboard_server
    from srnas.artifacts import artifact_location

    assert main(["search", "--confirm", "0", "--study", "on-s3", "--artifacts", "s3://shared/runs/one/", *FAST]) == 0
    home = StudyHome("on-s3")
    study = home.load()
    assert study.user_attrs["artifacts"] == "s3://shared/runs/one"
    ids = [t.user_attrs["sample_artifact"] for t in _complete(study)]
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="shared").get("Contents", [])}
    assert ids and keys == {f"runs/one/{i}" for i in ids}
    body = s3.get_object(Bucket="shared", Key=f"runs/one/{ids[0]}")["Body"].read()
    assert body.startswith(PNG)
    assert not home.artifacts.exists()

    assert main(["report", "--study", "on-s3", "--no-png"]) == 0
    assert home.report.read_text().count("<figure class='sample'>") == len(ids)

    location = artifact_location(study.user_attrs, home)
    server = make_dashboard_server(study, location, host="127.0.0.1", port=0)
    import threading

    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        trial = next(t for t in _complete(study) if t.user_attrs["sample_artifact"] == ids[0])
        url = f"http://127.0.0.1:{server.server_address[1]}/artifacts/{study._study_id}/{trial._trial_id}/{ids[0]}"
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept-Encoding": "gzip"}), timeout=10) as r:
            assert r.read() == body
    finally:
        server.shutdown()
        server.server_close()


def test_unusable_bucket_is_one_line_before_any_study(trials_dir: Path, s3, capsys) -> None:
    assert main(["search", "--confirm", "0", "--study", "nobucket", "--artifacts", "s3://missing-bucket/x", *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert "s3://missing-bucket/x" in err and "no such bucket" in err and "\n" not in err
    assert not StudyHome("nobucket").db.exists()


def test_s3_down_mid_search_costs_the_images_never_the_results(trials_dir: Path, s3, capsys,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The store stops answering after the search started (its check passed): every trained
    trial is recorded with its result, says why its image is missing, and the report names them."""
    import socket

    from srnas import artifacts
    from srnas.search import trial as trial_module

    assert main(["search", "--confirm", "0", "--study", "down", "--artifacts", "s3://shared/down", *FAST]) == 0
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{sock.getsockname()[1]}"  # a port nothing listens on
    sock.close()

    def store_gone(location: str) -> object:
        with monkeypatch.context() as m:
            m.setenv("AWS_ENDPOINT_URL", dead)
            return artifacts.open_artifact_store(location)

    monkeypatch.setattr(trial_module, "open_artifact_store", store_gone)
    monkeypatch.setattr(trial_module, "UPLOAD_WAIT_S", 0.0)
    assert main(["search", "--confirm", "0", "--study", "down", "--budget", "4", *FAST[2:]]) == 0
    study = StudyHome("down").load()
    later = [t for t in _complete(study) if "sample_missing" in t.user_attrs]
    assert len(later) == 2 and all(t.values for t in later)
    assert "could not be stored" in capsys.readouterr().err
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    assert main(["report", "--study", "down", "--no-png"]) == 0
    report = StudyHome("down").report.read_text()
    assert "Sample images missing: #" in report and report.count("<figure class='sample'>") == 2
