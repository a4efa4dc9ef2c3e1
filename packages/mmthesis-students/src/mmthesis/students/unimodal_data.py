"""Training data of the unimodal distillations (REFERENCE.md §3.1, §3.2): images alone, text blocks alone.

* ``ImageSplit``: every image of a prepared split (ImageNet shards, or the images
  of an image-text set at smoke scale), one transformed view per access.
* ``TextBlocks``: the thesis packs whole lines of BERT-uncased tokens into blocks
  of at most 254 tokens (longer lines are split), then adds ``[CLS]``/``[SEP]``
  (block size 256, ``src/datasets_/masked_lm.py``). Lines come from OpenWebText
  (prepared as fairseq GPT-2 BPE ids, decoded back to text here) or, at smoke
  scale, from the captions of an image-text set.

Both decode the split into memory once; the full-scale corpora will stream from
their shards in a later issue with the same example format.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from mmthesis.core.errors import DataMissingError
from mmthesis.data.batch import Batch
from mmthesis.data.manifest import dataset_dir, iter_split
from mmthesis.data.tokenizers import Tokenizer

IMAGE_KEYS = ("png", "jpg", "jpeg", "webp")


class ImageSplit(Dataset):
    def __init__(self, name: str, split: str, transform: Callable[[Any], torch.Tensor]) -> None:
        self.transform = transform
        self.ids: list[str] = []
        self.images: list[np.ndarray] = []
        self.labels: list[int | None] = []
        for sample in iter_split(name, split):
            key = next((k for k in IMAGE_KEYS if k in sample), None)
            if key is None:
                continue
            with Image.open(io.BytesIO(sample[key])) as im:
                self.images.append(np.asarray(im.convert("RGB"), dtype=np.uint8).copy())
            self.ids.append(str(sample["__key__"]))
            label = sample.get("cls", sample.get("json", {}).get("label"))
            self.labels.append(int(label) if label is not None else None)
        if not self.images:
            raise DataMissingError(
                f"dataset {name!r} split {split!r} has no images", f"re-run `mmthesis data prepare {name}`"
            )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {
            "id": self.ids[index],
            "image": self.transform(Image.fromarray(self.images[index])),
            "label": self.labels[index],
        }

    @staticmethod
    def collate(examples: Sequence[dict[str, Any]]) -> Batch:
        labels = [e["label"] for e in examples]
        return Batch(
            id=[e["id"] for e in examples],
            image=torch.stack([e["image"] for e in examples]),
            label=None if any(v is None for v in labels) else torch.tensor(labels, dtype=torch.long),
        )


def _openwebtext_lines(folder: Path, split: str) -> Iterator[str]:
    from mmthesis.data.gpt2_bpe import FairseqDictionary, gpt2_bpe
    from mmthesis.data.indexed_dataset import MMapIndexedDataset

    dictionary = FairseqDictionary.load(folder / "dict.txt")
    bpe = gpt2_bpe()
    data = MMapIndexedDataset(folder / split)
    for i in range(len(data)):
        ids = np.asarray(data[i], dtype=np.int64)
        # every line ends with </s> (prepare); split there and decode each line
        cuts = np.flatnonzero(ids == dictionary.eos)
        start = 0
        for end in [*cuts.tolist(), len(ids)]:
            if end > start:
                text = bpe.decode(dictionary.to_gpt2(ids[start:end]).tolist()).strip()
                if text:
                    yield text
            start = end + 1


def text_lines(name: str, split: str) -> Iterator[str]:
    """The lines of a prepared text corpus (fairseq ``.bin``/``.idx``) or the captions of an image-text set."""
    folder = dataset_dir(name)
    if (folder / f"{split}.idx").is_file():
        yield from _openwebtext_lines(folder, split)
        return
    for sample in iter_split(name, split):
        meta = sample.get("json", {})
        yield from (str(c) for c in meta.get("captions", [meta["caption"]] if "caption" in meta else []))


def pack_lines(lines: Sequence[list[int]], block_size: int) -> list[list[int]]:
    """Greedy packing of whole token lines into blocks of at most ``block_size - 2`` tokens.

    A line that does not fit into the current block starts a new one; a line longer
    than a block is split. ``[CLS]``/``[SEP]`` are added by the caller.
    """
    room = block_size - 2
    if room < 1:
        raise ValueError(f"text block size must be >= 3, got {block_size}")
    blocks: list[list[int]] = []
    current: list[int] = []
    for line in lines:
        for start in range(0, max(1, len(line)), room):
            piece = line[start : start + room]
            if not piece:
                continue
            if len(current) + len(piece) > room:
                blocks.append(current)
                current = []
            current.extend(piece)
    if current:
        blocks.append(current)
    return blocks


class TextBlocks(Dataset):
    def __init__(self, name: str, split: str, tokenizer: Tokenizer, block_size: int = 256) -> None:
        self.tokenizer = tokenizer
        lines = list(text_lines(name, split))
        if not lines:
            raise DataMissingError(
                f"dataset {name!r} split {split!r} has no text", f"re-run `mmthesis data prepare {name}`"
            )
        encoded = [e.ids for e in tokenizer.hf.encode_batch(lines, add_special_tokens=False)]
        self.blocks = [[tokenizer.cls_id, *b, tokenizer.sep_id] for b in pack_lines(encoded, block_size)]
        self.name = name

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"id": f"{self.name}_{index}", "text_ids": self.blocks[index]}

    def collate(self, examples: Sequence[dict[str, Any]]) -> Batch:
        ids, mask = self.tokenizer.pad([e["text_ids"] for e in examples])
        return Batch(id=[e["id"] for e in examples], text_ids=ids, text_padding_mask=mask)
