"""Finding a task's prepared dataset at a scale, its fingerprint, and labelled images.

Why here and not in ``mmthesis.data.registry.check_data``: tasks name stand-in datasets
(``glue`` at smoke scale lives in ``glue-smoke``) and classification datasets
(ImageNet, CIFAR) whose samples carry a class label instead of captions, which
the image-text loaders skip.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from mmthesis.core.errors import DataMissingError, UnknownNameError
from mmthesis.core.io import sha256_json
from mmthesis.data.image_text import decode_sample_image, open_sample_image
from mmthesis.data.manifest import Manifest, read_manifest
from mmthesis.data.registry import prepare_command, prepared_name
from mmthesis.data.shard_index import SplitIndex
from mmthesis.eval.corruptions import corrupt_uint8_image


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


class LabelledImages:
    """The labelled images of a split, read from the shards per access (``SplitIndex``).

    Nothing is decoded up front, so a split the size of ImageNet-1k train costs a few
    tens of bytes per image in memory; ``TransformedImages`` feeds it to a DataLoader.
    """

    def __init__(self, data: PreparedDataset, split: str) -> None:
        data.manifest.split(split)  # clear error for an unknown split
        self.name = data.name
        self.index = SplitIndex(data.folder, split)
        self.rows = np.flatnonzero(self.index.label >= 0)  # labelled image i -> sample in the index
        if not len(self.rows):
            raise DataMissingError(
                f"dataset {data.folder!r} split {split!r} has no labelled images",
                "use a labelled dataset (shapes, emoji, imagenet, cifar10)",
            )
        self.labels = torch.from_numpy(self.index.label[self.rows].astype(np.int64))
        self.label_names = list(data.manifest.stats.get("label_names", [])) or [
            str(i) for i in range(int(self.labels.max()) + 1)
        ]
        self._ids: list[str] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def _sample(self, i: int) -> dict:
        return self.index.sample(int(self.rows[i]))

    def array(self, i: int) -> np.ndarray:
        """Image ``i`` as uint8 RGB (H, W, 3)."""
        return decode_sample_image(self._sample(i), self.name)

    def pil(self, i: int) -> Image.Image:
        return open_sample_image(self._sample(i), self.name)

    @property
    def ids(self) -> list[str]:
        """Each image's id (for per-sample output); reads the split once, on first use."""
        if self._ids is None:
            self._ids = []
            for i in range(len(self)):
                sample = self._sample(i)
                self._ids.append(str(sample.get("json", {}).get("id", sample["__key__"])))
        return self._ids


class TransformedImages(Dataset):
    """``(transform(image), label)`` per labelled image, optionally corrupted first (for DataLoaders).

    ``corruption = (kind, strength, seed)`` corrupts image ``i`` in [0, 1] pixel space with the
    generator seeded ``seed * 1_000_003 + i``, so a curve's points are reproducible per image.
    """

    def __init__(
        self, images: LabelledImages, transform: Callable[[Image.Image], torch.Tensor], corruption=None
    ) -> None:
        self.images, self.transform, self.corruption = images, transform, corruption

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.corruption is None:
            return self.transform(self.images.pil(i)), self.images.labels[i]
        array = corrupt_uint8_image(self.images.array(i), self.corruption, i)
        return self.transform(Image.fromarray(array)), self.images.labels[i]


def load_labelled_images(data: PreparedDataset, split: str) -> LabelledImages:
    """Every labelled image of a split (image-text datasets with labels, or classification datasets)."""
    return LabelledImages(data, split)
