"""Errors that carry a message a person can act on.

Every failure caused by the user's input (a bad record, config or path) raises a subclass of
``MedvlError``. The CLI prints its message and exits with status 2 instead of a traceback.
"""

from __future__ import annotations


class MedvlError(Exception):
    """A user-facing error: the message names what is wrong, where, and how to fix it."""

    exit_code = 2


class ConfigError(MedvlError):
    """A config file or ``key=value`` override is invalid."""


class RecordError(MedvlError):
    """A data record is invalid; the message names the file, line and field."""


class UnknownNameError(MedvlError):
    """A name (model family, format, benchmark...) is not one medvl knows."""

    def __init__(self, kind: str, name: str, allowed: list[str] | tuple[str, ...]):
        self.kind, self.name, self.allowed = kind, name, list(allowed)
        super().__init__(f"unknown {kind} {name!r}; allowed values: {', '.join(self.allowed)}")
