"""The project's error types. An error of these types is expected (bad input, a missing
file or package) and its message says what to do: the command line prints it as one
line. Anything else is a bug and shows its traceback."""
from __future__ import annotations


class TransfigureError(Exception):
    """An expected error whose message names the file or option and what to do."""


class UsageError(TransfigureError, ValueError):
    """A bad option, file or input (a ValueError, for callers that catch those)."""


class SetupError(TransfigureError, RuntimeError):
    """Something missing from the machine: a package, a device, a download."""
