"""How the report writes values: numbers (in the page and the terminal table alike), escaped fields, the outcome
and the truncated badge of the page.

Every value that comes from a record or the settings goes through ``escape`` (quotes too), in text and in attributes
alike: a trace is arbitrary model output or user input.
"""

from __future__ import annotations

import html
import math
from typing import Any

from .traces import OUTCOME_LABELS

__all__ = ["TRUNCATED_BADGE", "escape", "number", "outcome"]

TRUNCATED_BADGE = ('<span class="badge" title="the completion hit the token limit: it stops mid-way, so its last '
                   'paragraph, J_end and the end of its J curve are not those of a finished answer">truncated</span>')


def escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def number(value: float | None, digits: int = 3, sign: bool = False) -> str:
    """``value`` with ``digits`` decimals (and its sign when ``sign``); "–" for None and NaN."""
    if value is None or math.isnan(value):
        return "–"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def outcome(correct: bool | None) -> str:
    css = {True: "ok", False: "bad", None: "na"}[correct]
    return f'<span class="{css}">{OUTCOME_LABELS[correct]}</span>'
