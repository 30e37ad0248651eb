"""The one exception of repro-core, raised by the Rust core (through the binding) and the Python layer alike."""

from __future__ import annotations

__all__ = ["ReproError"]


class ReproError(ValueError):
    """Bad input: ``argument`` names what the user set (an argument, a config field, a flag),
    ``message`` what was expected and what was found; ``str(error)`` is ``"argument: message"``.
    """

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(argument, message)
        self.argument = argument
        self.message = message

    def __str__(self) -> str:
        return f"{self.argument}: {self.message}"

    def renamed(self, argument: str) -> ReproError:
        """The same error attributed to ``argument`` (a layer that spells the setting differently)."""
        return ReproError(argument, self.message)
