"""``repro score`` under faults and bad input (issue 18, point 1): nothing finished is lost and nothing broken is
trusted. Every case runs the command in-process on a tiny random model (tests/tiny.py) saved as a checkpoint: a
row the tokenizer rejects is skipped or stops the run with the traces before it kept, an unwritable output
directory is refused before the model loads, a full disk leaves only whole lines, an interrupt keeps the traces
scored and rebuilds the report, JSONL is split on "\\n" only, content parts are read as text, non-text answers
are refused, traces longer than the context are refused or truncated, the progress bars move per token and per
model pass, and truncated completions are marked (issue 17, points 6 and 7)."""

from __future__ import annotations

import errno
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

torch = pytest.importorskip("torch")
pytest.importorskip("matplotlib")
pytest.importorskip("rich")

import tiny  # noqa: E402
from repro_core import analysis, report  # noqa: E402
from repro_core.analysis import command, records, scoring  # noqa: E402

#: The tiny model's context: short enough that a trace of a few hundred tokens overflows it.
CONTEXT = 256
SURROGATE = "bad \ud800 text"  # a lone surrogate: valid JSON ("\\ud800"), rejected by tokenizers


def row(i: int, **fields: object) -> dict:
    """A valid row whose completion has paragraphs and a boxed answer; ``fields`` override."""
    return {"prompt": f"so the value of x {i}", "completion": f"Then we get {i}.\n\nWait check again.\n\n"
            f"So the answer is \\boxed{{{i}}}", "answer": str(i), **fields}


def write_rows(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8") as file:
        for item in rows:
            file.write(json.dumps(item) + "\n")
    return path


def scores(out: Path) -> list[dict]:
    text = (out / "scores.jsonl").read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.split("\n") if line]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny-model")
    tokenizer = tiny.tokenizer()
    tiny.model(len(tokenizer), max_position_embeddings=CONTEXT).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def score(model_dir: Path, capsys: pytest.CaptureFixture[str]):
    """``repro score`` on the tiny model: (exit status, stderr)."""

    def run(*args: str | Path) -> tuple[int, str]:
        code = analysis.main([*map(str, args), "--model_name_or_path", str(model_dir)])
        return code, capsys.readouterr().err

    return run


def error_line(err: str) -> str:
    """The command's one error line: the last of stderr, and the only ``repro: error``, with no traceback."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert [line for line in lines if line.startswith("repro: error:")] == lines[-1:], err
    return lines[-1]


# ----------------------------------------------------------------------------------- rows that cannot be scored


def test_a_row_the_tokenizer_rejects_is_skipped_and_the_others_scored(tmp_path: Path, score) -> None:
    source = write_rows(tmp_path / "t.jsonl", [row(0), row(1), row(2, completion=SURROGATE), row(3)])
    code, err = score(source, "-o", tmp_path / "out")
    assert code == 0, err
    assert [r["id"] for r in scores(tmp_path / "out")] == [0, 1, 3]
    assert "repro: warning: skipped --completion_column: row 2: holds U+D800" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(analysis.OUTPUT_FILES)
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert 'id="trace-3"' in page and 'id="trace-2"' not in page


def test_on_error_stop_keeps_the_rows_before(tmp_path: Path, score) -> None:
    rows = [row(0), row(1), row(2, prompt=SURROGATE), row(3)]
    code, err = score(write_rows(tmp_path / "t.jsonl", rows), "-o", tmp_path / "out", "--on-error", "stop")
    assert code == 2
    line = error_line(err)
    assert line.startswith("repro: error: --prompt_column: row 2: holds U+D800") and "--on_error stop" in line
    assert "the 2 traces scored before" in line
    assert [r["id"] for r in scores(tmp_path / "out")] == [0, 1]  # scored although in the failing row's batch
    assert (tmp_path / "out" / "report.html").exists() and (tmp_path / "out" / "j_curves.png").exists()


def test_a_failing_model_pass_loses_only_its_row(tmp_path: Path, score, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch whose scoring fails (here: a RuntimeError as of running out of memory on one long trace) is scored
    again one trace at a time, so that only the trace that fails alone is skipped."""
    from repro_core.pipeline import ReproScorer

    evaluate = ReproScorer.evaluate

    def failing(self, prompt_ids, completion_ids, answers):
        if "3" in answers:
            raise RuntimeError("out of memory")
        return evaluate(self, prompt_ids, completion_ids, answers)

    monkeypatch.setattr(ReproScorer, "evaluate", failing)
    source = write_rows(tmp_path / "t.jsonl", [row(i) for i in range(5)])
    code, err = score(source, "-o", tmp_path / "out")
    assert code == 0, err
    assert [r["id"] for r in scores(tmp_path / "out")] == [0, 1, 2, 4]
    assert "repro: warning: skipped row 3: RuntimeError: out of memory" in err


def test_a_batch_that_cannot_be_sampled_loses_only_its_failing_row(tmp_path: Path, score,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from repro_core.analysis import generation

    generate = generation.generate

    def failing(model, tokenizer, prompts, *args, **kwargs):
        if any(row(2)["prompt"] in tokenizer.decode(prompt) for prompt in prompts):
            raise RuntimeError("CUDA out of memory")
        return generate(model, tokenizer, prompts, *args, **kwargs)

    monkeypatch.setattr(generation, "generate", failing)
    source = write_rows(tmp_path / "t.jsonl", [row(i) for i in range(4)])
    code, err = score(source, "--generate", "2", "--max_new_tokens", "4", "-o", tmp_path / "out")
    assert code == 0, err
    assert [(r["problem"], r["sample"], r["id"]) for r in scores(tmp_path / "out")] == [
        (0, 0, 0), (0, 1, 1), (1, 0, 2), (1, 1, 3), (3, 0, 6), (3, 1, 7)]
    assert "repro: warning: skipped row 2: RuntimeError: CUDA out of memory" in err


def test_an_unforeseen_failure_is_one_error_line(tmp_path: Path, score, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("CUDA driver too old\nsee the docs")

    monkeypatch.setattr(command, "_load_model", broken)
    code, err = score(write_rows(tmp_path / "t.jsonl", [row(0)]), "-o", tmp_path / "out")
    assert code == 2 and error_line(err) == "repro: error: RuntimeError: CUDA driver too old see the docs"


def test_no_row_scored_is_an_error(tmp_path: Path, score) -> None:
    source = write_rows(tmp_path / "t.jsonl", [row(0, completion=SURROGATE)])
    code, err = score(source, "-o", tmp_path / "out")
    assert code == 2
    assert error_line(err).startswith("repro: error: --on_error: no row could be scored; the first: "
                                      "--completion_column: row 0")
    assert scores(tmp_path / "out") == []


def test_stop_is_one_error_line_in_a_subprocess(tmp_path: Path, model_dir: Path) -> None:
    source = write_rows(tmp_path / "t.jsonl", [row(0), row(1, completion=SURROGATE)])
    proc = subprocess.run([sys.executable, "-m", "repro_core.analysis", str(source), "-o", str(tmp_path / "out"),
                           "--model_name_or_path", str(model_dir), "--on_error", "stop"],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2
    assert error_line(proc.stderr).startswith("repro: error: --completion_column: row 1:")
    assert len(scores(tmp_path / "out")) == 1


# ----------------------------------------------------------------------------------- the output directory


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("the model was loaded before the output directory was checked")

    monkeypatch.setattr(command, "_load_model", refuse)


def test_output_under_a_file_is_refused_before_the_model_loads(tmp_path: Path, score, no_model: None) -> None:
    source = write_rows(tmp_path / "t.jsonl", [row(0)])
    (tmp_path / "file").write_text("x")
    code, err = score(source, "-o", tmp_path / "file" / "out")
    assert code == 2
    assert error_line(err) == (f"repro: error: --output_dir: {tmp_path / 'file' / 'out'} cannot be created: "
                               f"{tmp_path / 'file'} is a file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_output_is_refused_before_the_model_loads(tmp_path: Path, score, no_model: None) -> None:
    source = write_rows(tmp_path / "t.jsonl", [row(0)])
    (tmp_path / "ro").mkdir(mode=0o555)
    code, err = score(source, "-o", tmp_path / "ro" / "out")
    assert code == 2 and error_line(err).startswith("repro: error: --output_dir: cannot write to")


def test_unwritable_output_is_refused_before_the_model_loads(tmp_path: Path, score, no_model: None,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """What a read-only directory does for a user who is not root: the probe file cannot be created."""

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(scoring.tempfile, "TemporaryFile", denied)
    source = write_rows(tmp_path / "t.jsonl", [row(0)])
    code, err = score(source, "-o", tmp_path / "new" / "out")
    assert code == 2
    assert error_line(err) == f"repro: error: --output_dir: cannot write to {tmp_path / 'new' / 'out'}: " \
                              "Permission denied"
    assert not (tmp_path / "new").exists()  # what the check created is removed again


def test_full_disk_leaves_whole_lines(tmp_path: Path, score, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills while the third record is written: half of it reaches the file, then ENOSPC. The file keeps
    the two whole lines, the error says so, and no plot or report is attempted on the full disk."""
    write_all = records._write_all
    written = []

    def filling(fd: int, data: bytes) -> None:
        if len(written) == 2:
            os.write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        write_all(fd, data)
        written.append(data)

    monkeypatch.setattr(records, "_write_all", filling)
    source = write_rows(tmp_path / "t.jsonl", [row(i) for i in range(4)])
    code, err = score(source, "-o", tmp_path / "out", "--batch_size", "1")
    assert code == 2
    line = error_line(err)
    assert line.startswith(f"repro: error: --output_dir: cannot write to {tmp_path / 'out' / 'scores.jsonl'}")
    assert "No space left on device" in line and "holds the 2 traces scored before" in line
    assert [r["id"] for r in scores(tmp_path / "out")] == [0, 1]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["scores.jsonl"]


def test_an_interrupt_keeps_the_traces_scored(tmp_path: Path, score, monkeypatch: pytest.MonkeyPatch) -> None:
    score_traces = records.score_traces
    calls = []

    def interrupted(*args: object, **kwargs: object) -> list[dict]:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return score_traces(*args, **kwargs)

    monkeypatch.setattr(records, "score_traces", interrupted)
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.html").write_text("the last run's report")
    source = write_rows(tmp_path / "t.jsonl", [row(i) for i in range(4)])
    code, err = score(source, "-o", out, "--batch_size", "1")
    assert code == 130
    assert err.strip().splitlines()[-1] == f"repro: interrupted: the 2 traces scored are in {out}/"
    assert [r["id"] for r in scores(out)] == [0, 1]
    page = (out / "report.html").read_text(encoding="utf-8")  # rebuilt from the two traces
    assert 'id="trace-1"' in page and 'id="trace-2"' not in page and "interrupted" in page


# ----------------------------------------------------------------------------------- input


def test_jsonl_is_split_on_newlines_only(tmp_path: Path, score) -> None:
    """json.dumps(ensure_ascii=False) writes U+2028 and U+0085 raw; str.splitlines would break the line there."""
    completion = "Then we get\u2028 two\x85 three.\n\nSo \\boxed{5}"
    source = tmp_path / "t.jsonl"
    source.write_text(json.dumps(row(5, completion=completion), ensure_ascii=False) + "\n", encoding="utf-8")
    code, err = score(source, "-o", tmp_path / "out")
    assert code == 0, err
    (record,) = scores(tmp_path / "out")
    assert record["completion"] == completion


def test_content_parts_are_read_as_text(tmp_path: Path, score) -> None:
    parts = [{"type": "text", "text": "Then we get 7.\n\n"}, {"type": "text", "text": "So \\boxed{7}"}]
    rows = [row(7, prompt=[{"type": "text", "text": "so the value"}], completion=parts),
            row(8, prompt=[{"role": "user", "content": [{"type": "text", "text": "so x"}]}],
                completion=[{"role": "assistant", "content": parts}])]
    code, err = score(write_rows(tmp_path / "t.jsonl", rows), "-o", tmp_path / "out")
    assert code == 0, err
    first, second = scores(tmp_path / "out")
    assert first["completion"] == second["completion"] == "Then we get 7.\n\nSo \\boxed{7}"
    assert first["prompt"] == "so the value" and second["prompt"] == [{"role": "user", "content": "so x"}]
    assert first["num_paragraphs"] == 2 and first["predicted"] == "7"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"answer": True}, "--answer_column: row 1: answer is True (bool), expected the gold answer"),
        ({"answer": math.nan}, "--answer_column: row 1: answer is nan (float)"),
        ({"answer": [1, 2]}, "--answer_column: row 1: answer is list"),
        ({"completion": 42}, "--completion_column: row 1: completion is int, expected text"),
        ({"completion": [{"type": "image_url", "image_url": {"url": "x"}}]},
         "--completion_column: row 1: completion has a content part of type 'image_url'"),
        ({"prompt": False}, "--prompt_column: row 1: prompt is False (bool)"),
        ({"truncated": "yes"}, "truncated: row 1: truncated is str, expected true or false"),
    ],
)
def test_non_text_fields_are_refused_naming_the_row(tmp_path: Path, score, no_model: None, fields: dict,
                                                    expected: str) -> None:
    code, err = score(write_rows(tmp_path / "t.jsonl", [row(0), row(1, **fields)]), "-o", tmp_path / "out")
    assert code == 2 and expected in error_line(err)
    assert not (tmp_path / "out").exists()


def test_numeric_answers_are_their_text(tmp_path: Path, score) -> None:
    rows = [row(42, answer=42), row(3, answer=2.5, completion="So \\boxed{2.5}")]
    code, err = score(write_rows(tmp_path / "t.jsonl", rows), "-o", tmp_path / "out")
    assert code == 0, err
    assert [(r["answer"], r["correct"]) for r in scores(tmp_path / "out")] == [("42", True), ("2.5", True)]


# ----------------------------------------------------------------------------------- long traces


def long_row(i: int) -> dict:
    return row(i, completion="\n\n".join(f"Then we get the sum {n} again." for n in range(60)) + " \\boxed{1}")


def test_a_trace_longer_than_the_context_is_refused(tmp_path: Path, score) -> None:
    code, err = score(write_rows(tmp_path / "t.jsonl", [row(0), long_row(1)]), "-o", tmp_path / "out")
    assert code == 0, err
    assert [r["id"] for r in scores(tmp_path / "out")] == [0]
    assert "repro: warning: skipped --long_traces: row 1: the trace is" in err
    assert f"more than the model's context of {CONTEXT} tokens" in err

    code, err = score(tmp_path / "t.jsonl", "-o", tmp_path / "stop", "--on_error", "stop")
    assert code == 2 and error_line(err).startswith("repro: error: --long_traces: row 1: the trace is")
    assert [r["id"] for r in scores(tmp_path / "stop")] == [0]


def test_a_trace_longer_than_the_context_is_truncated_on_request(tmp_path: Path, score) -> None:
    code, err = score(write_rows(tmp_path / "t.jsonl", [long_row(0)]), "-o", tmp_path / "out",
                      "--long-traces", "truncate")
    assert code == 0, err
    (record,) = scores(tmp_path / "out")
    assert record["truncated"] is True and record["tokens"] < CONTEXT
    assert long_row(0)["completion"].startswith(record["completion"])
    assert "repro: warning: row 0: the trace is" in err and "its completion is cut to its first" in err


# ----------------------------------------------------------------------------------- progress, truncation, colours


def test_scoring_counts_model_passes(model_dir: Path) -> None:
    """Scoring one trace shows movement: the scoring task's detail counts the model's forward passes."""
    from rich.console import Console
    from rich.progress import Progress

    from repro_core.analysis.generation import completion_ids, prompt_ids
    from repro_core.assets import load_default_model
    from repro_core.pipeline import ReproConfig, ReproScorer

    model, tokenizer = load_default_model(model_dir)
    scorer = ReproScorer(model, tokenizer, ReproConfig(k=10**9))
    text = row(1)["completion"]
    trace = analysis.Trace(0, 0, "so x", prompt_ids(tokenizer, "so x"), completion_ids(tokenizer, text), text, "1")
    updates = []
    with Progress(console=Console(file=open(os.devnull, "w"))) as progress:  # noqa: SIM115
        update = progress.update
        progress.update = lambda task, **kw: (updates.append(kw.get("detail")), update(task, **kw))  # type: ignore
        (record,) = analysis.score_traces(scorer, [trace], progress=progress)
        (task,) = progress.tasks
    assert record["truncated"] is False and task.completed == 1
    assert task.fields["passes"] >= 2 and updates[:2] == ["1 model passes", "2 model passes"]


def test_sampling_advances_per_token_and_marks_truncation(model_dir: Path) -> None:
    from rich.console import Console
    from rich.progress import Progress

    from repro_core.analysis.generation import generate, prompt_ids
    from repro_core.assets import load_default_model

    model, tokenizer = load_default_model(model_dir)
    torch.manual_seed(0)
    prompts = [prompt_ids(tokenizer, "so the value"), prompt_ids(tokenizer, "check the sum of x")]
    steps = []
    with Progress(console=Console(file=open(os.devnull, "w"))) as progress:  # noqa: SIM115
        task = progress.add_task("sampling", total=4, detail="")
        update = progress.update
        progress.update = lambda t, **kw: (steps.append(kw.get("advance")), update(t, **kw))  # type: ignore
        samples = generate(model, tokenizer, prompts, 2, max_new_tokens=12, temperature=1.0, top_p=1.0,
                           batch_size=2, progress=progress, task=task)
        (state,) = progress.tasks
    assert len(samples) == 4 and state.completed == pytest.approx(4)
    assert len(steps) >= 12  # one update per decoding step, not per batch
    assert state.fields["tokens"] >= sum(len(s.ids) for s in samples)
    for sample in samples:
        assert sample.truncated == (len(sample.ids) == 12)
        assert tokenizer.eos_token_id not in sample.ids


def test_generated_and_given_truncation_in_records_and_table(tmp_path: Path, score) -> None:
    code, err = score("--dataset", "reasoning-gym:basic_arithmetic", "--dataset_size", "2", "--generate", "1",
                      "--max_new_tokens", "6", "-o", tmp_path / "gen")
    assert code == 0, err
    for record in scores(tmp_path / "gen"):
        assert record["truncated"] == (record["tokens"] == 6)

    rows = [row(0, truncated=True), row(1, finish_reason="length"), row(2, finish_reason="stop"), row(3)]
    code, err = score(write_rows(tmp_path / "t.jsonl", rows), "-o", tmp_path / "out")
    assert code == 0, err
    records_ = scores(tmp_path / "out")
    assert [r["truncated"] for r in records_] == [True, True, False, False]

    from rich.console import Console

    console = Console(width=120, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    analysis.print_table(records_, console)
    table = console.export_text()
    assert "cut: the completion hit the token limit (2 of 4)" in table
    rows_ = [line.split() for line in table.splitlines() if line.split()[:1] in (["0"], ["1"], ["2"], ["3"])]
    assert [line[:2] for line in rows_] == [["0", "cut"], ["1", "cut"], ["2", "yes"], ["3", "yes"]]


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_color_max_is_checked(tmp_path: Path, score, no_model: None, value: str) -> None:
    code, err = score(write_rows(tmp_path / "t.jsonl", [row(0)]), "-o", tmp_path / "out", "--color-max", value)
    assert code == 2
    line = error_line(err)
    if value in ("nan", "inf"):  # refused while parsing, as every non-finite number is (repro_core.arguments)
        assert line.startswith("repro: error: arguments: argument --color_max/--color-max: expected a finite number")
    else:
        assert line.startswith("repro: error: --color_max: expected a finite number > 0")


def test_color_max_reaches_the_report(tmp_path: Path, score, monkeypatch: pytest.MonkeyPatch) -> None:
    assert analysis.parse_arguments([]).report.color_max == report.DEFAULT_COLOR_MAX
    scales = []
    write_html = report.write_html

    def recording(*args: object, **kwargs: object) -> None:
        scales.append(kwargs["color_max"])
        write_html(*args, **kwargs)

    monkeypatch.setattr(report, "write_html", recording)
    source = write_rows(tmp_path / "t.jsonl", [row(0)])
    assert score(source, "-o", tmp_path / "a", "--color_max", "0.5")[0] == 0
    assert score(source, "-o", tmp_path / "b")[0] == 0
    assert scales == [0.5, report.DEFAULT_COLOR_MAX]


# ----------------------------------------------------------------------------------- hostile input (issue 25)


@pytest.fixture
def tokenized(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The length of every text the tokenizer is handed while the command runs."""
    from repro_core.analysis import generation

    lengths: list[int] = []
    encode = generation._encode

    def recording(tokenizer: object, text: str, *args: object, **kwargs: object) -> list[int]:
        lengths.append(len(text))
        return encode(tokenizer, text, *args, **kwargs)

    monkeypatch.setattr(generation, "_encode", recording)
    return lengths


def test_a_huge_completion_is_refused_by_its_length_before_tokenizing(tmp_path: Path, score, tokenized) -> None:
    """A 5 MB completion (the report's was 50 MB: 197 s and 10.7 GB before it was refused): its characters alone
    show it cannot fit the 256-token context, so the tokenizer never sees it."""
    huge = "Then we get 1.\n\n" * 320_000
    code, err = score(write_rows(tmp_path / "t.jsonl", [row(0), row(1, completion=huge)]), "-o", tmp_path / "out")
    assert code == 0, err
    assert [r["id"] for r in scores(tmp_path / "out")] == [0]
    assert (f"repro: warning: skipped --long_traces: row 1: the trace is {len(huge) + 19:,} characters (prompt 19, "
            f"completion {len(huge):,})") in err
    assert f"more than fit the model's context of {CONTEXT} tokens" in err
    assert max(tokenized) < 1000


def test_a_huge_completion_is_truncated_from_a_prefix(tmp_path: Path, score, tokenized) -> None:
    huge = "Then we get 1.\n\n" * 320_000
    code, err = score(write_rows(tmp_path / "t.jsonl", [row(0, completion=huge)]), "-o", tmp_path / "out",
                      "--long_traces", "truncate")
    assert code == 0, err
    (record,) = scores(tmp_path / "out")
    assert record["truncated"] is True and record["tokens"] < CONTEXT and huge.startswith(record["completion"])
    assert "its completion is cut to its first" in err
    assert max(tokenized) < len(huge) / 100  # a prefix, not the 5 MB


@pytest.mark.parametrize("answer", ["####", "The sum is 4. #### ", "\\boxed{}"])
def test_an_answer_with_nothing_in_it_says_what_to_write(tmp_path: Path, score, no_model: None, answer: str) -> None:
    """Before: "answer is str, expected the gold answer as text or a number" for an answer that is text."""
    code, err = score(write_rows(tmp_path / "t.jsonl", [row(0), row(1, answer=answer)]), "-o", tmp_path / "out")
    assert code == 2
    assert error_line(err).startswith(f"repro: error: --answer_column: row 1: answer {answer!r} holds no answer: "
                                      "nothing after its last '####' or inside its last \\boxed{}; write the gold "
                                      "answer there")


def test_a_file_with_a_byte_order_mark_is_read(tmp_path: Path, score) -> None:
    source = write_rows(tmp_path / "t.jsonl", [row(0), row(1)])
    source.write_bytes(b"\xef\xbb\xbf" + source.read_bytes())
    code, err = score(source, "-o", tmp_path / "out")
    assert code == 0, err
    assert [r["id"] for r in scores(tmp_path / "out")] == [0, 1]


# ----------------------------------------------------------------------------------- settings that took no effect


def test_a_system_prompt_for_read_completions_is_refused(tmp_path: Path, score, no_model: None) -> None:
    """Before: ignored; the completions were scored after the prompt without it."""
    code, err = score(write_rows(tmp_path / "t.jsonl", [row(0)]), "--system_prompt", "Be brief.",
                      "-o", tmp_path / "out")
    assert code == 2
    assert error_line(err).startswith("repro: error: --system_prompt: is the system message of prompts the model "
                                      "samples from (--generate N, or a reasoning-gym dataset)")


@pytest.fixture(scope="module")
def bfloat16_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny-bf16")
    tokenizer = tiny.tokenizer()
    tiny.model(len(tokenizer), max_position_embeddings=CONTEXT).to(torch.bfloat16).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.parametrize("flags, expected", [
    ((), torch.float32),  # the default, whatever the checkpoint holds
    (("--dtype", "float16"), torch.float16),
    (("--dtype", "bfloat16"), torch.bfloat16),
    (("--dtype", "auto"), torch.bfloat16),  # the checkpoint's own, as in transformers
])
def test_dtype_sets_the_weights_dtype(tmp_path: Path, bfloat16_checkpoint: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str], flags: tuple[str, ...],
                                      expected: torch.dtype) -> None:
    """Before: float16 and auto loaded float32."""
    loaded = []
    load = command._load_model

    def recorded(*args: object) -> tuple:
        result = load(*args)
        loaded.append(result[0].dtype)
        return result

    monkeypatch.setattr(command, "_load_model", recorded)
    source = write_rows(tmp_path / "t.jsonl", [row(0)])
    code = analysis.main([str(source), "--model_name_or_path", str(bfloat16_checkpoint), "-o", str(tmp_path / "out"),
                          *flags])
    assert code == 0, capsys.readouterr().err
    assert loaded == [expected]
