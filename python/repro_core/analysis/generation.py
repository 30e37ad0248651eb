"""The model side of ``repro score``'s inputs: prompts as token ids, and completions sampled from the model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..data import DEFAULT_SYSTEM_PROMPT, chat_prompt
from ..errors import ReproError
from .inputs import Row, Trace

if TYPE_CHECKING:
    from rich.progress import Progress

__all__ = ["generate", "instruct", "prompt_ids", "sampled_traces"]


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
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    else:
        text = prompt if isinstance(prompt, str) else "\n\n".join(str(m["content"]) for m in prompt)
        ids = tokenizer(text)["input_ids"]
    if not ids:
        raise ReproError("prompt", f"row {index}: the prompt tokenizes to no tokens")
    return list(ids)


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
) -> list[list[int]]:
    """``samples`` completions per prompt (prompt-major order), sampled without top-k, stopped at end of sequence.

    Prompts are left-padded; the returned ids stop before the first eos or pad token.
    """
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    eos = model.generation_config.eos_token_id
    stops = {pad, tokenizer.eos_token_id} | set(eos if isinstance(eos, list) else [eos])
    stops.discard(None)
    task = progress.add_task("generating", total=len(prompts) * samples) if progress is not None else None
    completions = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        width = max(map(len, batch))
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, prompt in enumerate(batch):
            ids[row, width - len(prompt) :] = torch.tensor(prompt)
            mask[row, width - len(prompt) :] = 1
        output = model.generate(
            input_ids=ids.to(model.device), attention_mask=mask.to(model.device), do_sample=True,
            temperature=temperature, top_p=top_p, top_k=0, max_new_tokens=max_new_tokens,
            num_return_sequences=samples, pad_token_id=pad,
        )
        for new in output[:, width:].tolist():
            end = next((i for i, token in enumerate(new) if token in stops), len(new))
            completions.append(new[:end])
        if progress is not None and task is not None:
            progress.advance(task, len(batch) * samples)
    return completions


def sampled_traces(
    rows: Sequence[Row],
    prompts: Sequence[str | list[dict[str, Any]]],
    ids: Sequence[list[int]],
    completions: Sequence[list[int]],
    tokenizer: Any,
) -> list[Trace]:
    """Traces of ``generate``'s completions (``len(completions) // len(rows)`` samples per row, prompt-major)."""
    samples = len(completions) // len(rows)
    return [Trace(i // samples, i % samples, prompts[i // samples], ids[i // samples], completion,
                  tokenizer.decode(completion), rows[i // samples].answer)
            for i, completion in enumerate(completions)]
