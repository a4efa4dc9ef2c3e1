"""Loaders: training pairs (one example per caption) and all-vs-all retrieval splits."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from mmthesis.core.errors import DataMissingError
from mmthesis.data.batch import Batch
from mmthesis.data.image_text import ImageTextPairs, load_retrieval_split
from mmthesis.data.manifest import iter_split
from mmthesis.data.sharding import finish_manifest, prepare_split
from mmthesis.data.tokenizers import load_dataset_tokenizer, train_wordpiece
from mmthesis.data.transforms import eval_transform, train_transform


def _samples(root: Path, split: str) -> list[dict]:
    return list(iter_split("shapes", split, root))


def test_pairs_one_example_per_caption(shapes_root: Path) -> None:
    ds = ImageTextPairs("shapes", "train", None, eval_transform(32), root=shapes_root)
    samples = _samples(shapes_root, "train")
    expected = [(s["json"]["id"], c) for s in samples for c in s["json"]["captions"]]
    assert len(ds) == len(expected) and ds.num_images == len(samples)
    assert [(ds[i]["image_id"], ds.caption(i)) for i in range(len(ds))] == expected
    assert len({ds[i]["id"] for i in range(len(ds))}) == len(ds)
    assert ds.label_names[ds[0]["label"]] == samples[0]["json"]["label_name"]


def test_pair_image_and_text_are_the_stored_ones(shapes_root: Path) -> None:
    tok = load_dataset_tokenizer("shapes", shapes_root)
    ds = ImageTextPairs("shapes", "val", tok, eval_transform(64), root=shapes_root)
    first = _samples(shapes_root, "val")[0]
    item = ds[1]  # second caption of the first image
    expected_image = eval_transform(64)(Image.open(io.BytesIO(first["png"])))
    assert torch.equal(item["image"], expected_image)
    expected_ids, _ = tok.encode_batch([first["json"]["captions"][1]])
    assert item["text_ids"] == expected_ids[0].tolist()


def test_collate_makes_a_batch(shapes_root: Path) -> None:
    ds = ImageTextPairs("shapes", "train", None, train_transform(32), max_length=8, root=shapes_root)
    loader = DataLoader(
        ds, batch_size=16, shuffle=True, collate_fn=ds.collate, generator=torch.Generator().manual_seed(0)
    )
    batch = next(iter(loader))
    assert isinstance(batch, Batch) and len(batch) == 16
    assert batch.image.shape == (16, 3, 32, 32) and batch.image.dtype == torch.float32
    assert batch.text_ids.dtype == torch.long and batch.text_padding_mask.dtype == torch.bool
    assert batch.text_ids.shape == batch.text_padding_mask.shape and batch.text_ids.shape[1] <= 8
    assert torch.equal(batch.text_padding_mask, batch.text_ids == ds.tokenizer.pad_id)
    assert (batch.text_ids[:, 0] == ds.tokenizer.cls_id).all()
    lengths = (~batch.text_padding_mask).sum(1)
    assert lengths.max().item() == batch.text_ids.shape[1]  # padded to the longest in the batch
    assert (batch.text_ids[torch.arange(16), lengths - 1] == ds.tokenizer.sep_id).all()
    assert batch.label.shape == (16,) and batch.label.dtype == torch.long
    assert all(i.startswith(j + "_") for i, j in zip(batch.id, batch.image_id, strict=True))
    fixed = ImageTextPairs(
        "shapes", "train", None, eval_transform(32), max_length=20, root=shapes_root, pad_to_max_length=True
    )
    assert fixed.collate([fixed[0], fixed[1]]).text_ids.shape == (2, 20)


def test_retrieval_split_all_images_all_captions(shapes_root: Path) -> None:
    rs = load_retrieval_split("shapes", "test", eval_transform(48), root=shapes_root)
    samples = _samples(shapes_root, "test")
    assert rs.images.shape == (len(samples), 3, 48, 48)
    assert rs.image_ids == [s["json"]["id"] for s in samples]
    assert rs.num_captions == sum(len(s["json"]["captions"]) for s in samples) == rs.text_ids.shape[0]
    assert rs.caption_image_index.dtype == torch.long
    for caption, row in zip(rs.captions, rs.caption_image_index.tolist(), strict=True):
        assert caption in samples[row]["json"]["captions"]
    assert rs.labels.tolist() == [s["json"]["label"] for s in samples]
    assert rs.label_names[rs.labels[0]] == samples[0]["json"]["label_name"]
    assert torch.equal(rs.text_padding_mask, rs.text_ids == 0)
    assert torch.equal(rs.images[2], eval_transform(48)(Image.open(io.BytesIO(samples[2]["png"]))))
    # batching helpers keep the caption -> image link
    text_batches = rs.text_batches(7)
    assert sum(len(b) for b in text_batches) == rs.num_captions
    flat_image_ids = [i for b in text_batches for i in b.image_id]
    assert flat_image_ids == [rs.image_ids[r] for r in rs.caption_image_index.tolist()]
    assert [i for b in rs.image_batches(4) for i in b.id] == rs.image_ids


def _custom_dataset(root: Path) -> None:
    """A hand-made split: a duplicated image id, an image without captions, no labels."""

    def png(v: int) -> bytes:
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (v, v, v)).save(buf, format="PNG")
        return buf.getvalue()

    items = [("a", ["one cat", "two cats"], 10), ("b", ["a dog"], 20), ("a2", ["a third cat"], 10), ("c", [], 30)]

    def make(item):
        key, caps, v = item
        image_id = "a" if key == "a2" else key
        return {"__key__": key, "png": png(v), "json": {"id": image_id, "captions": caps}}

    folder = root / "custom"
    splits = {"test": prepare_split(folder, "test", items, make, samples_per_shard=2)}
    finish_manifest(folder, "custom", splits, {"v": 1}, {})
    train_wordpiece(["one cat two cats a dog a third cat"], 100).save(folder / "tokenizer.json")


def test_retrieval_deduplicates_images_by_id(tmp_path: Path) -> None:
    _custom_dataset(tmp_path)
    rs = load_retrieval_split("custom", "test", eval_transform(8), root=tmp_path)
    assert rs.image_ids == ["a", "b"]  # "c" has no caption; the second "a" joins the first
    assert rs.captions == ["one cat", "two cats", "a third cat", "a dog"]
    assert rs.caption_image_index.tolist() == [0, 0, 0, 1]
    assert rs.caption_ids == ["a_0", "a_1", "a_2", "b_0"]
    assert rs.labels is None and rs.label_names == []
    ds = ImageTextPairs("custom", "test", None, eval_transform(8), root=tmp_path)
    assert len(ds) == 4
    assert ds.collate([ds[0], ds[3]]).label is None


def test_errors_name_the_fix(shapes_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DataMissingError, match="no split 'validation'"):
        ImageTextPairs("shapes", "validation", None, eval_transform(8), root=shapes_root)
    with pytest.raises(DataMissingError, match="mmthesis data prepare emoji"):
        load_retrieval_split("emoji", "test", eval_transform(8), root=tmp_path)


def test_emoji_loads(mini_tarball: Path, tmp_path: Path) -> None:
    from mmthesis.data.datasets.emoji import prepare_from_tarball

    prepare_from_tarball(mini_tarball, tmp_path)
    rs = load_retrieval_split("emoji", "train", eval_transform(64), root=tmp_path)
    assert rs.images.shape[1:] == (3, 64, 64)
    white = torch.tensor([(1 - m) / s for m, s in zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), strict=True)])
    assert torch.allclose(rs.images[0][:, 0, 0], white, atol=1e-5)  # transparent corners became white
    assert set(rs.label_names) == {"Animals & Nature", "Smileys & Emotion"}
    assert np.all(np.bincount(rs.caption_image_index.numpy()) >= 1)
