"""Atomic file writes and content hashing.

Outputs are written to a temporary file in the target folder and renamed into
place, so a crash or kill never leaves a half-written result, manifest or table.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mmthesis.core.errors import StorageError


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_json(obj: Any) -> str:
    """Hash of a JSON-serialisable object, independent of key order."""
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def free_bytes(path: str | os.PathLike[str]) -> int | None:
    """Free space of the file system holding ``path`` (its nearest existing parent); None if unknown."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def format_bytes(n: float) -> str:
    """``1.5 kB``, ``23.4 MB``, ``1.2 TB`` (decimal units, as ``df -H``)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


_STORAGE_ERRNOS = {
    errno.ENOSPC: "no space left on the disk",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


def storage_error(
    error: OSError, path: str | os.PathLike[str] | None = None, needed: int | None = None, free: int | None = None
) -> StorageError | None:
    """``error`` as a one-line ``StorageError`` naming the path (and for a full disk the free space there and the
    ``needed`` bytes if known), or None when it is not a full / read-only / permission error (then it is a bug or a
    missing input, not the disk). Why: an ``OSError`` from deep inside a library names neither the file nor the fix."""
    if error.errno not in _STORAGE_ERRNOS:
        return None
    where = os.fspath(path if path is not None else (error.filename or "?"))
    message = f"cannot write {where}: {_STORAGE_ERRNOS[error.errno]}"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        free = free_bytes(where) if free is None and where != "?" else free
        have = f"{format_bytes(free)} free there" if free is not None else "free space unknown"
        message += f" ({have}" + (f", about {format_bytes(needed)} more needed)" if needed else ")")
        fix = "free space on that disk, or point MMTHESIS_HOME (or --out) at a disk with room, and run the command again"
    else:
        fix = "point MMTHESIS_HOME (or --out) at a writable folder, or make that folder writable, and run the command again"
    return StorageError(message, fix)


def write_error(
    path: str | os.PathLike[str], error: OSError, needed: int | None = None, free: int | None = None
) -> StorageError:
    """The one-line error for a failed write of ``path``: ``storage_error``'s, else the OS's message with the path."""
    return storage_error(error, path, needed, free) or StorageError(
        f"writing {os.fspath(path)} failed: {error.strerror or error}"
    )


def checked_atomic_write(path: str | os.PathLike[str], data: bytes | memoryview) -> None:
    """``atomic_write_bytes``, refused up front when the disk has less free space than ``data``; any failure is
    ``write_error``'s one line. Why one function: weights and training checkpoints must fail the same way (the old
    file intact, no temporary left, the path and the space needed named)."""
    free = free_bytes(path)
    if free is not None and free < len(data):
        raise write_error(path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), needed=len(data), free=free)
    try:
        atomic_write_bytes(path, data)
    except OSError as e:
        raise write_error(path, e, needed=len(data)) from e
