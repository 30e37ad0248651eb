"""The model side of ``repro score``'s inputs: prompts and completions as token ids, and completions sampled from
the model with per-token progress."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ..data import DEFAULT_SYSTEM_PROMPT, chat_prompt
from ..errors import ReproError
from .inputs import Row, Trace

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

__all__ = ["Sample", "completion_ids", "generate", "instruct", "longest_token", "prompt_ids", "sampled_traces"]


class Sample(NamedTuple):
    """A sampled completion: its token ids up to the end-of-sequence token (left out), and whether it stopped at
    ``max_new_tokens`` without one."""

    ids: list[int]
    truncated: bool


def prompt_ids(tokenizer: Any, prompt: str | list[dict[str, Any]], index: int = 0) -> list[int]:
    """Token ids of a prompt: through the chat template (with the generation prompt) when the tokenizer has one.

    ``index`` is the prompt's row, for the ReproError (argument ``prompt``) of a prompt the template rejects.
    """
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        try:
            text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except Exception as error:  # jinja2 template errors (unsupported roles, ...)
            raise ReproError("prompt", f"row {index}: the chat template rejects the prompt: {error}") from None
        ids = _encode(tokenizer, text, index, "prompt", add_special_tokens=False)
    else:
        text = prompt if isinstance(prompt, str) else "\n\n".join(str(m["content"]) for m in prompt)
        ids = _encode(tokenizer, text, index, "prompt", add_special_tokens=True)
    if not ids:
        raise ReproError("prompt", f"row {index}: the prompt tokenizes to no tokens")
    return ids


def longest_token(tokenizer: Any) -> int:
    """The most characters one token of ``tokenizer`` stands for (its longest vocabulary entry, bytes of byte-level
    BPE counted as characters: never fewer than the text it decodes to), so that a text of C characters is at
    least C / longest_token tokens: a bound known before tokenizing it."""
    return max(map(len, tokenizer.get_vocab()), default=1) or 1


def completion_ids(tokenizer: Any, completion: str, index: int = 0) -> list[int]:
    """Token ids of a completion read from a file, without special tokens; a text the tokenizer rejects is a
    ReproError (argument ``completion``) naming row ``index``."""
    return _encode(tokenizer, completion, index, "completion", add_special_tokens=False)


def _encode(tokenizer: Any, text: str, index: int, what: str, *, add_special_tokens: bool) -> list[int]:
    try:
        return list(tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])
    except (TypeError, ValueError) as error:  # tokenizers' TypeError for text it cannot encode
        raise ReproError(what, f"row {index}: the tokenizer rejects the {what}: {error}") from None


def instruct(prompt: str | list[dict[str, Any]], system_prompt: str | None = DEFAULT_SYSTEM_PROMPT
             ) -> str | list[dict[str, Any]]:
    """A plain question asked as ``repro train`` asks it (``repro_core.data.chat_prompt``); messages unchanged."""
    if not isinstance(prompt, str):
        return prompt
    return list(chat_prompt(prompt, system_prompt))


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Sequence[int]],
    samples: int,
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    batch_size: int,
    progress: Progress | None = None,
    task: TaskID | None = None,
) -> list[Sample]:
    """``samples`` completions per prompt (prompt-major order), sampled without top-k, stopped at end of sequence.

    Prompts are left-padded; each ``Sample`` stops before the first eos or pad token. ``task`` (of ``progress``;
    one is added when None) advances by a sample's share at every decoding step of every unfinished sample, so
    the bar moves per token; its ``detail`` field counts the tokens sampled.
    """
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    eos = model.generation_config.eos_token_id
    stops = {pad, tokenizer.eos_token_id} | set(eos if isinstance(eos, list) else [eos])
    stops.discard(None)
    if progress is not None and task is None:
        task = progress.add_task("sampling", total=len(prompts) * samples, detail="")

    class Progressed(StoppingCriteria):
        """Stops nothing: advances the progress bar at each decoding step by the samples still running."""

        def __init__(self, rows: int) -> None:
            self.running = torch.ones(rows, dtype=torch.bool)
            self.advanced = 0.0

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            running = int(self.running.sum())
            self.running &= ~torch.isin(input_ids[:, -1].cpu(), stop_ids)
            if progress is not None and task is not None:
                self.advanced += running / max_new_tokens
                _advance(progress, task, running / max_new_tokens, running)
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    stop_ids = torch.tensor(sorted(stops))
    out = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        width = max(map(len, batch))
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, prompt in enumerate(batch):
            ids[row, width - len(prompt) :] = torch.tensor(prompt)
            mask[row, width - len(prompt) :] = 1
        progressed = Progressed(len(batch) * samples)
        output = model.generate(
            input_ids=ids.to(model.device), attention_mask=mask.to(model.device), do_sample=True,
            temperature=temperature, top_p=top_p, top_k=0, max_new_tokens=max_new_tokens,
            num_return_sequences=samples, pad_token_id=pad, stopping_criteria=StoppingCriteriaList([progressed]),
        )
        for new in output[:, width:].tolist():
            end = next((i for i, token in enumerate(new) if token in stops), None)
            out.append(Sample(new if end is None else new[:end], end is None))
        if progress is not None and task is not None:  # samples that ended early: the rest of their share
            _advance(progress, task, len(batch) * samples - progressed.advanced, 0)
    return out


def _advance(progress: Progress, task: TaskID, samples: float, tokens: int) -> None:
    """Advance ``task`` by ``samples`` and its count of sampled tokens (field ``tokens``, shown as ``detail``)."""
    total = next(t for t in progress.tasks if t.id == task).fields.get("tokens", 0) + tokens
    progress.update(task, advance=samples, tokens=total, detail=f"{total} tokens")


def sampled_traces(
    problems: Sequence[int],
    rows: Sequence[Row],
    prompts: Sequence[str | list[dict[str, Any]]],
    ids: Sequence[list[int]],
    completions: Sequence[Sample],
    tokenizer: Any,
) -> list[Trace]:
    """Traces of ``generate``'s samples (``len(completions) // len(rows)`` per row, prompt-major) of ``rows``, which
    are the input rows numbered ``problems``; a trace's ``id`` is its position among all samples of the input."""
    samples = len(completions) // len(rows)
    traces = []
    for i, (completion, truncated) in enumerate(completions):
        row, sample = divmod(i, samples)
        traces.append(Trace(problems[row], sample, prompts[row], ids[row], completion, tokenizer.decode(completion),
                            rows[row].answer, truncated=truncated, id=problems[row] * samples + sample))
    return traces
