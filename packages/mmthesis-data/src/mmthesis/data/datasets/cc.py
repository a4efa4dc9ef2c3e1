"""Conceptual Captions 3M and 12M from the published TSV files plus a local image folder.

Raw layout (``--raw``)::

    cc3m/   Train_GCC-training.tsv                 caption<TAB>url, no header (train)
            Validation_GCC-1.1.0-Validation.tsv    same format (val, optional)
            images/<row // 10000:05d>/<row:09d>.jpg   (val: images-val/...)
    cc12m/  cc12m.tsv                              url<TAB>caption, no header (train)
            images/<row // 10000:05d>/<row:09d>.jpg

The image of TSV row ``row`` (0-based; the id, as in the thesis) is where
``mmthesis data download`` (``mmthesis.data.download``) writes it; the thesis
used whatever downloaded (CC3M 1.5M of 3.3M rows), so a missing image is the
normal case: skipped as "not downloaded" and counted. The TSV is read as bytes
and streamed, so captions that are not UTF-8 or hold NUL bytes are dropped and
counted (``captioned``) and memory does not grow with the corpus. Images that
resolve outside the raw folder (symlinks) are skipped and counted; the
manifest's config holds a fingerprint of the inputs (each TSV's sha256; size
and mtime of every file under each image folder), so a changed raw folder is
prepared again instead of reused.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmthesis.core.errors import DataMissingError
from mmthesis.data import raw_files
from mmthesis.data.datasets import vl_standins
from mmthesis.data.datasets.captioned import CaptionedImage, prepare_captioned
from mmthesis.data.download import DownloadReport, download
from mmthesis.data.manifest import FINGERPRINT, Manifest, Skipped, dataset_dir
from mmthesis.data.raw_files import DEFAULT_MAX_PIXELS
from mmthesis.data.registry import DatasetSpec, PrepareRequest, prepared_name, register
from mmthesis.data.standins import standin_dir

FORMAT_VERSION = 1
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp")
NOT_DOWNLOADED = "not downloaded"
BAD_ROW = "malformed TSV row"


@dataclasses.dataclass(frozen=True)
class TsvLayout:
    name: str
    files: dict[str, str]  # split -> TSV file name
    caption_column: int
    url_column: int
    raw_hint: str


CC3M = TsvLayout(
    "cc3m",
    {"train": "Train_GCC-training.tsv", "val": "Validation_GCC-1.1.0-Validation.tsv"},
    0,
    1,
    "cc3m/ (Train_GCC-training.tsv, images/)",
)
CC12M = TsvLayout("cc12m", {"train": "cc12m.tsv"}, 1, 0, "cc12m/ (cc12m.tsv, images/)")


def image_path(images: Path, row: int, ext: str = ".jpg") -> Path:
    """Where row ``row``'s image lives (10,000 files per folder)."""
    return images / f"{row // 10000:05d}" / f"{row:09d}{ext}"


def read_rows(tsv: Path, layout: TsvLayout) -> Iterator[tuple[int, bytes, bytes] | Skipped]:
    """(row, url, caption bytes) per TSV line, streamed; malformed lines are Skipped."""
    with open(tsv, "rb") as f:
        for row, line in enumerate(f):
            parts = line.rstrip(b"\r\n").split(b"\t")
            if len(parts) < 2:
                yield Skipped(str(row), BAD_ROW)
                continue
            yield row, parts[layout.url_column], parts[layout.caption_column]


def items(raw: Path, layout: TsvLayout, split: str, images: Path) -> Iterator[CaptionedImage | Skipped]:
    root = str(Path(raw).resolve())
    for entry in read_rows(raw / layout.files[split], layout):
        if isinstance(entry, Skipped):
            yield entry
            continue
        row, url, caption = entry
        path = next((p for ext in IMAGE_EXTS if (p := image_path(images, row, ext)).is_file()), None)
        if path is None:
            yield Skipped(str(row), NOT_DOWNLOADED)
            continue
        yield CaptionedImage(str(path), str(row), (caption,), (("url", url.decode("utf-8", "replace")),), root)


def _image_folder(raw: Path, split: str) -> Path:
    return raw / ("images" if split == "train" else f"images-{split}")


def raw_fingerprint(raw: Path, layout: TsvLayout, splits: list[str]) -> dict[str, object]:
    """Each TSV's sha256 and, per image folder, the size and mtime of every file in it."""
    out: dict[str, object] = {}
    for split in splits:
        out[layout.files[split]] = raw_files.file_digest(raw / layout.files[split])
        images = _image_folder(raw, split)
        files = (os.path.join(d, f) for d, _, names in os.walk(images) for f in names)
        out[f"{images.name}/"] = raw_files.listing_digest(files, raw)
    return out


def prepare_cc(
    raw: Path,
    folder: Path,
    layout: TsvLayout,
    *,
    workers: int = 1,
    samples_per_shard: int = 1000,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Manifest:
    raw = Path(raw).expanduser()
    train = raw / layout.files["train"]
    if not train.is_file():
        raise DataMissingError(
            f"{raw} has no {layout.files['train']}",
            f"pass --raw with {layout.raw_hint} (see `mmthesis data download {layout.name}`)",
        )
    splits = {
        split: items(raw, layout, split, _image_folder(raw, split))
        for split, name in layout.files.items()
        if (raw / name).is_file()
    }
    config = {
        "format_version": FORMAT_VERSION,
        "raw": str(raw.resolve()),
        "files": {s: layout.files[s] for s in splits},
        FINGERPRINT: raw_fingerprint(raw, layout, list(splits)),
    }
    images = {s: config[FINGERPRINT][f"{_image_folder(raw, s).name}/"]["bytes"] for s in splits}
    return prepare_captioned(
        folder.name,
        folder,
        config,
        splits,
        workers=workers,
        samples_per_shard=samples_per_shard,
        max_pixels=max_pixels,
        expected_bytes=images,
    )


def download_cc(
    raw: Path, layout: TsvLayout, *, workers: int = 32, limit: int | None = None, **kwargs: Any
) -> DownloadReport:
    """Fetch the images of the TSVs' rows (the first ``limit`` of each) into ``raw/images[-val]/``; see ``download``."""
    raw = Path(raw).expanduser()
    if not (raw / layout.files["train"]).is_file():
        raise DataMissingError(f"{raw} has no {layout.files['train']}", f"download the TSV of {layout.name} into {raw}")
    total = DownloadReport()
    for split, name in layout.files.items():
        if not (raw / name).is_file():
            continue
        rows = (
            (e[0], e[1].decode("utf-8", "replace")) for e in read_rows(raw / name, layout) if not isinstance(e, Skipped)
        )
        images = raw / ("images" if split == "train" else f"images-{split}")
        report = download(
            itertools.islice(rows, limit),
            functools.partial(image_path, images),
            raw / f"download-{split}",
            workers=workers,
            **kwargs,
        )
        total.downloaded += report.downloaded
        total.already_present += report.already_present
        total.failed.update(report.failed)
    return total


def _prepare_fn(layout: TsvLayout):  # noqa: ANN202 - a PrepareRequest -> Manifest closure
    def prepare(req: PrepareRequest) -> Manifest:
        folder = dataset_dir(prepared_name(layout.name, req.scale), req.out_root)
        if req.scale == "smoke":
            raw = req.raw or vl_standins.build_cc_raw(
                standin_dir(folder.name), layout.name, layout.files["train"], layout.caption_column
            )
            return prepare_cc(raw, folder, layout, workers=req.workers, max_pixels=req.max_pixels)
        if req.raw is None:
            raise DataMissingError(
                f"{layout.name} needs its TSV and images",
                f"run `mmthesis data download {layout.name} --raw /path/to/{layout.name}` first",
            )
        return prepare_cc(req.raw, folder, layout, workers=req.workers, max_pixels=req.max_pixels)

    return prepare


register(
    DatasetSpec(
        name="cc3m",
        kind="image-text",
        summary="Conceptual Captions 3M (the rows whose images downloaded)",
        prepare=_prepare_fn(CC3M),
        raw_hint=CC3M.raw_hint,
        scales=("smoke", "full"),
        stand_in={"smoke": vl_standins.CC_STAND_IN},
    )
)
register(
    DatasetSpec(
        name="cc12m",
        kind="image-text",
        summary="Conceptual Captions 12M (the rows whose images downloaded)",
        prepare=_prepare_fn(CC12M),
        raw_hint=CC12M.raw_hint,
        scales=("smoke", "full"),
        stand_in={"smoke": vl_standins.CC_STAND_IN},
    )
)
