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
* ``check_launch``: under torchrun or srun, ``train.devices × train.num_nodes`` must match what the launcher
  started; Lightning's own check of that is a traceback deep inside the Trainer, this is one line first.
"""

from __future__ import annotations

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
from mmthesis.core.errors import CheckpointError, ConfigError
from mmthesis.core.io import checked_atomic_write

LAST = "last.ckpt"
_RANK_VARS = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")


def launched_rank_zero() -> bool:
    """False in a process that a launcher started as a non-zero rank (Lightning's DDP workers, torchrun, srun).

    Read from the environment because those processes run the whole command again before a Trainer exists;
    only rank 0 takes the run lock and writes the run folder.
    """
    return all(os.environ.get(v, "0") in ("", "0") for v in _RANK_VARS)


def check_launch(devices: int, num_nodes: int) -> None:
    """A one-line ``ConfigError`` when torchrun's or SLURM's process layout does not match ``devices × num_nodes``.

    The check is Lightning's own (its cluster environments' ``validate_settings``, with the same detection); only
    the traceback it would raise from inside ``Trainer`` becomes one line with the launcher's numbers.
    """
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    if TorchElasticEnvironment.detect():
        env, launcher = TorchElasticEnvironment(), "torchrun"
        layout = f"WORLD_SIZE={env.world_size()}, {os.environ.get('LOCAL_WORLD_SIZE', '?')} per node"
    elif SLURMEnvironment.detect():
        env, launcher = SLURMEnvironment(), "srun"
        layout = f"--nodes={os.environ.get('SLURM_NNODES', '?')} --ntasks-per-node={os.environ.get('SLURM_NTASKS_PER_NODE', '?')}"
    else:
        return
    try:
        env.validate_settings(num_devices=devices, num_nodes=num_nodes)
    except ValueError as e:
        raise ConfigError(
            f"train.devices={devices} x train.num_nodes={num_nodes} does not match the processes {launcher} started"
            f" ({layout})",
            "set train.devices to the processes per node and train.num_nodes to the nodes of the launch",
        ) from e


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into memory, then a temporary file in the checkpoint's folder, fsync, rename."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        checked_atomic_write(path, buffer.getbuffer())


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
