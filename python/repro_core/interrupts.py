"""SIGTERM handled as Ctrl-C by the commands that keep their work on an interrupt (``repro score``, ``repro train``).

A batch system, ``timeout`` or ``kill`` ends a job with SIGTERM, whose default action kills the process at once: no
report rebuilt, no message. Inside ``terminate_as_interrupt`` the first SIGTERM raises ``KeyboardInterrupt`` in the
main thread instead, so the command runs its Ctrl-C path; later ones are ignored while that path finishes (SIGKILL
still ends it). The exit status is then 128 + the signal's number, as a shell reports a death by that signal: 130
for Ctrl-C, 143 for SIGTERM. ``held_back`` makes either signal wait for the end of a step that must not be cut in
two (a line written and its record kept).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

__all__ = ["Interrupt", "held_back", "terminate_as_interrupt"]


class Interrupt:
    """Which signal interrupted the command: SIGINT (Ctrl-C) unless a SIGTERM was received."""

    def __init__(self) -> None:
        self.signal: int = signal.SIGINT

    @property
    def status(self) -> int:
        """The command's exit status after this interrupt: 128 + the signal's number."""
        return 128 + int(self.signal)

    @property
    def word(self) -> str:
        """How the command says it stopped: "interrupted" (Ctrl-C) or "terminated" (SIGTERM)."""
        return "terminated" if self.signal == signal.SIGTERM else "interrupted"

    def check(self) -> None:
        """For a loop, between its steps: KeyboardInterrupt if a SIGTERM came. Its handler raised one already,
        unless that one was lost where Python ignores exceptions ("Exception ignored in ...": a ``__del__``, a
        callback from C); later SIGTERMs are ignored, so without this the run would go on to its end."""
        if self.signal == signal.SIGTERM:
            raise KeyboardInterrupt


@contextmanager
def terminate_as_interrupt() -> Iterator[Interrupt]:
    """For the block, the first SIGTERM raises KeyboardInterrupt (later ones are ignored); the yielded
    ``Interrupt`` says which signal came. Outside the main thread (where no handler can be set) nothing changes."""
    interrupt = Interrupt()
    if threading.current_thread() is not threading.main_thread():
        yield interrupt
        return

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if interrupt.signal == signal.SIGTERM:
            return  # the first one is being handled
        interrupt.signal = signal.SIGTERM
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield interrupt
    finally:
        _put_back(signal.SIGTERM, previous)


def _put_back(number: int, handler: Any) -> Any:
    """``handler`` (what ``signal.signal`` returned) set again for signal ``number``, and returned as set: None, a
    handler set outside Python, cannot be put back, and the default is the nearest."""
    handler = signal.SIG_DFL if handler is None else handler
    signal.signal(number, handler)
    return handler


_HELD = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def held_back() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait for the end of the block, then act as they would have (the handlers in place
    before it run): so that the block is done whole or not begun. Outside the main thread nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[tuple[int, FrameType | None]] = []
    previous: dict[int, Any] = {number: signal.signal(number, lambda *received: arrived.append(received))
                                for number in _HELD}
    try:
        yield
    finally:
        restored = {number: _put_back(number, handler) for number, handler in previous.items()}
        for number, frame in arrived[:1]:  # the first; a second, as on_sigterm, would be ignored
            handler = restored[number]
            if callable(handler):
                handler(number, frame)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(number)
