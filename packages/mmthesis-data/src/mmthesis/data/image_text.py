"""Loaders for prepared image-text datasets: training pairs and retrieval splits.

Training (``ImageTextPairs``): one example per (image, caption) *pair*, as the
thesis trains (COCO contributes 5 pairs per image). Retrieval
(``load_retrieval_split``): every image once and every caption once, with the
row of each caption's image, because the thesis protocol (REFERENCE.md §5.1)
scores all images against all captions with several captions per image.

Training pairs are read lazily through ``SplitIndex`` (one ``pread`` per
sample, captions tokenized on access), so memory does not grow with the
corpus (COCO + CC3M + CC12M, ~1 TB). Retrieval splits (5k / 1k test images)
are decoded into memory once, since every image is scored against every
caption anyway.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from mmthesis.core.errors import DataMissingError
from mmthesis.data.batch import Batch
from mmthesis.data.manifest import iter_split, read_manifest
from mmthesis.data.shard_index import SplitIndex
from mmthesis.data.tokenizers import Tokenizer, load_dataset_tokenizer
from mmthesis.data.transforms import undecoded_jpeg

Transform = Callable[[Any], torch.Tensor]
IMAGE_KEYS = ("png", "jpg", "jpeg", "webp")


@dataclasses.dataclass
class DecodedSplit:
    """A prepared split in memory: uint8 RGB arrays (H, W, 3), captions and labels per image."""

    name: str
    split: str
    image_ids: list[str]
    images: list[np.ndarray]
    captions: list[list[str]]
    labels: list[int | None]
    label_names: list[str]


def open_sample_image(sample: dict[str, Any], name: str) -> Image.Image:
    """The sample's image as a loaded RGB PIL image; a clear error naming the fix if it is absent or corrupt."""
    key = next((k for k in IMAGE_KEYS if k in sample), None)
    if key is None:
        raise DataMissingError(
            f"dataset {name!r}: sample {sample['__key__']!r} has no image", f"re-run `mmthesis data prepare {name}`"
        )
    try:
        with Image.open(io.BytesIO(sample[key])) as im:
            return im.convert("RGB")  # convert loads the pixels, so the result outlives the buffer
    except Exception as e:  # PIL raises several types for bad bytes
        raise DataMissingError(
            f"dataset {name!r}: image of sample {sample['__key__']!r} is corrupt ({e})",
            f"run `mmthesis data verify {name}`",
        ) from e


def transformed_sample_image(sample: dict[str, Any], name: str, transform: Transform) -> Any:
    """``transform(open_sample_image(sample, name))``, but a draft-aware first step
    (``transforms.DraftRandomResizedCrop``) gets the JPEG opened and not yet decoded, so it can decode it reduced."""
    steps = getattr(transform, "transforms", [transform])
    if not (steps and getattr(steps[0], "draft_aware", False)):
        return transform(open_sample_image(sample, name))
    key = next((k for k in IMAGE_KEYS if k in sample), None)
    if key is None:
        return transform(open_sample_image(sample, name))  # its error
    try:
        image = Image.open(io.BytesIO(sample[key]))
        return transform(image if undecoded_jpeg(image) else image.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as e:  # PIL's errors for bad bytes, raised when decoding
        raise DataMissingError(
            f"dataset {name!r}: image of sample {sample['__key__']!r} is corrupt ({e})",
            f"run `mmthesis data verify {name}`",
        ) from e


def decode_sample_image(sample: dict[str, Any], name: str) -> np.ndarray:
    """The sample's image as uint8 RGB (H, W, 3) (see ``open_sample_image``)."""
    return np.array(open_sample_image(sample, name), dtype=np.uint8)  # a writable copy


def decode_split(name: str, split: str, root: Path | None = None) -> DecodedSplit:
    """Read and decode every sample of a prepared image-text split (images with >= 1 caption)."""
    manifest = read_manifest(name, root)
    manifest.split(split)  # clear error for an unknown split
    out = DecodedSplit(name, split, [], [], [], [], list(manifest.stats.get("label_names", [])))
    for sample in iter_split(name, split, root):
        meta = sample.get("json", {})
        caps = meta.get("captions")
        if caps is None and "caption" in meta:
            caps = [meta["caption"]]
        if not caps:
            continue
        out.image_ids.append(str(meta.get("id", sample["__key__"])))
        out.images.append(decode_sample_image(sample, name))
        out.captions.append([str(c) for c in caps])
        label = meta.get("label")
        out.labels.append(int(label) if label is not None else None)
    if not out.image_ids:
        raise DataMissingError(
            f"dataset {name!r} split {split!r} has no image-caption samples", f"re-run `mmthesis data prepare {name}`"
        )
    return out


class ImageTextPairs(Dataset):
    """Map-style dataset of (image, caption) pairs of a prepared split; use ``collate`` as ``collate_fn``.

    ``tokenizer=None`` uses the dataset's own (``tokenizer.json`` from preparation). Samples
    are read from the shards per access (``SplitIndex``); images are transformed per access
    (augmentation) and captions tokenized per access, so nothing grows with the split.
    Images without captions are left out; "image rows" number the images that remain.
    """

    def __init__(
        self,
        name: str,
        split: str,
        tokenizer: Tokenizer | None,
        transform: Transform,
        max_length: int = 64,
        root: Path | None = None,
        pad_to_max_length: bool = False,
    ) -> None:
        self.name, self.split = name, split
        self.index = SplitIndex(name, split, root)
        self.label_names: list[str] = list(read_manifest(name, root).stats.get("label_names", []))
        self.tokenizer = tokenizer or load_dataset_tokenizer(name, root)
        self.transform = transform
        self.max_length = max_length
        self.pad_to_max_length = pad_to_max_length
        self.image_rows = np.flatnonzero(self.index.captions > 0)  # image row -> sample in the index
        if not len(self.image_rows):
            raise DataMissingError(
                f"dataset {name!r} split {split!r} has no image-caption samples",
                f"re-run `mmthesis data prepare {name}`",
            )
        counts = self.index.captions[self.image_rows].astype(np.int64)
        self.pair_image = np.repeat(np.arange(len(self.image_rows)), counts)  # pair -> image row
        self.pair_caption = np.arange(len(self.pair_image)) - np.repeat(np.cumsum(counts) - counts, counts)

    @property
    def num_images(self) -> int:
        return len(self.image_rows)

    @property
    def image_labels(self) -> list[int | None]:
        """The class label of each image row (None where the dataset has none)."""
        return [None if v < 0 else int(v) for v in self.index.label[self.image_rows]]

    def __len__(self) -> int:
        return len(self.pair_image)

    def _read(self, image_row: int) -> tuple[dict[str, Any], str, list[str]]:
        """(sample, image id, captions) of image row ``image_row``, read from its shard; the image stays bytes."""
        sample = self.index.sample(int(self.image_rows[image_row]))
        meta = sample.get("json", {})
        captions = meta.get("captions", [meta["caption"]] if "caption" in meta else [])
        return sample, str(meta.get("id", sample["__key__"])), [str(c) for c in captions]

    def read_image(self, image_row: int) -> tuple[str, Image.Image, list[str]]:
        """(image id, RGB image, captions) of image row ``image_row``, read from its shard."""
        sample, image_id, captions = self._read(image_row)
        return image_id, open_sample_image(sample, self.name), captions

    def caption(self, index: int) -> str:
        return self._read(int(self.pair_image[index]))[2][int(self.pair_caption[index])]

    def example(self, index: int, views: dict[str, Transform] | None = None) -> dict[str, Any]:
        """Pair ``index``: the image under ``transform`` (and under each extra view), its caption's ids."""
        row, k = int(self.pair_image[index]), int(self.pair_caption[index])
        if views:  # several views of one decoded image
            image_id, image, captions = self.read_image(row)
            pixels = self.transform(image)
        else:  # one view: the transform may decode the JPEG reduced (transformed_sample_image)
            sample, image_id, captions = self._read(row)
            pixels = transformed_sample_image(sample, self.name, self.transform)
        label = self.index.label[self.image_rows[row]]
        out = {
            "id": f"{image_id}_{k}",
            "image_id": image_id,
            "image": pixels,
            "text_ids": self.tokenizer.encode_ids([captions[k]], self.max_length)[0],
            "label": None if label < 0 else int(label),
        }
        out.update({key: view(image) for key, view in (views or {}).items()})
        return out

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.example(index)

    def collate(self, examples: Sequence[dict[str, Any]]) -> Batch:
        ids, mask = self.tokenizer.pad(
            [e["text_ids"] for e in examples], self.max_length if self.pad_to_max_length else None
        )
        labels = [e["label"] for e in examples]
        return Batch(
            id=[e["id"] for e in examples],
            image=torch.stack([e["image"] for e in examples]),
            text_ids=ids,
            text_padding_mask=mask,
            label=None if any(v is None for v in labels) else torch.tensor(labels, dtype=torch.long),
            image_id=[e["image_id"] for e in examples],
        )


class PairImages(Dataset):
    """Each image of an ``ImageTextPairs`` once, as ``(image id, transformed image)``: for teacher passes."""

    def __init__(self, pairs: ImageTextPairs, transform: Transform) -> None:
        self.pairs, self.transform = pairs, transform

    def __len__(self) -> int:
        return self.pairs.num_images

    def __getitem__(self, image_row: int) -> tuple[str, torch.Tensor]:
        image_id, image, _ = self.pairs.read_image(image_row)
        return image_id, self.transform(image)


@dataclasses.dataclass
class RetrievalSplit:
    """All images and all captions of a split, for the all-vs-all retrieval protocol (REFERENCE.md §5.1)."""

    images: torch.Tensor  # (N, 3, H, W) float, transformed
    image_ids: list[str]
    captions: list[str]  # (M,) every caption, grouped by image in image order
    caption_ids: list[str]  # (M,) "<image_id>_<k>", as ImageTextPairs names its examples
    text_ids: torch.Tensor  # (M, L) long
    text_padding_mask: torch.Tensor  # (M, L) bool, True = pad
    caption_image_index: torch.Tensor  # (M,) long: row in `images` of each caption's image
    labels: torch.Tensor | None  # (N,) long class label per image, None if the dataset has none
    label_names: list[str]

    @property
    def num_images(self) -> int:
        return len(self.image_ids)

    @property
    def num_captions(self) -> int:
        return len(self.captions)

    def image_batches(self, batch_size: int) -> list[Batch]:
        """Images as ``Batch``es (for encoders that take a Batch)."""
        return [
            Batch(
                id=self.image_ids[i : i + batch_size],
                image=self.images[i : i + batch_size],
                label=None if self.labels is None else self.labels[i : i + batch_size],
                image_id=self.image_ids[i : i + batch_size],
            )
            for i in range(0, self.num_images, batch_size)
        ]

    def text_batches(self, batch_size: int) -> list[Batch]:
        """Captions as ``Batch``es, with ``image_id`` the id of each caption's image."""
        out = []
        for i in range(0, self.num_captions, batch_size):
            rows = self.caption_image_index[i : i + batch_size].tolist()
            out.append(
                Batch(
                    id=self.caption_ids[i : i + batch_size],
                    text_ids=self.text_ids[i : i + batch_size],
                    text_padding_mask=self.text_padding_mask[i : i + batch_size],
                    image_id=[self.image_ids[r] for r in rows],
                )
            )
        return out


def load_retrieval_split(
    name: str,
    split: str,
    transform: Transform,
    tokenizer: Tokenizer | None = None,
    max_length: int = 64,
    root: Path | None = None,
) -> RetrievalSplit:
    """Every image (transformed once) and every caption (tokenized, padded to the longest) of a split.

    Images are deduplicated by id (the first occurrence keeps its row; captions of later duplicates
    are attached to it), so the ground truth is by image id as in the thesis code.
    """
    data = decode_split(name, split, root)
    tokenizer = tokenizer or load_dataset_tokenizer(name, root)
    row_of: dict[str, int] = {}
    rows: list[int] = []  # index into `data` of each kept image
    per_row: list[list[str]] = []
    for i, image_id in enumerate(data.image_ids):
        if image_id not in row_of:
            row_of[image_id] = len(rows)
            rows.append(i)
            per_row.append([])
        per_row[row_of[image_id]].extend(data.captions[i])
    captions = [c for caps in per_row for c in caps]
    index = [r for r, caps in enumerate(per_row) for _ in caps]
    caption_ids = [f"{data.image_ids[rows[r]]}_{k}" for r, caps in enumerate(per_row) for k in range(len(caps))]
    ids, mask = tokenizer.encode_batch(captions, max_length)
    labels = [data.labels[i] for i in rows]
    return RetrievalSplit(
        images=torch.stack([transform(Image.fromarray(data.images[i])) for i in rows]),
        image_ids=[data.image_ids[i] for i in rows],
        captions=captions,
        caption_ids=caption_ids,
        text_ids=ids,
        text_padding_mask=mask,
        caption_image_index=torch.tensor(index, dtype=torch.long),
        labels=None if any(v is None for v in labels) else torch.tensor(labels, dtype=torch.long),
        label_names=data.label_names,
    )
