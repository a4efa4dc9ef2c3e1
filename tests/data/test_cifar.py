"""CIFAR-10/100 from the binary release: folder and tar.gz layouts, truncated records, bad labels, unsafe members."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmthesis.core.errors import DataMissingError
from mmthesis.data.datasets import cifar
from mmthesis.data.manifest import iter_split, verify

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def record(rng: np.random.Generator, labels: list[int]) -> tuple[bytes, np.ndarray]:
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    return bytes(labels) + image.transpose(2, 0, 1).tobytes(), image


def cifar10_files(seed: int = 0) -> tuple[dict[str, bytes], dict[str, list[tuple[int, np.ndarray]]]]:
    """4 records per train batch, 5 test records; a bad label in batch 2 and a truncated tail in batch 5."""
    rng = np.random.default_rng(seed)
    files: dict[str, bytes] = {"batches.meta.txt": ("\n".join(CIFAR10_NAMES) + "\n\n").encode()}
    truth: dict[str, list[tuple[int, np.ndarray]]] = {"train": [], "test": []}
    for i in range(1, 6):
        data = b""
        for j in range(4):
            label = 42 if (i, j) == (2, 1) else int(rng.integers(10))
            rec, image = record(rng, [label])
            data += rec
            truth["train"].append((label, image))
        if i == 5:
            data += b"\x03" + b"\x00" * 100  # truncated final record
        files[f"data_batch_{i}.bin"] = data
    data = b""
    for _ in range(5):
        label = int(rng.integers(10))
        rec, image = record(rng, [label])
        data += rec
        truth["test"].append((label, image))
    files["test_batch.bin"] = data
    return files, truth


def write_targz(path: Path, files: dict[str, bytes], folder: str, extra: dict[str, bytes] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in {**{f"{folder}/{k}": v for k, v in files.items()}, **(extra or {})}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def decoded(sample: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(sample["png"])).convert("RGB"))


@pytest.mark.parametrize("as_tarball", [False, True])
def test_cifar10_binary(tmp_path: Path, as_tarball: bool) -> None:
    files, truth = cifar10_files()
    if as_tarball:
        raw = write_targz(tmp_path / "cifar-10-binary.tar.gz", files, "cifar-10-batches-bin")
    else:
        raw = tmp_path / "raw"
        (raw / "cifar-10-batches-bin").mkdir(parents=True)
        for name, data in files.items():
            (raw / "cifar-10-batches-bin" / name).write_bytes(data)
    out = tmp_path / "out"
    manifest = cifar.prepare_cifar(raw, out / "cifar10", cifar.CIFAR10, samples_per_shard=6)
    assert manifest.samples("train") == 19 and manifest.samples("test") == 5
    assert manifest.skipped == {"label out of range": 1, "truncated record": 1}
    assert manifest.stats["label_names"] == CIFAR10_NAMES
    assert verify("cifar10", out) == []
    train = list(iter_split("cifar10", "train", out))
    kept = [t for t in truth["train"] if t[0] < 10]
    assert [int(s["cls"]) for s in train] == [label for label, _ in kept]
    for sample, (label, image) in zip(train[::7], kept[::7], strict=True):
        np.testing.assert_array_equal(decoded(sample), image)
        assert sample["json"]["label_name"] == CIFAR10_NAMES[label]
    assert (
        train[4]["json"]["id"] == "train_00004" and train[5]["json"]["id"] == "train_00006"
    )  # train_00005 had label 42


def test_cifar100_fine_and_coarse_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    fine = [f"fine{i}" for i in range(100)]
    coarse = [f"coarse{i}" for i in range(20)]
    train = b"".join(record(rng, [i % 20, (7 * i) % 100])[0] for i in range(6))
    test, image = record(rng, [5, 99])
    files = {
        "train.bin": train,
        "test.bin": test,
        "fine_label_names.txt": "\n".join(fine).encode(),
        "coarse_label_names.txt": "\n".join(coarse).encode(),
    }
    raw = write_targz(tmp_path / "cifar-100-binary.tar.gz", files, "cifar-100-binary")
    manifest = cifar.prepare_cifar(raw, tmp_path / "out" / "cifar100", cifar.CIFAR100, samples_per_shard=4)
    assert (manifest.samples("train"), manifest.samples("test")) == (6, 1)
    [sample] = list(iter_split("cifar100", "test", tmp_path / "out"))
    assert sample["json"] == {"id": "test_00000", "label": 99, "label_name": "fine99", "coarse_label": 5}
    np.testing.assert_array_equal(decoded(sample), image)
    assert [int(s["cls"]) for s in iter_split("cifar100", "train", tmp_path / "out")] == [
        (7 * i) % 100 for i in range(6)
    ]


def test_unsafe_member_and_missing_files_are_refused(tmp_path: Path) -> None:
    files, _ = cifar10_files()
    evil = write_targz(tmp_path / "evil.tar.gz", files, "cifar-10-batches-bin", extra={"../../escape.txt": b"x"})
    with pytest.raises(DataMissingError, match="refusing"):
        cifar.prepare_cifar(evil, tmp_path / "out" / "cifar10", cifar.CIFAR10)
    assert not (tmp_path / "escape.txt").exists()
    del files["data_batch_3.bin"]
    partial = write_targz(tmp_path / "partial.tar.gz", files, "cifar-10-batches-bin")
    with pytest.raises(DataMissingError, match="lacks cifar-10-batches-bin/data_batch_3.bin"):
        cifar.prepare_cifar(partial, tmp_path / "out" / "cifar10", cifar.CIFAR10)
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(DataMissingError, match="not a readable tarball"):
        cifar.prepare_cifar(tmp_path / "junk.tar.gz", tmp_path / "out" / "cifar10", cifar.CIFAR10)
    assert not (tmp_path / "out" / "cifar10" / "manifest.json").exists()
