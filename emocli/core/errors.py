"""Errors the user can act on: each names the file (and row, where there is one) and the problem."""

from __future__ import annotations

from pathlib import Path


class EmoError(Exception):
    """An error caused by input or configuration; the CLI prints it without a traceback."""

    def __init__(self, problem: str, path: str | Path | None = None, row: int | str | None = None):
        if "\n" in problem or "\r" in problem:  # a library's multi-line message, quoted: one line on the terminal
            problem = " ".join(problem.split())
        self.problem = problem
        self.path = Path(path) if path is not None else None
        self.row = row
        where = ""
        if self.path is not None:
            where = f"{self.path}"
            if row is not None:
                where += f", row {row}"
            where += ": "
        super().__init__(where + problem)


class DatasetError(EmoError):
    """A dataset folder or manifest does not match what its adapter expects."""


class ExtractionError(EmoError):
    """One input could not be turned into features (recorded in the failures table, never fatal to a run)."""


class ConfigError(EmoError):
    """A preset, override or model configuration is invalid."""


class OutputError(EmoError):
    """A file or folder could not be written: no permission, a full disk, a read-only file system, a parent
    that is a file. Names the path and the operating system's reason."""
