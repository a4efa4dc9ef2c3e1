"""CIFAR-10 / CIFAR-100 from the *binary* release (never the pickled one: unpickling runs code).

Raw layouts (``--raw`` = the extracted folder, or the ``.tar.gz`` itself, read
without extracting; members whose paths would leave the archive folder are refused):

    cifar-10-batches-bin/  data_batch_1..5.bin, test_batch.bin, batches.meta.txt
        record = 1 label byte + 3072 pixel bytes (1024 R, 1024 G, 1024 B; row-major 32x32)
    cifar-100-binary/      train.bin, test.bin, fine_label_names.txt, coarse_label_names.txt
        record = 1 coarse + 1 fine label byte + 3072 pixel bytes (label = fine)

Prepared samples: ``png`` (lossless), ``cls`` (label index), ``json``
``{id, label, label_name[, coarse_label]}``. Splits train (50,000) and test
(10,000; the thesis validates on it). A trailing partial record (truncated
file) or an out-of-range label is skipped and counted.
"""

from __future__ import annotations

import dataclasses
import io
import posixpath
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mmthesis.core.console import console
from mmthesis.core.errors import DataMissingError
from mmthesis.data.manifest import Manifest, Sample, Skipped, dataset_dir, reuse_prepared
from mmthesis.data.registry import DatasetSpec, PrepareRequest, prepared_name, register
from mmthesis.data.sharding import begin_preparation, finish_manifest, prepare_split

FORMAT_VERSION = 1
PIXELS = 3 * 32 * 32
TRUNCATED = "truncated record"
BAD_LABEL = "label out of range"


@dataclasses.dataclass(frozen=True)
class CifarLayout:
    name: str
    folder: str  # folder inside the tarball / raw folder
    files: dict[str, tuple[str, ...]]  # split -> batch files in order
    label_bytes: int
    label_files: tuple[str, ...]  # (fine/only, [coarse])
    num_classes: int
    raw_hint: str


CIFAR10 = CifarLayout(
    "cifar10",
    "cifar-10-batches-bin",
    {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)},
    1,
    ("batches.meta.txt",),
    10,
    "cifar-10-binary.tar.gz (or the extracted cifar-10-batches-bin/)",
)
CIFAR100 = CifarLayout(
    "cifar100",
    "cifar-100-binary",
    {"train": ("train.bin",), "test": ("test.bin",)},
    2,
    ("fine_label_names.txt", "coarse_label_names.txt"),
    100,
    "cifar-100-binary.tar.gz (or the extracted cifar-100-binary/)",
)


@dataclasses.dataclass(frozen=True)
class Record:
    id: str
    labels: tuple[int, ...]  # as stored: (label,) or (coarse, fine)
    pixels: bytes


class RawFiles:
    """The release's files by name, from a folder or a tar(.gz) read in place (no extraction)."""

    def __init__(self, raw: Path, layout: CifarLayout) -> None:
        self.raw, self.layout = Path(raw).expanduser(), layout
        self.fix = f"pass --raw with {layout.raw_hint} from https://www.cs.toronto.edu/~kriz/cifar.html"
        if not self.raw.exists():
            raise DataMissingError(f"{layout.name} raw path {self.raw} does not exist", self.fix)
        self.members: dict[str, tarfile.TarInfo] = {}
        if self.raw.is_file():
            try:
                with tarfile.open(self.raw, "r:*") as tar:
                    for m in tar.getmembers():
                        if not _safe(m.name):
                            raise DataMissingError(
                                f"{self.raw} has a member outside the archive folder ({m.name!r}); refusing to read it",
                                self.fix,
                            )
                        if m.isfile():
                            self.members[posixpath.basename(m.name)] = m
            except (tarfile.TarError, OSError, EOFError) as e:
                raise DataMissingError(f"{self.raw} is not a readable tarball ({e})", self.fix) from e
        else:
            self.folder = self.raw / layout.folder if (self.raw / layout.folder).is_dir() else self.raw

    def exists(self, name: str) -> bool:
        return name in self.members if self.members or self.raw.is_file() else (self.folder / name).is_file()

    def read(self, name: str) -> bytes:
        if not self.exists(name):
            raise DataMissingError(f"{self.raw} lacks {self.layout.folder}/{name}", self.fix)
        if self.raw.is_file():
            try:
                with tarfile.open(self.raw, "r:*") as tar:
                    f = tar.extractfile(self.members[name])
                    return f.read() if f is not None else b""
            except (tarfile.TarError, OSError, EOFError) as e:
                raise DataMissingError(f"{self.raw}: cannot read {name} ({e})", self.fix) from e
        return (self.folder / name).read_bytes()


def _safe(name: str) -> bool:
    norm = posixpath.normpath(name)
    return not (name.startswith(("/", "\\")) or "\\" in name or norm == ".." or norm.startswith("../"))


def label_names(files: RawFiles) -> list[list[str]]:
    out = []
    for name in files.layout.label_files:
        lines = [line.strip() for line in files.read(name).decode("utf-8", "replace").splitlines() if line.strip()]
        out.append(lines)
    if len(out[0]) != files.layout.num_classes:
        raise DataMissingError(
            f"{files.layout.label_files[0]} lists {len(out[0])} classes, expected {files.layout.num_classes}", files.fix
        )
    return out


def records(files: RawFiles, split: str) -> Iterator[Record | Skipped]:
    """Records of a split in file order; one batch file in memory at a time (30 MB)."""
    size = files.layout.label_bytes + PIXELS
    index = 0
    for name in files.layout.files[split]:
        data = files.read(name)
        for start in range(0, len(data), size):
            item_id = f"{split}_{index:05d}"
            chunk = data[start : start + size]
            index += 1
            if len(chunk) < size:
                yield Skipped(item_id, TRUNCATED)
                continue
            yield Record(item_id, tuple(chunk[: files.layout.label_bytes]), chunk[files.layout.label_bytes :])


def to_png(pixels: bytes) -> bytes:
    """3072 channel-planar bytes -> a 32x32 RGB PNG (deterministic encoder settings)."""
    array = np.frombuffer(pixels, dtype=np.uint8).reshape(3, 32, 32).transpose(1, 2, 0)
    buf = io.BytesIO()
    Image.fromarray(array, "RGB").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


@dataclasses.dataclass(frozen=True)
class _MakeSample:
    """Picklable ``make_sample`` (spawned workers need a module-level callable)."""

    names: tuple[tuple[str, ...], ...]

    def __call__(self, item: Record | Skipped) -> Sample | Skipped:
        if isinstance(item, Skipped):
            return item
        label = item.labels[-1]  # CIFAR-100: fine label is the second byte
        if label >= len(self.names[0]) or (len(item.labels) == 2 and item.labels[0] >= len(self.names[1])):
            return Skipped(item.id, BAD_LABEL)
        meta: dict[str, Any] = {"id": item.id, "label": label, "label_name": self.names[0][label]}
        if len(item.labels) == 2:
            meta["coarse_label"] = item.labels[0]
        return {"__key__": item.id, "png": to_png(item.pixels), "cls": str(label), "json": meta}


def prepare_cifar(
    raw: Path, folder: Path, layout: CifarLayout, *, workers: int = 1, samples_per_shard: int = 5000
) -> Manifest:
    """Prepare the binary release at ``raw`` into ``folder`` (resumable; reuses a finished preparation)."""
    files = RawFiles(raw, layout)
    config = {"format_version": FORMAT_VERSION, "raw": str(files.raw.resolve()), "samples_per_shard": samples_per_shard}
    if (existing := reuse_prepared(layout.name, folder, config, required=())) is not None:
        return existing
    names = label_names(files)
    begin_preparation(folder, config)
    make = _MakeSample(tuple(tuple(n) for n in names))
    splits = {
        split: prepare_split(
            folder,
            split,
            records(files, split),
            make,
            samples_per_shard=samples_per_shard,
            workers=workers,
            description=f"{layout.name}/{split}",
        )
        for split in layout.files
    }
    stats = {
        "num_classes": layout.num_classes,
        "label_names": names[0],
        "images": {s: v["samples"] for s, v in splits.items()},
    }
    if len(names) == 2:
        stats["coarse_label_names"] = names[1]
    manifest = finish_manifest(folder, layout.name, splits, config, stats)
    console.print(
        f"{layout.name}: prepared {', '.join(f'{s} {v}' for s, v in stats['images'].items())} images at {folder}"
    )
    return manifest


def _prepare_fn(layout: CifarLayout):  # noqa: ANN202 - a PrepareRequest -> Manifest closure
    def prepare(req: PrepareRequest) -> Manifest:
        if req.raw is None:
            raise DataMissingError(
                f"{layout.name} needs the binary release",
                f"run `mmthesis data prepare {layout.name} --raw /path/to/{layout.raw_hint.split()[0]}`",
            )
        return prepare_cifar(
            req.raw, dataset_dir(prepared_name(layout.name, req.scale), req.out_root), layout, workers=req.workers
        )

    return prepare


for _layout in (CIFAR10, CIFAR100):
    register(
        DatasetSpec(
            name=_layout.name,
            kind="image-classification",
            summary=f"{_layout.name.upper()} binary release, train 50k / test 10k",
            prepare=_prepare_fn(_layout),
            raw_hint=_layout.raw_hint,
        )
    )
