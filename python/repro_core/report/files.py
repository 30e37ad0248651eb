"""How the report's files reach the disk: whole or not at all, never through a symlink (``outputs.write_atomic``),
the plots as PNG (``save_figure``)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from ..outputs import write_atomic

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["save_figure"]

# The plots' resolution: 12 x 4.5 inch figures make 1320 x 495 pixel PNGs.
_DPI = 110


def save_figure(figure: Figure, path: Path) -> None:
    """``figure`` as a PNG file ``path``, whole or not at all (``outputs.write_atomic``)."""
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=_DPI)
    write_atomic(path, png.getvalue())
