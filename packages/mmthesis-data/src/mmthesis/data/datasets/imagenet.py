"""ImageNet-1k (ILSVRC 2012) from the official folder layout -> tar shards.

Raw layout (``--raw`` points at the folder holding ``train/``; the Kaggle
download's ``ILSVRC/Data/CLS-LOC/`` is found automatically)::

    train/<wnid>/<wnid>_<n>.JPEG                 class folders (required)
    val/<wnid>/ILSVRC2012_val_<n>.JPEG           class folders (e.g. after valprep.sh), or
    val/ILSVRC2012_val_<n>.JPEG + a labels file  flat, labelled by one of
        LOC_val_solution.csv  (Kaggle: ``ImageId,PredictionString``; the first wnid is the label)
        val_labels.txt        (``<file> <wnid>`` per line, or one ``<wnid>`` per line in sorted file order)
      searched in ``val/``, the raw folder and up to three folders above it.

The devkit's ``ILSVRC2012_validation_ground_truth.txt`` (ILSVRC ids in
``meta.mat`` order) is not supported: convert it to ``val_labels.txt``.

Prepared samples (webdataset members): ``jpg`` or ``png`` = the original file
bytes, after a full decode with PIL proves them readable (empty, truncated,
non-image and unsupported-format files, files whose path resolves outside the
raw folder, file names that are not UTF-8 and images over the pixel cap are
skipped with a reason and counted, never a crash; 16-bit and EXIF-rotated
images are stored converted, see ``mmthesis.data.raw_files``); ``cls`` = the
class index as text; ``json`` = ``{id, wnid}``. The manifest's config records
a fingerprint of the raw inputs (label file hash; size and mtime of every
image), so a changed raw folder is prepared again instead of reused.
Class order = sorted wnids of ``train/`` (the thesis's HF class order is the
same sorted-wnid order); it is stored in the manifest's ``stats.classes``.

Smoke scale without ``--raw``: emoji images (npm ``emoji-datasource-twitter``,
see ``mmthesis.data.datasets.emoji``) are written as
``raw_root()/imagenet-smoke/{train,val}/<category>/<id>.png`` and prepared by
exactly the same code.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from mmthesis.core.console import console
from mmthesis.core.errors import DataMissingError, MMThesisError
from mmthesis.data import raw_files
from mmthesis.data.manifest import Manifest, Sample, Skipped, dataset_dir, reuse_prepared
from mmthesis.data.raw_files import (  # noqa: F401 (the reasons stay importable from here)
    BAD_NAME,
    CORRUPT,
    DEFAULT_MAX_PIXELS,
    EMPTY,
    NOT_IMAGE,
    UNSUPPORTED,
)
from mmthesis.data.registry import DatasetSpec, PrepareRequest, prepare_command, prepared_name, register
from mmthesis.data.sharding import begin_preparation, finish_manifest, prepare_split
from mmthesis.data.standins import build_once, standin_dir

NAME = "imagenet"
FORMAT_VERSION = 1
RAW_HINT = "ILSVRC2012/ (train/<wnid>/*.JPEG, val/...)"
STAND_IN = "emoji images by category in ImageNet's folder layout"
SAMPLES_PER_SHARD = 1000
LABEL_FILES = ("LOC_val_solution.csv", "val_labels.txt")
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")

# skip reasons (stable categories: the manifest counts them; the image ones live in raw_files)
UNLABELLED = "no label"
UNKNOWN_CLASS = "class not in train/"


@dataclasses.dataclass(frozen=True)
class ImageItem:
    """One raw image file to prepare (picklable, so spawned workers can take it)."""

    path: str
    key: str  # tar sample key: the file stem with unsafe characters replaced
    id: str  # the file stem as published, e.g. n01440764_10026 or ILSVRC2012_val_00000001
    wnid: str
    label: int
    root: str = ""  # the resolved raw root the file must lie in ("" = its own folder)


def sample_key(stem: str) -> str:
    return _KEY_UNSAFE.sub("_", stem)


def _visible(entries: list[os.DirEntry[str]]) -> list[os.DirEntry[str]]:
    return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)


def find_root(raw: Path) -> Path:
    """The folder holding ``train/`` (the raw folder itself or the Kaggle ``ILSVRC/Data/CLS-LOC``)."""
    raw = Path(raw).expanduser()
    for candidate in (raw, raw / "Data" / "CLS-LOC", raw / "ILSVRC" / "Data" / "CLS-LOC"):
        if (candidate / "train").is_dir():
            return candidate
    if not raw.exists():
        raise DataMissingError(
            f"ImageNet raw folder {raw} does not exist",
            f"pass --raw with the folder holding train/<wnid>/*.JPEG ({RAW_HINT})",
        )
    raise DataMissingError(
        f"{raw} has no train/ folder of ImageNet class folders",
        f"pass --raw with the folder holding train/<wnid>/*.JPEG ({RAW_HINT})",
    )


def _class_folders(split_dir: Path) -> list[os.DirEntry[str]]:
    with os.scandir(split_dir) as it:
        return [e for e in _visible(list(it)) if e.is_dir()]


def _files(folder: str | Path) -> list[os.DirEntry[str]]:
    with os.scandir(folder) as it:
        return [e for e in _visible(list(it)) if e.is_file()]


def _item(e: os.DirEntry[str], wnid: str, label: int, root: Path) -> ImageItem | Skipped:
    """An item for file ``e``, or Skipped if its name cannot be stored (not UTF-8: lone surrogate escapes)."""
    stem = Path(e.name).stem
    if not raw_files.utf8_ok(e.name):
        return Skipped(stem.encode("utf-8", "backslashreplace").decode("ascii", "replace"), BAD_NAME)
    return ImageItem(e.path, sample_key(stem), stem, wnid, label, str(root.resolve()))


def list_train(root: Path) -> tuple[list[str], list[ImageItem | Skipped]]:
    """Sorted wnids (= class order) and every file under ``train/<wnid>/``."""
    train = root / "train"
    folders = _class_folders(train)
    if not folders:
        tars = [e.name for e in _files(train) if e.name.endswith(".tar")]
        fix = (
            "extract each class tar into train/<wnid>/ (e.g. `for f in *.tar; do mkdir ${f%.tar}; tar -xf $f -C ${f%.tar}; done`)"
            if tars
            else f"pass --raw with the folder holding train/<wnid>/*.JPEG ({RAW_HINT})"
        )
        raise DataMissingError(
            f"{train} has no class folders" + (f" (found {len(tars)} .tar files)" if tars else ""), fix
        )
    bad = [f.name for f in folders if not raw_files.utf8_ok(f.name)]
    if bad:
        raise DataMissingError(
            f"{train} has a class folder whose name is not UTF-8 ({os.fsencode(bad[0])!r})",
            "rename it to its WordNet id (n########)",
        )
    wnids = [f.name for f in folders]
    items = [_item(e, wnid, label, root) for label, wnid in enumerate(wnids) for e in _files(train / wnid)]
    return wnids, items


def _find_label_file(root: Path) -> Path | None:
    places = [root / "val", root, *list(root.parents)[:3]]
    for folder in places:
        for name in LABEL_FILES:
            if (folder / name).is_file():
                return folder / name
    return None


def _read_val_labels(path: Path, files: list[str]) -> dict[str, str]:
    """file stem -> wnid from LOC_val_solution.csv or val_labels.txt."""
    labels: dict[str, str] = {}
    fix = f"fix {path} (format: see `mmthesis.data.datasets.imagenet` docs) or arrange val/ into class folders"
    if path.name.endswith(".csv"):
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a BOM (Excel, Windows) is not data
            reader = csv.reader(f)
            header = next(reader, None)
            if not header or [h.strip() for h in header[:2]] != ["ImageId", "PredictionString"]:
                raise DataMissingError(f"{path} does not start with the header ImageId,PredictionString", fix)
            for row in reader:
                if len(row) >= 2 and row[1].split():
                    labels[Path(row[0].strip()).stem] = row[1].split()[0]
        return labels
    lines = [line.split() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    if all(len(parts) == 2 for parts in lines):
        return {Path(name).stem: wnid for name, wnid in lines}
    if all(len(parts) == 1 for parts in lines):
        stems = sorted(Path(f).stem for f in files)
        if len(stems) != len(lines):
            raise DataMissingError(f"{path} has {len(lines)} labels for {len(stems)} images in val/", fix)
        return {stem: parts[0] for stem, parts in zip(stems, lines, strict=True)}
    raise DataMissingError(f"{path} mixes '<file> <wnid>' lines and bare '<wnid>' lines", fix)


def list_val(root: Path, class_index: dict[str, int]) -> tuple[list[ImageItem | Skipped], str | None]:
    """Items of ``val/`` (or none if it is absent) and a description of its layout."""
    val = root / "val"
    if not val.is_dir():
        return [], None
    items: list[ImageItem | Skipped] = []
    folders = _class_folders(val)
    if folders:
        for folder in folders:
            for e in _files(folder.path):
                stem = Path(e.name).stem
                if folder.name not in class_index:
                    items.append(Skipped(stem, UNKNOWN_CLASS))
                else:
                    items.append(_item(e, folder.name, class_index[folder.name], root))
        return items, "class folders"
    files = _files(val)
    files = [e for e in files if e.name not in LABEL_FILES]
    if not files:
        return [], None
    label_file = _find_label_file(root)
    if label_file is None:
        raise DataMissingError(
            f"{val} holds {len(files)} images but no class folders and no labels file ({' or '.join(LABEL_FILES)})",
            "put LOC_val_solution.csv next to val/, or sort val/ into class folders (e.g. with valprep.sh)",
        )
    labels = _read_val_labels(label_file, [e.name for e in files])
    for e in files:
        stem = Path(e.name).stem
        wnid = labels.get(stem)
        if wnid is None:
            items.append(Skipped(stem, UNLABELLED))
        elif wnid not in class_index:
            items.append(Skipped(stem, UNKNOWN_CLASS))
        else:
            items.append(_item(e, wnid, class_index[wnid], root))
    return items, f"flat + {label_file.name}"


def _check_unique_keys(items: list[ImageItem | Skipped], split: str) -> None:
    seen: dict[str, str] = {}
    for item in items:
        if isinstance(item, ImageItem):
            if item.key in seen:
                raise MMThesisError(
                    f"{split}: two files map to sample key {item.key!r}: {seen[item.key]} and {item.path}",
                    "rename one of them (file stems must be unique within a split)",
                )
            seen[item.key] = item.path


def verify_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> str | Skipped:
    """``"jpg"``/``"png"`` if ``data`` is a usable JPEG/PNG (``raw_files.check_image``), else why not."""
    result = raw_files.check_image(data, max_pixels)
    return result if isinstance(result, Skipped) else result[0]


def make_sample(item: ImageItem | Skipped, max_pixels: int = DEFAULT_MAX_PIXELS) -> Sample | Skipped:
    """Raw file -> ``{jpg|png, cls, json}`` sample, or why it was skipped (module-level: picklable)."""
    if isinstance(item, Skipped):
        return item
    image = raw_files.read_image(item.path, item.root or os.path.dirname(item.path), max_pixels)
    if isinstance(image, Skipped):
        return Skipped(item.id, image.reason)
    ext, data = image
    return {"__key__": item.key, ext: data, "cls": str(item.label), "json": {"id": item.id, "wnid": item.wnid}}


def raw_fingerprint(
    root: Path, splits: dict[str, list[ImageItem | Skipped]], label_file: Path | None
) -> dict[str, Any]:
    """What the prepared data depends on: size and mtime of every listed image per split, the label file's hash."""
    out: dict[str, Any] = {
        f"{split}/": raw_files.listing_digest((i.path for i in items if isinstance(i, ImageItem)), root)
        for split, items in splits.items()
        if items
    }
    if label_file is not None:
        out[label_file.name] = raw_files.file_digest(label_file)
    return out


def prepare_from_raw(
    raw: Path,
    folder: Path,
    *,
    workers: int = 1,
    samples_per_shard: int = SAMPLES_PER_SHARD,
    stand_in: str | None = None,
    name: str = NAME,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Manifest:
    """Prepare ``raw`` (official layout) into ``folder``; reuses a finished preparation of the same raw inputs.

    Listing the folders and stat-ing every image (the fingerprint) happens on every call: it is what
    tells an unchanged raw folder from one whose files were added, removed or replaced.
    """
    root = find_root(raw)
    wnids, train_items = list_train(root)
    class_index = {w: i for i, w in enumerate(wnids)}
    val_items, val_layout = list_val(root, class_index)
    _check_unique_keys(list(train_items), "train")
    _check_unique_keys(val_items, "val")
    label_file = _find_label_file(root) if val_layout and val_layout.startswith("flat") else None
    config = {
        "format_version": FORMAT_VERSION,
        "raw": str(root.resolve()),
        "samples_per_shard": samples_per_shard,
        "stand_in": stand_in,
        "max_image_pixels": max_pixels,
        "raw_fingerprint": raw_fingerprint(root, {"train": train_items, "val": val_items}, label_file),
    }
    if (existing := reuse_prepared(name, folder, config, required=(), verify_files=False)) is not None:
        return existing
    begin_preparation(folder, config)
    splits: dict[str, dict[str, Any]] = {}
    for split, items in (("train", train_items), ("val", val_items)):
        if split == "val" and not items:
            continue
        listing = config["raw_fingerprint"][f"{split}/"]
        splits[split] = prepare_split(
            folder,
            split,
            items,
            functools.partial(make_sample, max_pixels=max_pixels),
            samples_per_shard=samples_per_shard,
            workers=workers,
            total=len(items),
            description=f"{name}/{split}",
            expected_bytes=listing["bytes"],
        )
    stats = {
        "classes": wnids,
        "num_classes": len(wnids),
        "images": {s: info["samples"] for s, info in splits.items()},
        "val_layout": val_layout,
        "stand_in": stand_in,
    }
    manifest = finish_manifest(folder, name, splits, config, stats)
    skipped = sum(info["skipped"] for info in splits.values())
    console.print(
        f"{name}: prepared {', '.join(f'{s} {n}' for s, n in stats['images'].items())} images ({skipped} skipped) at {folder}"
    )
    return manifest


# --------------------------------------------------------------------------- smoke stand-in


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "uncategorised"


def val_count(n: int) -> int:
    """How many of a class's ``n`` stand-in images go to ``val/``: about 10%, 1 to 5, none for singletons."""
    return 0 if n < 2 else min(5, max(1, n // 10))


def build_standin_raw(tarball: Path, dest: Path) -> Path:
    """Write emoji PNGs from ``tarball`` as ``dest/{train,val}/<category-slug>/<id>.png`` (once; atomic)."""
    from mmthesis.data.datasets import emoji

    def build(tmp: Path) -> None:
        by_class: dict[str, list[Any]] = defaultdict(list)
        for record in emoji.iter_records(tarball):
            by_class[_slug(record.category)].append(record)
        if not by_class:
            raise DataMissingError(
                f"{tarball} yielded no emoji images", "pass the genuine emoji tarball (`mmthesis data prepare emoji`)"
            )
        for slug, records in sorted(by_class.items()):
            ordered = sorted(records, key=lambda r: hashlib.sha1(r.id.encode("utf-8")).hexdigest())
            k = val_count(len(ordered))
            for i, record in enumerate(ordered):
                split = "val" if i < k else "train"
                out = tmp / split / slug / f"{record.id}.png"
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(record.png)

    version = {"generator": "imagenet-standin-v1", "source": tarball.name, "sha1": emoji.sha1_file(tarball)}
    return build_once(dest, STAND_IN, version, build)


def prepare(req: PrepareRequest) -> Manifest:
    """``mmthesis data prepare imagenet --raw ILSVRC2012/`` (or ``--scale smoke`` for the emoji stand-in)."""
    folder = dataset_dir(prepared_name(NAME, req.scale), req.out_root)
    if req.scale == "smoke":
        raw = req.raw
        if raw is None or Path(raw).is_file():  # no raw, or an explicit emoji tarball
            from mmthesis.data.datasets import emoji

            tarball = emoji.ensure_tarball(raw)
            raw = build_standin_raw(tarball, standin_dir(folder.name))
            return prepare_from_raw(
                raw,
                folder,
                workers=req.workers,
                samples_per_shard=SAMPLES_PER_SHARD,
                max_pixels=req.max_pixels,
                stand_in=STAND_IN,
                name=folder.name,
            )
        return prepare_from_raw(raw, folder, workers=req.workers, name=folder.name, max_pixels=req.max_pixels)
    if req.raw is None:
        raise DataMissingError(
            "ImageNet-1k needs your download of ILSVRC2012", f"run `{prepare_command(NAME, req.scale)}`"
        )
    return prepare_from_raw(req.raw, folder, workers=req.workers, name=folder.name, max_pixels=req.max_pixels)


register(
    DatasetSpec(
        name=NAME,
        kind="image-classification",
        summary="ImageNet-1k (ILSVRC 2012) train/val images with class labels (class order = sorted wnids)",
        prepare=prepare,
        raw_hint=RAW_HINT,
        scales=("smoke", "full"),
        stand_in={"smoke": STAND_IN},
    )
)
