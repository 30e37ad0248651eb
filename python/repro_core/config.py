"""``ReproConfig``: the one declaration of every RePro setting (default, help, choices, check).

Every other spelling is derived from it: TRL's ``repro_*`` fields (``ReproArguments``, below, and the
trainers' configs), ``repro score``'s flags (the same ``--repro_*`` names) and the keys of verl's
``algorithm.repro`` block. A setting added here appears in all of them; ``tests/test_config.py``
fails when a layer misses one.

Checks live in one place each: the numeric options (k, w, alpha, gamma, lam, stability_ema and the
estimator) in the Rust core, which ``check_options`` runs without data; the model-side ones
(delimiters, think_end, answer_template, j_tokens, answer_special_tokens, j_at_rollout_temperature,
objective_mode, temperature, max_batch_tokens) in ``check_setting`` here, which ``ObjectiveScorer``
calls too. Importing this module imports neither torch nor TRL.
"""

from __future__ import annotations

import math
import re
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from numbers import Integral, Real
from typing import Any, ClassVar, Literal, get_args

import numpy as np

from ._api import CRITIC_TARGETS, ESTIMATORS, CriticTarget, Estimator, check_options
from .errors import ReproError

__all__ = [
    "DELIMITER_MODES",
    "J_TOKENS",
    "OBJECTIVE_MODES",
    "JTokens",
    "ObjectiveMode",
    "ReproArguments",
    "ReproConfig",
    "check_setting",
    "repro_field",
]

ObjectiveMode = Literal["shared", "per_cut", "fused"]
OBJECTIVE_MODES: tuple[str, ...] = get_args(ObjectiveMode)
JTokens = Literal["template", "answer"]
#: Which tokens of the scored text J averages (``ReproConfig.j_tokens``).
J_TOKENS: tuple[str, ...] = get_args(JTokens)
#: The named paragraph rules of ``Delimiters.from_tokenizer`` (a list of token strings or ids also works).
DELIMITER_MODES = ("paper", "line", "reference")


@dataclass
class ReproConfig:
    """RePro's settings (the method's definition is in docs/method.md); defaults are the paper's.

    ``cli_type`` in a field's metadata is the type its command-line flag parses (for fields whose
    Python type is a union that a parser cannot read).
    """

    k: int = field(
        default=20,
        metadata={
            "help": "Highest-entropy paragraph breaks kept as cut points per completion. 0 keeps none (not 'no "
            "limit'): each completion is one step, from its start to the end of its thinking, with one process reward.",
        },
    )
    w: float = field(default=0.1, metadata={"help": "Weight of stability in the step score: C = (1 - w) M + w S."})
    alpha: float = field(default=0.1, metadata={"help": "Scale of the process advantage added to the outcome one."})
    gamma: float = field(
        default=1.0, metadata={"help": "Discount of the process rewards' reverse cumulative sum (and of GAE)."}
    )
    lam: float = field(default=1.0, metadata={"help": "GAE lambda; only the 'ppo' estimator uses it."})
    stability_ema: float | None = field(
        default=None, metadata={"help": "EMA factor beta smoothing J before the stability score; None: no smoothing."}
    )
    estimator: Estimator = field(
        default="grpo",
        metadata={"help": f"Advantage estimator: {', '.join(ESTIMATORS)}.", "choices": ESTIMATORS},
    )
    delimiters: str | list[str] | list[int] = field(
        default="paper",
        metadata={
            "help": "Paragraph breaks: paper (a blank line), line (every newline), reference (the authors' tokens), "
            "or (in Python) a list of token strings or token ids.",
            "cli_type": str,
            "choices": DELIMITER_MODES,
        },
    )
    think_end: str | int | None = field(
        default="</think>",
        metadata={
            "help": "End-of-thinking token (text or id); None when completions have no thinking part. A token set "
            "explicitly must be one token of the tokenizer; without the default one, completions are scored to "
            "their end.",
            "cli_type": str | None,
        },
    )
    answer_template: str = field(
        default="\\boxed{{{answer}}}",
        metadata={"help": "str.format template of the scored answer text; {answer} is the ground truth."},
    )
    j_tokens: JTokens = field(
        default="template",
        metadata={
            "help": "Tokens J averages: template (the paper's: every token of the answer_template text) or answer "
            "(only the answer's own tokens, of the text tokenized whole as the model would write it; the template's "
            "text before {answer} joins the conditioning prefix and the text after it, like the closing brace, is "
            "teacher-forced but not averaged).",
            "choices": J_TOKENS,
        },
    )
    answer_special_tokens: bool = field(
        default=False,
        metadata={
            "help": "Authors' code: the answer text is encoded with the tokenizer's default special tokens (a BOS "
            "for tokenizers that add one), teacher-forced; with j_tokens=template they are averaged too.",
        },
    )
    j_at_rollout_temperature: bool = field(
        default=False,
        metadata={
            "help": "Authors' code: J's log-probabilities are taken at the sampling temperature (logits / "
            "temperature) instead of 1.",
        },
    )
    objective_mode: ObjectiveMode = field(
        default="shared",
        metadata={
            "help": "How J is computed: shared (one pass plus cached probes, fast), per_cut (one sequence per cut) "
            "or fused (verl only: inside verl's old-log-prob pass).",
            "choices": OBJECTIVE_MODES,
        },
    )
    temperature: float = field(
        default=1.0,
        metadata={
            "help": "Sampling temperature, for the entropies (J uses raw logits unless j_at_rollout_temperature)."
        },
    )
    max_batch_tokens: int = field(
        default=16384, metadata={"help": "Token budget of one forward call of the RePro passes (rows x padded width)."}
    )
    stats_include_baseline: bool = field(
        default=False,
        metadata={
            "help": "Authors' code: the baseline cut point adds one 0 per completion to the process-reward "
            "statistics (the mean and std of a group, or of the batch), written on the batch's last column, so a "
            "completion with a reward there adds none.",
        },
    )
    drop_first_token_reward: bool = field(
        default=False,
        metadata={
            "help": "Authors' code: a process reward placed on token 0 (a cut at p = 1) is dropped from the "
            "statistics and the advantage.",
        },
    )
    critic_target: CriticTarget = field(
        default="gae",
        metadata={
            "help": "Authors' code: advantages (the critic regresses on the combined advantage + V). The default, "
            "gae, is the GAE return + V, as verl's gae; ppo only.",
            "choices": CRITIC_TARGETS,
        },
    )

    def __post_init__(self) -> None:
        check_options(
            estimator=self.estimator, k=self.k, w=self.w, alpha=self.alpha, gamma=self.gamma, lam=self.lam,
            stability_ema=self.stability_ema, stats_include_baseline=self.stats_include_baseline,
            drop_first_token_reward=self.drop_first_token_reward, critic_target=self.critic_target,
        )
        for name in _MODEL_SIDE:
            check_setting(name, getattr(self, name))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def advantage_options(self) -> dict[str, Any]:
        """These settings as the keywords of ``compute_advantages`` (``ADVANTAGE_SETTINGS``)."""
        return {name: getattr(self, name) for name in ADVANTAGE_SETTINGS}


def check_setting(name: str, value: Any) -> None:
    """The check of one model-side setting of ``ReproConfig``, by field name (ReproError naming it)."""
    if name in ("answer_special_tokens", "j_at_rollout_temperature"):
        if not isinstance(value, (bool, np.bool_)):
            raise ReproError(name, f"expected a bool, got {value!r}")
    elif name == "j_tokens":
        if value not in J_TOKENS:
            raise ReproError(name, f"expected one of {', '.join(J_TOKENS)}, got {value!r}")
    elif name == "objective_mode":
        if value not in OBJECTIVE_MODES:
            raise ReproError(name, f"expected one of {', '.join(OBJECTIVE_MODES)}, got {value!r}")
    elif name == "temperature":
        number = isinstance(value, Real) and not isinstance(value, (bool, np.bool_))
        if not (number and math.isfinite(value) and value > 0):
            raise ReproError(name, f"expected a finite number > 0, got {value!r}")
    elif name == "max_batch_tokens":
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral) or value < 1:
            raise ReproError(name, f"expected an int >= 1, got {value!r}")
    elif name == "think_end":
        if value is not None and (isinstance(value, (bool, np.bool_)) or not isinstance(value, (str, Integral))):
            raise ReproError(name, f"expected a token string, a token id or None, got {value!r}")
        if value == "" or (isinstance(value, Integral) and value < 0):
            raise ReproError(name, f"expected a non-empty token string, a token id >= 0 or None, got {value!r}")
    elif name == "delimiters":
        if isinstance(value, str):
            if value not in DELIMITER_MODES:
                hint = "" if value.isalpha() else f" (to select tokens by text, pass a list: [{value!r}])"
                raise ReproError(
                    name, f"expected one of {', '.join(DELIMITER_MODES)} or a list, got {value!r}{hint}"
                )
        elif not isinstance(value, (list, tuple)) or not (
            all(isinstance(item, str) for item in value)
            or all(isinstance(item, int) and not isinstance(item, bool) for item in value)
        ):
            expected = "a mode name, a list of token strings or a list of token ids"
            raise ReproError(name, f"expected {expected}, got {value!r}")
        elif "" in value or any(isinstance(item, int) and item < 0 for item in value):
            raise ReproError(name, f"expected non-empty token strings or token ids >= 0, got {value!r}")
    elif name == "answer_template":
        try:
            has_answer = isinstance(value, str) and "\0" in value.format(answer="\0")
        except (IndexError, KeyError, ValueError):
            has_answer = False
        if not has_answer:
            raise ReproError(
                name, f"expected a str.format template with an {{answer}} field (literal braces doubled), got {value!r}"
            )
        bare = _BARE_COMMAND.search(value.format(answer="\0"))
        if bare is not None:
            # "\\boxed{answer}" renders "\\boxed5": the braces were meant literally.
            raise ReproError(
                name, f"{value!r} puts the answer right after {bare.group(1)} without braces "
                f"({value.format(answer=5)!r} for the answer 5); literal braces are doubled around the field: "
                f"{bare.group(1)}{{{{{{answer}}}}}}"
            )
    else:
        raise KeyError(f"{name!r} is not a model-side setting of ReproConfig")


#: A LaTeX command directly followed by the rendered answer (the sentinel "\0").
_BARE_COMMAND = re.compile(r"(\\[A-Za-z]+)\0")
#: The settings that are keywords of ``compute_advantages`` of the same name.
ADVANTAGE_SETTINGS = ("alpha", "gamma", "lam", "stats_include_baseline", "drop_first_token_reward", "critic_target")
#: The settings ``check_setting`` checks; the others are ``check_options``'.
_MODEL_SIDE = (
    "delimiters", "think_end", "answer_template", "j_tokens", "answer_special_tokens", "j_at_rollout_temperature",
    "objective_mode", "temperature", "max_batch_tokens",
)
_FIELDS: dict[str, Field[Any]] = {f.name: f for f in fields(ReproConfig)}


def repro_field(name: str, **overrides: Any) -> Any:
    """A dataclass field for the setting ``name`` with ``ReproConfig``'s default, help and choices.

    For configs that spell settings ``repro_<name>`` (TRL's); ``overrides`` replace the default
    (``default=``) or metadata entries (``help=``, ``choices=``).
    """
    source = _FIELDS[name]
    default = overrides.pop("default", source.default)
    metadata = {key: value for key, value in source.metadata.items() if key != "cli_type"}
    metadata.update(overrides)
    if "choices" in metadata:
        metadata["choices"] = list(metadata["choices"])
    assert default is not MISSING
    return field(default=default, metadata=metadata)


@dataclass
class ReproArguments:
    """RePro's settings as ``repro_*`` flags, for ``repro train``, ``repro score`` and TRL configs.

    The trainers read them through ``ReproConfig`` (``repro_config``); the sampling temperature,
    gamma and lam belong to the host's config where it has them.
    """

    repro_k: int = repro_field("k")
    repro_w: float = repro_field("w")
    repro_alpha: float = repro_field("alpha")
    repro_gamma: float = repro_field("gamma")
    repro_stability_ema: float | None = repro_field("stability_ema")
    repro_estimator: str = repro_field("estimator")
    repro_delimiters: str = repro_field("delimiters")
    repro_think_end: str | None = repro_field("think_end")
    repro_answer_template: str = repro_field("answer_template")
    repro_j_tokens: str = repro_field("j_tokens")
    repro_answer_special_tokens: bool = repro_field("answer_special_tokens")
    repro_j_at_rollout_temperature: bool = repro_field("j_at_rollout_temperature")
    repro_objective_mode: str = repro_field("objective_mode")
    repro_max_batch_tokens: int = repro_field("max_batch_tokens")
    repro_stats_include_baseline: bool = repro_field("stats_include_baseline")
    repro_drop_first_token_reward: bool = repro_field("drop_first_token_reward")
    repro_critic_target: str = repro_field("critic_target")

    #: ``ReproConfig`` fields that the host's own config supplies (``repro_config``'s keywords).
    HOST_SETTINGS: ClassVar[tuple[str, ...]] = ("temperature", "lam")

    def repro_config(self, **host: Any) -> ReproConfig:
        """The ``ReproConfig`` of these flags plus the host's settings (``temperature=...``, ...).

        A ReproError names the flag (``repro_k``), not the ``ReproConfig`` field.
        """
        values = {name: getattr(self, f"repro_{name}") for name in _FIELDS if hasattr(self, f"repro_{name}")}
        if values.get("think_end") in ("", "None"):  # how a command line or a YAML file spells "no tag"
            values["think_end"] = None
        try:
            return ReproConfig(**{**values, **host})
        except ReproError as error:
            if error.argument in values:
                raise error.renamed(f"repro_{error.argument}") from None
            raise


#: Named sets of settings. "authors" is the reference code's arithmetic and run script (w = 0: magnitude
#: only; alpha = 0.05; the authors' delimiter tokens; the departures listed in docs/semantics.md). Its PPO
#: critic target (critic_target="advantages") is not in it: only the ppo estimator takes that setting.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "authors": {
        "w": 0.0,
        "alpha": 0.05,
        "delimiters": "reference",
        "stats_include_baseline": True,
        "drop_first_token_reward": True,
        "answer_special_tokens": True,
        "j_at_rollout_temperature": True,
    },
}


def preset_config(name: str, **overrides: Any) -> ReproConfig:
    """``ReproConfig`` with the preset ``name``'s settings under ``overrides`` (which win)."""
    return ReproConfig(**{**preset_settings(name, "preset"), **overrides})


def preset_flags(name: str, argument: str = "repro_preset") -> dict[str, Any]:
    """The preset ``name`` as ``repro_*`` keyword arguments, for TRL configs and the commands' parsers."""
    return {f"repro_{key}": value for key, value in preset_settings(name, argument).items()}


def preset_settings(name: str, argument: str) -> dict[str, Any]:
    """The settings of the preset ``name``; a ReproError names ``argument`` (where the user set it)."""
    if name not in PRESETS:
        raise ReproError(argument, f"expected one of {', '.join(PRESETS)}, got {name!r}")
    return dict(PRESETS[name])
