"""Shared preparation of image-caption datasets (COCO, Flickr30k, Conceptual Captions).

Each dataset module only parses its publisher's index (Karpathy JSON, TSV)
into ``CaptionedImage`` items; this module turns items into samples and the
samples into a prepared dataset, so the robustness rules are the same for all:

- image: the original file bytes after a full decode (``raw_files.read_image``);
  missing, empty, truncated and non-image files, paths that resolve outside
  the raw folder (symlinks) and images over the pixel cap skip the item with a
  reason; 16-bit and EXIF-rotated images are stored converted;
- caption: a value that is not a string (``null``, a number), invalid UTF-8
  (also lone surrogates such as a ``\\udcff`` JSON escape) or NUL bytes drop
  that caption (counted), longer than
  ``MAX_CAPTION_CHARS`` is cut (counted); an item left without captions is
  skipped. Token-level truncation to 64 ids happens in the tokenizer, as in
  the thesis (REFERENCE.md §4.3);
- duplicate ids within a split: the later item is skipped.

Sample: ``jpg|png`` (bytes) + ``json`` ``{id, captions, ...extra}``, the format
``mmthesis.data.image_text`` reads.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mmthesis.core.console import console
from mmthesis.data import raw_files
from mmthesis.data.manifest import PARTLY_SKIPPED, Manifest, Sample, Skipped, reuse_prepared
from mmthesis.data.raw_files import DEFAULT_MAX_PIXELS
from mmthesis.data.sharding import begin_preparation, finish_manifest, prepare_split

MAX_CAPTION_CHARS = 1000
SAMPLES_PER_SHARD = 1000
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")

# skip reasons (stable: the manifest counts them)
MISSING = "missing file"
UNREADABLE = "unreadable file"
NON_UTF8 = "caption not UTF-8"
NOT_TEXT = "caption not a string"
NUL = "NUL byte in caption"
EMPTY_CAPTION = "empty caption"
NO_CAPTION = "no valid caption"
TRUNCATED = "caption truncated"
DUPLICATE = "duplicate id"


@dataclasses.dataclass(frozen=True)
class CaptionedImage:
    """One raw image with its captions (picklable for spawned workers); captions may be undecoded bytes."""

    path: str
    id: str
    captions: tuple[Any, ...]  # str, or bytes not yet decoded; anything else is dropped as NOT_TEXT
    extra: tuple[tuple[str, Any], ...] = ()
    root: str = ""  # the resolved raw root the image must lie in ("" = the image's own folder)

    @property
    def key(self) -> str:
        return _KEY_UNSAFE.sub("_", self.id)


def clean_caption(raw: Any, item_id: str) -> str | Skipped:
    """The caption as stored (whitespace collapsed, cut at MAX_CAPTION_CHARS) or why it is dropped."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            return Skipped(item_id, NON_UTF8)
    if not isinstance(raw, str):  # JSON null / numbers: not captions ("None", "5" were stored before)
        return Skipped(item_id, NOT_TEXT)
    if not raw_files.utf8_ok(raw):
        return Skipped(item_id, NON_UTF8)
    if "\x00" in raw:
        return Skipped(item_id, NUL)
    text = " ".join(raw.split())
    if not text:
        return Skipped(item_id, EMPTY_CAPTION)
    return text


def make_sample(item: CaptionedImage | Skipped, max_pixels: int = DEFAULT_MAX_PIXELS) -> Sample | Skipped:
    """Raw item -> sample (module-level: picklable)."""
    if isinstance(item, Skipped):
        return item
    dropped: list[Skipped] = []
    captions: list[str] = []
    for raw in item.captions:
        text = clean_caption(raw, item.id)
        if isinstance(text, Skipped):
            dropped.append(text)
            continue
        if len(text) > MAX_CAPTION_CHARS:
            dropped.append(Skipped(item.id, TRUNCATED))
            text = text[:MAX_CAPTION_CHARS]
        captions.append(text)
    if not captions:  # one reason per skipped item: the captions' own if they agree
        reasons = {d.reason for d in dropped}
        return Skipped(item.id, reasons.pop() if len(reasons) == 1 else NO_CAPTION)
    image = raw_files.read_image(item.path, item.root or os.path.dirname(item.path), max_pixels)
    if isinstance(image, Skipped):
        return Skipped(item.id, image.reason)
    ext, data = image
    return {
        "__key__": item.key,
        ext: data,
        "json": {"id": item.id, "captions": captions, **dict(item.extra)},
        PARTLY_SKIPPED: dropped,
    }


def unique(items: Iterable[CaptionedImage | Skipped]) -> Iterator[CaptionedImage | Skipped]:
    """Items with a sample key seen before become ``Skipped(DUPLICATE)`` (streams; keeps only keys)."""
    seen: set[str] = set()
    for item in items:
        if isinstance(item, CaptionedImage):
            if item.key in seen:
                yield Skipped(item.id, DUPLICATE)
                continue
            seen.add(item.key)
        yield item


def iter_json(path: Path) -> Iterator[dict[str, Any]]:
    """Only the ``json`` members of a shard (tar seeks past the image bytes: cheap even for 1 TB)."""
    with tarfile.open(path, "r:") as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".json"):
                f = tar.extractfile(member)
                if f is not None:
                    yield json.loads(f.read())


def split_stats(folder: Path, info: dict[str, Any]) -> dict[str, Any]:
    """Table 4's columns for one prepared split: images, pairs, captions per image, caption length."""
    images = pairs = words = 0
    for shard in info["shards"]:
        for meta in iter_json(folder / shard["file"]):
            images += 1
            pairs += len(meta["captions"])
            words += sum(len(c.split()) for c in meta["captions"])
    return {
        "images": images,
        "pairs": pairs,
        "avg_captions_per_image": round(pairs / images, 3) if images else 0.0,
        "avg_caption_words": round(words / pairs, 3) if pairs else 0.0,
    }


def prepare_captioned(
    name: str,
    folder: Path,
    config: dict[str, Any],
    splits: dict[str, Iterable[CaptionedImage | Skipped]],
    *,
    workers: int = 1,
    samples_per_shard: int = SAMPLES_PER_SHARD,
    totals: dict[str, int] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    expected_bytes: dict[str, int] | None = None,
) -> Manifest:
    """Prepare every split (resumable; a finished preparation with the same config is returned as is).

    ``expected_bytes``: split -> its raw images' total size, for a full disk's "space needed".
    """
    config = {
        **config,
        "samples_per_shard": samples_per_shard,
        "max_caption_chars": MAX_CAPTION_CHARS,
        "max_image_pixels": max_pixels,
    }
    config = json.loads(json.dumps(config, sort_keys=True, default=str))
    if (existing := reuse_prepared(name, folder, config, required=())) is not None:
        return existing
    begin_preparation(folder, config)
    prepared: dict[str, dict[str, Any]] = {}
    for split, items in splits.items():
        total = (totals or {}).get(split)
        prepared[split] = prepare_split(
            folder,
            split,
            unique(items),
            functools.partial(make_sample, max_pixels=max_pixels),
            samples_per_shard=samples_per_shard,
            workers=workers,
            total=total,
            description=f"{name}/{split}",
            expected_bytes=(expected_bytes or {}).get(split),
        )
    per_split = {split: split_stats(folder, info) for split, info in prepared.items()}
    for split, s in per_split.items():
        prepared[split]["pairs"] = s["pairs"]
    columns = ("images", "pairs", "avg_captions_per_image", "avg_caption_words")
    stats: dict[str, Any] = {col: {split: v[col] for split, v in per_split.items()} for col in columns}
    stats["caption_length_unit"] = "whitespace words"
    manifest = finish_manifest(folder, name, prepared, config, stats)
    skipped = sum(info["skipped"] for info in prepared.values())
    counts = ", ".join(f"{split} {v['images']} images / {v['pairs']} pairs" for split, v in per_split.items())
    console.print(f"{name}: prepared {counts} ({skipped} skipped) at {folder}")
    return manifest
