"""What importing each light module of repro_core must not drag in: the one home of the "does not import
torch" checks. Each import runs in a fresh interpreter, since this one has long imported everything."""

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "datasets", "matplotlib", "trl")

#: The modules that import none of HEAVY (the commands import them when they run).
LIGHT = (
    "repro_core",
    "repro_core.errors",
    "repro_core.delimiters",
    "repro_core.rewards",
    "repro_core.data",
    "repro_core.config",
    "repro_core.arguments",
    "repro_core.cli",
    "repro_core.demo",
    "repro_core.train",
    "repro_core.analysis",
    "repro_core.report",
    "repro_core.assets",
    "repro_core.outputs",
    "repro_core.interrupts",
)


@pytest.mark.parametrize("module", LIGHT)
def test_import_is_light(module):
    code = f"import json, sys, {module}; print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    imported = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert not imported, f"importing {module} imports {sorted(imported)}"
