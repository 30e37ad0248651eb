"""Shared pytest configuration: hypothesis profiles and the oracle on sys.path.

Profiles (select with HYPOTHESIS_PROFILE=dev|ci|thorough; default "ci" when the CI variable is
set, as in .ci/run, else "dev"):
- dev:      150 examples per property, random seeds (fast local runs);
- ci:       100 examples per property, derandomized (reproducible, fast on 2 cores);
- thorough: 2000 examples per property (run occasionally).

Shared fixtures (session scope; torch and the tiny model load on first use, so that collecting a
suite that needs neither imports neither):
- tok:        tests/tiny.py's byte-level BPE tokenizer;
- tiny_model: tests/tiny.py's random-weight qwen2 model for `tok`, in eval mode. Shared by every
  test in the session: a test that trains or otherwise changes weights builds its own model.
- tiny_checkpoint: that model and tokenizer, with a chat template, saved in a directory: a
  `--model_name_or_path` for `repro train` runs (tests/test_train_cli.py, tests/test_train_faults.py).

Function fixtures for the output and checkpoint tests:
- hold_output_dir: call it with a folder; another process (returned) holds that folder's output lock, as a
  running `repro train` or `repro score` does, until it is killed or the test ends.
- save_interrupted_at_step_2: Ctrl-C (KeyboardInterrupt) while transformers' Trainer saves step 2's checkpoint,
  after its weights and optimizer, before its RNG state and trainer_state.json.

torch computes on one thread (OMP_NUM_THREADS=1 unless set), here and in every process a test starts: the
tiny models gain nothing from a second thread, and on a busy 2-core machine OpenMP's threads wait on each
other so that a forward pass of the embedded model took 12 times as long with two as with one.
"""

import os
import subprocess
import sys

# Before anything imports torch, which reads it once; subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

_common = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile("dev", max_examples=150, **_common)
settings.register_profile("ci", max_examples=100, derandomize=True, **_common)
settings.register_profile("thorough", max_examples=2000, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture(scope="session")
def tok():
    import tiny

    return tiny.tokenizer()


@pytest.fixture(scope="session")
def tiny_model(tok):
    import tiny

    return tiny.model(len(tok))


# A minimal ChatML-like template: the tiny BPE tokenizer has none, and the prompts are conversational.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    import tiny

    path = tmp_path_factory.mktemp("tiny-qwen2")
    tokenizer = tiny.tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    tiny.model(len(tokenizer)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# The lock is taken in the holder's own process: a lock held by this one would not stop this one.
_HOLDER = """import sys, time
from pathlib import Path
from repro_core.outputs import claimed_output_dir
with claimed_output_dir(Path(sys.argv[1]), '--output_dir'):
    print('held', flush=True)
    time.sleep(600)
"""


@pytest.fixture
def hold_output_dir():
    holders = []

    def hold(folder):
        holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder)], stdout=subprocess.PIPE, text=True)
        holders.append(holder)
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        return holder

    yield hold
    for holder in holders:
        holder.kill()
        holder.wait()


@pytest.fixture
def save_interrupted_at_step_2(monkeypatch):
    from transformers import Trainer

    save_rng_state = Trainer._save_rng_state

    def interrupted_at_step_2(self, output_dir):
        if self.state.global_step == 2:
            raise KeyboardInterrupt
        save_rng_state(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_rng_state", interrupted_at_step_2)
