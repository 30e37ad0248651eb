"""Shared state of the bench suite: the bench input, built once, and the ratio table printed at the end.

``bench_pipeline.py`` records timings in ``RESULTS`` (pytest-benchmark minima of the "pipeline"
group, and the interleaved perf_counter minima of ``test_ratios``); ``pytest_terminal_summary``
prints them side by side with the ratios numpy/rust and rust/yardstick for both thread settings.
``bench_verl.py`` records its figures in ``VERL_RESULTS``; ``--json FILE`` writes them to a file.
"""

from __future__ import annotations

import json
import os
import platform
from collections import defaultdict
from types import SimpleNamespace

import pytest

RESULTS: dict[str, dict[str, float]] = {"pytest-benchmark": {}, "interleaved": {}}
#: bench_objective.py: model name -> method -> minimum seconds per call.
OBJECTIVE_RESULTS: dict[str, dict[str, float]] = defaultdict(dict)
#: bench_verl.py: controller seconds of verl's advantage step ("sync"), the batch size, per J path
#: ("per_cut", "shared", "fused") a dict of its controller seconds, worker_tokens_ratio,
#: worker_time_ratio and j_max_abs_diff, and the workers' timed run ("worker_time").
VERL_RESULTS: dict = {}
#: The J paths of bench_verl.py.
VERL_PATHS = ("per_cut", "shared", "fused")

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
    figures = verl_figures(VERL_RESULTS)
    if figures:
        terminalreporter.section("verl: repro_sync's advantage step, per_cut and shared J, vs verl's own")
        write(machine)
        for line in verl_lines(figures):
            write(line)
    path = config.getoption("--json", None)
    if path and figures:
        with open(path, "w") as f:
            json.dump({"machine": machine.removeprefix("machine: "), **figures}, f, indent=2)
        write(f"verl figures written to {path}")


def verl_figures(results: dict) -> dict:
    """The figures of bench_verl.py, per J path, from what it recorded (empty before it ran)."""
    if "sync" not in results or not any(path in results for path in VERL_PATHS):
        return {}
    sync = results["sync"]
    out: dict = {
        "batch": {key: results[key] for key in ("rows", "tokens", "sequence_tokens", "num_cuts") if key in results},
        "j_check": {key: results[key] for key in ("j_rows", "j_cut_points") if key in results},
        "sync_seconds": sync,
        "worker_time": results.get("worker_time", {}),
    }
    for path in VERL_PATHS:
        got = results.get(path, {})
        figures = {}
        for key in ("worker_tokens_ratio", "worker_time_ratio"):
            if key in got:
                figures[key] = got[key]
        if "seconds" in got:
            figures["controller_ratio"] = got["seconds"] / sync
            figures["controller_seconds"] = got["seconds"]
        if "j_max_abs_diff" in got:
            figures["j_max_abs_diff"] = got["j_max_abs_diff"]
        out[path] = figures
    return out


def verl_lines(figures: dict) -> list[str]:
    batch = figures["batch"]
    lines = [
        f"  {batch['rows']} rows, {batch['tokens'] / 1e3:.0f} k response tokens,"
        f" {batch.get('num_cuts', float('nan')):.1f} cut points per row",
        f"  verl's own advantage step (grpo): {figures['sync_seconds'] * 1e3:.1f} ms",
        f"  {'path':<8s} {'worker tokens / old-log-prob':>29s} {'worker time / old-log-prob':>27s}"
        f" {'controller / grpo':>18s} {'controller ms':>14s} {'max |J - J per_cut|':>20s}",
    ]
    nan = float("nan")
    for path in VERL_PATHS:
        got = figures[path]
        lines.append(
            f"  {path:<8s} {got.get('worker_tokens_ratio', nan):28.3f}x {got.get('worker_time_ratio', nan):26.2f}x"
            f" {got.get('controller_ratio', nan):17.1f}x {got.get('controller_seconds', nan) * 1e3:14.1f}"
            f" {got.get('j_max_abs_diff', nan):20.2e}"
        )
    shared = figures["shared"]
    if "worker_tokens_ratio" in shared and "controller_ratio" in shared:
        tokens, controller = shared["worker_tokens_ratio"], shared["controller_ratio"]
        lines.append(f"  shared: worker tokens {tokens:.2f}x (target <= 1.15: {'met' if tokens <= 1.15 else 'MISSED'}),"
                     f" controller {controller:.1f}x (target <= 3: {'met' if controller <= 3 else 'MISSED'})")
    fused = figures["fused"]
    if "worker_tokens_ratio" in fused and "worker_time_ratio" in fused:
        tokens, worker = fused["worker_tokens_ratio"], fused["worker_time_ratio"]
        lines.append(f"  fused: extra worker tokens {tokens:.3f} (target <= 0.15: "
                     f"{'met' if tokens <= 0.15 else 'MISSED'}), worker time {worker:.2f}x (target <= 1.3: "
                     f"{'met' if worker <= 1.3 else 'MISSED'})")
    if figures["worker_time"]:
        timed = figures["worker_time"]
        lines.append(f"  workers' time: {timed['model']} model, {timed['pass_tokens']} tokens, {timed['cut_points']}"
                     f" cut points; fused and shared worker tokens and time from that run")
    if figures["j_check"]:
        check = figures["j_check"]
        lines.append(f"  J check: tiny model, {check['j_rows']} rows, {check['j_cut_points']} cut points")
    return lines


def pytest_addoption(parser):
    parser.addoption("--json", metavar="FILE", default=None,
                     help="bench_verl.py: write the figures (per J path) to FILE as JSON")


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
