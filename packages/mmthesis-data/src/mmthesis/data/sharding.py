"""Split-level preparation: stream raw items into shards, in parallel, resumably.

Items are cut into consecutive groups of ``samples_per_shard`` *input* items,
so shard k always holds the same items whatever was skipped or interrupted;
that makes a resumed run byte-identical to an uninterrupted one. Memory is
bounded by ``workers`` groups in flight, independent of dataset size.

Worker processes ignore SIGINT (they start with it ignored): Ctrl-C reaches
the parent only, which stops the pool and raises one ``KeyboardInterrupt``
instead of every worker printing its own traceback. A full or read-only disk
becomes one ``StorageError`` naming the shard and the space still needed.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing as mp
import signal
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mmthesis.core.console import progress
from mmthesis.core.errors import storage_error
from mmthesis.core.io import atomic_write_json
from mmthesis.data.manifest import MANIFEST, Manifest, SampleFn, ShardRecord, prepare_shard, write_manifest


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def _run(args: tuple[Path, str, list[Any], SampleFn]) -> ShardRecord:
    return prepare_shard(*args)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _pool(workers: int) -> Any:
    """A spawn pool whose workers ignore SIGINT from their first instruction on.

    An ignored signal stays ignored across exec and Python then installs no KeyboardInterrupt
    handler, so SIGINT is ignored while the parent creates the pool; the initializer repeats it.
    """
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return mp.get_context("spawn").Pool(workers, initializer=_ignore_sigint)
    finally:
        signal.signal(signal.SIGINT, previous)


def prepare_split(
    folder: Path,
    split: str,
    items: Iterable[Any],
    make_sample: SampleFn,
    *,
    samples_per_shard: int = 1000,
    workers: int = 1,
    total: int | None = None,
    description: str | None = None,
    expected_bytes: int | None = None,
) -> dict[str, Any]:
    """Write ``folder/split/shard-NNNNNN.tar`` from ``items``; returns the split's manifest entry.

    ``expected_bytes`` (about the split's size once written, e.g. its raw images' total) lets a full
    disk say how much more space the split needs; without it the shards written so far estimate it.
    """
    (folder / split).mkdir(parents=True, exist_ok=True)
    jobs = (
        (folder, f"{split}/shard-{k:06d}.tar", chunk, make_sample)
        for k, chunk in enumerate(_chunks(items, samples_per_shard))
    )
    records: list[ShardRecord] = []
    n_shards = None if total is None else -(-total // samples_per_shard)
    try:
        with progress() as bar:
            task = bar.add_task(description or f"{folder.name}/{split}", total=n_shards)
            if workers <= 1:
                for job in jobs:
                    records.append(_run(job))
                    bar.advance(task)
            else:
                with _pool(workers) as pool:  # leaving the block terminates the workers (also on Ctrl-C)
                    while window := list(itertools.islice(jobs, 2 * workers)):
                        for record in pool.imap(_run, window):
                            records.append(record)
                            bar.advance(task)
    except OSError as e:
        written = sum(r.bytes for r in records)
        estimates = [] if expected_bytes is None else [max(expected_bytes - written, 0)]
        if records and n_shards:  # the shards still to write, at the average size of those written
            estimates.append(written // len(records) * (n_shards - len(records)))
        needed = max(estimates) if estimates else None
        error = storage_error(e, str(folder / split), needed)
        if error is None:
            raise
        raise error from e
    skipped = [s for r in records for s in r.skipped]
    return {
        "samples": sum(r.samples for r in records),
        "skipped": len(skipped),
        "shards": [r.__dict__ for r in records],
    }


CONFIG_MARKER = ".prepare-config.json"


def discard_prepared(folder: Path) -> None:
    """Remove a prepared dataset's manifest, config record and shards (``data prepare --force``)."""
    for path in [*folder.glob("*/shard-*.tar*"), *folder.glob("*/.shard-*.tmp")]:
        path.unlink()
    (folder / MANIFEST).unlink(missing_ok=True)
    (folder / CONFIG_MARKER).unlink(missing_ok=True)


def begin_preparation(folder: Path, config: dict[str, Any]) -> None:
    """Record the config a preparation runs with; first remove shards and manifest made with another config.

    Resuming reuses shard k when its sidecar checksum matches, which is only sound if shard k holds
    the same items, i.e. the config is unchanged. Call this before ``prepare_split``.
    """
    wanted = json.loads(json.dumps(config, sort_keys=True, default=str))
    marker = folder / CONFIG_MARKER
    previous: Any = None
    try:
        if marker.is_file():
            previous = json.loads(marker.read_text(encoding="utf-8"))
        elif (folder / MANIFEST).is_file():
            previous = json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("config")
    except (ValueError, AttributeError):
        previous = {"unreadable": True}
    for stale in folder.glob("*/.shard-*.tmp"):  # temp files of a killed run: never valid output
        stale.unlink()
    if previous is not None and previous != wanted:
        for path in folder.glob("*/shard-*.tar*"):
            path.unlink()
        (folder / MANIFEST).unlink(missing_ok=True)
    atomic_write_json(marker, wanted)


def finish_manifest(
    folder: Path,
    name: str,
    splits: dict[str, dict[str, Any]],
    config: dict[str, Any],
    stats: dict[str, Any] | None = None,
) -> Manifest:
    """Assemble and atomically write the manifest that marks the dataset complete."""
    reasons: Counter[str] = Counter()
    for info in splits.values():
        for shard in info["shards"]:
            reasons.update(s["reason"] for s in shard.get("skipped", []))
    manifest = Manifest(
        name=name, splits=splits, config=config, stats=dict(stats or {}), skipped=dict(sorted(reasons.items()))
    )
    write_manifest(folder, manifest)
    return manifest
