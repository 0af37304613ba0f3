"""Past one machine (issue 24): ``srnas search --create-only`` then ``srnas worker`` anywhere,
requeue on a scheduler's signal, SQLite on a network file system refused, Optuna's gRPC storage
proxy (``srnas storage-proxy``, ``--storage grpc://``). The SLURM recipes run on a real SLURM in
tests/test_slurm.py."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from srnas.cli import main
from srnas.outcomes import arch_of, is_trained

optuna.logging.set_verbosity(optuna.logging.WARNING)

MICRO_SPACE = """\
name: micro
family: edsr
scales: [2]
parameters:
  n_resblocks: [1, 2, 3]
  n_feats: [4, 8, 12]
  global_skip: [bicubic]
"""
#: The proxy of these tests' studies: a trial's time is nearly all training, and none of them
#: depends on its length (the signal test sets a longer one, to catch a trial mid-training).
PROXY = "tiny@10"
#: A study's settings for these tests: tiny nets, a short proxy, a fast heartbeat, no confirmation.
CREATE = ["--proxy", PROXY, "--heartbeat", "1", "--confirm", "0", "--sampler", "random", "--seed", "3",
          "--no-progress"]


def _env(root: Path) -> dict[str, str]:
    return {**os.environ, "SRNAS_TRIALS_DIR": str(root), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _srnas(root: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "srnas", *args], env=_env(root), capture_output=True, text=True,
                          timeout=timeout)


def _start(root: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "srnas", *args], env=_env(root), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _load(url: str, name: str) -> optuna.Study:
    from srnas.storages import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(url))


def _sqlite(root: Path, name: str) -> str:
    return f"sqlite:///{root / name / 'study.db'}"


def _space(tmp_path: Path) -> Path:
    path = tmp_path / "micro.yaml"
    path.write_text(MICRO_SPACE)
    return path


def _error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("srnas: error:")]
    assert len(errors) == 1, stderr[-3000:]
    return errors[0]


def assert_budget_met_once(study: optuna.Study, budget: int) -> None:
    """The study holds exactly ``budget`` trained architectures, each trained once, and nothing
    is left running."""
    trials = study.get_trials()
    trained = Counter(arch_of(t) for t in trials if is_trained(t) and "reused_from" not in t.user_attrs)
    assert len(trained) == budget, [(t.number, t.state.name, t.user_attrs.get("error")) for t in trials]
    assert max(trained.values()) == 1, trained
    assert not [t for t in trials if t.state == TrialState.RUNNING]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- create once, then workers ---------------------------------------------------------------


def test_create_only_trains_nothing_and_a_worker_takes_the_recorded_settings(
        trials_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    space = _space(tmp_path)
    assert main(["search", "--study", "c1", "--space", str(space), "--budget", "2", *CREATE, "--create-only"]) == 0
    err = capsys.readouterr().err
    assert "start workers with: srnas worker --study c1" in err
    study = _load(_sqlite(trials_dir, "c1"), "c1")
    assert study.get_trials() == []
    from srnas import __version__

    assert study.user_attrs["srnas_version"] == __version__
    assert "create_only" not in study.user_attrs["run_settings"]
    # Nothing but the study's name: the space, proxy, budget and seed come from the study.
    assert main(["worker", "--study", "c1", "--no-progress"]) == 0
    study = _load(_sqlite(trials_dir, "c1"), "c1")
    assert_budget_met_once(study, 2)
    trained = [t for t in study.get_trials() if is_trained(t)]
    assert {t.user_attrs["fidelity"] for t in trained} == {study.user_attrs["fidelity"]}
    assert study.user_attrs["proxy"] == PROXY
    # A late worker finds the budget met: one line, exit 0, nothing trained.
    before = len(study.get_trials())
    capsys.readouterr()
    assert main(["worker", "--study", "c1", "--no-progress"]) == 0
    assert "nothing to do, budget met" in capsys.readouterr().err
    assert len(_load(_sqlite(trials_dir, "c1"), "c1").get_trials()) == before


def _worker_refused(capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``srnas worker ARGS`` run in this process (the CLI's own entry, without a Python start-up
    each): its exit code and everything written to stderr, file descriptor 2 included."""
    capfd.readouterr()
    code = main(["worker", *args, "--no-progress"])
    return code, capfd.readouterr().err


def test_worker_bad_input_is_one_line_and_trains_nothing(trials_dir: Path, tmp_path: Path,
                                                         capfd: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import srnas.storages

    # Nothing listens on the port: the wait for a proxy can only end in the refusal, sooner.
    monkeypatch.setattr(srnas.storages, "GRPC_CONNECT_TIMEOUT_S", 1.0)
    space = _space(tmp_path)
    url = _sqlite(trials_dir, "c2")
    assert main(["search", "--study", "c2", "--space", str(space), "--budget", "2", *CREATE, "--create-only"]) == 0
    cases = {
        "missing study": (["--study", "nope"], "no study 'nope' in"),
        "missing study in a storage": (["--study", "nope", "--storage", url], "study 'nope' not found in storage"),
        "unreachable database": (["--study", "c2", "--storage", "postgresql+psycopg://u:secret@127.0.0.1:1/db"],
                                 "cannot connect"),
        "no proxy there": (["--study", "c2", "--storage", f"grpc://127.0.0.1:{_free_port()}"],
                           "no gRPC storage proxy answers there"),
        "bad grpc URL": (["--study", "c2", "--storage", "grpc://nohost"], "expected grpc://HOST:PORT"),
    }
    for what, (args, expected) in cases.items():
        code, err = _worker_refused(capfd, *args)
        assert code == 2, (what, err[-2000:])
        line = _error_line(err)
        assert expected in line, (what, line)
        if what.startswith("missing study"):
            assert "srnas search --study nope ... --create-only" in line, line
        assert "secret" not in err
    study = _load(url, "c2")
    assert study.get_trials() == []

    # Another srnas version created it: refused before any training.
    study.set_user_attr("srnas_version", "0.0.1")
    code, err = _worker_refused(capfd, "--study", "c2")
    assert code == 2
    assert "searched with srnas 0.0.1" in _error_line(err)
    from srnas import __version__

    study.set_user_attr("srnas_version", __version__)
    # The space file changed on this machine since the study was created: refused too.
    space.write_text(MICRO_SPACE.replace("n_feats: [4, 8, 12]", "n_feats: [4, 8, 16]"))
    code, err = _worker_refused(capfd, "--study", "c2")
    assert code == 2
    line = _error_line(err)
    assert "another setup" in line and "n_feats" in line, line
    assert _load(url, "c2").get_trials() == []


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_a_signalled_worker_requeues_its_trial_and_exits_75(trials_dir: Path, tmp_path: Path, sig: int) -> None:
    """Pre-emption: the running trial is failed and enqueued again, the worker exits 75; the next
    worker trains that architecture and the budget is met exactly (nothing lost, nothing counted
    twice)."""
    space = _space(tmp_path)
    name = f"sig{int(sig)}"
    url = _sqlite(trials_dir, name)
    assert main(["search", "--study", name, "--space", str(space), "--budget", "1", *CREATE, "--proxy", "tiny@40",
                 "--create-only"]) == 0
    proc = _start(trials_dir, "worker", "--study", name, "--no-progress")
    deadline = time.monotonic() + 180
    running: list = []
    while time.monotonic() < deadline and proc.poll() is None and not running:
        time.sleep(0.3)
        running = [t for t in _load(url, name).get_trials(states=(TrialState.RUNNING,))
                   if "heartbeat_at" in t.user_attrs and "arch_id" in t.user_attrs]
    assert running, proc.stderr.read() if proc.poll() is not None else "no running trial"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 75, err[-3000:]
    assert "exit 75 (requeue this job)" in err
    stopped = _load(url, name).trials[running[0].number]
    assert stopped.state == TrialState.FAIL and "interrupted" in stopped.user_attrs["error"]
    waiting = _load(url, name).get_trials(states=(TrialState.WAITING,))
    assert [t.params for t in waiting] == [stopped.params]

    # The next worker (here in this process: its start-up is not what is tested) trains it.
    assert main(["worker", "--study", name, "--no-progress"]) == 0
    study = _load(url, name)
    assert_budget_met_once(study, 1)
    retried = [t for t in study.get_trials() if t.system_attrs.get("failed_trial") == stopped.number]
    assert len(retried) == 1 and is_trained(retried[0]) and retried[0].params == stopped.params


def test_a_stop_signal_dropped_by_python_is_sent_again_and_none_cuts_the_requeue_short(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Python drops an exception raised while it runs a ``__del__`` ("Exception ignored in"): a
    worker whose interrupt was dropped so would train on; the signal is sent again until one
    is taken (no traceback printed), and a signal that finds the interrupt being handled does
    nothing."""
    import srnas.search.processes

    monkeypatch.setattr(srnas.search.processes, "RESIGNAL_S", 0.5)  # half the default: the same sequence, sooner
    from srnas.search.processes import RESIGNAL_S, stop_as_interrupt
    from srnas.search.worker import STOP_SIGNALS

    class DropsTheInterrupt:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10_000):  # the handler runs in here; its KeyboardInterrupt is dropped
                pass

    with stop_as_interrupt((*STOP_SIGNALS, "SIGINT")) as got:
        start = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            DropsTheInterrupt()
            while time.monotonic() - start < 10 * RESIGNAL_S:
                time.sleep(0.01)
        assert got["signal"] == signal.SIGTERM and time.monotonic() - start < 5 * RESIGNAL_S
        try:
            raise KeyboardInterrupt("the first one, being handled")
        except KeyboardInterrupt:
            os.kill(os.getpid(), signal.SIGUSR1)  # e.g. submitit's signal after SLURM's SIGTERM
            time.sleep(2.5 * RESIGNAL_S)  # and the ones sent again: none raises here
        got["taken"] = 1
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert "Exception ignored" not in capsys.readouterr().err


def test_a_stop_signal_landing_in_the_unraisable_hook_waits_to_be_sent_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """SLURM's SIGTERM, submitit's SIGUSR2 and the resent signal can land while Python runs
    srnas's unraisable hook (it drops an interrupt raised in a ``__del__``): an interrupt raised
    there would be printed with a traceback in the job's log and lost. The handler leaves such a
    signal to the next resend; anywhere else it interrupts."""
    import types

    import srnas.search.processes

    monkeypatch.setattr(srnas.search.processes, "RESIGNAL_S", 60.0)  # no resend during the test
    from srnas.search.processes import stop_as_interrupt

    with stop_as_interrupt(("SIGUSR2",)) as got:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGUSR2)
            time.sleep(5)
        handler, hook = signal.getsignal(signal.SIGUSR2), sys.unraisablehook
        assert callable(handler) and got["signal"] == signal.SIGUSR2
        in_hook = types.SimpleNamespace(f_code=hook.__code__, f_back=None)
        handler(signal.SIGUSR2, types.SimpleNamespace(f_code=handler.__code__, f_back=in_hook))  # returns
        with pytest.raises(KeyboardInterrupt):
            handler(signal.SIGUSR2, sys._getframe())
        got["taken"] = 1


def test_the_recipes_run_srnas_worker_and_requeue_on_its_exit_code() -> None:
    """examples/cluster/: each recipe's worker command parses as `srnas worker` does, and each
    turns the worker's requeue exit code into a requeue (the SLURM recipes run in test_slurm.py)."""
    import yaml

    from srnas.cli import build_parser
    from srnas.search.worker import REQUEUE_EXIT

    recipes = Path(__file__).resolve().parents[1] / "examples" / "cluster"
    job = yaml.safe_load((recipes / "kubernetes_job.yaml").read_text())
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["template"]["spec"]["restartPolicy"] == "Never"
    command = spec["template"]["spec"]["containers"][0]["command"]
    assert command[:2] == ["srnas", "worker"]
    args = build_parser().parse_args(command[1:])
    assert args.study == "div2k-run" and args.storage == "$(SRNAS_STORAGE)"
    rules = spec["podFailurePolicy"]["rules"]
    assert {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [REQUEUE_EXIT]}} in rules
    slurm = (recipes / "slurm_array.sh").read_text()
    assert f'if [ "$code" -eq {REQUEUE_EXIT} ]' in slurm and "srun --ntasks=1 srnas worker" in slurm
    submitit = (recipes / "submitit_workers.py").read_text()
    assert f"REQUEUE_EXIT = {REQUEUE_EXIT}" in submitit and '"-m", "srnas", "worker"' in submitit


def _kubernetes_job() -> dict:
    import yaml

    return yaml.safe_load((Path(__file__).resolve().parents[1] / "examples" / "cluster" / "kubernetes_job.yaml").read_text())


def _as_strings(value: object) -> object:
    """Scalars as strings: Kubernetes' quantities (``nvidia.com/gpu: 1``) read back as "1"."""
    if isinstance(value, dict):
        return {k: _as_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_strings(v) for v in value]
    return str(value)


def test_the_kubernetes_job_is_a_valid_batch_v1_job_field_by_field() -> None:
    """No cluster runs here: the manifest is read into the official client's API models
    (kubernetes.client.V1Job), which refuse a missing required field, and written back: a field
    the API does not know (a typo) would be dropped, so the two must be the same."""
    kubernetes = pytest.importorskip("kubernetes", reason="the kubernetes client is not installed "
                                                          "(pip install 'srnas[test]')")
    import json
    import types

    api = kubernetes.client.ApiClient()

    def round_trip(job: dict) -> dict:
        return api.sanitize_for_serialization(api.deserialize(types.SimpleNamespace(data=json.dumps(job)), "V1Job"))

    job = _kubernetes_job()
    assert _as_strings(round_trip(job)) == _as_strings(job)
    # The check can fail: a misspelt field is dropped, a missing required one refused.
    typo = json.loads(json.dumps(job))
    typo["spec"]["podFailurPolicy"] = typo["spec"].pop("podFailurePolicy")
    assert "podFailurPolicy" not in round_trip(typo)["spec"]
    nameless = json.loads(json.dumps(job))
    del nameless["spec"]["template"]["spec"]["containers"][0]["name"]
    with pytest.raises(ValueError, match="name"):
        round_trip(nameless)


@pytest.mark.slow
def test_the_kubernetes_pods_command_runs_a_worker_as_kubernetes_would(trials_dir: Path, tmp_path: Path) -> None:
    """The Indexed Job's container command, with its $(VAR) references expanded from the
    container's env as Kubernetes does and JOB_COMPLETION_INDEX set, runs `srnas worker` on the
    study the manifest names (created as its header says) to its budget, exit 0."""
    import re

    job = _kubernetes_job()
    container = job["spec"]["template"]["spec"]["containers"][0]
    study = container["command"][container["command"].index("--study") + 1]
    url = _sqlite(trials_dir, study)
    assert main(["search", "--study", study, "--space", str(_space(tmp_path)), "--budget", "2", "--storage", url,
                 *CREATE, "--create-only"]) == 0
    env = {e["name"]: url for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    assert env == {"SRNAS_STORAGE": url}
    command = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg) for arg in container["command"]]
    pod_env = {**_env(trials_dir), **env, "JOB_COMPLETION_INDEX": "3",
               "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    done = subprocess.run(command, env=pod_env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_budget_met_once(_load(url, study), 2)


# ---- SQLite on a network file system ---------------------------------------------------------


@pytest.mark.slow
def test_submitit_local_executor_runs_the_recipe_to_an_exact_budget(trials_dir: Path, tmp_path: Path) -> None:
    """examples/cluster/submitit_workers.py with submitit's local executor (the recipe's "here"
    line): two worker processes on one study, the budget met exactly, each task's result 0."""
    pytest.importorskip("submitit", reason="submitit not installed (pip install 'srnas[cluster]')")
    url = _sqlite(trials_dir, "sub")
    assert main(["search", "--study", "sub", "--space", str(_space(tmp_path)), "--budget", "3", "--storage", url,
                 *CREATE, "--create-only"]) == 0
    recipe = Path(__file__).resolve().parents[1] / "examples" / "cluster" / "submitit_workers.py"
    env = {**_env(trials_dir), "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    done = subprocess.run([sys.executable, str(recipe), "--study", "sub", "--storage", url, "--workers", "2",
                           "--cluster", "local", "--gpus", "0", "--cpus", "1", "--timeout-min", "10",
                           "--folder", str(tmp_path / "submitit" / "%j"), "--wait"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "submitted 2 workers on study sub" in done.stdout and "workers done: [0, 0]" in done.stdout, done.stdout
    assert_budget_met_once(_load(url, "sub"), 3)


def test_mount_table_names_the_file_system_of_a_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import srnas.fileio as fileio
    import srnas.storages as storages

    table = tmp_path / "mounts"
    table.write_text("rootfs / ext4 rw 0 0\n"
                     f"server:/export {tmp_path}/shared nfs4 rw,relatime 0 0\n"
                     f"//nas/share {tmp_path}/with\\040space cifs rw 0 0\n"
                     f"tmpfs {tmp_path}/shared/local tmpfs rw 0 0\n")
    monkeypatch.setattr(fileio, "MOUNTS", table)
    assert fileio.filesystem_of(tmp_path / "shared" / "a" / "study.db") == ("nfs4", f"{tmp_path}/shared")
    assert fileio.filesystem_of(tmp_path / "shared" / "local" / "study.db")[0] == "tmpfs"
    assert fileio.filesystem_of(tmp_path / "with space" / "study.db")[0] == "cifs"
    assert fileio.filesystem_of(tmp_path / "sharedx" / "study.db") == ("ext4", "/")
    with pytest.raises(storages.StudyError, match=r"network file system \(nfs4.*PostgreSQL.*storage-proxy"):
        storages.refuse_network_sqlite(f"sqlite:///{tmp_path}/shared/study.db")
    storages.refuse_network_sqlite(f"sqlite:///{tmp_path}/shared/local/study.db")
    storages.refuse_network_sqlite(f"journal:{tmp_path}/shared/study.log")  # srnas locks journals NFS-safely
    storages.refuse_network_sqlite("postgresql+psycopg://u:p@h/db")


def test_sqlite_on_a_network_file_system_is_refused_before_anything_is_written(
        trials_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import srnas.fileio as fileio

    table = tmp_path / "mounts"
    table.write_text(f"rootfs / ext4 rw 0 0\nfs:/trials {trials_dir} lustre rw 0 0\n")
    monkeypatch.setattr(fileio, "MOUNTS", table)
    assert main(["search", "--study", "nfs", "--budget", "1", *CREATE]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lustre" in err[0] and "postgresql" in err[0] and "grpc://" in err[0], err
    assert not (trials_dir / "nfs" / "study.db").exists()
    # A worker on such a study (created on a local disk, then moved) is refused the same way.
    monkeypatch.setattr(fileio, "MOUNTS", tmp_path / "absent")
    assert main(["search", "--study", "nfs", "--budget", "1", *CREATE, "--create-only"]) == 0
    monkeypatch.setattr(fileio, "MOUNTS", table)
    capsys.readouterr()
    assert main(["worker", "--study", "nfs", "--no-progress"]) == 2
    assert "network file system (lustre" in capsys.readouterr().err


# ---- the gRPC storage proxy --------------------------------------------------------------------


def test_grpc_urls_and_proxy_refusals(tmp_path: Path) -> None:
    from srnas.storage_proxy import serve_storage_proxy
    from srnas.studies import StudyError
    from srnas.storages import grpc_address

    assert grpc_address("grpc://node-3.cluster:13000") == ("node-3.cluster", 13000)
    assert grpc_address("grpc://[::1]:50051/") == ("::1", 50051)
    for bad in ("grpc://host", "grpc://:13000", "grpc://host:0", "grpc://host:http"):
        with pytest.raises(StudyError, match="expected grpc://HOST:PORT"):
            grpc_address(bad)
    for url in (f"journal:{tmp_path}/j.log", "grpc://127.0.0.1:13000"):
        with pytest.raises(StudyError, match="not a journal file or another proxy"):
            serve_storage_proxy(url)


def _proxy(root: Path, storage: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "srnas", "storage-proxy", "--storage", storage, "--port", str(port)],
                            env=_env(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert f"on grpc://127.0.0.1:{port}" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc, f"grpc://127.0.0.1:{port}"


@pytest.mark.slow
def test_the_grpc_proxy_serves_four_workers_to_an_exact_budget(trials_dir: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    space = _space(tmp_path)
    proxy, url = _proxy(trials_dir, f"sqlite:///{tmp_path / 'behind-proxy.db'}")
    try:
        # A second proxy on the same port fails in one line instead of sharing it (SO_REUSEPORT).
        again = _srnas(trials_dir, "storage-proxy", "--storage", f"sqlite:///{tmp_path / 'x.db'}",
                       "--port", url.rpartition(":")[2], timeout=60)
        assert again.returncode == 2 and "cannot listen on" in _error_line(again.stderr)
        assert main(["search", "--study", "px", "--space", str(space), "--budget", "4", *CREATE,
                     "--storage", url, "--create-only"]) == 0
        # A RUNNING trial of a machine that died: recovered through the proxy by its heartbeat.
        study = _load(url, "px")
        study.add_trial(optuna.trial.create_trial(state=TrialState.RUNNING, params={}, distributions={},
                                                  user_attrs={"worker": "node-9.cluster:77", "heartbeat_at": 1.0}))
        workers = [_start(trials_dir, "worker", "--study", "px", "--storage", url, "--no-progress") for _ in range(4)]
        errs = [p.communicate(timeout=600)[1] for p in workers]
        assert [p.returncode for p in workers] == [0, 0, 0, 0], [e[-2000:] for e in errs]
        study = _load(url, "px")
        assert_budget_met_once(study, 4)
        dead = [t for t in study.get_trials() if t.user_attrs.get("worker") == "node-9.cluster:77"]
        assert [t.state for t in dead] == [TrialState.FAIL] and "no heartbeat" in dead[0].user_attrs["error"]
        assert len({t.user_attrs["worker"] for t in study.get_trials() if is_trained(t)}) >= 2  # shared
        # Readers take grpc:// as any storage URL: studies, report (both in this process), dashboard.
        capsys.readouterr()
        assert main(["studies", "--storage", url]) == 0
        listing = capsys.readouterr()
        assert "px" in listing.out, listing.err[-2000:]
        assert main(["report", "--study", "px", "--storage", url, "-o", str(tmp_path / "r.html"), "--no-png"]) == 0
        assert (tmp_path / "r.html").stat().st_size > 0, capsys.readouterr().err[-2000:]
        assert _dashboard_studies(trials_dir, url) == ["px"]
    finally:
        proxy.terminate()
        proxy.wait(timeout=30)


def _dashboard_studies(root: Path, storage: str) -> list[str]:
    """The study names `srnas dashboard --storage STORAGE` lists (its /api/studies)."""
    import json
    import urllib.error
    import urllib.request

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "srnas", "dashboard", "--storage", storage, "--port", str(port)],
                            env=_env(root), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/studies", headers={"Accept-Encoding": "identity"})
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    return [s["study_name"] for s in json.loads(answer.read())["study_summaries"]]
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.3)
        raise AssertionError("the dashboard did not answer within 120 s")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
