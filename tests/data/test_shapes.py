"""The generated shapes dataset: determinism, captions that match the pixels, preparation and idempotence."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmthesis.data.datasets import shapes
from mmthesis.data.datasets.shapes import COLOURS, LABEL_NAMES, ShapesConfig, generate, prepare_shapes
from mmthesis.data.manifest import iter_split, read_manifest, verify
from mmthesis.data.registry import PrepareRequest, get_dataset

TINY = ShapesConfig(train=30, val=6, test=6, samples_per_shard=8)


def _pixels(png: bytes) -> np.ndarray:
    im = Image.open(io.BytesIO(png))
    assert (im.mode, im.size) == ("RGB", (64, 64))
    return np.asarray(im).astype(int)


def _colour_share(px: np.ndarray, colour: tuple[int, int, int]) -> float:
    return float((np.abs(px - np.asarray(colour)).max(-1) < 30).mean())


def test_registered() -> None:
    spec = get_dataset("shapes")
    assert (spec.kind, spec.scales, spec.raw_hint) == ("image-text", ("smoke",), "")
    assert not spec.needs_raw("smoke")


def test_generation_is_deterministic_and_seeded() -> None:
    assert generate(TINY, "train", 3) == generate(TINY, "train", 3)
    assert generate(TINY, "train", 3) != generate(TINY, "train", 4)
    assert generate(TINY, "train", 3) != generate(TINY, "val", 3)
    assert generate(TINY, "train", 3) != generate(dataclasses.replace(TINY, seed=7), "train", 3)


def test_captions_and_labels_describe_the_image() -> None:
    seen_two = seen_one = 0
    for i in range(60):
        png, meta = generate(ShapesConfig(), "train", i)
        px = _pixels(png)
        caps = meta["captions"]
        assert 4 <= len(caps) <= 5 and len(set(caps)) == len(caps)
        assert LABEL_NAMES[meta["label"]] == meta["label_name"] == meta["objects"][0]
        for obj in meta["objects"]:
            assert all(obj in c for c in caps if "and" in c or len(meta["objects"]) == 1)
            colour = obj.split()[0]
            assert _colour_share(px, COLOURS[colour]) > 0.02, (i, obj)  # the named colours are really drawn
        absent = set(COLOURS) - {o.split()[0] for o in meta["objects"]}
        assert all(_colour_share(px, COLOURS[c]) < 0.01 for c in absent), i
        if len(meta["objects"]) == 2:
            seen_two += 1
            a, b = meta["objects"]
            # the main shape's colour mass lies on the side the relation names
            ys, xs = np.nonzero(np.abs(px - np.asarray(COLOURS[a.split()[0]])).max(-1) < 30)
            if a.split()[0] != b.split()[0]:
                cx, cy = xs.mean(), ys.mean()
                side = {"left": cx < 32, "right": cx > 32, "above": cy < 32, "below": cy > 32}[meta["relation"]]
                assert side, (i, meta)
        else:
            seen_one += 1
            assert meta["position"] in shapes.POSITIONS
    assert seen_one > 10 and seen_two > 10


def test_prepare_counts_stats_and_tokenizer(tmp_path: Path) -> None:
    manifest = prepare_shapes(tmp_path, TINY)
    assert {s: manifest.samples(s) for s in ("train", "val", "test")} == {"train": 30, "val": 6, "test": 6}
    assert [len(manifest.splits["train"]["shards"])] == [4]  # 30 items, 8 per shard
    stats = manifest.stats
    all_caps = [
        c for s in ("train", "val", "test") for x in iter_split("shapes", s, tmp_path) for c in x["json"]["captions"]
    ]
    assert stats["images"] == 42 and stats["pairs"] == len(all_caps) == sum(
        manifest.splits[s]["pairs"] for s in manifest.splits
    )
    assert stats["avg_caption_words"] == pytest.approx(sum(len(c.split()) for c in all_caps) / len(all_caps), abs=1e-3)
    assert 4 <= stats["captions_per_image"]["mean"] <= 5
    assert stats["label_names"] == LABEL_NAMES
    assert manifest.skipped == {}
    assert (tmp_path / "shapes" / "tokenizer.json").is_file()
    assert manifest.config == TINY.to_json()
    sample = next(iter_split("shapes", "val", tmp_path))
    assert sample["__key__"] == "shapes-val-000000" and set(sample) == {"__key__", "png", "json"}


def test_prepare_is_idempotent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = prepare_shapes(tmp_path, TINY)
    files = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (tmp_path / "shapes").rglob("*") if p.is_file()}
    capsys.readouterr()
    assert prepare_shapes(tmp_path, TINY) == first
    assert "already prepared" in capsys.readouterr().out
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (tmp_path / "shapes").rglob("*") if p.is_file()} == files
    # a modified shard is noticed and rebuilt to the same bytes
    shard = tmp_path / "shapes" / "train" / "shard-000001.tar"
    shard.write_bytes(b"corrupted")
    assert verify("shapes", tmp_path)
    prepare_shapes(tmp_path, TINY)
    assert shard.read_bytes() == files[shard][1] and verify("shapes", tmp_path) == []
    # a different config regenerates
    bigger = dataclasses.replace(TINY, val=9)
    assert prepare_shapes(tmp_path, bigger).samples("val") == 9
    assert read_manifest("shapes", tmp_path).config == bigger.to_json()


def test_parallel_preparation_gives_identical_bytes(tmp_path: Path) -> None:
    one = prepare_shapes(tmp_path / "one", TINY, workers=1)
    two = prepare_shapes(tmp_path / "two", TINY, workers=2)
    assert one.splits == two.splits  # same files, same sha256
    assert (tmp_path / "one/shapes/tokenizer.json").read_bytes() == (
        tmp_path / "two/shapes/tokenizer.json"
    ).read_bytes()


def test_prepare_request_uses_the_default_sizes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    got = {}
    monkeypatch.setattr(
        shapes,
        "prepare_shapes",
        lambda out_root, config, workers: got.update(root=out_root, config=config, workers=workers),
    )
    get_dataset("shapes").prepare(PrepareRequest(out_root=tmp_path, raw=None, workers=3, scale="smoke"))
    assert got == {"root": tmp_path, "config": ShapesConfig(), "workers": 3}
    assert (ShapesConfig().train, ShapesConfig().val, ShapesConfig().test) == (2000, 200, 200)
