"""The letter-counting model: a byte-level BPE tokenizer built with ``tokenizers``, a ``LlamaForCausalLM``
initialised from ``LlamaConfig``, warm-started with TRL's ``SFTTrainer`` on worked solutions, and cached by
its settings (task, model and training), so that every arm and seed starts from the same checkpoint."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from transformers import TrainerCallback

from repro_core.data import chat_prompt

from .task import MAX_COMPLETION_LENGTH, THINK_END, TaskSettings, problems, question, solution

#: Bumped when the recipe below changes in a way the settings do not show, so that old caches are not reused.
RECIPE = 3
#: The warm start's validation: problems of their own (neither trained on nor held out for the arms), checked
#: every VALIDATE_EVERY steps from VALIDATE_FROM on.
VALIDATION_SEED, VALIDATION_PROBLEMS, VALIDATE_FROM, VALIDATE_EVERY = 3, 128, 250, 25
SPECIAL_TOKENS = ["<|pad|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{%- for message in messages -%}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"
)
#: Pre-tokenizer pieces: a newline alone (the paragraph breaks), a word or one digit or one punctuation mark
#: with the spaces before it. Letters of a spelt word stay single tokens, so the model copies them one by one.
PIECES = r"\n|[ \t]*[A-Za-z]+|[ \t]*\d|[ \t]*[^\s\w]|\s+"
SYSTEM_PROMPT = ""  # none: every token of the prompt is the problem's (repro train --system_prompt "")


@dataclass(frozen=True)
class ModelSettings:
    """The model and its supervised warm start; with :class:`TaskSettings`, the SFT cache key."""

    base: str | None = None  # None: a Llama from LlamaConfig; "embedded": SmolLM2-135M-Instruct; else a checkpoint
    hidden_size: int = 128
    layers: int = 4
    heads: int = 4
    vocab_size: int = 320
    sft_problems: int = 3000
    sft_steps: int = 1200  # at most: the warm start stops once it reaches sft_target_accuracy
    sft_target_accuracy: float = 0.5  # 0: no early stop
    sft_batch_size: int = 32
    sft_learning_rate: float = 2e-3
    sft_seed: int = 0


def build_tokenizer(corpus: list[str]) -> Any:
    """A byte-level BPE tokenizer trained on ``corpus``, with the chat template, ``<|end|>`` as end of turn and
    ``</think>`` as one (non-special, so it stays in decoded text) token."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PIECES), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=ModelSettings.vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(corpus, trainer)
    tokenizer.add_tokens([AddedToken(THINK_END, special=False, normalized=False)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|end|>", pad_token="<|pad|>",
                                   chat_template=CHAT_TEMPLATE, padding_side="left")


def sft_examples(task: TaskSettings, model: ModelSettings) -> list[dict[str, Any]]:
    """Prompt-completion rows (conversational) of the warm start: worked solutions with detours."""
    rng = np.random.default_rng(model.sft_seed)
    return [{"prompt": chat_prompt(question(word, letter), SYSTEM_PROMPT),
             "completion": [{"role": "assistant", "content": solution(word, letter, rng, task.detour_rate)}]}
            for word, letter in problems(task, model.sft_problems, seed=10_000 + model.sft_seed)]


def cache_key(task: TaskSettings, model: ModelSettings) -> str:
    settings = json.dumps({"task": asdict(task), "model": asdict(model), "recipe": RECIPE}, sort_keys=True)
    return hashlib.sha256(settings.encode()).hexdigest()[:12]


def sft_checkpoint(task: TaskSettings, model: ModelSettings, cache: Path) -> Path:
    """The warm-started checkpoint for these settings: from ``cache`` when it was made before, else trained
    (a few minutes on 2 cores, with TRL's progress bar) and saved there whole (a staging folder renamed)."""
    path = cache / f"sft-{cache_key(task, model)}"
    if (path / "settings.json").is_file():
        print(f"SFT checkpoint (cached): {path}", flush=True)
        return path
    import torch
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    examples = sft_examples(task, model)
    torch.manual_seed(model.sft_seed)
    if model.base is None:
        tokenizer = build_tokenizer([row["prompt"][-1]["content"] + "\n" + row["completion"][0]["content"]
                                     for row in examples])
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=model.hidden_size,
                             intermediate_size=4 * model.hidden_size, num_hidden_layers=model.layers,
                             num_attention_heads=model.heads, num_key_value_heads=model.heads,
                             max_position_embeddings=256, tie_word_embeddings=True, bos_token_id=None,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        policy = LlamaForCausalLM(config)
    else:
        policy, tokenizer = pretrained(model.base)
    policy.generation_config.eos_token_id = tokenizer.eos_token_id
    policy.generation_config.pad_token_id = tokenizer.pad_token_id
    staging = cache / f".staging-{path.name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    args = SFTConfig(output_dir=str(staging / "trainer"), max_steps=model.sft_steps,
                     per_device_train_batch_size=model.sft_batch_size, learning_rate=model.sft_learning_rate,
                     lr_scheduler_type="cosine", warmup_steps=model.sft_steps // 20, weight_decay=0.0,
                     logging_steps=max(1, model.sft_steps // 10), save_strategy="no", report_to="none",
                     bf16=False, dataloader_pin_memory=False, seed=model.sft_seed, max_length=256)
    started = time.monotonic()
    parameters = sum(p.numel() for p in policy.parameters())
    print(f"SFT warm start: {parameters / 1e6:.2f}M parameters, {len(examples)} solutions, {model.sft_steps} steps "
          f"-> {path}", flush=True)
    validation = StopAtAccuracy(tokenizer, problems(task, VALIDATION_PROBLEMS, seed=VALIDATION_SEED),
                                model.sft_target_accuracy, seed=model.sft_seed)
    trainer = SFTTrainer(model=policy, args=args, train_dataset=Dataset.from_list(examples),
                         processing_class=tokenizer, callbacks=[validation])
    trainer.train()
    shutil.rmtree(staging / "trainer", ignore_errors=True)
    trainer.model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / "settings.json").write_text(json.dumps(
        {"task": asdict(task), "model": asdict(model), "recipe": RECIPE, "parameters": parameters,
         "steps": trainer.state.global_step, "validation_accuracy": validation.history,
         "seconds": round(time.monotonic() - started, 1)}, indent=2))
    staging.rename(path)
    return path


class StopAtAccuracy(TrainerCallback):
    """Ends the warm start at the first check whose strict accuracy on the validation problems reaches
    ``target``: the starting accuracy the RL arms need (where an outcome reward carries signal) is set by the
    number of SFT steps, and it rises steeply with them (400 steps: 0.25, 500: 0.76 on one run)."""

    def __init__(self, tokenizer: Any, rows: list[tuple[str, str]], target: float, seed: int) -> None:
        self.tokenizer, self.rows, self.target, self.seed = tokenizer, rows, target, seed
        self.history: list[tuple[int, float]] = []

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        step = state.global_step
        if self.target <= 0 or step < VALIDATE_FROM or step % VALIDATE_EVERY:  # 0: train every step
            return
        from repro_core.rewards import boxed_accuracy

        model.eval()
        completions = sample(model, self.tokenizer, [question(word, letter) for word, letter in self.rows],
                             seed=self.seed, max_new_tokens=MAX_COMPLETION_LENGTH)
        model.train()
        accuracy = float(np.mean(boxed_accuracy([self.tokenizer.decode(ids) for ids in completions],
                                                [str(word.count(letter)) for word, letter in self.rows])))
        self.history.append((step, accuracy))
        print(f"\nSFT step {step}: validation strict accuracy {accuracy:.3f} (target {self.target})", flush=True)
        if accuracy >= self.target:
            control.should_training_stop = True


def pretrained(base: str) -> tuple[Any, Any]:
    """A pretrained chat model to warm-start instead (``embedded``: SmolLM2-135M-Instruct), with ``</think>``
    added as one token when its tokenizer lacks it, and left padding for sampling."""
    from tokenizers import AddedToken
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from repro_core.assets import default_model_path

    path = default_model_path() if base == "embedded" else base
    policy, tokenizer = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    if len(tokenizer(THINK_END, add_special_tokens=False)["input_ids"]) != 1:
        tokenizer.add_tokens([AddedToken(THINK_END, special=False, normalized=False)])
        policy.resize_token_embeddings(len(tokenizer))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return policy, tokenizer


def load(path: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def sample(model: Any, tokenizer: Any, questions: list[str], *, seed: int, max_new_tokens: int,
           batch_size: int = 64) -> list[list[int]]:
    """One completion (token ids, up to and without the end of turn) per question, sampled at temperature 1
    from ``seed``."""
    import torch

    torch.manual_seed(seed)
    completions = []
    for start in range(0, len(questions), batch_size):
        texts = [tokenizer.apply_chat_template(chat_prompt(q, SYSTEM_PROMPT), add_generation_prompt=True,
                                               tokenize=False) for q in questions[start:start + batch_size]]
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**batch, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                                 max_new_tokens=max_new_tokens)
        for row in out[:, batch["input_ids"].shape[1]:].tolist():
            ids = [token for token in row if token != tokenizer.pad_token_id]
            completions.append(ids[:ids.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in ids else ids)
    return completions


def prompt_ids(tokenizer: Any, text: str) -> list[int]:
    rendered = tokenizer.apply_chat_template(chat_prompt(text, SYSTEM_PROMPT), add_generation_prompt=True,
                                             tokenize=False)
    return tokenizer(rendered, add_special_tokens=False)["input_ids"]
