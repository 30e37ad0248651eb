"""``repro score`` (repro_core.analysis and repro_core.report) end to end on the embedded SmolLM2-135M: sampled
traces of procedural problems and hand-written ones, every output file checked field by field, the command-line
convention (both spellings, ``--config FILE.yaml``, the ``--repro_*`` flags) and bad input ending as one error
line naming the flag."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import html  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("torch")
pytest.importorskip("matplotlib")
pytest.importorskip("rich")
Image = pytest.importorskip("PIL.Image")

from repro_core import analysis  # noqa: E402
from repro_core.rewards import last_boxed  # noqa: E402

FIELDS = {
    "id", "problem", "sample", "prompt", "answer", "completion", "predicted", "correct", "tokens", "truncated",
    "thinking_tokens",
    "num_paragraphs", "backtracks", "j_baseline", "j_end", "mean_reward", "cut_points", "j", "magnitude",
    "stability", "score", "reward", "paragraphs", "tail",
}
W = 0.1  # the default stability weight
OK = '{"prompt": "q", "completion": "c", "answer": "1"}\n'  # a valid input row

QUESTION = "What is 2 + 3 * 4?"
# Hand-written traces: paragraphs are separated by blank lines; the cues are exactly what backtracking counts.
TRACES = [
    # 4 paragraphs, 1 backtracking ("Wait,")
    (QUESTION, "First, 3 * 4 = 12.\n\nThen 2 + 12 = 14.\n\nWait, I should double-check: 3 * 4 is 12, yes.\n\n"
               "So the answer is \\boxed{14}.", "14", 4, ["Wait"]),
    # 5 paragraphs, 2 backtracking ("**Hmm**" behind markdown, "Alternatively"); "Waiting" is no cue
    (QUESTION, "Waiting is not needed: 2 + 3 = 5.\n\nThen 5 * 4 = 20.\n\n**Hmm**, that ignores precedence.\n\n"
               "Alternatively, multiply first: 12 + 2 = 14.\n\n\\boxed{14}", "#### 14", 5, ["Hmm", "Alternatively"]),
    # chat-message prompt, a wrong answer, 2 paragraphs
    ([{"role": "user", "content": "Compute 2 + 3 * 4 and box the result."}],
     "2 + 3 = 5, times 4 is 20.\n\n\\boxed{20}", "14", 2, []),
]


def run(args: list[str], capsys: pytest.CaptureFixture[str] | None = None) -> tuple[int, str]:
    code = analysis.main(args)
    return code, capsys.readouterr().err if capsys is not None else ""


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def load(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "scores.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("generated")
    args = ["--dataset", "reasoning-gym:basic_arithmetic", "--dataset_size", "3", "--generate", "1",
            "--max-new-tokens", "16", "-o", str(out)]
    assert analysis.main(args) == 0
    return out


@pytest.fixture(scope="module")
def handwritten(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("handwritten")
    rows = [{"prompt": prompt, "completion": text, "answer": answer} for prompt, text, answer, _, _ in TRACES]
    source = write_jsonl(tmp / "traces.jsonl", rows)
    assert analysis.main([str(source), "-o", str(tmp / "out")]) == 0
    return tmp / "out"


def check_record(record: dict, *, all_paragraphs: bool = True) -> None:
    assert set(record) == FIELDS
    points = record["cut_points"]
    assert points[0] == 0 and all(a < b for a, b in zip(points, points[1:], strict=False))
    assert points[-1] == record["thinking_tokens"] <= record["tokens"]
    n = len(points)
    for key in ("j", "magnitude", "stability", "score", "reward"):
        assert len(record[key]) == n and all(math.isfinite(v) for v in record[key]), key
    j = np.array(record["j"])
    assert (j <= 0).all() and j[0] == record["j_baseline"] and j[-1] == record["j_end"]
    magnitude, stability, score, reward = (np.array(record[k]) for k in ("magnitude", "stability", "score", "reward"))
    assert magnitude[0] == stability[0] == score[0] == reward[0] == 0
    assert ((magnitude[1:] > 0) & (magnitude[1:] <= 1)).all() and ((stability >= 0) & (stability <= 1)).all()
    np.testing.assert_allclose(score[1:], (1 - W) * magnitude[1:] + W * stability[1:], atol=1e-9)
    np.testing.assert_allclose(reward[1:], np.diff(score), atol=1e-9)
    # Magnitude straight from docs/method.md, "Scores and process rewards".
    v = -j
    np.testing.assert_allclose(magnitude[1:], np.tanh((v[0] - v[1:]) / (v[0] + 1e-6) - 1) + 1, atol=1e-6)
    if n > 1:
        assert record["mean_reward"] == pytest.approx(reward[1:].mean())
    else:
        assert record["mean_reward"] is None
    paragraphs = record["paragraphs"]
    assert record["num_paragraphs"] == len(paragraphs)
    assert record["backtracks"] == sum(p["cue"] is not None for p in paragraphs)
    assert "".join(p["text"] for p in paragraphs) + record["tail"] == record["completion"]
    for i, paragraph in enumerate(paragraphs):
        assert set(paragraph) == {"start", "end", "text", "cue", "step"}
        assert points[paragraph["step"] - 1] <= paragraph["start"] < paragraph["end"] <= points[paragraph["step"]]
        if all_paragraphs:  # every paragraph boundary is a cut point: paragraph i is step i + 1
            assert (paragraph["start"], paragraph["end"], paragraph["step"]) == (points[i], points[i + 1], i + 1)
    if all_paragraphs and record["tokens"]:
        assert n == len(paragraphs) + 1
    assert record["predicted"] == last_boxed(record["completion"])
    assert record["correct"] in (True, False, None)


def check_outputs(out: Path, records: list[dict]) -> None:
    assert sorted(p.name for p in out.iterdir()) == sorted(analysis.OUTPUT_FILES)
    for name in ("j_curves.png", "rewards.png"):
        with Image.open(out / name) as image:
            image.verify()
            assert image.format == "PNG" and image.size[0] > 500
    page = (out / "report.html").read_text(encoding="utf-8")
    # Self-contained: no script, no stylesheet link, no external image.
    assert "<script" not in page and "<link" not in page and 'src="http' not in page
    for record in records:
        assert f'id="trace-{record["id"]}"' in page
        for paragraph in record["paragraphs"]:
            assert html.escape(paragraph["text"]) in page
            assert f"J = {record['j'][paragraph['step']]:.4f}" in page  # in the span's title
        assert html.escape(record["tail"]) in page


@pytest.mark.slow
def test_generated_traces_write_valid_outputs(generated: Path) -> None:
    records = load(generated)
    assert len(records) == 3
    assert [(r["id"], r["problem"], r["sample"]) for r in records] == [(0, 0, 0), (1, 1, 0), (2, 2, 0)]
    for record in records:
        check_record(record)
        assert record["tokens"] <= 16
        assert record["truncated"] == (record["tokens"] == 16)  # stopped at --max-new-tokens, no end of sequence
        assert record["correct"] in (True, False)  # reasoning-gym answers are always gradable
    check_outputs(generated, records)


@pytest.mark.slow
def test_handwritten_traces_count_paragraphs_and_backtracking(handwritten: Path) -> None:
    records = load(handwritten)
    assert len(records) == len(TRACES)
    for record, (prompt, completion, _, paragraphs, cues) in zip(records, TRACES, strict=True):
        check_record(record)
        assert record["prompt"] == prompt and record["completion"] == completion
        assert record["num_paragraphs"] == paragraphs and record["tail"] == ""
        assert record["truncated"] is False  # the rows do not say so
        assert [p["cue"] for p in record["paragraphs"] if p["cue"]] == cues
        assert record["backtracks"] == len(cues)
    assert [r["answer"] for r in records] == ["14", "14", "14"]  # "#### 14" read as GSM8K
    assert [r["correct"] for r in records] == [True, True, False]
    assert [(r["problem"], r["sample"]) for r in records] == [(0, 0), (0, 1), (2, 0)]
    assert records[0]["j_baseline"] == pytest.approx(records[1]["j_baseline"])  # same prompt and answer
    check_outputs(handwritten, records)


@pytest.mark.slow
def test_top_k_restricts_the_cut_points(tmp_path: Path) -> None:
    rows = [{"question": QUESTION, "completion": TRACES[1][1], "answer": "14"}]
    source = write_jsonl(tmp_path / "traces.jsonl", rows)
    assert analysis.main([str(source), "--repro_k", "1", "-o", str(tmp_path / "out")]) == 0
    (record,) = load(tmp_path / "out")
    check_record(record, all_paragraphs=False)
    assert len(record["cut_points"]) == 3 and record["num_paragraphs"] == 5
    assert record["backtracks"] == 2  # counted over every paragraph, whatever k


@pytest.mark.slow
def test_terminal_table(handwritten: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rich.console import Console

    console = Console(width=100, force_terminal=False)
    analysis.print_table(load(handwritten), console, max_rows=2)
    table = capsys.readouterr().out
    for text in ("trace", "backtracks", "J_end", "… 1 more", "correct (2)", "incorrect (1)", "all (3)", "2/3"):
        assert text in table


def test_backtrack_pattern() -> None:
    pattern = analysis.backtrack_pattern(analysis.DEFAULT_CUES)
    assert pattern is not None
    for text, cue in [("Wait, no.", "Wait"), ("  wait", "wait"), ("**Hmm** ok", "Hmm"), ("> But wait!", "But wait"),
                      ("Let me re-check 3 * 4.", "Let me re-check"), ("Waiting is fine.", None),
                      ("So we wait.", None), ("Actually", "Actually")]:
        match = pattern.match(text)
        assert (match.group(1) if match else None) == cue, text
    assert analysis.backtrack_pattern([]) is None


@pytest.mark.slow
def test_bad_input_is_one_error_line_in_a_subprocess(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "no_completion.jsonl", [{"prompt": QUESTION, "answer": "14"}])
    proc = subprocess.run([sys.executable, "-m", "repro_core.analysis", str(source), "-o", str(tmp_path / "out")],
                          capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("repro: error: --completion_column:") and "--generate" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("name", "content", "extra", "expected"),
    [
        ("empty.jsonl", "", [], "is empty"),
        ("blank.jsonl", "\n  \n", [], "is empty"),
        ("bad.jsonl", OK + '{"prompt": \n', [], "line 2 is not valid JSON"),
        ("no_answer.jsonl", '{"prompt": "q", "completion": "c"}\n', [], "--answer_column: "),
        ("no_prompt.jsonl", '{"text": "q", "completion": "c", "answer": "1"}\n', [],
         "--prompt_column: {path} has neither a 'prompt' nor a 'question'"),
        ("list.json", '[1, 2]', [], "--dataset: {path} item 1 is int, expected a JSON object"),
        ("none_answer.jsonl", '{"prompt": "q", "completion": "c", "answer": null}\n', [],
         "--answer_column: row 0: answer is empty"),
        ("late_column.jsonl", OK + '{"prompt": "q", "answer": "1"}\n', [], "--completion_column: row 1 of"),
        ("ok.jsonl", OK, ["--model_name_or_path", "/nonexistent/model"],
         "--model_name_or_path: cannot load '/nonexistent/model'"),
        ("ok.jsonl", OK, ["--repro_k", "-1"], "--repro_k: expected an integer >= 0, got -1"),
        ("ok.jsonl", OK, ["--repro-w", "2"], "--repro_w: expected"),
        ("ok.jsonl", OK, ["--temperature", "0"], "--temperature: expected a finite number > 0"),
        ("ok.jsonl", OK, ["--top_p", "2"], "--top_p: expected a number in (0, 1]"),
        ("ok.jsonl", OK, ["--dataset_size", "0"], "--dataset_size: expected an integer >= 1, got 0"),
        ("ok.jsonl", OK, ["--repro_objective_mode", "fast"], "invalid choice: 'fast'"),
        ("ok.jsonl", OK, ["--repro_j_tokens", "answer_only"], "invalid choice: 'answer_only'"),
        ("ok.jsonl", OK, ["--k", "1"], "arguments: unrecognized arguments: --k 1"),
        ("ok.jsonl", OK, ["--dataset", "other.jsonl"], "--dataset: given twice"),
    ],
)
def test_bad_input_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: str,
                                     extra: list[str], expected: str) -> None:
    source = tmp_path / name
    source.write_text(content, encoding="utf-8")
    code, err = run([str(source), "-o", str(tmp_path / "out"), *extra], capsys)
    assert code == 2 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith("repro: error: ") and expected.format(path=source) in line, line
    assert not (tmp_path / "out").exists()


def test_missing_file_and_help(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run([str(tmp_path / "missing.jsonl")], capsys)
    assert code == 2 and err.strip() == f"repro: error: --dataset: no such file: {tmp_path / 'missing.jsonl'}"
    assert analysis.main(["--help"]) == 0
    usage = capsys.readouterr().out
    for flag in ("--generate", "--dataset_size", "--repro_k", "--repro-k", "--model_name_or_path", "-o", "--config"):
        assert flag in usage, flag


def test_importing_does_not_import_torch_or_matplotlib() -> None:
    code = ("import sys, repro_core.analysis, repro_core.report; heavy = {'torch', 'matplotlib', 'transformers', "
            "'datasets', 'trl'} & set(sys.modules); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_flags_both_spellings_and_yaml_config(tmp_path: Path) -> None:
    """The shared convention: --flag_name and --flag-name, a YAML --config whose keys the command line overrides,
    the positional INPUT as --dataset, and the RePro settings as repro train's --repro_* flags."""
    defaults = analysis.parse_arguments([])
    assert defaults.data.dataset == analysis.DEFAULT_INPUT and defaults.repro.repro_k is None
    assert defaults.repro.repro_w == W and defaults.model.dtype is None  # unset: float32
    assert defaults.report.output_dir == "repro-score"
    assert not hasattr(defaults.repro, "repro_alpha")  # advantages' settings: scoring has none
    for spelling in (["--repro_k", "3", "--dataset_size", "2", "--max_new_tokens", "8"],
                     ["--repro-k", "3", "--dataset-size", "2", "--max-new-tokens", "8"]):
        parsed = analysis.parse_arguments(["traces.jsonl", *spelling, "-o", "out"])
        assert parsed.data.dataset == "traces.jsonl" and parsed.repro.repro_k == 3
        assert parsed.data.dataset_size == 2 and parsed.generation.max_new_tokens == 8
        assert parsed.report.output_dir == "out"
    config = tmp_path / "score.yaml"
    config.write_text("dataset: traces.jsonl\nrepro_k: 4\nrepro_w: 0.2\ntemperature: 0.7\nmodel_name_or_path: m\n"
                      "output_dir: from-yaml\n", encoding="utf-8")
    parsed = analysis.parse_arguments(["--config", str(config), "--repro_w", "0.3"])
    assert (parsed.data.dataset, parsed.repro.repro_k, parsed.repro.repro_w) == ("traces.jsonl", 4, 0.3)
    assert parsed.generation.temperature == 0.7 and parsed.model.model_name_or_path == "m"
    assert parsed.report.output_dir == "from-yaml"
    repro_config = parsed.repro.repro_config(temperature=parsed.generation.temperature)
    assert (repro_config.k, repro_config.w, repro_config.temperature) == (4, 0.3, 0.7)
    assert (repro_config.j_tokens, repro_config.answer_special_tokens) == ("template", False)
    parsed = analysis.parse_arguments(["--repro_j_tokens", "answer", "--repro_answer_special_tokens",
                                       "--repro-j-at-rollout-temperature", "true"])
    repro_config = parsed.repro.repro_config(temperature=1.0, k=20)
    assert (repro_config.j_tokens, repro_config.answer_special_tokens, repro_config.j_at_rollout_temperature) == (
        "answer", True, True)


def test_the_input_file_may_stand_anywhere_among_the_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # As argparse users expect: after a flag's value too (this was "unrecognized arguments: traces.jsonl").
    for argv in (["traces.jsonl", "--model_name_or_path", "m", "-o", "out"],
                 ["--model_name_or_path", "m", "traces.jsonl", "-o", "out"],
                 ["--model_name_or_path", "m", "-o", "out", "traces.jsonl"],
                 ["--repro_answer_special_tokens", "--model_name_or_path", "m", "traces.jsonl", "-o", "out"]):
        parsed = analysis.parse_arguments(argv)
        assert (parsed.data.dataset, parsed.model.model_name_or_path, parsed.report.output_dir) == (
            "traces.jsonl", "m", "out"), argv
    config = tmp_path / "score.yaml"
    config.write_text("dataset: from-yaml.jsonl\n", encoding="utf-8")
    assert analysis.parse_arguments(["--config", str(config), "traces.jsonl"]).data.dataset == "traces.jsonl"
    # Through the command: the file is read and the model named after it is what fails.
    source = write_jsonl(tmp_path / "ok.jsonl", [json.loads(OK)])
    code, err = run(["--model_name_or_path", "/nonexistent/model", str(source), "-o", str(tmp_path / "out")], capsys)
    assert code == 2 and err.strip().startswith("repro: error: --model_name_or_path: cannot load '/nonexistent/model'")
    for argv, expected in ((["a.jsonl", "b.jsonl"], "arguments: unrecognized arguments: b.jsonl"),
                           (["--dataset", "a.jsonl", "--seed", "1", "b.jsonl"], "--dataset: given twice")):
        code, err = run(argv, capsys)
        assert code == 2 and err.strip().startswith(f"repro: error: {expected}"), err


def test_the_table_leads_with_the_change_of_j_and_says_where_j_was_measured(
        capsys: pytest.CaptureFixture[str]) -> None:
    from rich.console import Console

    from test_report import scored_record

    records = [scored_record(0, [-3.0, -2.9, -2.8, -2.6, -2.4]), scored_record(1, [-3.0, -3.9, -3.8], correct=False)]
    analysis.print_table(records, Console(width=120, force_terminal=False))
    table = capsys.readouterr().out
    header = next(line.split() for line in table.splitlines() if line.startswith("trace"))
    assert header == ["trace", "correct", "ΔJ", "J_b", "J_end", "tokens", "paras", "backtracks"]
    rows = {line.split()[0]: line.split() for line in table.splitlines() if line.split()[:1] in (["0"], ["1"])}
    assert rows["0"][2] == "+0.600" and rows["1"][2] == "-0.800"
    assert "mean r" not in table
    assert ("J after every paragraph (repro score's default; repro train's default k = 20 cuts only at the 20 "
            "highest-entropy breaks: --repro_k 20 scores as it does)") in " ".join(table.split())  # the caption wraps
    merged = scored_record(2, [-3.0, -2.5])
    merged["num_paragraphs"] = 3  # one step of three paragraphs: cut at the top-k breaks only
    analysis.print_table([merged], Console(width=120, force_terminal=False))
    assert "J at the --repro_k highest-entropy paragraph breaks: in 1 of 1 traces a step holds several paragraphs" \
        in " ".join(capsys.readouterr().out.split())


def test_config_file_errors_name_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "score.yaml"
    config.write_text("repro_k: 3\nk: 3\n", encoding="utf-8")
    code, err = run(["--config", str(config)], capsys)
    assert code == 2 and err.strip().startswith("repro: error: --config: unknown keys in the file: k")
    config.write_text("repro_k: -2\ndataset: x.jsonl\n", encoding="utf-8")
    code, err = run(["--config", str(config)], capsys)
    assert code == 2 and err.strip() == "repro: error: --repro_k: expected an integer >= 0, got -2"
