#!/usr/bin/env bash
# On a bare GPU machine without network, from the repository root with .whl/ beside it
# (benches/gpu_bundle.sh made it): installs the wheels, then runs benches/gpu_check.py, which
# writes every figure to one JSON file. Usage: benches/gpu_check.sh [OUT_DIR [gpu_check.py options]]
# (OUT_DIR defaults to $OUT, else gpu-check).
set -euo pipefail
out=${1:-${OUT:-gpu-check}}
shift || true
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/repro-site .whl/*.whl
export PYTHONPATH=/tmp/repro-site HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
python3 benches/gpu_check.py --out "$out" "$@"
