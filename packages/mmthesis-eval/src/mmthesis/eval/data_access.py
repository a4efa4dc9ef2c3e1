"""Finding a task's prepared dataset at a scale, its fingerprint, and labelled images.

Why here and not in ``students.train.check_data``: tasks name stand-in datasets
(``glue`` at smoke scale lives in ``glue-smoke``) and classification datasets
(ImageNet, CIFAR) whose samples carry a class label instead of captions, which
the image-text loaders skip.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from mmthesis.core.errors import DataMissingError, UnknownNameError
from mmthesis.core.io import sha256_json
from mmthesis.data.image_text import IMAGE_KEYS
from mmthesis.data.manifest import Manifest, iter_split, read_manifest
from mmthesis.data.registry import prepare_command, prepared_name


@dataclass(frozen=True)
class PreparedDataset:
    name: str  # the registry name the task uses (coco, glue, shapes)
    folder: str  # the prepared folder under data_root() (glue-smoke for the smoke stand-in)
    fingerprint: str  # hash of the manifest's splits (shard / file checksums): changes iff the data does
    manifest: Manifest


def resolve_dataset(name: str, scale: str) -> PreparedDataset:
    """The prepared dataset a task reads, or a DataMissingError naming the prepare command."""
    try:
        folder, hint = prepared_name(name, scale), prepare_command(name, scale)
    except UnknownNameError:  # not a registered dataset: a plain folder name, or a preparer not installed
        folder, hint = name, f"mmthesis data prepare {name}"
    manifest = read_manifest(folder, prepare_hint=hint)
    return PreparedDataset(name, folder, sha256_json(manifest.splits)[:16], manifest)


@dataclass
class LabelledImages:
    ids: list[str]
    images: list[np.ndarray]  # uint8 (H, W, 3)
    labels: torch.Tensor  # (N,) long
    label_names: list[str]

    def pil(self, i: int) -> Image.Image:
        return Image.fromarray(self.images[i])


def _label(sample: dict) -> int | None:
    meta = sample.get("json", {})
    if meta.get("label") is not None:
        return int(meta["label"])
    if "cls" in sample:
        return int(sample["cls"].decode() if isinstance(sample["cls"], bytes) else sample["cls"])
    return None


def load_labelled_images(data: PreparedDataset, split: str) -> LabelledImages:
    """Every labelled image of a split (image-text datasets with labels, or classification datasets)."""
    data.manifest.split(split)  # clear error for an unknown split
    out = LabelledImages([], [], torch.empty(0, dtype=torch.long), list(data.manifest.stats.get("label_names", [])))
    labels = []
    for sample in iter_split(data.folder, split):
        label = _label(sample)
        key = next((k for k in IMAGE_KEYS if k in sample), None)
        if label is None or key is None:
            continue
        try:
            with Image.open(io.BytesIO(sample[key])) as im:
                out.images.append(np.asarray(im.convert("RGB"), dtype=np.uint8).copy())
        except Exception as e:  # PIL raises several types for bad bytes
            raise DataMissingError(
                f"dataset {data.folder!r}: image of sample {sample['__key__']!r} is corrupt ({e})",
                f"run `mmthesis data verify {data.name}`",
            ) from e
        out.ids.append(str(sample.get("json", {}).get("id", sample["__key__"])))
        labels.append(label)
    if not labels:
        raise DataMissingError(
            f"dataset {data.folder!r} split {split!r} has no labelled images",
            "use a labelled dataset (shapes, emoji, imagenet, cifar10)",
        )
    out.labels = torch.tensor(labels, dtype=torch.long)
    if not out.label_names:
        out.label_names = [str(i) for i in range(int(out.labels.max()) + 1)]
    return out
