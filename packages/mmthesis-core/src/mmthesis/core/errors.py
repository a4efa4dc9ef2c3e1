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
    """A write failed because the disk is full, read-only or not writable: one line naming the path."""


def format_bytes(n: float) -> str:
    """``1.5 kB``, ``23.4 MB``, ``1.2 TB`` (decimal units, as ``df -H``)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def storage_error(error: OSError, path: str | None = None, needed: int | None = None) -> StorageError | None:
    """``error`` as a one-line ``StorageError`` (free space on that disk, and ``needed`` bytes if known),
    or None when it is not a full / read-only / permission error (then it is a bug, not the user's)."""
    import errno
    import os
    import shutil

    kinds = {
        errno.ENOSPC: "no space left on the disk",
        errno.EDQUOT: "disk quota exceeded",
        errno.EROFS: "read-only file system",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
    }
    if error.errno not in kinds:
        return None
    where = str(error.filename or path or "?")
    message = f"cannot write {where}: {kinds[error.errno]}"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        probe = os.path.abspath(where) if where != "?" else os.getcwd()
        while probe and not os.path.exists(probe) and os.path.dirname(probe) != probe:
            probe = os.path.dirname(probe)
        try:
            free = f"{format_bytes(shutil.disk_usage(probe).free)} free there"
        except OSError:
            free = "free space unknown"
        message += f" ({free}" + (f", about {format_bytes(needed)} more needed)" if needed else ")")
        fix = (
            "free space on that disk, or point MMTHESIS_HOME (or --out) at a disk with room, and run the command again"
        )
    else:
        fix = "point MMTHESIS_HOME (or --out) at a writable folder, or make that folder writable, and run the command again"
    return StorageError(message, fix)
