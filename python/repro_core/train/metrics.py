"""``metrics.jsonl``: one JSON object per trainer log, written by the main process."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..outputs import check_output_file, open_output, write_atomic

if TYPE_CHECKING:
    from transformers import TrainerCallback

__all__ = ["METRICS_FILE", "jsonable", "metrics_file_callback"]

#: The file in ``output_dir`` that gets one JSON object per trainer log.
METRICS_FILE = "metrics.jsonl"


def metrics_file_callback(path: Path) -> TrainerCallback:
    """A callback that appends each log (step, epoch and every logged value) to ``path`` on rank 0.

    At train begin it keeps only the lines up to the starting step: nothing on a fresh run, the
    history of the checkpoint on a resume (dropping lines of steps that are about to be redone),
    rewritten whole (a temporary file renamed over it). The file is never written through a
    symbolic link, nor into a FIFO or device: such a file there is a ReproError naming it.
    """
    from transformers import TrainerCallback

    class MetricsFile(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            check_output_file(path, "--output_dir")
            kept_lines = []
            if state.global_step > 0 and path.is_file():
                for line in path.read_text().splitlines():
                    try:
                        if json.loads(line).get("step", math.inf) <= state.global_step:
                            kept_lines.append(line + "\n")
                    except (json.JSONDecodeError, AttributeError):
                        continue
            write_atomic(path, "".join(kept_lines))  # the history kept whole, whenever the run is killed

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            record = {"step": state.global_step, "epoch": state.epoch, **logs}
            line = json.dumps({key: jsonable(value) for key, value in record.items()}) + "\n"
            with os.fdopen(open_output(path, "--output_dir", append=True), "a") as out:  # never through a link
                out.write(line)

    return MetricsFile()


def jsonable(value: Any) -> Any:
    """``value`` as strict JSON: NaN and infinities become null, tensors and numpy scalars plain numbers."""
    if hasattr(value, "item") and callable(value.item):
        try:
            value = value.item()
        except (ValueError, RuntimeError):
            return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    return str(value)
