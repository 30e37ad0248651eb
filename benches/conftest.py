"""Shared state of the bench suite: the bench input, built once, and the ratio table printed at the end.

``bench_pipeline.py`` records timings in ``RESULTS`` (pytest-benchmark minima of the "pipeline"
group, and the interleaved perf_counter minima of ``test_ratios``); ``pytest_terminal_summary``
prints them side by side with the ratios numpy/rust and rust/yardstick for both thread settings.
"""

from __future__ import annotations

import os
import platform
from collections import defaultdict
from types import SimpleNamespace

import pytest

RESULTS: dict[str, dict[str, float]] = {"pytest-benchmark": {}, "interleaved": {}}
#: bench_objective.py: model name -> method -> minimum seconds per call.
OBJECTIVE_RESULTS: dict[str, dict[str, float]] = defaultdict(dict)
#: bench_verl.py: controller seconds of the advantage step ("sync", "repro_sync") and the batch size.
VERL_RESULTS: dict[str, float] = {}

LABELS = {
    "rust": "rust pipeline (default threads)",
    "rust_1": "rust pipeline (REPRO_NUM_THREADS=1)",
    "numpy": "numpy pipeline",
    "numpy_checked": "numpy pipeline + the Rust input checks",
    "yardstick": "yardstick: .sum() of ids, mask, entropies",
}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def ratio_table(times: dict[str, float]) -> list[str]:
    """Lines of the table: times in ms and the ratios the issue asks for."""
    lines = [f"    {LABELS[key]:<45s} {times[key] * 1e3:9.2f} ms" for key in LABELS if key in times]
    if all(key in times for key in ("rust", "rust_1", "numpy", "yardstick")):
        for key, threads in (("rust", f"default ({os.cpu_count()} cores)"), ("rust_1", "1")):
            speedup = times["numpy"] / times[key]
            over = times[key] / times["yardstick"]
            checked = ""
            if "numpy_checked" in times:
                checked = f"   (numpy+checks)/rust = {times['numpy_checked'] / times[key]:5.2f}x"
            lines.append(
                f"    threads {threads:<16s} numpy/rust = {speedup:5.2f}x"
                f" (target >= 10: {'met' if speedup >= 10 else 'MISSED'})"
                f"   rust/yardstick = {over:5.2f}x (target <= 5: {'met' if over <= 5 else 'MISSED'}){checked}"
            )
    return lines


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    write = terminalreporter.write_line
    machine = (f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, "
               f"{platform.python_implementation()} {platform.python_version()}")
    if any(RESULTS.values()):
        terminalreporter.section("RePro pipeline: ratios (256 x 16,384, k = 20)")
        write(machine)
        for source, times in RESULTS.items():
            if times:
                write(f"  {source} (minimum per call):")
                for line in ratio_table(times):
                    write(line)
    if OBJECTIVE_RESULTS:
        from objective_workload import ratio_lines

        terminalreporter.section("J on CPU: ratios (4 rollouts, completions 512 to 2,048 tokens, k = 20)")
        write(machine)
        for model, times in OBJECTIVE_RESULTS.items():
            write(f"  {model} (pytest-benchmark minimum per call):")
            for line in ratio_lines(times):
                write(line)
    if {"sync", "repro_sync"} <= VERL_RESULTS.keys():
        terminalreporter.section("verl: the controller's advantage step, repro_sync vs verl's own")
        write(machine)
        for line in verl_lines(VERL_RESULTS):
            write(line)


def verl_lines(results: dict[str, float]) -> list[str]:
    sync, repro = results["sync"], results["repro_sync"]
    rows, cuts = int(results["rows"]), results["num_cuts"]
    return [
        f"  {rows} rows, {results['tokens'] / 1e3:.0f} k response tokens, {cuts:.1f} cut points (probe rows) per row",
        f"  probe tokens {results['probe_tokens'] / 1e6:.2f} M"
        f" = {results['probe_tokens'] / results['sequence_tokens']:.1f}x"
        " the tokens of the old-log-prob pass (the workers' extra forward)",
        f"    verl's own advantage step (grpo)        {sync * 1e3:9.1f} ms",
        f"    repro_sync's advantage step (repro_grpo) {repro * 1e3:9.1f} ms"
        f"   ({repro / (rows * cuts) * 1e6:.0f} us per probe row)",
        f"    repro_sync / verl = {repro / sync:.1f}x (controller time only; the probes' forward is the workers')",
    ]


def pytest_collect_file(file_path, parent):
    """Collects ``bench_*.py`` (pytest's default pattern only takes ``test_*.py``)."""
    # Files named on the command line are collected by pytest itself.
    if file_path.suffix == ".py" and file_path.name.startswith("bench_") and not parent.session.isinitpath(file_path):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


@pytest.fixture(scope="session")
def objective_report():
    """Where bench_objective.py records its minima, per model."""
    return OBJECTIVE_RESULTS


@pytest.fixture(scope="session")
def verl_report():
    """Where bench_verl.py records its minima."""
    return VERL_RESULTS


@pytest.fixture(scope="session")
def report():
    """Where benches record timings (``report.results``) and how the table is made (``report.table``)."""
    return SimpleNamespace(results=RESULTS, table=ratio_table)
