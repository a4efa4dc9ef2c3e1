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


def _size(n: int) -> str:
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n} bytes"


def storage_error(
    path: str | os.PathLike[str], error: OSError, needed: int | None = None, free: int | None = None
) -> StorageError:
    """The one-line ``StorageError`` for a failed write of ``path``: disk full (with the free space), read-only
    or not writable; why: an ``OSError`` traceback from deep inside a library names neither the file nor the fix."""
    free = free_bytes(path) if free is None else free
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        need = f", {_size(needed)} needed" if needed is not None else ""
        have = _size(free) if free is not None else "unknown"
        return StorageError(
            f"disk full while writing {os.fspath(path)} ({have} free{need})",
            "free space on that disk or point MMTHESIS_HOME at a larger one",
        )
    if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return StorageError(
            f"cannot write {os.fspath(path)}: {error.strerror or error}",
            "make the folder writable or point MMTHESIS_HOME elsewhere",
        )
    return StorageError(f"writing {os.fspath(path)} failed: {error.strerror or error}")
