"""How the report's files reach the disk: whole or not at all (``write_file``, ``save_figure``)."""

from __future__ import annotations

import contextlib
import io
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["save_figure", "write_file"]

# The plots' resolution: 12 x 4.5 inch figures make 1320 x 495 pixel PNGs.
_DPI = 110


def write_file(path: Path, data: bytes) -> None:
    """``data`` as the file ``path``, whole or not at all: written to a new temporary file beside it, flushed to the
    disk, then renamed over ``path``. A failed write (a full disk) raises OSError and leaves ``path`` as it was,
    never cut off, and no temporary file behind. A symlink planted at ``path`` is replaced by the file, never
    followed: the file it points to is left alone."""
    descriptor, temporary = _create_beside(path)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)  # a rename replaces a symlink itself, not its target
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _create_beside(path: Path) -> tuple[int, Path]:
    """A new, empty file of a random name in ``path``'s folder, open for writing with the permissions a plain
    ``open`` gives, and its name. O_EXCL: an existing name, a symlink too, is never opened."""
    candidate = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    return os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), candidate


def save_figure(figure: Figure, path: Path) -> None:
    """``figure`` as a PNG file ``path``, whole or not at all (``write_file``)."""
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=_DPI)
    write_file(path, png.getvalue())
