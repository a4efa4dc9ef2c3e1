"""The prepared-dataset format: tar shards per split plus ``manifest.json``.

Why tar shards (webdataset layout: ``<key>.<ext>`` members, one sample per
key): the thesis's image-text corpora are ~1 TB of small files; sequential
shard reads are what GPUs need, shards split cleanly across ranks and
workers, and the ``webdataset`` library and every tar tool read them. Small
splits (smoke, eval sets) are simply read whole.

Why our own writer: shards must be byte-for-byte reproducible (so a resumed
preparation equals an uninterrupted one and checksums are meaningful), which
needs fixed member order, mtime, owner and mode; ``webdataset.TarWriter``
stamps the current time. Each shard is written atomically with a sidecar
record (``shard-NNNNNN.tar.json``: sha256, sample count, skipped items), so a
killed preparation resumes at the first missing shard. ``manifest.json`` is
written last and only then marks the dataset complete.
"""

from __future__ import annotations

import dataclasses
import io
import json
import tarfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from mmthesis.core.errors import DataMissingError
from mmthesis.core.io import atomic_path, atomic_write_json, sha256_file
from mmthesis.core.paths import data_root

MANIFEST = "manifest.json"
FORMAT = "mmthesis-wds-v1"
Sample = dict[str, Any]  # "__key__": str, other keys: extension -> bytes


@dataclasses.dataclass(frozen=True)
class Skipped:
    """An input item that was not written, and why (counted in the manifest)."""

    id: str
    reason: str


@dataclasses.dataclass
class ShardRecord:
    file: str  # relative to the dataset folder
    sha256: str
    samples: int
    bytes: int
    skipped: list[dict[str, str]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Manifest:
    name: str
    splits: dict[str, dict[str, Any]]  # split -> {"samples": n, "shards": [ShardRecord as dict], **extra counts}
    config: dict[str, Any]
    stats: dict[str, Any] = dataclasses.field(default_factory=dict)
    skipped: dict[str, int] = dataclasses.field(default_factory=dict)  # reason -> count
    format: str = FORMAT
    complete: bool = True

    def samples(self, split: str) -> int:
        return int(self.split(split)["samples"])

    def split(self, split: str) -> dict[str, Any]:
        if split not in self.splits:
            raise DataMissingError(
                f"dataset {self.name!r} has no split {split!r}", f"available splits: {', '.join(self.splits)}"
            )
        return self.splits[split]

    def shard_paths(self, root: Path, split: str) -> list[Path]:
        return [root / s["file"] for s in self.split(split)["shards"]]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def dataset_dir(name: str, root: Path | None = None) -> Path:
    return (root or data_root()) / name


def read_manifest(name: str, root: Path | None = None, prepare_hint: str | None = None) -> Manifest:
    """The manifest of prepared dataset ``name``; a clear error with the fix if it is absent."""
    path = dataset_dir(name, root) / MANIFEST
    hint = prepare_hint or f"mmthesis data prepare {name}"
    if not path.is_file():
        raise DataMissingError(f"dataset {name!r} is not prepared (no {path})", f"run `{hint}`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        manifest = Manifest(**data)
    except (ValueError, TypeError) as e:
        raise DataMissingError(f"manifest {path} is unreadable ({e})", f"re-run `{hint}`") from e
    if not manifest.complete:
        raise DataMissingError(f"dataset {name!r} was only partly prepared", f"re-run `{hint}` to resume")
    return manifest


def write_manifest(folder: Path, manifest: Manifest) -> Path:
    path = folder / MANIFEST
    atomic_write_json(path, manifest.to_json())
    return path


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_shard(path: Path, samples: Iterable[Sample]) -> tuple[int, int]:
    """Write samples into a deterministic tar at ``path`` atomically; returns (samples, bytes)."""
    count = 0
    with atomic_path(path) as tmp:
        with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
            for sample in samples:
                key = sample["__key__"]
                if "." in key or "/" in key:
                    raise ValueError(f"sample key {key!r} must not contain '.' or '/'")
                for ext in sorted(k for k in sample if k != "__key__"):
                    data = sample[ext]
                    if isinstance(data, str):
                        data = data.encode("utf-8")
                    elif not isinstance(data, bytes):
                        data = json.dumps(data, sort_keys=True, ensure_ascii=False).encode("utf-8")
                    tar.addfile(_tarinfo(f"{key}.{ext}", len(data)), io.BytesIO(data))
                count += 1
        size = tmp.stat().st_size
    return count, size


def read_shard(path: Path) -> Iterator[Sample]:
    """Samples of one shard in stored order; ``json`` members are decoded, others stay bytes."""
    if not path.is_file():
        raise DataMissingError(f"shard {path} is missing", "re-run the dataset's `mmthesis data prepare` command")
    try:
        with tarfile.open(path, "r") as tar:
            current: Sample | None = None
            for member in tar:
                if not member.isfile():
                    continue
                key, _, ext = member.name.partition(".")
                if "/" in member.name or member.name.startswith(".."):
                    raise DataMissingError(
                        f"shard {path} has an unsafe member name {member.name!r}", "re-prepare the dataset"
                    )
                f = tar.extractfile(member)
                data = f.read() if f is not None else b""
                if current is None or current["__key__"] != key:
                    if current is not None:
                        yield current
                    current = {"__key__": key}
                current[ext] = json.loads(data) if ext == "json" else data
            if current is not None:
                yield current
    except tarfile.TarError as e:
        raise DataMissingError(f"shard {path} is corrupt ({e})", "run `mmthesis data verify` and re-prepare") from e


def iter_split(name: str, split: str, root: Path | None = None) -> Iterator[Sample]:
    """All samples of a prepared split, shard by shard."""
    manifest = read_manifest(name, root)
    folder = dataset_dir(name, root)
    for path in manifest.shard_paths(folder, split):
        yield from read_shard(path)


PARTLY_SKIPPED = "__skipped__"  # optional sample entry: list[Skipped] of dropped parts, counted, not written
SampleFn = Callable[[Any], "Sample | Skipped"]


NOT_UTF8 = "text not UTF-8"


def _writable_text(sample: Sample) -> bool:
    """Whether every text member of ``sample`` encodes as UTF-8, as ``write_shard`` will encode it."""
    try:
        for key, value in sample.items():
            if key == PARTLY_SKIPPED or isinstance(value, bytes):
                continue
            text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)
            text.encode("utf-8")
    except (UnicodeEncodeError, TypeError, ValueError):
        return False
    return True


def prepare_shard(folder: Path, rel_file: str, items: list[Any], make_sample: SampleFn) -> ShardRecord:
    """Build one shard from raw items (skipping bad ones) unless its sidecar says it is done."""
    path = folder / rel_file
    sidecar = path.with_name(path.name + ".json")
    if path.is_file() and sidecar.is_file():
        try:
            record = ShardRecord(**json.loads(sidecar.read_text(encoding="utf-8")))
            if record.file == rel_file and record.sha256 == sha256_file(path):
                return record
        except (ValueError, TypeError):
            pass
    samples: list[Sample] = []
    skipped: list[dict[str, str]] = []
    for item in items:
        result = make_sample(item)
        if isinstance(result, Skipped):
            skipped.append({"id": result.id, "reason": result.reason})
        elif not _writable_text(result):  # e.g. a lone surrogate in an id: would abort the whole shard
            skipped.append({"id": str(result.get("__key__", "")), "reason": NOT_UTF8})
        else:
            # a kept sample may carry parts that were dropped (e.g. one bad caption of five)
            skipped.extend({"id": p.id, "reason": p.reason} for p in result.pop(PARTLY_SKIPPED, ()))
            samples.append(result)
    count, size = write_shard(path, samples)
    record = ShardRecord(file=rel_file, sha256=sha256_file(path), samples=count, bytes=size, skipped=skipped)
    atomic_write_json(sidecar, dataclasses.asdict(record))
    return record


def verify(name: str, root: Path | None = None) -> list[str]:
    """Re-check every shard's checksum; returns a list of problems (empty when all good)."""
    manifest = read_manifest(name, root)
    folder = dataset_dir(name, root)
    problems = []
    for split, info in manifest.splits.items():
        for shard in info["shards"]:
            path = folder / shard["file"]
            if not path.is_file():
                problems.append(f"{split}: {shard['file']} is missing")
            elif sha256_file(path) != shard["sha256"]:
                problems.append(f"{split}: {shard['file']} checksum mismatch")
    return problems


FINGERPRINT = "raw_fingerprint"  # config key: what the raw inputs looked like (see raw_files)
# config keys added with the fingerprint; a manifest written before them differs from today's config only there
_LATER_KEYS = (FINGERPRINT, "max_image_pixels")


def _without_later_keys(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in _LATER_KEYS}


def prepared_status(
    folder: Path,
    config: dict[str, Any],
    required: tuple[str, ...] = ("tokenizer.json",),
    verify_files: bool = True,
) -> tuple[Manifest | None, str]:
    """The reusable manifest in ``folder`` (or None) and why: ``same``, ``legacy``, ``raw changed: ...``, ``other``.

    ``legacy``: prepared by a version that recorded no raw fingerprint, otherwise with the same config;
    it is reused (re-preparing 1 TB for a format upgrade is not wanted) with a note that changes to
    the raw files are not detected there. ``raw changed``: same config, different raw inputs.
    """
    if not (folder / MANIFEST).is_file() or not all((folder / f).is_file() for f in required):
        return None, "other"
    try:
        manifest = read_manifest(folder.name, folder.parent)
    except DataMissingError:
        return None, "other"
    old = manifest.config
    if old != config:
        if _without_later_keys(old) != _without_later_keys(config):
            return None, "other"
        if FINGERPRINT in old and FINGERPRINT in config and old[FINGERPRINT] != config[FINGERPRINT]:
            from mmthesis.data.raw_files import describe_change

            return None, f"raw changed: {describe_change(old[FINGERPRINT], config[FINGERPRINT])}"
        if FINGERPRINT in old or old.get("max_image_pixels", config.get("max_image_pixels")) != config.get(
            "max_image_pixels"
        ):
            return None, "other"
        status = "legacy"
    else:
        status = "same"
    if verify_files and verify(folder.name, folder.parent):
        return None, "other"
    return manifest, status


def already_prepared(
    folder: Path,
    config: dict[str, Any],
    required: tuple[str, ...] = ("tokenizer.json",),
    verify_files: bool = True,
) -> Manifest | None:
    """The complete, verified manifest in ``folder`` if it was prepared with ``config``, else None.

    A different config, a missing ``required`` file, or a missing/modified shard means prepare
    again (shards whose checksums still match are kept by ``prepare_shard``). ``verify_files=False``
    trusts the manifest's checksums without re-hashing the files (the large datasets; `mmthesis
    data verify` checks them). A manifest from before raw fingerprints is accepted (``prepared_status``).
    """
    return prepared_status(folder, config, required, verify_files)[0]


def reuse_prepared(
    name: str,
    folder: Path,
    config: dict[str, Any],
    required: tuple[str, ...] = ("tokenizer.json",),
    verify_files: bool = True,
) -> Manifest | None:
    """``already_prepared``, saying "NAME: already prepared at FOLDER" when it reuses one, and what changed
    when the raw inputs did: what every preparer does first (``if (m := reuse_prepared(...)) is not None: return m``)."""
    from mmthesis.core.console import console

    existing, status = prepared_status(folder, config, required, verify_files)
    if status == "same":
        console.print(f"{name}: already prepared at {folder}")
    elif status == "legacy":
        console.print(
            f"{name}: already prepared at {folder} by an older version that did not record its raw inputs, "
            f"so changes to them are not detected (`mmthesis data prepare ... --force` prepares it again)"
        )
    elif status.startswith("raw changed"):
        console.print(f"{name}: the raw inputs changed since {folder} was prepared ({status[13:]}): preparing again")
    return existing
