#!/usr/bin/env bash
# Download, here (where PyPI is reachable), the wheels the device machine lacks for a real
# `srnas search`: Optuna and what it needs, at the versions constraints.txt pins, for Python
# 3.12 on x86-64. They go to .whl/ (git-ignored through .git/info/exclude); `benchmarks/gpu_run.sh`
# installs them there when Optuna is missing. The device image already has torch, numpy,
# scipy, scikit-image, scikit-learn, pandas, pyyaml, rich, filelock, safetensors and pillow.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
pin() { grep -i "^$1==" constraints.txt | head -n 1; }
mkdir -p .whl
for name in optuna alembic SQLAlchemy Mako colorlog plotly narwhals; do
    spec=$(pin "$name")
    [ -n "$spec" ] || { echo "gpu_wheels.sh: $name is not pinned in constraints.txt" >&2; exit 2; }
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform any -d .whl "$spec"
done
# SQLAlchemy's C parts need greenlet on x86-64 (not pinned here: the newest that installs).
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl greenlet
ls -1 .whl
du -sh .whl
