"""Table 3 counting: hand-computed counts on tiny prepared datasets, stand-ins, missing and inconsistent data."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmthesis.core.errors import DataMissingError, UnknownNameError
from mmthesis.core.paths import data_root
from mmthesis.data.counts import TrainingExampleCount, count_training_examples
from mmthesis.data.datasets import glue, imagenet, openwebtext
from mmthesis.data.registry import PrepareRequest, get_dataset


def _jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def test_imagenet_counts_decodable_train_images(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    for i, wnid in enumerate(["n01", "n01", "n02", "n03"]):
        (raw / "train" / wnid).mkdir(parents=True, exist_ok=True)
        (raw / "train" / wnid / f"{wnid}_{i}.JPEG").write_bytes(_jpeg(i))
    (raw / "train/n02/n02_bad.JPEG").write_bytes(b"")
    (raw / "val/n01").mkdir(parents=True)
    (raw / "val/n01/v1.JPEG").write_bytes(_jpeg(9))
    imagenet.prepare_from_raw(raw, tmp_path / "root" / "imagenet", samples_per_shard=2)
    c = count_training_examples("imagenet", "full", root=tmp_path / "root")
    assert c == TrainingExampleCount(
        dataset="imagenet",
        examples=4,
        unit="images",
        detail={"split": "train", "classes": 3, "shards": 3, "skipped": 1, "val_images": 1},
        stand_in=None,
    )


def test_openwebtext_counts_256_token_slices(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    for k in range(7):
        (raw / f"c{k}").mkdir(parents=True)
    # 100 lines of "Hello world" = 100 x (2 BPE tokens + </s>) = 300 tokens -> slices of 256: one full + one of 44
    (raw / "c0/doc.txt").write_text("Hello world\n\n" * 60)
    (raw / "c3/doc.txt").write_text("Hello world\n---\n" * 40)
    (raw / "c6/doc.txt").write_text("Hello world\n" * 1000)  # valid chunk: not counted
    openwebtext.prepare_from_raw(raw, tmp_path / "root" / "openwebtext")
    c = count_training_examples("openwebtext", root=tmp_path / "root")
    assert (c.examples, c.unit, c.stand_in) == (2, "256-token slices", None)
    assert c.detail["tokens"] == 300 and c.detail["full_slices"] == 1 and c.detail["partial_slice_tokens"] == 44
    assert c.detail["sequences"] == 100 and c.detail["documents"] == 2 and c.detail["chunks"] == [1, 2, 3, 4, 5, 6]
    assert c.detail["lines_removed"]["empty"] == 60 and c.detail["lines_removed"]["separator"] == 40


def test_glue_counts_sum_of_nine_training_sets(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    glue.write_standin_tsvs(raw)
    with open(raw / "RTE/train.tsv", "a", encoding="utf-8") as f:
        f.write("900\tOne more premise.\tOne more hypothesis.\tentailment\n")  # +1
        f.write("901\tmalformed row without a label\n")  # skipped
        f.write("902\tA.\tB.\tmaybe\n")  # skipped
    glue.prepare_from_raw(raw, tmp_path / "root" / "glue")
    c = count_training_examples("glue", root=tmp_path / "root")
    expected = {**glue.STANDIN_TRAIN_ROWS, "RTE": glue.STANDIN_TRAIN_ROWS["RTE"] + 1}
    assert c.detail["per_task"] == expected and list(c.detail["per_task"]) == list(glue.TASKS)
    assert c.examples == 40 + 48 + 32 + 36 + 44 + 60 + 40 + 29 + 24 == 353
    assert c.unit == "training rows" and c.detail["skipped"]["RTE"] == 2 and c.stand_in is None


def test_smoke_stand_ins_are_counted_by_the_same_code() -> None:
    for name in ("glue", "openwebtext"):
        get_dataset(name).prepare(PrepareRequest(out_root=data_root(), raw=None, scale="smoke"))
    g = count_training_examples("glue", "smoke")
    assert g.examples == sum(glue.STANDIN_TRAIN_ROWS.values()) and g.stand_in == glue.STAND_IN
    o = count_training_examples("openwebtext", "smoke")
    assert o.stand_in == openwebtext.STAND_IN
    assert o.examples == -(-o.detail["tokens"] // 256) > 100


def test_missing_data_names_the_prepare_command(tmp_path: Path) -> None:
    with pytest.raises(DataMissingError) as info:
        count_training_examples("glue", "smoke", root=tmp_path)
    assert info.value.fix == "run `mmthesis data prepare glue --scale smoke`"
    with pytest.raises(DataMissingError) as info:
        count_training_examples("imagenet", "full", root=tmp_path)
    assert info.value.fix == "run `mmthesis data prepare imagenet --raw /path/to/ILSVRC2012/`"
    with pytest.raises(DataMissingError, match="openwebtext-smoke"):
        count_training_examples("openwebtext", "smoke")  # default root = data_root() of the isolated home


def test_unknown_dataset_or_scale() -> None:
    with pytest.raises(UnknownNameError, match="unknown dataset for training-example counts"):
        count_training_examples("coco")
    with pytest.raises(UnknownNameError, match="no scale 'small'"):
        count_training_examples("glue", "small")


def test_inconsistent_prepared_data_is_reported(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    glue.write_standin_tsvs(raw)
    glue.prepare_from_raw(raw, tmp_path / "root" / "glue")
    path = tmp_path / "root/glue/WNLI/train.jsonl"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))
    with pytest.raises(DataMissingError, match="WNLI/train has 23 rows but the manifest says 24") as info:
        count_training_examples("glue", root=tmp_path / "root")
    assert "mmthesis data prepare glue" in info.value.fix

    for k in range(7):
        (raw / "owt" / f"c{k}").mkdir(parents=True)
        (raw / "owt" / f"c{k}" / "d.txt").write_text("Hello world\n")
    openwebtext.prepare_from_raw(raw / "owt", tmp_path / "root" / "openwebtext")
    manifest = json.loads((tmp_path / "root/openwebtext/manifest.json").read_text())
    manifest["splits"]["train"]["tokens"] += 1
    (tmp_path / "root/openwebtext/manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataMissingError, match="train.idx has 18 tokens"):
        count_training_examples("openwebtext", root=tmp_path / "root")
