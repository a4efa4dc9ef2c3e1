"""Smoke-scale stand-ins for COCO, CC3M and CC12M, written in the publishers' raw layouts.

Why: Table 4 (and anything else reading ``coco``/``cc3m``/``cc12m``) must run
at smoke scale without the user's downloads, through *the same* Karpathy and
TSV preparation code as the real data. So the stand-ins are raw folders:

- ``coco-smoke``: the generated ``shapes`` images and captions as
  ``train2014/`` + ``val2014/`` + ``dataset_coco.json`` (shapes train alternates
  Karpathy ``train``/``restval`` so the restval merge runs; val and test go to
  ``val2014/`` as in COCO);
- ``cc3m-smoke`` / ``cc12m-smoke``: the emoji images, split between the two by
  sha1(id) parity, one caption per image, as the publishers' TSV (column order
  of each) + ``images/<row//10000>/<row>.png``. Every tenth row has no image,
  so the "not downloaded" path that dominates the real CC runs too.

Built once per generator version and atomically (``standins.build_once``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mmthesis.core.paths import data_root
from mmthesis.data.manifest import dataset_dir, iter_split
from mmthesis.data.registry import PrepareRequest, get_dataset
from mmthesis.data.standins import build_once

COCO_STAND_IN = "generated shapes images and captions in the COCO Karpathy layout (dataset_coco.json)"
CC_STAND_IN = (
    "emoji images with one caption each in the Conceptual Captions TSV layout (every 10th image not downloaded)"
)
MISSING_EVERY = 10  # row % MISSING_EVERY == MISSING_EVERY - 1: no image, as if the download had failed


def _shapes_root(out_root: Path | None) -> Path:
    """The prepared ``shapes`` dataset's root, preparing it first if needed (it is generated, not downloaded)."""
    root = out_root or data_root()
    if not (dataset_dir("shapes", root) / "manifest.json").is_file():
        get_dataset("shapes").prepare(PrepareRequest(out_root=root, raw=None, scale="smoke"))
    return root


def build_coco_raw(dest: Path, out_root: Path | None = None) -> Path:
    """``dest`` = shapes as COCO 2014 images + Karpathy ``dataset_coco.json`` (built once)."""
    root = _shapes_root(out_root)
    manifest = json.loads((dataset_dir("shapes", root) / "manifest.json").read_text(encoding="utf-8"))

    def build(tmp: Path) -> None:
        images = []
        for split in ("train", "val", "test"):
            for i, sample in enumerate(iter_split("shapes", split, root)):
                cocoid = len(images)
                folder = "train2014" if split == "train" else "val2014"
                filename = f"COCO_{folder}_{cocoid:012d}.png"
                (tmp / folder).mkdir(exist_ok=True)
                (tmp / folder / filename).write_bytes(sample["png"])
                karpathy = ("train", "restval")[i % 2] if split == "train" else split
                sentences = [{"raw": c} for c in sample["json"]["captions"]]
                images.append(
                    {
                        "filepath": folder,
                        "filename": filename,
                        "cocoid": cocoid,
                        "split": karpathy,
                        "sentences": sentences,
                    }
                )
        (tmp / "dataset_coco.json").write_text(json.dumps({"images": images, "dataset": "coco"}), encoding="utf-8")

    version = {"generator": "coco-standin-v1", "shapes_config": manifest["config"]}
    return build_once(dest, COCO_STAND_IN, version, build)


def cc_part(record_id: str) -> str:
    """Which CC stand-in an emoji goes to: ``cc3m`` or ``cc12m`` by the parity of sha1(id)."""
    return ("cc3m", "cc12m")[hashlib.sha1(record_id.encode("utf-8")).digest()[0] % 2]


def build_cc_raw(dest: Path, name: str, tsv_name: str, caption_column: int, tarball: Path | None = None) -> Path:
    """``dest`` = this CC variant's share of the emoji as ``tsv_name`` + ``images/`` (built once).

    ``tarball``: the emoji npm tarball (default: the verified one, fetched with npm if absent).
    """
    from mmthesis.data.datasets import emoji
    from mmthesis.data.datasets.cc import image_path

    tarball = tarball or emoji.ensure_tarball(None)

    def build(tmp: Path) -> None:
        # an emoji without a name has no caption: left out, as the emoji preparer skips it
        mine = (r for r in emoji.iter_records(tarball) if cc_part(r.id) == name and emoji.captions(r))
        records = sorted(mine, key=lambda r: r.id)
        lines = []
        for row, record in enumerate(records):
            caption = emoji.captions(record)[0]
            url = f"https://stand-in.invalid/emoji/{record.id}.png"
            lines.append("\t".join((caption, url) if caption_column == 0 else (url, caption)))
            if row % MISSING_EVERY != MISSING_EVERY - 1:
                path = image_path(tmp / "images", row, ".png")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(emoji.to_rgb_png(record.png))
        (tmp / tsv_name).write_text("\n".join(lines) + "\n", encoding="utf-8")

    version = {"generator": "cc-standin-v1", "variant": name, "sha1": emoji.sha1_file(tarball)}
    return build_once(dest, CC_STAND_IN, version, build)
