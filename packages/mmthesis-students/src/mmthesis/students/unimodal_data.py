"""Training data of the unimodal distillations (REFERENCE.md §3.1, §3.2): images alone, text blocks alone.

* ``ImageSplit``: every image of a prepared split (ImageNet shards, or the images
  of an image-text set at smoke scale), one transformed view per access.
* ``TextBlocks``: the thesis packs whole lines of BERT-uncased tokens into blocks
  of at most 254 tokens (longer lines are split), then adds ``[CLS]``/``[SEP]``
  (block size 256, ``src/datasets_/masked_lm.py``). Lines come from OpenWebText
  (prepared as fairseq GPT-2 BPE ids, decoded back to text here) or, at smoke
  scale, from the captions of an image-text set.

Neither holds the corpus in memory: images are read from the shards per access
(``SplitIndex``), and the text blocks are packed once into a memory-mapped
``.bin``/``.idx`` cache (ImageNet-1k and OpenWebText do not fit in RAM).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mmthesis.core.errors import DataMissingError
from mmthesis.core.io import sha256_json
from mmthesis.core.paths import mmthesis_home
from mmthesis.data.batch import Batch
from mmthesis.data.image_text import transformed_sample_image
from mmthesis.data.indexed_dataset import (
    MMapIndexedDataset,
    MMapIndexedDatasetBuilder,
    best_fitting_int_dtype,
    data_path,
    index_path,
)
from mmthesis.data.manifest import dataset_dir, iter_split, read_manifest
from mmthesis.data.shard_index import SplitIndex
from mmthesis.data.tokenizers import Tokenizer


class ImageSplit(Dataset):
    """Every image of a prepared split with its label, read from the shards per access (``SplitIndex``)."""

    def __init__(
        self, name: str, split: str, transform: Callable[[Any], torch.Tensor], root: Path | None = None
    ) -> None:
        self.name, self.transform = name, transform
        self.index = SplitIndex(name, split, root)
        if not len(self.index):
            raise DataMissingError(
                f"dataset {name!r} split {split!r} has no images", f"re-run `mmthesis data prepare {name}`"
            )

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.index.sample(index)
        label = int(self.index.label[index])
        return {
            "id": str(sample["__key__"]),
            "image": transformed_sample_image(sample, self.name, self.transform),
            "label": None if label < 0 else label,
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


def iter_packed(lines: Iterable[list[int]], block_size: int) -> Iterator[list[int]]:
    """Greedy packing of whole token lines into blocks of at most ``block_size - 2`` tokens.

    A line that does not fit into the current block starts a new one; a line longer
    than a block is split. ``[CLS]``/``[SEP]`` are added by the caller. Streams: holds
    one block at a time.
    """
    room = block_size - 2
    if room < 1:
        raise ValueError(f"text block size must be >= 3, got {block_size}")
    current: list[int] = []
    for line in lines:
        for start in range(0, max(1, len(line)), room):
            piece = line[start : start + room]
            if not piece:
                continue
            if len(current) + len(piece) > room:
                yield current
                current = []
            current.extend(piece)
    if current:
        yield current


def pack_lines(lines: Sequence[list[int]], block_size: int) -> list[list[int]]:
    return list(iter_packed(lines, block_size))


def _encoded_lines(lines: Iterable[str], tokenizer: Tokenizer, chunk: int = 4096) -> Iterator[list[int]]:
    """BERT ids of each line (no special tokens), tokenized ``chunk`` lines at a time (tokenizers' batch API)."""
    pending: list[str] = []
    for line in lines:
        pending.append(line)
        if len(pending) == chunk:
            yield from (e.ids for e in tokenizer.hf.encode_batch(pending, add_special_tokens=False))
            pending = []
    if pending:
        yield from (e.ids for e in tokenizer.hf.encode_batch(pending, add_special_tokens=False))


def text_block_cache_prefix(name: str, split: str, tokenizer: Tokenizer, block_size: int) -> Path:
    """Where ``text_block_cache`` keeps the packed blocks of this data, tokenizer and block size."""
    key = sha256_json(
        {"data": read_manifest(name).to_json(), "tokenizer": tokenizer.hf.to_str(), "block_size": block_size}
    )[:16]
    return mmthesis_home() / "cache" / "text-blocks" / f"{name}-{split}-{key}"


def text_blocks_packed(prefix: Path) -> bool:
    return index_path(prefix).is_file() and data_path(prefix).is_file()


def text_block_cache(name: str, split: str, tokenizer: Tokenizer, block_size: int) -> Path:
    """Prefix of the packed blocks' ``.bin``/``.idx`` under ``$MMTHESIS_HOME/cache``, built on first use.

    Keyed by the prepared data (manifest), the tokenizer and the block size, so any change
    re-packs. Building streams lines -> ids -> blocks -> disk: memory stays flat for the whole of
    OpenWebText, and later runs (and every DataLoader worker) just memory-map the result.
    """
    prefix = text_block_cache_prefix(name, split, tokenizer, block_size)
    if text_blocks_packed(prefix):
        return prefix
    dtype = best_fitting_int_dtype(tokenizer.vocab_size)
    with MMapIndexedDatasetBuilder(prefix, dtype=dtype) as builder:
        for block in iter_packed(_encoded_lines(text_lines(name, split), tokenizer), block_size):
            builder.add_item([tokenizer.cls_id, *block, tokenizer.sep_id])
        if builder.num_sequences == 0:
            raise DataMissingError(
                f"dataset {name!r} split {split!r} has no text", f"re-run `mmthesis data prepare {name}`"
            )
    return prefix


class TextBlocks(Dataset):
    """Packed BERT token blocks of a text corpus, memory-mapped from ``text_block_cache``."""

    def __init__(self, name: str, split: str, tokenizer: Tokenizer, block_size: int = 256) -> None:
        self.tokenizer, self.name = tokenizer, name
        self.blocks = MMapIndexedDataset(text_block_cache(name, split, tokenizer, block_size))

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"id": f"{self.name}_{index}", "text_ids": self.blocks[index].tolist()}

    def collate(self, examples: Sequence[dict[str, Any]]) -> Batch:
        ids, mask = self.tokenizer.pad([e["text_ids"] for e in examples])
        return Batch(id=[e["id"] for e in examples], text_ids=ids, text_padding_mask=mask)
