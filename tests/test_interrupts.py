"""repro_core.interrupts: SIGTERM as Ctrl-C, and held_back, which makes either signal wait for the end of a step
that must not be cut in two (repro score's line in scores.jsonl and its record; before, a SIGTERM between them
left 7 lines in the file and "the 6 traces scored" in the message and the report)."""

import os
import signal

import pytest

from repro_core.interrupts import held_back, terminate_as_interrupt


def _signalled_inside(number: int) -> list[str]:
    steps = []
    with held_back():
        os.kill(os.getpid(), number)
        signal.getsignal(number)  # a call: where a handler that raises would have raised
        steps.append("after the signal")
    steps.append("after the block")
    return steps


@pytest.fixture(autouse=True)
def python_default_ctrl_c():
    """SIGINT handled as in a fresh interpreter (KeyboardInterrupt): a library imported earlier in the session may
    have set another handler."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_in_the_block_acts_when_the_block_ends(number: int) -> None:
    with terminate_as_interrupt() as interrupt:
        steps: list[str] = []
        with pytest.raises(KeyboardInterrupt):
            steps = _signalled_inside(number)  # raises before it returns
    assert steps == []
    assert interrupt.signal == number and interrupt.word == ("terminated" if number == signal.SIGTERM
                                                               else "interrupted")


def test_the_block_runs_whole_before_the_interrupt() -> None:
    done = []
    with terminate_as_interrupt(), pytest.raises(KeyboardInterrupt):
        with held_back():
            os.kill(os.getpid(), signal.SIGTERM)
            done.extend(["line", "record"])
        done.append("next")
    assert done == ["line", "record"]


def test_the_handlers_before_the_block_are_back_after_it() -> None:
    before = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    with held_back():
        pass
    assert {number: signal.getsignal(number) for number in before} == before


def test_an_ignored_signal_stays_ignored() -> None:
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        assert _signalled_inside(signal.SIGTERM) == ["after the signal", "after the block"]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_handler_set_outside_python_gives_way_to_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """signal.signal returns None for a handler a C library set, which cannot be set again: before, putting it
    back raised TypeError at the end of the block."""
    install = signal.signal

    def set_outside_python(number: int, handler: object) -> object:
        previous = install(number, handler)
        return None if number == signal.SIGINT and previous is signal.default_int_handler else previous

    monkeypatch.setattr(signal, "signal", set_outside_python)
    with held_back():
        pass
    assert signal.getsignal(signal.SIGINT) is signal.SIG_DFL


class _LosesItsInterrupt:
    """Deleted, it receives a SIGTERM whose handler runs inside ``__del__``, where Python ignores exceptions."""

    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        signal.getsignal(signal.SIGTERM)  # a call: where the handler runs and its KeyboardInterrupt is lost


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_sigterm_whose_interrupt_was_lost_is_raised_at_the_next_check() -> None:
    """A test run once saw the KeyboardInterrupt of repro score's SIGTERM lost inside numpy ("Exception ignored
    in"): the run went on to its end with status 0. Its scoring loop checks between batches."""
    with terminate_as_interrupt() as interrupt:
        _LosesItsInterrupt()  # no name: deleted at once
        assert interrupt.signal == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            interrupt.check()
    with terminate_as_interrupt() as quiet:
        quiet.check()  # no SIGTERM: nothing
