"""The GPU check in one command: the objective's GPU figures and the ``gpu``-marked tests, in one JSON.

On a GPU machine, run through ``benches/gpu_check.sh`` (which installs the wheels that
``benches/gpu_bundle.sh`` brought along), or directly where repro-core and its ``[trl]`` extra are
installed:

    python benches/gpu_check.py --out gpu-check            # writes gpu-check/gpu_check.json
    python benches/gpu_check.py --out check --device cpu --small   # a smoke run of the script itself

It runs ``benches/gpu_objective.py`` (a Qwen2-1.5B-shaped random model, bf16, 8 x 4,096 tokens,
k = 20: the pipeline, shared and per-cut J against the forward with entropies, peak memory) and
``pytest -m gpu`` over the test files that hold such tests (J on CUDA against the CPU, two
``ReproGRPOTrainer`` steps on CUDA in bf16). ``gpu_check.json`` holds the machine, the objective's
times, ratios and memory, each test's outcome and time, and how long each part took. The exit
status is non-zero when a part failed. The whole fits in about 8 minutes on an H200, start-up
included.
"""

from __future__ import annotations

import argparse
import json
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
    parser.add_argument("--small", action="store_true", help="gpu_objective.py's smoke setting")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    report: dict = {"machine": machine()}
    started = time.perf_counter()
    objective_json = out / "gpu_objective.json"
    command = [sys.executable, str(ROOT / "benches" / "gpu_objective.py"), "--device", args.device,
               "--json", str(objective_json), *(["--small"] if args.small else [])]
    objective = subprocess.run(command, cwd=ROOT)
    report["objective"] = json.loads(objective_json.read_text()) if objective.returncode == 0 else None
    report["objective_seconds"] = round(time.perf_counter() - started, 1)

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
    report["ok"] = objective.returncode == 0 and tests.returncode == 0 and bool(report["tests"]) and ran
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    passed = sum(test["outcome"] == "passed" for test in report["tests"])
    print(f"gpu_check: objective {'ok' if objective.returncode == 0 else 'FAILED'}, "
          f"tests {passed}/{len(report['tests'])} passed; {out / 'gpu_check.json'}")
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
