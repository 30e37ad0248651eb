#!/usr/bin/env bash
# Run here, where PyPI is reachable, from the repository root: puts in .whl/ (ignored by git) what
# a bare GPU machine without network lacks for benches/gpu_check.sh. That is repro-core's own wheel
# (abi3, so it installs on any CPython >= 3.11) and, at this environment's versions, the packages
# the GPU image does not hold at those versions: transformers (the image's is outside repro-core's
# range), tokenizers, TRL, datasets and datasets' dill and multiprocess.
set -euo pipefail
python=${PYTHON:-.venv/bin/python}
rm -rf .whl && mkdir .whl
command -v maturin >/dev/null || { echo "gpu_bundle.sh needs maturin on the PATH (pip install maturin)" >&2; exit 1; }
maturin build --release --features pyo3/abi3-py311 --out .whl
pins=$("$python" -c 'from importlib.metadata import version
for name in ("transformers", "tokenizers", "trl", "datasets", "dill", "multiprocess"):
    print(f"{name}=={version(name)}")')
platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do platforms+=(--platform "$tag"); done
# shellcheck disable=SC2086  # one argument per pin
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl $pins
du -ch .whl/* | tail -n 1
