"""The cluster recipes on a real SLURM (issue 24): a one-node cluster on 127.0.0.1 that .ci/run
starts (.ci/slurm.sh: slurmctld and slurmd from Debian's slurm-wlm, munge), PostgreSQL as the
study's storage, the demo data on the CPU (the recipes' GPU request overridden).

- the shipped job-array script, submitted as a 3-task array, meets the budget exactly with every
  architecture trained once; a task signalled mid-trial (``scancel --signal=TERM``) has its trial
  retried by another worker, requeues itself (exit 75) and ends with nothing to do;
- submitit's SLURM executor (examples/cluster/submitit_workers.py) does the same, a task
  pre-empted the way submitit's own tests do it (SIGTERM, then its SIGUSR2) requeued by submitit.

Skipped, with the reason, where SLURM or PostgreSQL is absent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from srnas.cli import main
from test_cluster import MICRO_SPACE, assert_budget_met_once

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "examples" / "cluster"
#: The study's settings: tiny nets, a proxy long enough (and no pruning) to be caught mid-trial
#: (a micro net's 300 updates last a few seconds: 100 were over before the array test's poll of
#: squeue saw its master task running, once the suite ran faster), no confirmation.
CREATE = ["--proxy", "tiny@300", "--pruner", "none", "--heartbeat", "3", "--confirm", "0", "--sampler", "random",
          "--seed", "5",
          "--no-progress"]

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
#: The ClusterName of .ci/slurm.sh's cluster: the only one these tests submit to.
TEST_CLUSTER = "srnas-ci"


def _slurm_absent() -> str | None:
    """Why SLURM cannot be used here (None: it can)."""
    for tool in ("sbatch", "squeue", "scancel", "scontrol", "sinfo"):
        if shutil.which(tool) is None:
            return f"{tool} not found (.ci/run installs slurm-wlm and starts a one-node cluster with .ci/slurm.sh)"
    probe = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0 or not probe.stdout.strip():
        said = (probe.stderr.strip().splitlines() or ["no nodes"])[-1][:160]
        return (f"no SLURM controller answers (sinfo: {said}); make test starts one: "
                "export SLURM_CONF=$(bash .ci/slurm.sh)")
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30).stdout
    name = next((line.split("=", 1)[1].strip() for line in config.splitlines() if line.startswith("ClusterName")), "")
    if name != TEST_CLUSTER:  # never submit test jobs to a real cluster
        return f"the SLURM here is cluster {name or '?'!r}, not the test cluster {TEST_CLUSTER!r} (.ci/slurm.sh)"
    return None


@pytest.fixture(scope="module")
def slurm() -> None:
    reason = _slurm_absent()
    if reason:
        pytest.skip(reason)


def _env(tmp_path: Path, url: str) -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}", "SRNAS_STORAGE": url,
            "SRNAS_TRIALS_DIR": str(tmp_path / "trials"), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _create(tmp_path: Path, url: str, budget: int) -> str:
    name = f"slurm-{uuid.uuid4().hex[:8]}"
    space = tmp_path / "micro.yaml"
    space.write_text(MICRO_SPACE)
    assert main(["search", "--study", name, "--space", str(space), "--budget", str(budget), "--storage", url,
                 *CREATE, "--create-only"]) == 0
    return name


def _study(url: str, name: str) -> optuna.Study:
    from srnas.storages import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(url))


def _jobs(array: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-r", "-j", array, "-o", "%i %T %r"], capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if line.strip()]


def _outputs(log: Path) -> str:
    logs = sorted(log.rglob("*.out")) + sorted(log.rglob("*.err"))
    return "\n".join(f"{p.name}: {p.read_text()[-1500:]}" for p in logs)


def _master_task(array: str) -> str | None:
    """The task (``ARRAY_TASK``) whose own job id is the array's: requeueing that id by its
    plain number would requeue every task of the array (a bug the recipe once had)."""
    # Running tasks only: pending ones all show the array's id until SLURM splits them.
    out = subprocess.run(["squeue", "-h", "-r", "-t", "RUNNING", "-j", array, "-o", "%i %A"],
                         capture_output=True, text=True).stdout
    return next((task for task, job in (line.split()[:2] for line in out.splitlines() if len(line.split()) >= 2)
                 if job == array), None)


def _running_in_a_job(url: str, name: str, array: str, deadline: float, *, log: Path,
                      master: bool = False) -> optuna.trial.FrozenTrial:
    """The first trial found training in a SLURM job (heartbeat going), in the array's master
    task (`_master_task`) with ``master``; fails at once when the array's tasks ended without one
    (their output in the message)."""
    while time.monotonic() < deadline:
        task = _master_task(array) if master else None
        if task is not None or not master:
            for t in _study(url, name).get_trials(states=(TrialState.RUNNING,)):
                if "slurm_job" in t.user_attrs and "heartbeat_at" in t.user_attrs and "arch_id" in t.user_attrs \
                        and task in (None, t.user_attrs["slurm_job"]):
                    return t
        if not _jobs(array):
            where = " in its master task" if master else ""
            raise AssertionError(f"array {array} ended before a trial of study {name} was seen training{where}:\n"
                                 f"{_outputs(log)}")
        time.sleep(0.5)
    raise AssertionError(f"no trial of study {name} started training in a SLURM job:\n{_outputs(log)}")


def _wait_gone(array: str, deadline: float, *, log: Path) -> None:
    """Wait until no task of ``array`` is left; a requeued one (held back for its begin time,
    120 s on SLURM) is made eligible at once."""
    while time.monotonic() < deadline:
        jobs = _jobs(array)
        if not jobs:
            return
        for line in jobs:
            job, state, reason = (line.split() + ["", ""])[:3]
            if state == "PENDING" and reason == "BeginTime":
                subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], capture_output=True)
        time.sleep(1)
    subprocess.run(["scancel", array], capture_output=True)
    raise AssertionError(f"array {array} still running: {_jobs(array)}\n{_outputs(log)}")


def _job_record(job: str) -> str:
    return subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout


def _assert_retried(url: str, name: str, stopped: optuna.trial.FrozenTrial, budget: int) -> None:
    study = _study(url, name)
    assert_budget_met_once(study, budget)
    first = study.trials[stopped.number]
    assert first.state == TrialState.FAIL and first.user_attrs["error"].startswith("interrupted"), first.user_attrs
    retried = [t for t in study.get_trials() if t.system_attrs.get("failed_trial") == stopped.number]
    assert len(retried) == 1 and retried[0].state in (TrialState.COMPLETE, TrialState.PRUNED), retried
    assert retried[0].params == first.params and "slurm_job" in retried[0].user_attrs


def test_the_slurm_array_recipe_meets_the_budget_and_a_signalled_task_is_requeued(
        slurm: None, postgres_url: str, tmp_path: Path) -> None:
    budget = 3
    name = _create(tmp_path, postgres_url, budget)
    logs = tmp_path / "logs"
    logs.mkdir()
    submit = subprocess.run(["sbatch", "--parsable", "--array=0-2", "--gres=none", "--cpus-per-task=1",
                             "--time=30", f"--output={logs}/%A_%a.out", f"--chdir={tmp_path}",
                             str(RECIPES / "slurm_array.sh"), name],
                            env=_env(tmp_path, postgres_url), capture_output=True, text=True, timeout=60)
    assert submit.returncode == 0, submit.stderr
    array = submit.stdout.strip().split(";")[0]
    deadline = time.monotonic() + 420
    try:
        # The task that holds the array's own job id: the one whose requeue could take the others along.
        victim = _running_in_a_job(postgres_url, name, array, deadline, log=logs, master=True)
        job = victim.user_attrs["slurm_job"]
        subprocess.run(["scancel", "--signal=TERM", job], check=True, timeout=30)
        _wait_gone(array, deadline, log=logs)
    finally:
        subprocess.run(["scancel", array], capture_output=True)
    _assert_retried(postgres_url, name, victim, budget)
    record = _job_record(job)
    assert "Restarts=1" in record and "ExitCode=0:0" in record, record
    outputs = {p.name: p.read_text() for p in logs.glob("*.out")}
    # The recipe appends (--open-mode=append): the stopped run's lines stay in the task's log.
    assert any(f"requeueing job {job}" in text and "exit 75" in text for text in outputs.values()), outputs
    for task in range(3):
        assert "ExitCode=0:0" in _job_record(f"{array}_{task}"), _job_record(f"{array}_{task}")
    assert not [n for n, text in outputs.items() if "Traceback" in text], outputs


def test_submitit_drives_the_same_on_slurm_and_requeues_a_preempted_task(
        slurm: None, postgres_url: str, tmp_path: Path) -> None:
    pytest.importorskip("submitit", reason="submitit not installed (pip install 'srnas[cluster]')")
    budget = 3
    name = _create(tmp_path, postgres_url, budget)
    env = _env(tmp_path, postgres_url)
    script = subprocess.Popen([sys.executable, str(RECIPES / "submitit_workers.py"), "--study", name, "--workers", "3",
                               "--cluster", "slurm", "--gpus", "0", "--cpus", "1", "--timeout-min", "30",
                               "--folder", str(tmp_path / "submitit" / "%j"), "--wait"],
                              env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 420
    try:
        first = script.stdout.readline()
        assert first.startswith("submitted 3 workers"), first + (script.stderr.read() if script.poll() else "")
        array = first.split(": ", 1)[1].split("_")[0]
        victim = _running_in_a_job(postgres_url, name, array, deadline, log=tmp_path / "submitit")
        job = victim.user_attrs["slurm_job"]
        # What submitit's own tests send for a pre-emption: SIGTERM to every process, then its signal.
        subprocess.run(["scancel", "--signal=TERM", job], check=True, timeout=30)
        subprocess.run(["scancel", "--signal=USR2", job], check=True, timeout=30)
        _wait_gone(array, deadline, log=tmp_path / "submitit")
        out, err = script.communicate(timeout=120)
    finally:
        if script.poll() is None:
            script.kill()
        subprocess.run(["scancel", "--name", f"srnas-{name}"], capture_output=True)
    assert script.returncode == 0, err[-3000:]
    assert "workers done: [0, 0, 0]" in out, out + err[-3000:]
    _assert_retried(postgres_url, name, victim, budget)
    assert "Restarts=1" in _job_record(job)
    logs = _outputs(tmp_path / "submitit")
    assert "Requeued job" in logs and "Traceback" not in logs, logs
