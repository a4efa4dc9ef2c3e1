"""ImageNet preparation from the official layouts: planted bad files, val label files, stand-in, resume."""

from __future__ import annotations

import io
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmthesis.core.errors import DataMissingError, MMThesisError
from mmthesis.core.paths import data_root, raw_root
from mmthesis.data.datasets import emoji, imagenet
from mmthesis.data.manifest import iter_split, read_manifest
from mmthesis.data.registry import PrepareRequest, get_dataset, prepare_command


def jpeg(seed: int, size: int = 24, mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(seed)
    im = Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
    if mode == "CMYK":
        im = im.convert("CMYK")
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (seed % 255, 10, 20)).save(buf, format="PNG")
    return buf.getvalue()


def write(path: Path, data: bytes) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def make_raw(root: Path) -> dict[str, bytes]:
    """train/ with 2 classes (5 good images incl. a PNG named .JPEG and a CMYK JPEG) + 3 planted bad files + a hidden file."""
    good = {
        "n01440764_10026": write(root / "train/n01440764/n01440764_10026.JPEG", jpeg(1)),
        "n01440764_10027": write(root / "train/n01440764/n01440764_10027.JPEG", jpeg(2, mode="CMYK")),
        "n01440764_2933": write(
            root / "train/n01440764/n01440764_2933.JPEG", png(3)
        ),  # ImageNet really has a PNG named .JPEG
        "n02102040_1": write(root / "train/n02102040/n02102040_1.JPEG", jpeg(4)),
        "n02102040_2": write(root / "train/n02102040/n02102040_2.JPEG", jpeg(5, size=40)),
    }
    write(root / "train/n01440764/n01440764_0.JPEG", b"")  # zero bytes
    write(root / "train/n02102040/n02102040_3.JPEG", jpeg(6)[:300])  # truncated
    write(root / "train/n02102040/README.txt", b"these are dogs\n")  # not an image
    write(root / "train/n02102040/.DS_Store", b"\x00\x00\x00\x01Bud1")  # hidden: not an item at all
    return good


def test_registered() -> None:
    spec = get_dataset("imagenet")
    assert spec.kind == "image-classification" and spec.scales == ("smoke", "full")
    assert spec.raw_hint == "ILSVRC2012/ (train/<wnid>/*.JPEG, val/...)"
    assert spec.stand_in == {"smoke": "emoji images by category in ImageNet's folder layout"}


def test_train_and_flat_val_with_kaggle_solution_csv(tmp_path: Path) -> None:
    raw = tmp_path / "ILSVRC2012"
    good = make_raw(raw)
    write(raw / "val/ILSVRC2012_val_00000001.JPEG", jpeg(10))
    write(raw / "val/ILSVRC2012_val_00000002.JPEG", jpeg(11))
    write(raw / "val/ILSVRC2012_val_00000003.JPEG", jpeg(12))  # wnid not among train classes
    write(raw / "val/ILSVRC2012_val_00000004.JPEG", jpeg(13))  # no label line
    (raw / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\n"
        "ILSVRC2012_val_00000001,n02102040 1 2 30 40 n02102040 5 5 9 9 \n"
        "ILSVRC2012_val_00000002,n01440764 0 0 10 10 \n"
        "ILSVRC2012_val_00000003,n09999999 0 0 10 10 \n"
    )
    folder = tmp_path / "out" / "imagenet"
    manifest = imagenet.prepare_from_raw(raw, folder, samples_per_shard=2)

    assert manifest.stats["classes"] == ["n01440764", "n02102040"]
    assert manifest.samples("train") == 5 and manifest.samples("val") == 2
    assert len(manifest.split("train")["shards"]) == 4  # 8 items in groups of 2
    assert manifest.skipped == {
        "class not in train/": 1,
        "corrupt or truncated image": 1,
        "empty file": 1,
        "no label": 1,
        "not an image": 1,
    }
    assert manifest.stats["val_layout"] == "flat + LOC_val_solution.csv"

    samples = {s["__key__"]: s for s in iter_split("imagenet", "train", tmp_path / "out")}
    assert set(samples) == set(good)
    for key, data in good.items():
        s = samples[key]
        ext = "png" if key == "n01440764_2933" else "jpg"
        assert s[ext] == data  # original bytes, untouched
        wnid = key.split("_")[0]
        assert s["cls"] == str(["n01440764", "n02102040"].index(wnid)).encode()
        assert s["json"] == {"id": key, "wnid": wnid}
    val = {s["__key__"]: (s["cls"], s["json"]["wnid"]) for s in iter_split("imagenet", "val", tmp_path / "out")}
    assert val == {"ILSVRC2012_val_00000001": (b"1", "n02102040"), "ILSVRC2012_val_00000002": (b"0", "n01440764")}


def test_val_class_folders_and_val_labels_txt(tmp_path: Path) -> None:
    raw = tmp_path / "a"
    make_raw(raw)
    write(raw / "val/n02102040/ILSVRC2012_val_00000009.JPEG", jpeg(20))
    write(raw / "val/n07777777/ILSVRC2012_val_00000010.JPEG", jpeg(21))
    m = imagenet.prepare_from_raw(raw, tmp_path / "out-a" / "imagenet")
    assert m.samples("val") == 1 and m.stats["val_layout"] == "class folders"
    assert m.skipped["class not in train/"] == 1

    raw = tmp_path / "b"
    make_raw(raw)
    write(raw / "val/ILSVRC2012_val_00000002.JPEG", jpeg(22))
    write(raw / "val/ILSVRC2012_val_00000001.JPEG", jpeg(23))
    (raw / "val/val_labels.txt").write_text("n02102040\nn01440764\n")  # one wnid per image, in sorted file order
    m = imagenet.prepare_from_raw(raw, tmp_path / "out-b" / "imagenet")
    val = {s["__key__"]: s["json"]["wnid"] for s in iter_split("imagenet", "val", tmp_path / "out-b")}
    assert val == {"ILSVRC2012_val_00000001": "n02102040", "ILSVRC2012_val_00000002": "n01440764"}


def test_flat_val_without_labels_is_a_clear_error(tmp_path: Path) -> None:
    make_raw(tmp_path / "raw")
    write(tmp_path / "raw/val/ILSVRC2012_val_00000001.JPEG", jpeg(1))
    with pytest.raises(DataMissingError, match="no labels file") as info:
        imagenet.prepare_from_raw(tmp_path / "raw", tmp_path / "out" / "imagenet")
    assert "LOC_val_solution.csv" in info.value.fix
    assert not (tmp_path / "out" / "imagenet" / "manifest.json").exists()


def test_kaggle_root_is_found(tmp_path: Path) -> None:
    make_raw(tmp_path / "kaggle/ILSVRC/Data/CLS-LOC")
    m = imagenet.prepare_from_raw(tmp_path / "kaggle", tmp_path / "out" / "imagenet")
    assert m.samples("train") == 5 and "val" not in m.splits


def test_bad_raw_layouts(tmp_path: Path) -> None:
    with pytest.raises(DataMissingError, match="does not exist"):
        imagenet.find_root(tmp_path / "nope")
    (tmp_path / "r/train").mkdir(parents=True)
    (tmp_path / "r/train/n01440764.tar").write_bytes(b"")
    with pytest.raises(DataMissingError, match="no class folders") as info:
        imagenet.prepare_from_raw(tmp_path / "r", tmp_path / "out" / "imagenet")
    assert "extract" in info.value.fix
    write(tmp_path / "dup/train/n1/x.JPEG", jpeg(1))
    write(tmp_path / "dup/train/n2/x.JPEG", jpeg(2))
    with pytest.raises(MMThesisError, match="two files map to sample key 'x'"):
        imagenet.prepare_from_raw(tmp_path / "dup", tmp_path / "out2" / "imagenet")


def test_full_scale_without_raw_names_the_command(tmp_path: Path) -> None:
    with pytest.raises(DataMissingError) as info:
        imagenet.prepare(PrepareRequest(out_root=tmp_path, raw=None, scale="full"))
    assert prepare_command("imagenet", "full") in info.value.fix


def test_rerun_reuses_and_resumes_identically(tmp_path: Path) -> None:
    make_raw(tmp_path / "raw")
    out = tmp_path / "out" / "imagenet"
    first = imagenet.prepare_from_raw(tmp_path / "raw", out, samples_per_shard=3)
    before = (out / "manifest.json").stat().st_mtime_ns
    again = imagenet.prepare_from_raw(tmp_path / "raw", out, samples_per_shard=3)
    assert again == first and (out / "manifest.json").stat().st_mtime_ns == before
    # simulate a killed run: manifest and one shard gone -> the resumed run rebuilds byte-identical shards
    (out / "manifest.json").unlink()
    (out / "train/shard-000001.tar").unlink()
    resumed = imagenet.prepare_from_raw(tmp_path / "raw", out, samples_per_shard=3)
    assert [s["sha256"] for s in resumed.split("train")["shards"]] == [
        s["sha256"] for s in first.split("train")["shards"]
    ]


def test_verify_image_reasons() -> None:
    assert imagenet.verify_image(jpeg(1)) == "jpg"
    assert imagenet.verify_image(png(1)) == "png"
    assert imagenet.verify_image(b"").reason == "empty file"
    assert imagenet.verify_image(b"hello").reason == "not an image"
    assert imagenet.verify_image(jpeg(1, size=64)[:-200]).reason == "corrupt or truncated image"
    gif = io.BytesIO()
    Image.new("P", (4, 4)).save(gif, format="GIF")
    assert imagenet.verify_image(gif.getvalue()).reason == "unsupported image format"


def test_smoke_stand_in_from_miniature_emoji_tarball(mini_tarball: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(emoji, "ensure_tarball", lambda raw=None, **_: mini_tarball)
    m = get_dataset("imagenet").prepare(PrepareRequest(out_root=data_root(), raw=None, scale="smoke"))
    assert m.name == "imagenet-smoke"
    raw = raw_root() / "imagenet-smoke"
    assert "NOT THE REAL DATASET" in (raw / "STAND-IN.txt").read_text()
    # 5 smileys (4 good + the caption-less one: images need no caption) + 5 animals; the missing and the
    # corrupt PNG are skipped by the emoji reader; ~10% but at least 1 image per class goes to val
    assert sorted(os.listdir(raw / "train")) == ["animals-nature", "smileys-emotion"]
    assert m.stats["classes"] == ["animals-nature", "smileys-emotion"]
    assert m.samples("train") == 8 and m.samples("val") == 2
    assert m.stats["stand_in"] == imagenet.STAND_IN
    per_class = Counter(s["json"]["wnid"] for s in iter_split("imagenet-smoke", "train"))
    assert per_class == {"smileys-emotion": 4, "animals-nature": 4}
    sample = next(iter_split("imagenet-smoke", "val"))
    assert sample["png"] == (raw / "val" / sample["json"]["wnid"] / f"{sample['__key__']}.png").read_bytes()
    assert read_manifest("imagenet-smoke").config["stand_in"] == imagenet.STAND_IN


@pytest.mark.network
@pytest.mark.slow
def test_smoke_stand_in_from_the_real_emoji_package() -> None:
    m = get_dataset("imagenet").prepare(PrepareRequest(out_root=data_root(), raw=None, scale="smoke"))
    assert m.stats["num_classes"] >= 8
    assert m.samples("train") > 1000 and 0 < m.samples("val") <= 5 * m.stats["num_classes"]
