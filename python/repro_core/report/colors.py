"""The fixed colour scale of the report's paragraph shades, on the process reward's scale (``DEFAULT_COLOR_MAX``,
``color_max``)."""

from __future__ import annotations

import math
import numbers

from ..errors import ReproError

__all__ = ["DEFAULT_COLOR_MAX", "check_color_max", "reward_color"]

# The two ends of the diverging reward colours (ColorBrewer RdBu, mid-saturation so black text stays readable).
_NEGATIVE_RGB = (214, 96, 77)
_POSITIVE_RGB = (67, 147, 195)

#: The |r| that gets the full colour in the HTML report (``color_max`` of ``write_html``), the same in every report
#: so that two runs compare. r_j = C_j - C_{j-1} with C_j in [0, 1] (docs/method.md, "Scores and process rewards"):
#: the rewards of paragraphs after the first mostly lie within +-0.25; the first is shaded by M_1 - M_b, within
#: -0.24 .. +0.76 (``traces.step_shades``).
DEFAULT_COLOR_MAX = 0.25


def check_color_max(color_max: float) -> float:
    """``color_max`` as a float: a finite number > 0, else ``ReproError("color_max", ...)``."""
    if isinstance(color_max, bool) or not isinstance(color_max, numbers.Real) or not math.isfinite(color_max) \
            or color_max <= 0:
        raise ReproError("color_max", f"expected a finite number > 0 (the |r| of the full colour), got {color_max!r}")
    return float(color_max)


def reward_color(reward: float, scale: float) -> str:
    """A diverging colour for a process reward: white at 0 (and NaN), blue above, red below, full at |reward| >=
    scale."""
    amount = min(abs(reward) / scale, 1.0) if scale > 0 and not math.isnan(reward) else 0.0
    end = _POSITIVE_RGB if reward > 0 else _NEGATIVE_RGB
    red, green, blue = (round(255 + (channel - 255) * amount) for channel in end)
    return f"#{red:02x}{green:02x}{blue:02x}"
