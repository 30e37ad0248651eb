"""What a command writes, written safely: the one home of the pieces ``repro score``, ``repro train`` and the model
cache share.

- ``check_output_file``: refuse a symbolic link or a special file (a FIFO, a device) where a command writes a file,
  naming it: writing through a link would truncate a file outside the output folder, and a FIFO would hang.
- ``open_output``: open such a file for writing without following a link, and only if it is a regular file.
- ``write_atomic``: a file written under a temporary name in the same folder and renamed over the old one, so
  that it is the old file or the new one, never a cut-off one (a kill, a full disk).
- ``lock``: an exclusive lock (``flock``; ``msvcrt`` on Windows) that the system releases when its holder dies,
  and that says when the filesystem cannot lock at all (Lustre without flock, NFS without a lock manager) instead
  of waiting forever.
- ``claimed_output_dir``: a command's output folder, created and locked for the run, so that a second run into
  it is refused with a clear message instead of mixing its files with the first's.
- ``write_failure``: what a failed write says (a full disk among others), also when it comes from safetensors or
  ``torch.save``, which raise no OSError, with the space left on the filesystem: for one-line errors.

Importing this module imports nothing heavy.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path

from .errors import ReproError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt

__all__ = ["Lock", "check_output_file", "claimed_output_dir", "lock", "open_output", "write_atomic", "write_failure"]

logger = logging.getLogger(__name__)

# What a lock call raises when another process holds the lock (flock: EWOULDBLOCK = EAGAIN; msvcrt: EACCES);
# any other error means the filesystem cannot lock.
_HELD_ELSEWHERE = {errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES}
# How safetensors (SafetensorError) and torch.save (RuntimeError) report a write that failed.
_WRITE_FAILURE_TEXT = ("os error", "inline_container", "PytorchStreamWriter", "iostream error", "file write failed")


def _kind(mode: int) -> str | None:
    """What a file that is neither a regular file nor a directory is, by its ``st_mode``; None for those two."""
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def check_output_file(path: Path, argument: str) -> None:
    """A ReproError (``argument``, the flag that chose the folder) when ``path``, a file a command is about to
    write, is a symbolic link, a special file or a directory; nothing when it is a regular file or absent."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        raise ReproError(argument, f"{path} is a directory, where a file is written")
    kind = _kind(mode)
    if kind is None:
        return
    if stat.S_ISLNK(mode):
        kind += f" (to {os.readlink(path)})"
    raise ReproError(argument, f"{path} is {kind}, where a file is written; outputs are never written through "
                     f"links or into special files: remove it, or choose another {argument}")


def open_output(path: Path, argument: str, *, append: bool = False) -> int:
    """A file descriptor of ``path`` opened for writing (created; emptied unless ``append``), without following a
    symbolic link and only if it is a regular file: else a ReproError naming ``argument``. A FIFO is refused
    without blocking (``O_NONBLOCK``)."""
    check_output_file(path, argument)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else 0)
    flags |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENXIO):  # a link or a FIFO put there since the check
            check_output_file(path, argument)
        raise
    kind = _kind(os.fstat(fd).st_mode)
    if kind is not None:
        os.close(fd)
        raise ReproError(argument, f"{path} is {kind}, where a file is written: remove it, or choose another "
                         f"{argument}")
    if not append:
        os.ftruncate(fd, 0)  # after the checks: O_TRUNC would have emptied a file before they ran
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return fd


def write_atomic(path: Path, data: bytes | str) -> None:
    """``data`` (text as UTF-8) written to ``path`` through a temporary file in the same folder, flushed to the
    disk and renamed over ``path``: readers see the old file or the new one. A rename replaces a symbolic link
    at ``path`` itself, never the file it points to. On any error the temporary file is removed and the error
    raised (``path`` untouched)."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    handle, partial = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(handle, 0o666 & ~_umask())  # mkstemp's 0600, widened to what open() would have made
        with open(handle, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process's umask (reading it means setting it: set back at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


class Lock(Enum):
    """What ``lock`` got."""

    HELD = "held"  #: this process holds it
    BUSY = "busy"  #: another process holds it
    UNSUPPORTED = "unsupported"  #: the filesystem cannot lock (the caller decides how to go on)


def _try_lock(fd: int) -> tuple[Lock, OSError | None]:
    """The lock's state after one non-blocking try, and the error of a filesystem that cannot lock."""
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError as error:
        return (Lock.BUSY, None) if error.errno in _HELD_ELSEWHERE else (Lock.UNSUPPORTED, error)
    return Lock.HELD, None


def _unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


@contextmanager
def lock(path: Path, *, wait: bool, waiting: str = "") -> Iterator[tuple[Lock, OSError | None]]:
    """Hold an exclusive lock on ``path`` (a file, created if absent; on POSIX also a directory) for the block.

    Yields (``Lock``, the lock call's error when ``UNSUPPORTED``). ``BUSY`` only when ``wait`` is False; with
    ``wait`` it waits (logging ``waiting`` once, if given) until the holder releases it or dies. ``UNSUPPORTED``
    never waits: the filesystem refused the call itself (ENOLCK, EOPNOTSUPP, ...), and waiting would be forever.
    """
    if path.is_dir():
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    else:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        state, error = _try_lock(fd)
        if state is Lock.BUSY and wait:
            if waiting:
                logger.info("%s", waiting)
            while state is Lock.BUSY:
                time.sleep(0.5)
                state, error = _try_lock(fd)
        try:
            yield state, error
        finally:
            if state is Lock.HELD:
                _unlock(fd)
    finally:
        os.close(fd)


@contextmanager
def claimed_output_dir(directory: Path, argument: str) -> Iterator[None]:
    """``directory`` created (with its missing parents) and locked for the block: a second run of any command
    into it is refused with a ReproError naming ``argument``. The lock dies with the process (nothing to clean
    up after a kill); on a filesystem that cannot lock, a warning says that concurrent runs are not detected.
    The folders this created are removed again when the block ends and left them empty (a run refused early
    leaves nothing behind)."""
    created = []
    for path in (directory, *directory.parents):
        if os.path.lexists(path):
            break
        created.append(path)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ReproError(argument, f"cannot create {directory}: {error.strerror or error}") from None
    try:
        # The folder itself on POSIX (no file left in it); a lock file in it on Windows, which cannot lock folders.
        target = directory if fcntl is not None else directory / ".repro-lock"
        with lock(target, wait=False) as (state, lock_error):
            if state is Lock.BUSY:
                raise ReproError(argument, f"{directory} is in use by another run (it holds the folder's lock): "
                                 f"two runs into one folder would mix their outputs; wait for it to end, or choose "
                                 f"another {argument}")
            if state is Lock.UNSUPPORTED:
                logger.warning("cannot lock %s (%s): a second run into it at the same time would not be detected",
                               directory, lock_error)
            yield
    finally:
        for path in created:  # deepest first; only if empty
            try:
                path.rmdir()
            except OSError:
                break


def write_failure(error: BaseException, folder: Path) -> str | None:
    """One line on ``error`` when it is a failed write into ``folder`` (an OSError, or safetensors' or torch's
    error of one), with the space left on its filesystem; None for any other error."""
    if isinstance(error, OSError):
        detail = error.strerror or str(error)
    elif type(error).__name__ == "SafetensorError" or (
            isinstance(error, RuntimeError) and any(text in str(error) for text in _WRITE_FAILURE_TEXT)):
        detail = f"{type(error).__name__}: {error}"
    else:
        return None
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        free = shutil.disk_usage(existing).free
    except OSError:
        return " ".join(detail.split())
    return " ".join(f"{detail} ({free / 2**20:.1f} MiB free on its filesystem)".split())
