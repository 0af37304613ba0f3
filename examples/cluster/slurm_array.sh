#!/bin/bash
# srnas workers as a SLURM job array: each array task is one `srnas worker` (one GPU) on a shared
# study. Create the study once, then submit as many tasks as you like, whenever you like:
#
#   export SRNAS_STORAGE=postgresql+psycopg://USER:PASS@DBHOST/srnas
#   srnas search --study div2k-run --storage "$SRNAS_STORAGE" --data /shared/DIV2K --budget 500 \
#       --artifacts /shared/srnas-artifacts --create-only
#   sbatch --array=0-15 examples/cluster/slurm_array.sh div2k-run
#
# Storage: SRNAS_STORAGE, passed on by sbatch with the rest of the environment (a password stays
# out of the command line and squeue): PostgreSQL, or grpc://HOST:PORT of an `srnas storage-proxy`
# in front of it for hundreds of tasks; never a SQLite file on a network file system (refused).
#
# Pre-emption and time limits: SLURM sends SIGUSR1 to this script 120 s before the time limit
# (--signal=B:USR1@120), and SIGTERM to the worker when it pre-empts the job or when
# `scancel --signal=TERM` asks; the worker enqueues its running trial again for another worker
# and exits 75, and this script requeues its task. A task that finds the budget met exits 0.
#
# Without GPUs (CPU nodes, a test cluster): sbatch --gres=none --cpus-per-task=2 --array=... this file.
#SBATCH --job-name=srnas-worker
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --requeue
#SBATCH --signal=B:USR1@120
#SBATCH --open-mode=append
#SBATCH --output=srnas-worker-%A_%a.out
set -u
study=${1:?usage: sbatch --array=0-N slurm_array.sh STUDY   (the storage URL in SRNAS_STORAGE)}
: "${SRNAS_STORAGE:?set SRNAS_STORAGE to the storage URL of the study (postgresql+psycopg://... or grpc://HOST:PORT)}"

# A job step (srun), so that `scancel --signal=...` reaches the worker; this script forwards the
# signals it receives itself (bash runs a trap once `wait` returns, so wait again after it).
srun --ntasks=1 srnas worker --study "$study" --storage "$SRNAS_STORAGE" --no-progress &
step=$!
trap 'kill -TERM "$step" 2>/dev/null' USR1 TERM
wait "$step"
code=$?
while kill -0 "$step" 2>/dev/null; do
    wait "$step"
    code=$?
done
if [ "$code" -eq 75 ]; then
    task=${SLURM_ARRAY_JOB_ID:+${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}}
    echo "srnas worker was stopped by a signal (its trial is enqueued for another worker): requeueing job ${task:-$SLURM_JOB_ID}"
    # The task, not $SLURM_JOB_ID: one task's job id is the array's own, and requeueing that
    # id requeues every task of the array.
    scontrol requeue "${task:-$SLURM_JOB_ID}"
fi
exit "$code"
