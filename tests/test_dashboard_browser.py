"""`srnas dashboard` in a real browser (headless Chromium through the DevTools protocol,
tests/browser.py): started by the test on 127.0.0.1 over a trials folder with two studies, its
study list shows both, a trial page shows the trial's user attributes and its SR sample image,
writes from the page (the UI's delete button, rename and note requests) are refused, and the
console stays free of errors. Also: a client that sends
no Accept-Encoding gets the dashboard's bundle (optuna-dashboard 0.21 answered it with a 500)."""

from __future__ import annotations

import http.client
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore, upload_artifact

sys.path.insert(0, str(Path(__file__).parent))
from browser import Page, pixel_digest  # noqa: E402
from test_report_browser import STRIP_SIZE, _strip_png  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: name -> PSNR of each trial of the two studies the dashboard shows.
STUDIES = {"tiny-demo": [30.8, 31.2], "edsr-div2k": [33.1, 33.4]}


def _studies(root: Path) -> dict[str, list[dict[str, object]]]:
    """The two studies in ``root`` (the default layout: <study>/study.db, <study>/artifacts/), each
    trial with the user attributes `srnas search` records and an LR | SR | HR sample image
    uploaded as its artifact; returns each study's trials' user attributes."""
    attrs_of: dict[str, list[dict[str, object]]] = {}
    for name, scores in STUDIES.items():
        folder = root / name
        (folder / "artifacts").mkdir(parents=True)
        store = FileSystemArtifactStore(str(folder / "artifacts"))
        study = optuna.create_study(study_name=name, storage=f"sqlite:///{folder / 'study.db'}", direction="maximize")
        study.set_user_attr("space", name.split("-")[0])
        attrs_of[name] = []
        for i, psnr in enumerate(scores):
            trial = study.ask()
            n_feats = trial.suggest_categorical("n_feats", [8, 16])
            attrs = {"arch_id": f"edsr-{name}-{i}", "params": 10_000 + 1000 * i, "psnr": psnr,
                     "protocol": "benchmark", "bicubic_psnr": 30.6, "device": "cpu", "seed": i,
                     "config": {"n_feats": n_feats, "n_resblocks": 2 + i, "scale": 2}}
            for key, value in attrs.items():
                trial.set_user_attr(key, value)
            png = folder / f"sample-{i}.png"
            png.write_bytes(_strip_png(i))
            artifact = upload_artifact(artifact_store=store, file_path=str(png), study_or_trial=trial,
                                       mimetype="image/png")
            trial.set_user_attr("sample_artifact", artifact)
            study.tell(trial, psnr)
            attrs_of[name].append({**attrs, "sample_artifact": artifact})
    return attrs_of


@pytest.fixture()
def dashboard(tmp_path: Path) -> Iterator[tuple[str, dict[str, list[dict[str, object]]]]]:
    """`srnas dashboard` over a trials folder with two studies, on a free port of 127.0.0.1;
    yields (its URL, each study's trials' user attributes)."""
    root = tmp_path / "trials"
    attrs_of = _studies(root)
    env = {**os.environ, "SRNAS_TRIALS_DIR": str(root),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "srnas", "dashboard", "--host", "127.0.0.1", "--port", "0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        try:
            announced = lines.get(timeout=60)
        except queue.Empty:
            pytest.fail("srnas dashboard printed no URL within 60 s")
        assert "read-only" in announced and "2 studies" in announced, announced
        url = next(word for word in announced.split() if word.startswith("http://127.0.0.1:"))
        yield url, attrs_of
    finally:
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert "Traceback" not in err, err[-3000:]  # no request made the server fail


@pytest.mark.browser
def test_dashboard_lists_studies_shows_trials_and_refuses_writes(
        dashboard: tuple[str, dict[str, list[dict[str, object]]]], open_page: Callable[..., Page]) -> None:
    url, attrs_of = dashboard
    home = open_page("study-list", url)
    home.wait_for(" && ".join(f"document.body.innerText.includes({name!r})" for name in STUDIES))
    # Each study's card links to its page: the ids come from the page, as a person would follow them.
    links = home.evaluate("""Object.fromEntries(Array.from(document.querySelectorAll('a[href*="/studies/"]'))
        .map(a => [a.innerText.trim(), a.getAttribute('href')]))""")
    study_paths = {name: next(href for text, href in links.items() if name in text) for name in STUDIES}

    name = "tiny-demo"
    best = len(STUDIES[name]) - 1  # the best trial (the scores grow)
    trial = open_page("trial", f"{url.split('/dashboard/')[0]}{study_paths[name]}/trials?numbers={best}")
    attrs = attrs_of[name][best]
    trial.wait_for("document.body.innerText.includes('User Attributes')")
    text = trial.evaluate("document.body.innerText")
    for key in ("arch_id", "params", "psnr", "protocol", "sample_artifact"):
        assert f"{key} {attrs[key]}" in text, key
    assert f"Trial {best}" in text and "Artifacts" in text
    # The SR sample: the trial's artifact, served from the study's own store, decoded to the very pixels stored.
    trial.wait_for(f"Array.from(document.images).some(i => i.src.endsWith('/{attrs['sample_artifact']}') && i.complete)")
    [image] = [i for i in trial.images() if i["src"].endswith(str(attrs["sample_artifact"]))]
    assert image["ok"] and image["src"].startswith("/artifacts/"), image
    assert (image["width"], image["height"]) == STRIP_SIZE and image["digest"] == pixel_digest(_strip_png(best))
    assert home.problems() == [] and trial.problems() == []
    outside = [u for p in (home, trial) for u in p.requests if not u.startswith((url.split("/dashboard/")[0], "data:"))]
    assert outside == []

    # A write through the UI: delete the study, confirmed. The server refuses it, the page says it failed.
    study_id = study_paths[name].rstrip("/").rsplit("/", 1)[-1]
    home.evaluate(f"""Array.from(document.querySelectorAll('.MuiCard-root')).find(c => c.innerText.includes({name!r}))
        .querySelector('button[aria-label="delete study"]').click()""")
    home.wait_for("Array.from(document.querySelectorAll('[role=dialog] button')).some(b => b.innerText === 'YES')")
    home.evaluate("Array.from(document.querySelectorAll('[role=dialog] button')).find(b => b.innerText === 'YES').click()")
    home.wait_for(f"document.body.innerText.includes('Failed to delete study (id={study_id})')")
    assert [p.split(": ", 1)[0] for p in home.problems()] == ["network", "request failed"]
    assert all(f"/api/studies/{study_id}" in p and "403" in p for p in home.problems())
    # The other writes the UI can send (rename, note) are refused too, with the reason.
    answers = trial.evaluate(f"""Promise.all([
        ['POST', '/api/studies/{study_id}/rename', {{study_name: 'renamed'}}],
        ['PUT', '/api/studies/{study_id}/note', {{version: 1, body: 'x'}}],
        ['DELETE', '/api/studies/{study_id}', null]
      ].map(([method, path, body]) => fetch(path, {{method, headers: {{'Content-Type': 'application/json'}},
        body: body && JSON.stringify(body)}}).then(r => r.json().then(j => [method, r.status, j.reason]))))""")
    for method, status, reason in answers:
        assert status == 403 and "--allow-edits" in reason, (method, status, reason)
    # Nothing changed: both studies are listed, under their names.
    again = open_page("study-list-after-writes", url)
    again.wait_for(" && ".join(f"document.body.innerText.includes({n!r})" for n in STUDIES))
    assert "renamed" not in again.evaluate("document.body.innerText") and again.problems() == []


def test_dashboard_bundle_without_accept_encoding(tmp_path: Path) -> None:
    """A client that sends no Accept-Encoding (curl, a script, a proxy) gets the bundle and the
    icon uncompressed, not optuna-dashboard's 500."""
    from srnas.results.dashboard import make_dashboard_server
    from srnas.results.dashboard_storage import StudiesStorage

    server = make_dashboard_server(StudiesStorage(tmp_path), None, host="127.0.0.1", port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        for path in ("/static/bundle.js", "/favicon.ico"):
            conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=30)
            conn.putrequest("GET", path, skip_accept_encoding=True)
            conn.endheaders()
            answer = conn.getresponse()
            body = answer.read()
            conn.close()
            assert answer.status == 200, (path, answer.status, body[:200])
            assert answer.getheader("Content-Encoding") is None and not body.startswith(b"\x1f\x8b"), path
        assert body.startswith(b"\0\0\1\0")  # an .ico file, as the browser gets it gunzipped
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
