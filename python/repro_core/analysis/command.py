"""The ``repro score`` command: ``run`` (load the rows and the model, score, write the outputs, print the table)
and ``main`` (parse the flags, run, and turn a ReproError into one ``repro: error: ...`` line and exit status 2).

The flags are in ``arguments``, the scoring loop and the outputs in ``scoring``; docs/score.md describes the
command, and "What survives an interrupt or an error" what a run that does not finish keeps.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..arguments import ModelArguments
from ..data import REASONING_GYM_PREFIX
from ..errors import ReproError
from ..interrupts import Interrupt, terminate_as_interrupt
from ..outputs import claimed_output_dir
from .arguments import DEFAULT_SAMPLES, OUTPUT_FILES, CommandArguments, DeviceArguments, flag_of, parse_arguments
from .scoring import Scoring, Stopped, check_input_not_output, check_writable, report_settings, write_outputs

__all__ = ["main", "run"]

logger = logging.getLogger(__name__)

# k larger than any number of paragraph breaks: select_cuts then keeps every candidate, so the cut points are
# exactly the paragraph boundaries.
_ALL_PARAGRAPHS = 10**9


def run(arguments: CommandArguments) -> int:
    """The command behind ``main`` once the arguments are parsed; after an interrupt (the traces scored kept) 130,
    or 143 when it was a SIGTERM, which is handled as Ctrl-C. The output folder is checked, and held (locked)
    for the run: a second run into it is refused."""
    with terminate_as_interrupt() as interrupt:
        try:
            output = Path(arguments.report.output_dir)
            check_writable(output)  # before anything slow: an unwritable folder would lose the whole run
            check_input_not_output(arguments.data.dataset, output)
            with claimed_output_dir(output, "--output_dir"):
                return _run(arguments, output, interrupt)
        except KeyboardInterrupt:  # before the scoring began: nothing to keep
            print(f"repro: {interrupt.word}", file=sys.stderr)
            return interrupt.status


def _run(arguments: CommandArguments, output: Path, interrupt: Interrupt) -> int:
    from rich.console import Console

    from ..data import DEFAULT_SYSTEM_PROMPT
    from ..pipeline import ReproScorer
    from .inputs import load_rows
    from .table import print_table

    started = time.monotonic()
    data, generation, repro, report = arguments.data, arguments.generation, arguments.repro, arguments.report
    procedural = data.dataset.startswith(REASONING_GYM_PREFIX)  # no completions to read: sample some
    samples = (DEFAULT_SAMPLES if procedural else 0) if generation.generate is None else generation.generate
    if data.system_prompt is not None and not samples:
        raise ReproError("--system_prompt", "is the system message of prompts the model samples from (--generate N, "
                         "or a reasoning-gym dataset); completions read from a file are scored after their prompts "
                         "as written: give the system message in the prompt column (chat messages)")
    k = _ALL_PARAGRAPHS if repro.repro_k is None else repro.repro_k
    config = repro.repro_config(temperature=generation.temperature, k=k)
    system_prompt = DEFAULT_SYSTEM_PROMPT if data.system_prompt is None else data.system_prompt
    try:
        rows = load_rows(data.dataset, split=data.split, dataset_config=data.dataset_config,
                         dataset_size=data.dataset_size, dataset_seed=data.dataset_seed, task_config=data.task_config,
                         system_prompt=system_prompt, prompt_column=data.prompt_column,
                         answer_column=data.answer_column,
                         completion_column=None if samples else data.completion_column)
    except ReproError as error:
        if error.argument == "completion_column":
            raise ReproError("--completion_column", f"{error.message}; pass --generate N to sample completions "
                             "with the model") from None
        raise
    model, tokenizer, device = _load_model(arguments.model, arguments.device)
    scoring = Scoring(arguments, ReproScorer(model, tokenizer, config), rows, samples, system_prompt, output,
                       Console(stderr=True))
    interrupted = False
    try:
        scoring.run(interrupt)
    except KeyboardInterrupt:
        interrupted = True
    except Stopped as stop:
        raise ReproError(stop.argument, f"{stop.message} (the run stopped here, --on_error stop; the "
                         f"{len(scoring.records)} traces scored before are in {output}/)") from None
    finally:
        scoring.close()
        if scoring.records and scoring.writable:  # the plots and report of what was scored, however it ended
            settings = report_settings(arguments, samples, len(scoring.records)) | scoring.status(interrupted)
            write_outputs(scoring.records, output, settings, report.color_max)
    if scoring.skipped:
        scoring.warn(f"rows skipped (--on_error skip): {scoring.skipped_rows()}")
        if not scoring.records:
            raise ReproError("--on_error", f"no row could be scored; the first: {scoring.skipped[0][1]}")
    console = Console()
    print_table(scoring.records, console, max_rows=report.table_rows)
    console.print(f"{len(scoring.records)} traces scored on {device} in {time.monotonic() - started:.0f} s; wrote "
                  f"{', '.join(OUTPUT_FILES)} to {output}/", highlight=False)
    if interrupted:
        scoring.errors.print(f"repro: {interrupt.word}: the {len(scoring.records)} traces scored are in {output}/",
                             highlight=False, soft_wrap=True)
        return interrupt.status
    return 0


def _load_model(model: ModelArguments, device: DeviceArguments) -> tuple[Any, Any, str]:
    import torch

    from ..assets import load_default_model, transformers_bars_off

    name = device.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        torch.device(name)
    except RuntimeError as error:
        raise ReproError("--device", f"{error}") from None
    with transformers_bars_off():  # ours is the only progress bar
        loaded, tokenizer = load_default_model(model.model_name_or_path, dtype=model.torch_dtype(), device=name)
    return loaded, tokenizer, name


def main(argv: Sequence[str] | None = None) -> int:
    """``repro score``: returns the exit status; bad input prints one ``repro: error:`` line and returns 2."""
    try:
        return run(parse_arguments(sys.argv[1:] if argv is None else argv))
    except ReproError as error:
        message = " ".join(str(error.renamed(flag_of(error.argument))).split())  # one line, whatever it held
        print(f"repro: error: {message}", file=sys.stderr)
        return 2
    except SystemExit as exit_:  # --help
        return exit_.code if isinstance(exit_.code, int) else 0
    except KeyboardInterrupt:
        print("repro: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - a failure no check foresaw: one line too, the traceback logged
        logger.debug("repro score failed", exc_info=error)
        message = " ".join(f"{type(error).__name__}: {error}".split())
        print(f"repro: error: {message}", file=sys.stderr)
        return 2
