"""COCO / Flickr30k from Karpathy split files: planted bad items, splits, retrieval loading, stats."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmthesis.core.errors import DataMissingError
from mmthesis.data.datasets import karpathy
from mmthesis.data.image_text import load_retrieval_split
from mmthesis.data.manifest import iter_split, read_manifest, verify
from mmthesis.data.tokenizers import train_wordpiece
from mmthesis.data.transforms import eval_transform


def jpeg(seed: int, size: int = 20) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size + 4, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def caps(i: int, n: int = 5) -> list[dict]:
    return [{"raw": f"photo {i} caption {k} of a thing", "tokens": []} for k in range(n)]


def build_coco(raw: Path) -> dict[str, int]:
    """Karpathy COCO layout: 12 train, 4 restval, 4 val, 6 test + planted bad entries; returns expected counts."""
    images = []
    cocoid = 1000

    def add(split: str, *, data: bytes | None = None, sentences: list | None = None, cid: int | None = None) -> None:
        nonlocal cocoid
        cid = cocoid if cid is None else cid
        cocoid += 1
        folder = "val2014" if split in ("val", "test", "restval") else "train2014"
        name = f"COCO_{folder}_{cid:012d}.jpg"
        if data is not None:
            (raw / folder).mkdir(parents=True, exist_ok=True)
            (raw / folder / name).write_bytes(data)
        images.append(
            {
                "filepath": folder,
                "filename": name,
                "split": split,
                "cocoid": cid,
                "sentences": sentences if sentences is not None else caps(cid),
            }
        )

    for i in range(12):
        add("train", data=jpeg(i))
    for i in range(4):
        add("restval", data=jpeg(100 + i))
    for i in range(4):
        add("val", data=jpeg(200 + i))
    for i in range(6):
        add("test", data=jpeg(300 + i))
    # planted bad items (train): missing file, zero bytes, truncated, not an image, no captions, duplicate id
    add("train")  # file missing
    add("train", data=b"")
    add("train", data=jpeg(7)[:200])
    add("train", data=b"hello, not a jpeg")
    add("train", data=jpeg(8), sentences=[{"raw": "\x00bad"}, {"raw": "   "}])
    add("train", data=jpeg(9), cid=1000)  # duplicate of the first train image
    images.append(
        {"filepath": "..", "filename": "../outside.jpg", "split": "train", "cocoid": 5, "sentences": caps(5)}
    )  # leaves raw/
    # caption-level problems on a kept test image: NUL byte dropped, very long caption truncated
    add("test", data=jpeg(400), sentences=[{"raw": "a good caption"}, {"raw": "nul\x00inside"}, {"raw": "long " * 400}])
    (raw / "dataset_coco.json").write_text(json.dumps({"dataset": "coco", "images": images}))
    return {"train": 16, "val": 4, "test": 7}


def test_coco_karpathy(tmp_path: Path) -> None:
    raw = tmp_path / "coco"
    expected = build_coco(raw)
    folder = tmp_path / "out" / "coco"
    manifest = karpathy.prepare_karpathy(raw, folder, karpathy.COCO, samples_per_shard=5)
    assert {s: manifest.samples(s) for s in ("train", "val", "test")} == expected
    assert manifest.skipped == {
        "caption truncated": 1,
        "corrupt or truncated image": 1,
        "duplicate id": 1,
        "empty file": 1,
        "missing file": 1,
        "NUL byte in caption": 1,  # the dropped caption of a kept image
        "no valid caption": 1,  # an image whose captions are all bad: one reason for the item
        "not an image": 1,
        "unsafe path": 1,
    }
    assert manifest.stats["pairs"] == {"train": 80, "val": 20, "test": 32}
    assert manifest.stats["avg_captions_per_image"]["train"] == 5.0
    assert verify("coco", folder.parent) == []
    train = list(iter_split("coco", "train", folder.parent))
    assert [s["json"]["id"] for s in train][:2] == ["1000", "1001"]
    assert {s["json"]["karpathy_split"] for s in train} == {"train", "restval"}
    assert train[0]["jpg"] == (raw / "train2014" / "COCO_train2014_000000001000.jpg").read_bytes()
    long = next(s for s in iter_split("coco", "test", folder.parent) if s["json"]["id"] == "1032")
    assert long["json"]["captions"][0] == "a good caption" and len(long["json"]["captions"]) == 2
    assert len(long["json"]["captions"][1]) == 1000

    tok = train_wordpiece([c for s in train for c in s["json"]["captions"]], 200)
    split = load_retrieval_split("coco", "test", eval_transform(32), tok, root=folder.parent)
    assert split.num_images == 7 and split.num_captions == 32
    assert split.images.shape == (7, 3, 32, 32)
    assert split.caption_image_index.tolist()[:6] == [0, 0, 0, 0, 0, 1]
    assert split.text_ids.shape[1] <= 64


def test_flickr30k_and_resume_reuse(tmp_path: Path) -> None:
    raw = tmp_path / "flickr30k"
    (raw / "flickr30k-images").mkdir(parents=True)
    images = []
    for i, split in enumerate(["train"] * 6 + ["val"] * 2 + ["test"] * 3):
        name = f"{1000 + i}.jpg"
        (raw / "flickr30k-images" / name).write_bytes(jpeg(i))
        images.append({"filename": name, "imgid": i, "split": split, "sentences": caps(i)})
    (raw / "dataset_flickr30k.json").write_text(json.dumps({"dataset": "flickr30k", "images": images}))
    out = tmp_path / "out"
    manifest = karpathy.prepare_karpathy(raw, out / "flickr30k", karpathy.FLICKR, samples_per_shard=4)
    assert (manifest.samples("train"), manifest.samples("val"), manifest.samples("test")) == (6, 2, 3)
    assert manifest.skipped == {}
    assert [s["json"]["id"] for s in iter_split("flickr30k", "test", out)] == ["1008", "1009", "1010"]
    before = (out / "flickr30k" / "manifest.json").read_bytes()
    again = karpathy.prepare_karpathy(raw, out / "flickr30k", karpathy.FLICKR, samples_per_shard=4)
    assert again == read_manifest("flickr30k", out)
    assert (out / "flickr30k" / "manifest.json").read_bytes() == before


def test_bad_raw_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataMissingError, match="does not exist"):
        karpathy.prepare_karpathy(tmp_path / "nope", tmp_path / "out" / "coco", karpathy.COCO)
    (tmp_path / "coco").mkdir()
    with pytest.raises(DataMissingError, match="no Karpathy split file dataset_coco.json"):
        karpathy.prepare_karpathy(tmp_path / "coco", tmp_path / "out" / "coco", karpathy.COCO)
    (tmp_path / "coco" / "dataset_coco.json").write_bytes(b"\xff\xfe{not json")
    with pytest.raises(DataMissingError, match="not valid JSON"):
        karpathy.prepare_karpathy(tmp_path / "coco", tmp_path / "out" / "coco", karpathy.COCO)
    assert not (tmp_path / "out" / "coco" / "manifest.json").exists()


def test_cli_prepare_workers_stats_verify(tmp_path: Path) -> None:
    """Two spawned workers write the same bytes as one; the CLI prepares, prints Table 4's row, verify re-hashes."""
    from typer.testing import CliRunner

    from mmthesis.cli import data_cmd

    raw = tmp_path / "coco"
    build_coco(raw)
    serial = tmp_path / "serial" / "coco"
    parallel = tmp_path / "parallel" / "coco"
    karpathy.prepare_karpathy(raw, serial, karpathy.COCO, samples_per_shard=3)
    karpathy.prepare_karpathy(raw, parallel, karpathy.COCO, samples_per_shard=3, workers=2)
    files = sorted(p.relative_to(serial) for p in serial.rglob("*") if p.is_file())
    assert len([f for f in files if f.suffix == ".tar"]) == 13  # 22 train, 4 val, 7 test entries in threes
    assert files == sorted(p.relative_to(parallel) for p in parallel.rglob("*") if p.is_file())
    assert all((serial / f).read_bytes() == (parallel / f).read_bytes() for f in files)

    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(data_cmd.app, ["prepare", "coco", "--raw", str(raw), "--out", str(out), "--workers", "2"])
    assert result.exit_code == 0, result.output

    result = runner.invoke(data_cmd.app, ["stats", "coco", "--root", str(out)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "captions per image 5.0, images 16, image-text pairs 80" in text and "duplicate id" in text
    assert runner.invoke(data_cmd.app, ["verify", "coco", "--root", str(out)]).exit_code == 0
    shard = out / "coco" / "test" / "shard-000000.tar"
    shard.write_bytes(shard.read_bytes()[:-10] + b"0123456789")
    result = runner.invoke(data_cmd.app, ["verify", "coco", "--root", str(out)])
    assert result.exit_code == 1 and "test/shard-000000.tar checksum mismatch" in result.output


def test_streamed_pairs_over_ranks_give_batches(tmp_path: Path) -> None:
    """Prepared COCO train streams as one example per caption, split over 2 ranks, into the Batch format."""
    from torch.utils.data import DataLoader

    from mmthesis.data.streaming import PairCollate, PairDecoder, ShardStream
    from mmthesis.data.transforms import train_transform

    raw = tmp_path / "coco"
    build_coco(raw)
    karpathy.prepare_karpathy(raw, tmp_path / "out" / "coco", karpathy.COCO, samples_per_shard=4)
    captions = [c for s in iter_split("coco", "train", tmp_path / "out") for c in s["json"]["captions"]]
    tok = train_wordpiece(captions, 200)
    ids: list[str] = []
    for rank in range(2):
        stream = ShardStream.from_prepared(
            "coco", "train", tmp_path / "out", decode=PairDecoder(train_transform(32)), seed=0, rank=rank, world_size=2
        )
        for batch in DataLoader(stream, batch_size=16, collate_fn=PairCollate(tok)):
            assert batch.image.shape[1:] == (3, 32, 32) and batch.text_ids.shape == batch.text_padding_mask.shape
            assert not batch.text_padding_mask[:, 0].any()  # [CLS] is never padding
            assert all(i.startswith(f"{j}_") for i, j in zip(batch.id, batch.image_id, strict=True))
            ids += batch.id
    assert len(ids) == 80 and len(set(ids)) == 80


def _as_hub_copy(entries: list[dict], folder: Path) -> None:
    """``entries`` as ``yerevann/coco-karpathy`` publishes them: parquet per hub split (restval apart, rows grouped by
    split, so the split file's interleaving is gone), ``sentences`` as a list of raw strings, ``imgid`` = position."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    hub_split = {"train": "train", "restval": "restval", "val": "validation", "test": "test"}
    rows: dict[str, list[dict]] = {}
    for imgid, e in enumerate(entries):
        row = {
            "filepath": e["filepath"],
            "sentids": [imgid * 10 + k for k in range(len(e["sentences"]))],
            "filename": e["filename"],
            "imgid": imgid,
            "split": e["split"],
            "sentences": [s["raw"] for s in e["sentences"]],
            "cocoid": e["cocoid"],
            "url": f"http://images.cocodataset.org/{e['filepath']}/{e['filename']}",
        }
        rows.setdefault(hub_split[e["split"]], []).append(row)
    (folder / "data").mkdir(parents=True)
    for split, part in rows.items():
        part = part[::-1]  # the hub's row order is not the split file's; imgid restores it
        pq.write_table(pa.Table.from_pylist(part), folder / "data" / f"{split}-00000-of-00001.parquet")


@pytest.mark.parametrize("where", ["local-dir", "hub-cache", "save_to_disk"])
def test_coco_hub_copy_gives_the_same_shards(tmp_path: Path, where: str) -> None:
    datasets = pytest.importorskip("datasets")
    official = tmp_path / "official"
    build_coco(official)
    from_json = karpathy.prepare_karpathy(official, tmp_path / "a" / "coco", karpathy.COCO, samples_per_shard=5)

    raw = tmp_path / "hub"
    for folder in ("train2014", "val2014"):
        (raw / folder).mkdir(parents=True)
        for image in (official / folder).iterdir():
            (raw / folder / image.name).write_bytes(image.read_bytes())
    entries = json.loads((official / "dataset_coco.json").read_text())["images"]
    copy = (
        raw / "datasets--yerevann--coco-karpathy/snapshots/6b5f71c0" if where == "hub-cache" else raw / "coco-karpathy"
    )
    if where == "save_to_disk":
        _as_hub_copy(entries, tmp_path / "parquet")
        files = {p.stem.split("-")[0]: str(p) for p in (tmp_path / "parquet/data").glob("*.parquet")}
        datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "hf-cache")).save_to_disk(str(copy))
    else:
        _as_hub_copy(entries, copy)
    from_hub = karpathy.prepare_karpathy(raw, tmp_path / "b" / "coco", karpathy.COCO, samples_per_shard=5)

    assert from_hub.config["split_file"].startswith("yerevann/coco-karpathy")
    assert from_hub.skipped == from_json.skipped and from_hub.stats == from_json.stats
    for split in ("train", "val", "test"):
        shards = [(s["file"], s["sha256"]) for s in from_json.split(split)["shards"]]
        assert [(s["file"], s["sha256"]) for s in from_hub.split(split)["shards"]] == shards  # byte-identical shards
    again = karpathy.prepare_karpathy(raw, tmp_path / "b" / "coco", karpathy.COCO, samples_per_shard=5)
    assert again.config == from_hub.config  # reused, not re-prepared


def test_hub_copy_missing_columns_is_one_line(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    (tmp_path / "coco/coco-karpathy/data").mkdir(parents=True)
    (tmp_path / "coco/train2014").mkdir()
    pq.write_table(pa.table({"image": ["x"], "caption": ["y"]}), tmp_path / "coco/coco-karpathy/data/test-0.parquet")
    with pytest.raises(
        DataMissingError, match=r"coco-karpathy \(data/test-0.parquet\): columns \['image', 'caption'\] lack"
    ):
        karpathy.prepare_karpathy(tmp_path / "coco", tmp_path / "out" / "coco", karpathy.COCO)
    with pytest.raises(DataMissingError, match=r"has no Karpathy split file dataset_coco.json \(or the hub copy"):
        karpathy.prepare_karpathy(tmp_path / "coco" / "train2014", tmp_path / "out" / "coco", karpathy.COCO)
