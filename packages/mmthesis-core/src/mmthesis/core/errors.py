"""User-facing errors.

Every error a user can cause (bad input, missing data, unknown name) is an
``MMThesisError``: it names the thing that is wrong and the fix, and the CLI
prints it as one line and exits non-zero instead of showing a traceback.
"""

from __future__ import annotations


class MMThesisError(Exception):
    """An error caused by input or environment, reported as one line.

    ``fix`` is the concrete action that resolves it (usually a command).
    """

    exit_code = 2

    def __init__(self, message: str, fix: str | None = None) -> None:
        self.message = message.strip().replace("\n", " ")
        self.fix = fix.strip().replace("\n", " ") if fix else None
        super().__init__(self.one_line())

    def one_line(self) -> str:
        return f"{self.message} (fix: {self.fix})" if self.fix else self.message


class ConfigError(MMThesisError):
    """A config key is unknown, has the wrong type, or a YAML file is malformed."""


class DataMissingError(MMThesisError):
    """A dataset (or one of its files) has not been prepared, or is corrupt."""


class CheckpointError(MMThesisError):
    """A checkpoint is missing, corrupt, of an unknown format, or unsafe to load."""


class UnknownNameError(MMThesisError):
    """A registry lookup (recipe, table, task, dataset, teacher) failed."""


class StorageError(MMThesisError):
    """Writing to disk failed: the disk is full, read-only, or the folder is not writable (one line naming the path;
    built by ``mmthesis.core.io.storage_error``)."""
