"""The GPU check in one command: the objective's GPU figures, verl's worker timed, J's bf16 noise
and the ``gpu``-marked tests, in one JSON.

On a GPU machine, run through ``benches/gpu_check.sh`` (which installs the wheels that
``benches/gpu_bundle.sh`` brought along), or directly where repro-core and its ``[trl]`` and
``[verl]`` extras are installed:

    python benches/gpu_check.py --out gpu-check --bf16     # writes gpu-check/gpu_check.json
    python benches/gpu_check.py --out check --device cpu --small --bf16   # a smoke run of the script

Its parts, each a script writing its own JSON:

- ``objective``: ``benches/gpu_objective.py`` (a Qwen2-1.5B-shaped random model, bf16, 8 x 4,096
  tokens, k = 20: the pipeline, shared and per-cut J against the forward with entropies, peak
  memory);
- ``verl_worker``: ``benches/gpu_verl_worker.py``, verl's own actor worker on one rank: the time of
  verl's ``compute_log_prob`` with J inside (``objective_mode=fused``) and of the shared path's J
  (``compute_repro_objective``) against the plain ``compute_log_prob`` on the same batch, J finite,
  J in bf16 against float32 and against the per-cut oracle. It runs where verl imports
  (``--verl-site``: a folder of its wheels);
- ``bf16``: with ``--bf16``, ``benches/bf16_objective.py``: J and ΔJ in bf16 against float32 on the
  embedded model and real reasoning text;
- ``tests``: ``pytest -m gpu`` over the test files that hold such tests (J on CUDA against the
  CPU, J finite and the same alone as beside a longer prompt under CUDA's kernels, FSDP2's CPU
  offload, two ``ReproGRPOTrainer`` steps on CUDA in bf16).

``gpu_check.json`` holds the machine, each part's figures and seconds (or why it was skipped),
each test's outcome and time. The exit status is non-zero when a part failed. Without the model
(``--bf16``), it is sized for about 8 minutes on an H100, start-up included.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for gpu_check.json and the parts' own files")
    parser.add_argument("--device", default="cuda", help="passed to gpu_objective.py")
    parser.add_argument("--small", action="store_true", help="each part's smoke setting")
    parser.add_argument("--verl-site", help="a folder of verl's wheels, installed apart (gpu_check.sh)")
    parser.add_argument("--bf16", action="store_true", help="also bf16_objective.py (needs the embedded model)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    report: dict = {"machine": machine(), "skipped": {}}
    failed = []
    small = ["--small"] if args.small else []
    parts = {"objective": ("gpu_objective.py", small, None)}
    if args.verl_site or importlib.util.find_spec("verl"):
        site = f"{args.verl_site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}" if args.verl_site else None
        parts["verl_worker"] = ("gpu_verl_worker.py", small, site)
    else:
        report["skipped"]["verl_worker"] = "verl is not installed (gpu_bundle.sh --verl brings it)"
    if args.bf16:
        parts["bf16"] = ("bf16_objective.py", ["--gsm8k", "none", *(["--rows", "1", "--k", "2"] if args.small else [])],
                         None)
    else:
        report["skipped"]["bf16"] = "no --bf16 (it needs the embedded model: gpu_bundle.sh --model)"
    for name, (script, options, pythonpath) in parts.items():
        started = time.perf_counter()
        written = out / f"{Path(script).stem}.json"
        env = {**os.environ, "PYTHONPATH": pythonpath} if pythonpath else None
        part = subprocess.run([sys.executable, str(ROOT / "benches" / script), "--device", args.device,
                               "--json", str(written), *options], cwd=ROOT, env=env)
        report[name] = json.loads(written.read_text()) if part.returncode == 0 else None
        report[f"{name}_seconds"] = round(time.perf_counter() - started, 1)
        if part.returncode != 0:
            failed.append(name)

    started = time.perf_counter()
    files = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "tests").glob("test_*.py")
                   if "mark.gpu" in path.read_text())
    junit = out / "gpu_tests.xml"
    tests = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-p", "no:cacheprovider", "-q",
                            f"--junitxml={junit}", *files], cwd=ROOT)
    report["tests"] = test_outcomes(junit) if junit.exists() else []
    report["tests_seconds"] = round(time.perf_counter() - started, 1)
    # On a GPU every test must have run: a skip there means CUDA was not seen.
    ran = args.device == "cpu" or all(test["outcome"] == "passed" for test in report["tests"])
    report["ok"] = not failed and tests.returncode == 0 and bool(report["tests"]) and ran
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    passed = sum(test["outcome"] == "passed" for test in report["tests"])
    print(f"gpu_check: {', '.join(f'{name} ' + ('FAILED' if name in failed else 'ok') for name in parts)}, "
          f"skipped {sorted(report['skipped']) or 'none'}, tests {passed}/{len(report['tests'])} passed; "
          f"{out / 'gpu_check.json'}")
    sys.exit(0 if report["ok"] else 1)


def machine() -> dict:
    import torch
    import transformers

    cuda = torch.cuda.is_available()
    return {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "python": sys.version.split()[0],
    }


# A JUnit test case's child element that marks it, and the outcome it means (a later one wins).
OUTCOMES = {"failure": "failed", "error": "error", "skipped": "skipped"}


def test_outcomes(junit: Path) -> list[dict]:
    """Each test case of a JUnit XML file: its name, outcome and seconds."""
    outcomes = []
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        outcome = "passed"
        for element, meaning in OUTCOMES.items():
            if case.find(element) is not None:
                outcome = meaning
        outcomes.append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome,
                         "seconds": float(case.get("time", 0))})
    return outcomes


if __name__ == "__main__":
    main()
