"""What keeps a run folder sound under a full disk, a bad file or a second identical run.

* ``AtomicCheckpointIO``: Lightning writes each checkpoint to a temporary file beside it and renames it into
  place, so ``last.ckpt`` is always the previous complete checkpoint or the new complete one. (Lightning's own
  writer goes through fsspec, which stages the file in the system temp folder and *copies* it over when that is
  another file system: a full disk then leaves a truncated ``last.ckpt``.) A full disk is one line naming the
  file and the free space.
* ``resume_checkpoint``: the ``last.ckpt`` a run resumes from, checked first: a truncated or corrupt one (left by
  an older version, a crash of the machine, a hand edit) is moved aside with a one-line warning and the run
  resumes from the newest good checkpoint in the folder, else from the start; a file holding pickled objects
  that are not tensors was not written by training and is refused in one line that says what to delete.
* ``run_lock``: one training process per run folder. A second identical run (same recipe, scale and config
  hash) *waits* for the first, with a one-line note, and then reuses its finished run instead of training the
  same thing again into the same folder.
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO

from mmthesis.core.console import console, err_console
from mmthesis.core.errors import CheckpointError
from mmthesis.core.io import atomic_write_bytes, free_bytes, write_error

LAST = "last.ckpt"
_RANK_VARS = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")


def launched_rank_zero() -> bool:
    """False in a process that a launcher started as a non-zero rank (Lightning's DDP workers, torchrun, srun).

    Read from the environment because those processes run the whole command again before a Trainer exists;
    only rank 0 takes the run lock and writes the run folder.
    """
    return all(os.environ.get(v, "0") in ("", "0") for v in _RANK_VARS)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into memory, then a temporary file in the checkpoint's folder, fsync, rename."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        data = buffer.getbuffer()
        free = free_bytes(path)
        if free is not None and free < len(data):
            raise write_error(path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), needed=len(data), free=free)
        try:
            atomic_write_bytes(path, data)
        except OSError as e:
            raise write_error(path, e, needed=len(data)) from e


def _problem(path: Path) -> tuple[str, bool] | None:
    """(what is wrong, whether it is unsafe rather than broken) for a checkpoint that cannot be resumed from."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as e:
                if "mmap" not in str(e):
                    raise
                ckpt = torch.load(path, map_location="cpu", weights_only=True)  # an old, non-zip file
    except pickle.UnpicklingError as e:
        if "weights_only" in str(e) or "GLOBAL" in str(e):
            line = next((x for x in str(e).splitlines() if "GLOBAL" in x or "Unsupported" in x), "")
            return (line.strip().split(". ")[0][:120] or "pickled objects that are not tensors"), True
        return f"unreadable: {str(e).splitlines()[0][:120] if str(e) else type(e).__name__}", False
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, IndexError, KeyError) as e:
        first = str(e).strip().splitlines()[0].split(". ")[0][:120] if str(e).strip() else type(e).__name__
        return f"truncated or corrupt: {first}", False
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "global_step" not in ckpt:
        return "not a Lightning training checkpoint (no state_dict / global_step)", False
    return None


def resume_checkpoint(ckpt_dir: Path) -> Path | None:
    """The checkpoint a run in ``ckpt_dir`` resumes from (``last.ckpt`` when sound), or None to start fresh.

    A broken ``last.ckpt`` is renamed ``last.ckpt.corrupt-<UTC time>`` (kept for inspection) with a warning,
    and the newest sound ``*.ckpt`` beside it is used instead, if any. An unsafe one is a ``CheckpointError``.
    """
    last = ckpt_dir / LAST
    if not last.is_file():
        return None
    problem = _problem(last)
    if problem is None:
        return last
    what, unsafe = problem
    if unsafe:
        raise CheckpointError(
            f"{last} holds pickled objects that are not tensors ({what}); training never writes such a file",
            f"delete it to train this run from the start: rm {last}",
        )
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    aside = last.with_name(f"{LAST}.corrupt-{stamp}")
    os.replace(last, aside)
    others = sorted(ckpt_dir.glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    good = next((p for p in others if _problem(p) is None), None)
    err_console.print(
        f"[yellow]warning:[/] {last} is {what}; moved to {aside.name},"
        f" {f'resuming from {good.name}' if good else 'training from the start'}",
        soft_wrap=True,
        highlight=False,
    )
    return good


@contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Hold ``<folder>.lock`` (beside the run folder, so no folder is made before training starts).

    A second process for the same folder waits here until the first one ends (finished or failed) instead of
    training the same run into the same files. Non-zero ranks of a multi-process run do not lock (their rank 0
    holds it for them).
    """
    if not launched_rank_zero():
        yield
        return
    from filelock import FileLock, Timeout

    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder.parent / f"{folder.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        console.print(f"another process is training this run ({folder}); waiting for it to finish")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
