"""Reading untrusted raw files safely: containment in the raw folder, image checks, input fingerprints.

Raw folders come from downloads and other people's disks, so every preparer
goes through these rules (each refusal is a counted skip, never a crash):

- a file is read only if its fully resolved path lies inside the resolved raw
  root, so a symlink (or ``..``) cannot make preparation read a system file or
  pull an image from elsewhere into a shard; the check happens before opening;
- an image is checked from its header first: more than ``max_pixels`` pixels
  is refused before any pixel is decoded (decompression bombs: a 12000x12000
  PNG of 17 KB decodes to 432 MB of RGB and takes seconds per read in the loader);
- 16-bit images are scaled to 8 bits (PIL's ``convert("RGB")`` clips them to
  white) and EXIF orientation is applied (``PIL.ImageOps.exif_transpose``, what
  image viewers and ``torchvision.io.decode_jpeg(apply_exif_orientation=True)``
  show); only those images are re-encoded (lossless PNG of the decoded pixels,
  without the EXIF block), every other image keeps its original bytes.

``DEFAULT_MAX_PIXELS`` = 8000 x 8000 = 64 MP: COCO and Flickr30K images are at
most 640 and 500 px a side, ImageNet's and web photos' (CC3M/CC12M) are camera
sized (a 24 MP DSLR frame is 6000 x 4000), so no genuine image is lost, while
it stays below PIL's own 89.5 MP decompression-bomb warning and bounds a
decoded image to 192 MB per loader worker.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mmthesis.data.manifest import Skipped

DEFAULT_MAX_PIXELS = 8000 * 8000

# skip reasons (stable: the manifest counts them)
OUTSIDE_RAW = "outside the raw folder"
BAD_NAME = "unusable file name"
MISSING = "missing file"
UNREADABLE = "unreadable file"
EMPTY = "empty file"
NOT_IMAGE = "not an image"
CORRUPT = "corrupt or truncated image"
UNSUPPORTED = "unsupported image format"
TOO_LARGE = "too many pixels"

_EXIF_ORIENTATION = 0x0112
_HIGH_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def read_inside(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> bytes | Skipped:
    """The bytes of ``path`` if it resolves (symlinks followed) to a file inside ``root``, else why not."""
    try:
        real = os.path.realpath(path)
        base = os.path.realpath(root)
        inside = os.path.commonpath([real, base]) == base
    except ValueError:  # an embedded NUL, or paths on different drives
        return Skipped("", BAD_NAME)
    if not inside:
        return Skipped("", OUTSIDE_RAW)
    try:
        with open(real, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return Skipped("", MISSING)
    except (OSError, ValueError):
        return Skipped("", UNREADABLE)


def utf8_ok(text: str) -> bool:
    """False for strings that cannot be written as UTF-8 (lone surrogates from bad bytes or ``\\udcff`` escapes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def to_8bit(im: Image.Image) -> Image.Image:
    """A 16-bit (or 32-bit integer) grayscale image scaled to 8-bit ``L`` (0..65535 -> 0..255, rounded)."""
    a = np.asarray(im, dtype=np.float64)
    return Image.fromarray(np.clip(np.rint(a / 257.0), 0, 255).astype(np.uint8), mode="L")


def check_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[str, bytes] | Skipped:
    """``(ext, bytes)`` to store for a raw image, or why it cannot be used (see the module docstring).

    The size comes from the header before any decode; a full decode then proves the bytes readable
    (JPEG at 1/8 scale, which still reads every entropy-coded byte, so truncation is caught).
    """
    if not data:
        return Skipped("", EMPTY)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own cap decides
            with Image.open(io.BytesIO(data)) as im:
                fmt = im.format
                if fmt not in ("JPEG", "PNG"):
                    return Skipped("", UNSUPPORTED)
                if im.width * im.height > max_pixels:
                    return Skipped("", TOO_LARGE)
                orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
                rotate = orientation in range(2, 9)
                high_bit = im.mode in _HIGH_BIT_MODES
                if fmt == "JPEG" and not rotate:
                    im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
                im.load()
                if not (rotate or high_bit):
                    return ("jpg" if fmt == "JPEG" else "png"), data
                fixed = ImageOps.exif_transpose(im) if rotate else im
                if fixed.mode in _HIGH_BIT_MODES:
                    fixed = to_8bit(fixed)
                fixed.info.pop("exif", None)  # orientation applied: nothing may rotate it again
                return "png", _png(fixed)
    except Image.DecompressionBombError:  # beyond PIL's hard limit: refused in open(), like our cap
        return Skipped("", TOO_LARGE)
    except UnidentifiedImageError:
        return Skipped("", NOT_IMAGE)
    except Exception:  # PIL raises OSError, SyntaxError, ValueError, EOFError, ... for bad bytes
        return Skipped("", CORRUPT)


def read_image(
    path: str | os.PathLike[str], root: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[str, bytes] | Skipped:
    """``read_inside`` then ``check_image``: the one call every image preparer makes per raw file."""
    data = read_inside(path, root)
    if isinstance(data, Skipped):
        return data
    return check_image(data, max_pixels)


# --------------------------------------------------------------------------- raw-input fingerprints


def file_digest(path: Path) -> str:
    """sha256 of a (metadata) file: annotation files are hashed whole, so a copy with new mtimes still matches."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def listing_digest(paths: Iterable[str | os.PathLike[str]], root: Path) -> dict[str, Any]:
    """``{files, bytes, digest}`` over (relative path, size, mtime) of every existing file in ``paths``.

    Images are not hashed (1 TB): a changed, added or removed image changes its size or mtime.
    ``bytes`` (their total size) is also about what their shards will take on disk.
    """
    digest = hashlib.sha256()
    files = size = 0
    for p in sorted(os.fspath(p) for p in paths):
        try:
            st = os.stat(p)
        except (OSError, ValueError):
            continue
        rel = os.path.relpath(p, root)
        digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        files += 1
        size += st.st_size
    return {"files": files, "bytes": size, "digest": digest.hexdigest()}


def describe_change(old: dict[str, Any], new: dict[str, Any]) -> str:
    """What differs between two fingerprints, e.g. ``dataset_coco.json changed; images train2014: 40 -> 41 files``."""
    parts = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict) and "files" in a and "files" in b:
            count = f"{a['files']} -> {b['files']} files" if a["files"] != b["files"] else f"{b['files']} files"
            parts.append(f"{name}: {count}, sizes or dates changed" if a["files"] == b["files"] else f"{name}: {count}")
        elif a is None:
            parts.append(f"{name} added")
        elif b is None:
            parts.append(f"{name} removed")
        else:
            parts.append(f"{name} changed")
    return "; ".join(parts) or "unchanged"
