"""COCO 2014 and Flickr30k with Karpathy's split files (``dataset_coco.json``, ``dataset_flickr30k.json``).

The split file lists every image with ``split`` (train / restval / val / test),
``filename`` (COCO also ``filepath``: train2014 or val2014), ``sentences``
(``raw`` captions) and an id (COCO ``cocoid``, Flickr30k the file stem).
As in the thesis code, ``restval`` is merged into ``train`` (COCO 113,287
training images); ``val`` and ``test`` are kept (COCO 5k test, Flickr30k 1k
test) and load through ``image_text.load_retrieval_split``.

Instead of ``dataset_coco.json``, ``--raw`` may hold the Karpathy COCO split as
published on the Hugging Face hub, ``yerevann/coco-karpathy`` (the widely used
copy: parquet ``data/{train,restval,validation,test}-*.parquet``, one row per
image with ``filepath``, ``filename``, ``sentences`` (list of raw captions),
``cocoid``, ``imgid``, ``split`` (Karpathy's split name), ``sentids``, ``url``;
it holds no pixels, the images stay in ``train2014/``/``val2014/``). It is read
by Hugging Face ``datasets`` with the network off, from ``--raw/coco-karpathy/``
(``huggingface-cli download --repo-type dataset yerevann/coco-karpathy
--local-dir coco-karpathy``, or a ``save_to_disk`` folder) or a hub-cache
``datasets--yerevann--coco-karpathy/snapshots/<rev>/``. Rows are put back in
split-file order by ``imgid`` (the image's position in ``dataset_coco.json``),
so the same images give byte-identical shards. Flickr30k hub copies
(``nlphuji/flickr30k``) are not read: they embed re-packed images in one
``test`` split, so their shards could not match the official images' bytes.

The split file is read whole (it is metadata, ~140 MB for COCO); images are
streamed into shards by ``captioned.prepare_captioned``. Entries are untrusted:
a ``sentences`` that is not a list, a ``raw`` that is not a string, a file name
with a NUL and a path that resolves outside the raw folder (``..``, absolute,
or a symlink) are counted skips. The manifest's config holds a fingerprint of
the inputs (the split file's sha256; size and mtime of every listed image per
folder), so editing ``dataset_coco.json`` or replacing images makes the next
``prepare`` say what changed and prepare again, instead of reusing stale data.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mmthesis.core.errors import DataMissingError
from mmthesis.data import raw_files
from mmthesis.data.datasets import vl_standins
from mmthesis.data.datasets.captioned import CaptionedImage, prepare_captioned
from mmthesis.data.manifest import FINGERPRINT, Manifest, Skipped, dataset_dir
from mmthesis.data.raw_files import BAD_NAME, DEFAULT_MAX_PIXELS
from mmthesis.data.registry import DatasetSpec, PrepareRequest, prepared_name, register
from mmthesis.data.standins import standin_dir

FORMAT_VERSION = 1
SPLIT_OF = {"train": "train", "restval": "train", "val": "val", "test": "test"}  # Karpathy split -> prepared split
SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class KarpathyLayout:
    name: str
    split_file: str
    image_dirs: tuple[str, ...]  # folders (relative to --raw) searched for the images
    raw_hint: str
    # writes a smoke-scale stand-in raw folder: (dest, prepared-data root) -> dest; None: no smoke scale
    build_smoke_raw: Callable[[Path, Path | None], Path] | None = None


COCO = KarpathyLayout(
    "coco",
    "dataset_coco.json",
    ("",),
    "coco/ (train2014/, val2014/, dataset_coco.json)",
    vl_standins.build_coco_raw,
)
FLICKR = KarpathyLayout(
    "flickr30k",
    "dataset_flickr30k.json",
    ("flickr30k-images", "flickr30k_images", "images", ""),
    "flickr30k/ (flickr30k-images/, dataset_flickr30k.json)",
)


HF_COPIES = {"coco": ("yerevann/coco-karpathy", "coco-karpathy")}  # layout -> (hub repo, local folder name)


def find_hf_copy(raw: Path, layout: KarpathyLayout) -> Path | None:
    """The folder of a hub copy of the split (see the module doc) in ``raw``, or None."""
    if layout.name not in HF_COPIES:
        return None
    repo, local = HF_COPIES[layout.name]
    candidates = [raw / local]
    snapshots = raw / f"datasets--{repo.replace('/', '--')}" / "snapshots"
    if snapshots.is_dir():
        revisions = sorted(p for p in snapshots.iterdir() if p.is_dir())
        if len(revisions) != 1:
            raise DataMissingError(
                f"{snapshots} holds {len(revisions)} revisions of {repo}, not one", f"keep one revision in {snapshots}"
            )
        candidates.append(revisions[0])
    for folder in candidates:
        if (folder / "dataset_dict.json").is_file() or next(folder.glob("data/*.parquet"), None):
            return folder
    return None


def hf_copy_files(folder: Path) -> list[Path]:
    """The files a hub copy is read from (hashed for the manifest's fingerprint)."""
    if (folder / "dataset_dict.json").is_file():
        return sorted(p for p in folder.rglob("*") if p.is_file())
    return sorted(folder.glob("data/*.parquet"))


def read_hf_copy(folder: Path, layout: KarpathyLayout) -> list[dict[str, Any]]:
    """The hub copy's rows as split-file entries (``sentences`` as ``[{"raw": ...}]``), in ``imgid`` order."""
    from mmthesis.data import hf

    repo = HF_COPIES[layout.name][0]
    hf.require(f"{folder} holds the hub copy {repo} of the Karpathy split")
    fix = f"use the files of the Hugging Face dataset {repo}, or put {layout.split_file} into the raw folder"
    if (folder / "dataset_dict.json").is_file():
        parts = dict(hf.load_from_disk(folder, fix))
    else:
        files = hf_copy_files(folder)
        parts = {str(p.relative_to(folder)): hf.load_parquet({"train": [p]}, fix)["train"] for p in files}
    rows: list[dict[str, Any]] = []
    for name, ds in parts.items():
        missing = [c for c in ("filename", "split", "sentences") if c not in ds.column_names]
        if missing:
            raise DataMissingError(f"{folder} ({name}): columns {ds.column_names} lack {missing}", fix)
        rows.extend(ds.to_list())
    for row in rows:
        sentences = row.get("sentences")
        if isinstance(sentences, list):
            row["sentences"] = [{"raw": s} if not isinstance(s, dict) else s for s in sentences]
    return sorted(rows, key=_imgid_order)  # stable: rows without an int imgid keep their order, last


def _imgid_order(row: dict[str, Any]) -> tuple[bool, int]:
    imgid = row.get("imgid")
    ok = isinstance(imgid, int) and not isinstance(imgid, bool)
    return (not ok, imgid if ok else 0)


def _split_file_or_none(raw: Path, layout: KarpathyLayout) -> Path | None:
    for folder in ("", "karpathy", "annotations"):
        if (raw / folder / layout.split_file).is_file():
            return raw / folder / layout.split_file
    return None


def find_split_file(raw: Path, layout: KarpathyLayout) -> Path:
    if (found := _split_file_or_none(raw, layout)) is not None:
        return found
    copy = (
        f" (or the hub copy {HF_COPIES[layout.name][0]} as {HF_COPIES[layout.name][1]}/)"
        if layout.name in HF_COPIES
        else ""
    )
    raise DataMissingError(
        f"{raw} has no Karpathy split file {layout.split_file}{copy}",
        f"put {layout.split_file} (from Karpathy's caption_datasets.zip) into {raw}",
    )


def read_split_file(path: Path) -> list[dict[str, Any]]:
    fix = f"replace {path} with the original file from Karpathy's caption_datasets.zip"
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as e:
        raise DataMissingError(f"{path} is not valid JSON ({e})", fix) from e
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise DataMissingError(f"{path} has no 'images' list", fix)
    return images


def _image_id(entry: dict[str, Any], layout: KarpathyLayout) -> str:
    if layout.name == "coco" and "cocoid" in entry:
        return str(entry["cocoid"])
    return Path(str(entry.get("filename", ""))).stem


def _image_dir(raw: Path, layout: KarpathyLayout) -> Path:
    for d in layout.image_dirs:
        if d and (raw / d).is_dir():
            return raw / d
    return raw


UNSAFE_PATH = "unsafe path"


def _unsafe(*parts: str) -> bool:
    return any(p.startswith(("/", "\\")) or ".." in Path(p).parts for p in parts)


def _bad_name(*parts: str) -> bool:
    return any("\x00" in p or not raw_files.utf8_ok(p) for p in parts)


def _path(image_dir: Path, entry: dict[str, Any]) -> tuple[str, str, Path]:
    filename, filepath = str(entry.get("filename", "")), str(entry.get("filepath", ""))
    return filename, filepath, image_dir / filepath / filename


def items(
    raw: Path, layout: KarpathyLayout, entries: list[dict[str, Any]], split: str
) -> Iterator[CaptionedImage | Skipped]:
    """The items of one prepared split, in split-file order (entries of unknown splits are ignored)."""
    image_dir = _image_dir(raw, layout)
    root = str(Path(raw).resolve())
    for entry in entries:
        if not isinstance(entry, dict) or SPLIT_OF.get(entry.get("split", "")) != split:
            continue
        filename, filepath, path = _path(image_dir, entry)
        image_id = _image_id(entry, layout)
        if _bad_name(filename, filepath, image_id):
            yield Skipped(image_id.encode("utf-8", "backslashreplace").decode("utf-8"), BAD_NAME)
            continue
        if _unsafe(filename, filepath):  # the split file must not point outside the raw folder
            yield Skipped(image_id, UNSAFE_PATH)
            continue
        sentences = entry.get("sentences")
        sentences = sentences if isinstance(sentences, list) else []  # null / not a list: no caption (counted)
        captions = tuple(s.get("raw") for s in sentences if isinstance(s, dict))
        extra = (("filename", filename), ("karpathy_split", entry["split"]))
        yield CaptionedImage(str(path), image_id, captions, extra, root)


def _listed(raw: Path, layout: KarpathyLayout, entries: list[Any], key: str) -> dict[str, list[Path]]:
    """The image paths the split file lists (that preparation would read), grouped by ``key``: folder or split."""
    image_dir = _image_dir(raw, layout)
    out: dict[str, list[Path]] = defaultdict(list)
    for entry in entries:
        if isinstance(entry, dict) and SPLIT_OF.get(entry.get("split", "")) is not None:
            filename, filepath, path = _path(image_dir, entry)
            if _unsafe(filename, filepath) or _bad_name(filename, filepath):
                continue  # skipped when preparing, never read
            group = str((image_dir / filepath).relative_to(raw)) + "/" if key == "folder" else SPLIT_OF[entry["split"]]
            out[group].append(path)
    return out


def raw_fingerprint(
    raw: Path, layout: KarpathyLayout, split_files: dict[str, Path], entries: list[Any]
) -> dict[str, Any]:
    """The split file's sha256 (or the hub copy's files') and, per image folder, the size and mtime of every image listed."""
    out: dict[str, Any] = {key: raw_files.file_digest(f) for key, f in split_files.items()}
    for folder, paths in sorted(_listed(raw, layout, entries, "folder").items()):
        out[folder] = raw_files.listing_digest(paths, raw)
    return out


def prepare_karpathy(
    raw: Path,
    folder: Path,
    layout: KarpathyLayout,
    *,
    workers: int = 1,
    samples_per_shard: int = 1000,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Manifest:
    """Prepare ``raw`` (images + Karpathy split file) into ``folder`` (train = train + restval, val, test)."""
    raw = Path(raw).expanduser()
    if not raw.is_dir():
        raise DataMissingError(f"{layout.name} raw folder {raw} does not exist", f"pass --raw with {layout.raw_hint}")
    hf_copy = find_hf_copy(raw, layout) if _split_file_or_none(raw, layout) is None else None
    if hf_copy is not None:  # the split file wins when both are there
        split_file, entries = hf_copy, read_hf_copy(hf_copy, layout)
        split_files = {str(f.relative_to(raw)): f for f in hf_copy_files(hf_copy)}
        source = f"{HF_COPIES[layout.name][0]} ({hf_copy.relative_to(raw)})"
    else:
        split_file = find_split_file(raw, layout)
        split_files, entries, source = {split_file.name: split_file}, read_split_file(split_file), split_file.name
    config = {
        "format_version": FORMAT_VERSION,
        "raw": str(raw.resolve()),
        "split_file": source,
        "splits": "train = train + restval; val; test",
        FINGERPRINT: raw_fingerprint(raw, layout, split_files, entries),
    }
    totals = {
        s: sum(1 for e in entries if isinstance(e, dict) and SPLIT_OF.get(e.get("split", "")) == s) for s in SPLITS
    }
    splits = {s: items(raw, layout, entries, s) for s in SPLITS if totals[s]}
    if not splits:
        raise DataMissingError(
            f"{split_file} lists no image of split train/restval/val/test", "use the original Karpathy split file"
        )
    return prepare_captioned(
        folder.name,
        folder,
        config,
        splits,
        workers=workers,
        samples_per_shard=samples_per_shard,
        totals=totals,
        max_pixels=max_pixels,
        expected_bytes={
            s: raw_files.listing_digest(p, raw)["bytes"] for s, p in _listed(raw, layout, entries, "split").items()
        },
    )


def _prepare_fn(layout: KarpathyLayout):  # noqa: ANN202 - a PrepareRequest -> Manifest closure
    def prepare(req: PrepareRequest) -> Manifest:
        folder = dataset_dir(prepared_name(layout.name, req.scale), req.out_root)
        if req.scale == "smoke" and layout.build_smoke_raw is not None:
            raw = req.raw or layout.build_smoke_raw(standin_dir(folder.name), req.out_root)
            return prepare_karpathy(raw, folder, layout, workers=req.workers, max_pixels=req.max_pixels)
        if req.raw is None:
            raise DataMissingError(
                f"{layout.name} needs your download",
                f"run `mmthesis data prepare {layout.name} --raw /path/to/{layout.raw_hint.split()[0]}`",
            )
        return prepare_karpathy(req.raw, folder, layout, workers=req.workers, max_pixels=req.max_pixels)

    return prepare


register(
    DatasetSpec(
        name="coco",
        kind="image-text",
        summary="MSCOCO 2014 captions, Karpathy splits (train+restval / val / 5k test)",
        prepare=_prepare_fn(COCO),
        raw_hint=COCO.raw_hint,
        scales=("smoke", "full"),
        stand_in={"smoke": vl_standins.COCO_STAND_IN},
    )
)
register(
    DatasetSpec(
        name="flickr30k",
        kind="image-text",
        summary="Flickr30k captions, Karpathy splits (29k train / 1k val / 1k test)",
        prepare=_prepare_fn(FLICKR),
        raw_hint=FLICKR.raw_hint,
    )
)
