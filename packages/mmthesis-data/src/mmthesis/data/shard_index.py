"""Random access to the samples of a prepared split, without holding them in memory.

Why: training needs a map-style dataset (the exact-resume sampler of
mmthesis-students replays an index order; Lightning's DDP splits indices per
rank), but the pretraining corpora (~1 TB) and ImageNet-1k (~140 GB) cannot be
decoded into memory. Our shards are plain uncompressed tars, so one pass over
their headers gives each sample's byte range; a sample is then one ``pread``.
``ShardStream`` stays the choice for sequential reading from slow or remote
storage; this index is for local disks, where random reads are cheap.

The index (per sample: shard, byte range, label, number of captions) is a few
tens of bytes per sample, kept in numpy arrays (shared copy-on-write with
DataLoader workers, no per-sample Python objects) and cached beside the
shards as ``index/<split>.npz``, keyed by the shards' checksums so a
re-prepared dataset is re-indexed. A read-only dataset folder just skips the
cache.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np

from mmthesis.core.errors import DataMissingError
from mmthesis.core.io import atomic_path, sha256_json
from mmthesis.data.manifest import Sample, dataset_dir, read_manifest

INDEX_DIR = "index"
_BLOCK = 512  # tar block size: member data is padded to a multiple of it
_NO_LABEL = -1


def _padded(size: int) -> int:
    return -(-size // _BLOCK) * _BLOCK


def _ustar_members(data: bytes) -> list[tuple[str, bytes]] | None:
    """(name, body) of each member of a byte range of plain USTAR regular files, or None if it is not that.

    Our shards are written by ``manifest.write_shard`` as exactly that, and parsing the
    headers directly is ~10x cheaper than ``tarfile`` per sample; anything else falls back.
    """
    out, pos = [], 0
    while pos + _BLOCK <= len(data):
        header = data[pos : pos + _BLOCK]
        if header[257:262] != b"ustar" or header[156:157] not in (b"0", b"\0"):
            return None
        stored = int(header[148:156].strip(b"\0 ") or b"0", 8)
        if stored != sum(header[:148]) + 8 * 32 + sum(header[156:]):  # the checksum field counts as spaces
            return None
        size = int(header[124:136].strip(b"\0 ") or b"0", 8)
        name = header[:100].split(b"\0", 1)[0]
        prefix = header[345:500].split(b"\0", 1)[0]
        full = (prefix + b"/" + name if prefix else name).decode("utf-8")
        out.append((full, data[pos + _BLOCK : pos + _BLOCK + size]))
        pos += _BLOCK + _padded(size)
    return out if pos == len(data) else None


def _tarfile_members(data: bytes) -> list[tuple[str, bytes]]:
    out = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for member in tar:
            f = tar.extractfile(member)
            out.append((member.name, f.read() if f is not None else b""))
    return out


def _parse_members(data: bytes, what: str) -> Sample:
    """The members of one sample's byte range (tar headers + data) as a sample dict."""
    sample: Sample = {}
    try:
        members = _ustar_members(data)
        for name, body in members if members is not None else _tarfile_members(data):
            key, _, ext = name.partition(".")
            sample["__key__"] = key
            sample[ext] = json.loads(body) if ext == "json" else body
    except (tarfile.TarError, ValueError) as e:
        raise DataMissingError(f"{what} is corrupt ({e})", "run `mmthesis data verify` and re-prepare") from e
    if "__key__" not in sample:
        raise DataMissingError(f"{what} is empty", "run `mmthesis data verify` and re-prepare")
    return sample


def _label_of(ext: str, body: bytes) -> int | None:
    if ext == "cls":
        return int(body.decode().strip())
    if ext == "json":
        meta = json.loads(body)
        label = meta.get("label")
        return None if label is None else int(label)
    return None


def _captions_of(body: bytes) -> int:
    meta = json.loads(body)
    if "captions" in meta:
        return len(meta["captions"])
    return int("caption" in meta)


def _index_shard(path: Path) -> dict[str, list[int]]:
    """One pass over a shard's headers; only the small ``json``/``cls`` members are read."""
    out: dict[str, list[int]] = {"start": [], "end": [], "label": [], "captions": []}
    current = None
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, _, ext = member.name.partition(".")
                if key != current:
                    current = key
                    out["start"].append(member.offset)
                    out["end"].append(0)
                    out["label"].append(_NO_LABEL)
                    out["captions"].append(0)
                out["end"][-1] = member.offset_data + _padded(member.size)
                if ext in ("json", "cls"):
                    f = tar.extractfile(member)
                    body = f.read() if f is not None else b""
                    label = _label_of(ext, body)
                    if label is not None:
                        out["label"][-1] = label
                    if ext == "json":
                        out["captions"][-1] = _captions_of(body)
    except FileNotFoundError as e:
        raise DataMissingError(f"shard {path} is missing", "re-run the dataset's `mmthesis data prepare`") from e
    except (tarfile.TarError, ValueError) as e:
        raise DataMissingError(f"shard {path} is corrupt ({e})", "run `mmthesis data verify` and re-prepare") from e
    return out


class SplitIndex:
    """Byte ranges of every sample of a prepared split; ``sample(i)`` reads sample ``i`` from its shard.

    Attributes (numpy arrays, one entry per sample in shard order): ``shard``,
    ``start``, ``end``, ``label`` (-1 = none) and ``captions`` (caption count).
    """

    def __init__(self, name: str, split: str, root: Path | None = None, cache: bool = True) -> None:
        manifest = read_manifest(name, root)
        folder = dataset_dir(name, root)
        self.name, self.split = name, split
        self.shards = [str(p) for p in manifest.shard_paths(folder, split)]
        fingerprint = sha256_json([s["sha256"] for s in manifest.split(split)["shards"]])
        cache_file = folder / INDEX_DIR / f"{split}.npz"
        arrays = self._load(cache_file, fingerprint) if cache else None
        if arrays is None:
            arrays = self._build()
            if cache:
                self._save(cache_file, fingerprint, arrays)
        self.shard, self.start, self.end = arrays["shard"], arrays["start"], arrays["end"]
        self.label, self.captions = arrays["label"], arrays["captions"]
        self._fds: dict[int, int] = {}
        self._pid = os.getpid()

    def _build(self) -> dict[str, np.ndarray]:
        parts = [_index_shard(Path(p)) for p in self.shards]
        return {
            "shard": np.concatenate([np.full(len(p["start"]), i, dtype=np.int32) for i, p in enumerate(parts)])
            if parts
            else np.zeros(0, dtype=np.int32),
            **{
                field: np.asarray([v for p in parts for v in p[field]], dtype=np.int64)
                for field in ("start", "end", "label")
            },
            "captions": np.asarray([v for p in parts for v in p["captions"]], dtype=np.int32),
        }

    @staticmethod
    def _load(path: Path, fingerprint: str) -> dict[str, np.ndarray] | None:
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["fingerprint"]) != fingerprint:
                    return None
                return {k: z[k] for k in ("shard", "start", "end", "label", "captions")}
        except (OSError, KeyError, ValueError):
            return None

    @staticmethod
    def _save(path: Path, fingerprint: str, arrays: dict[str, np.ndarray]) -> None:
        try:
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, fingerprint=np.asarray(fingerprint), **arrays)
        except OSError:
            pass  # read-only dataset folder: index again next time

    def __len__(self) -> int:
        return len(self.start)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_fds"] = {}  # file descriptors do not travel to worker processes
        return state

    def _fd(self, shard: int) -> int:
        if self._pid != os.getpid():  # forked DataLoader worker: open its own files
            self._fds, self._pid = {}, os.getpid()
        fd = self._fds.get(shard)
        if fd is None:
            try:
                fd = os.open(self.shards[shard], os.O_RDONLY)
            except FileNotFoundError as e:
                raise DataMissingError(
                    f"shard {self.shards[shard]} is missing", f"re-run `mmthesis data prepare {self.name}`"
                ) from e
            self._fds[shard] = fd
        return fd

    def sample(self, i: int) -> Sample:
        """Sample ``i``: ``__key__`` plus one entry per member (``json`` decoded, others bytes)."""
        shard, start, end = int(self.shard[i]), int(self.start[i]), int(self.end[i])
        data = os.pread(self._fd(shard), end - start, start)
        what = f"sample {i} of {self.name}/{self.split} ({self.shards[shard]})"
        if len(data) != end - start:
            raise DataMissingError(f"{what} is truncated", f"run `mmthesis data verify {self.name}`")
        return _parse_members(data, what)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}

    def __del__(self) -> None:
        try:
            if self._pid == os.getpid():
                self.close()
        except (AttributeError, OSError):
            pass
