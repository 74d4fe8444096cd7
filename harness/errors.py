"""Errors the user can act on: each names the file, the line and the key at fault."""

from __future__ import annotations


class SticklerError(Exception):
    """Base class for errors reported to the user without a traceback."""

    exit_code = 1


class InputError(SticklerError):
    """Bad user input (a topology, an expectation file, a command-line value)."""

    exit_code = 2

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 key: str | None = None):
        self.file = file
        self.line = line
        self.key = key
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file or "<input>"
        if self.line is not None:
            where += f":{self.line}"
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{key} {self.message}"


class MissingDependency(SticklerError):
    """A binary the run needs is not installed."""

    exit_code = 3


class ClusterError(SticklerError):
    """A process of the cluster failed to start or to become ready."""
