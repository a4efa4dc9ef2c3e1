"""Unimodal training data: images read per access, text blocks packed once into a memory-mapped cache."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from mmthesis.core.paths import mmthesis_home
from mmthesis.data.manifest import iter_split
from mmthesis.data.tokenizers import train_wordpiece
from mmthesis.data.transforms import eval_transform
from mmthesis.students.unimodal_data import ImageSplit, TextBlocks, pack_lines, text_block_cache, text_lines


@pytest.mark.parametrize("corpus", ["openwebtext-smoke", "shapes"])
def test_text_blocks_equal_packing_in_memory_and_are_cached(corpus, smoke_home, monkeypatch):
    monkeypatch.setenv("MMTHESIS_HOME", str(smoke_home))
    lines = list(text_lines(corpus, "train"))
    tokenizer = train_wordpiece(lines[:500], 500)
    encoded = [e.ids for e in tokenizer.hf.encode_batch(lines, add_special_tokens=False)]
    expected = [[tokenizer.cls_id, *b, tokenizer.sep_id] for b in pack_lines(encoded, 48)]
    blocks = TextBlocks(corpus, "train", tokenizer, block_size=48)
    assert len(blocks) == len(expected) > 1
    assert [blocks[i]["text_ids"] for i in range(len(blocks))] == expected
    assert max(len(b) for b in expected) <= 48
    prefix = text_block_cache(corpus, "train", tokenizer, 48)
    assert prefix.parent.is_relative_to(mmthesis_home())
    bin_file = prefix.parent / f"{prefix.name}.bin"
    stamp = bin_file.stat().st_mtime_ns
    TextBlocks(corpus, "train", tokenizer, block_size=48)  # reused, not re-packed
    assert bin_file.stat().st_mtime_ns == stamp
    assert text_block_cache(corpus, "train", tokenizer, 32) != prefix  # another block size, another cache
    batch = blocks.collate([blocks[0], blocks[1]])
    assert batch.text_ids.shape[0] == 2 and torch.equal(batch.text_padding_mask, batch.text_ids == tokenizer.pad_id)


def test_image_split_reads_each_stored_image_with_its_label(smoke_home, monkeypatch):
    monkeypatch.setenv("MMTHESIS_HOME", str(smoke_home))
    ds = ImageSplit("shapes", "val", eval_transform(32))
    samples = list(iter_split("shapes", "val"))
    assert len(ds) == len(samples)
    for i in (0, len(ds) // 2, len(ds) - 1):
        item = ds[i]
        assert item["id"] == samples[i]["__key__"] and item["label"] == samples[i]["json"]["label"]
        assert torch.equal(item["image"], eval_transform(32)(Image.open(io.BytesIO(samples[i]["png"]))))
    batch = ImageSplit.collate([ds[0], ds[1]])
    assert batch.image.shape == (2, 3, 32, 32) and batch.label.tolist() == [ds[0]["label"], ds[1]["label"]]
