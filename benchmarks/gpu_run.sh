#!/usr/bin/env bash
# The whole device check in one call: card and driver, the checks, the throughput table, and a
# short real `srnas search` (Optuna from wheels carried in .whl/: benchmarks/gpu_wheels.sh), all
# left in OUTDIR (at most 8 files, as the device tool brings back). Every part writes its files as
# it goes, so a timeout keeps what was measured. On a machine without CUDA the CUDA parts print a
# SKIP line and the rest runs (about a minute on 2 CPU cores).
#
#   benchmarks/gpu_run.sh OUTDIR            # full: checks (~2 min on a GPU) + throughput (~4 min) + search
#   benchmarks/gpu_run.sh OUTDIR --quick    # checks with fewer trials, no throughput table, the search
#
# SRNAS_GPU_RUN_PROXY sets the search's proxy (default tiny@150); the CPU test of this script
# (tests/test_gpu_seams.py) runs a shorter one.
set -u
OUT=${1:?usage: benchmarks/gpu_run.sh OUTDIR [--quick]}
MODE=${2:-full}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export PYTHONUNBUFFERED=1
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
if ! $PY -c "import optuna" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/srnas-site .whl/*.whl \
        && export PYTHONPATH=/tmp/srnas-site:${PYTHONPATH:-}
fi
started=$(date +%s)
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "python: $($PY -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)')"
    if command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader
    else
        echo "SKIP card: no nvidia-smi here (no NVIDIA driver)"
    fi
} 2>&1 | tee "$OUT/card.txt"

quick=()
[ "$MODE" = "--quick" ] && quick=(--quick)
$PY benchmarks/gpu_check.py --json "$OUT/gpu_check.json" "${quick[@]}" 2>&1 | tee "$OUT/gpu_check.log"
check=${PIPESTATUS[0]}

if $PY -c "import optuna" 2>/dev/null; then
    trials=$(mktemp -d)
    SRNAS_TRIALS_DIR="$trials" timeout 300 $PY -m srnas search --budget 8 --proxy "${SRNAS_GPU_RUN_PROXY:-tiny@150}" --confirm 1 \
        --confirm-seeds 1 --seed 0 --workers auto --no-progress --json > "$OUT/search.json" 2> "$OUT/search.log"
    echo "search exit $? (log: search.log, summary: search.json)"
    $PY benchmarks/trial_overhead.py "$trials" --json "$OUT/trial_overhead.json" 2>&1 | tee -a "$OUT/search.log"
else
    echo "SKIP search: Optuna is not installed here (run benchmarks/gpu_wheels.sh and carry .whl)" | tee "$OUT/search.log"
fi
echo "gpu_run.sh: $(( $(date +%s) - started )) s; checks exit $check; files in $OUT"
exit "$check"
