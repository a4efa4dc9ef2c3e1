"""The prepared format (manifest.py, sharding.py): determinism, atomic writes, resume, verify, skip counts."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from mmthesis.core.errors import DataMissingError
from mmthesis.core.io import sha256_file
from mmthesis.data.manifest import Skipped, iter_split, read_manifest, read_shard, verify, write_shard
from mmthesis.data.sharding import begin_preparation, finish_manifest, prepare_split


def _sample(i: int) -> dict:
    return {
        "__key__": f"item{i:04d}",
        "txt": f"caption {i}",
        "bin": bytes([i % 256]) * (i + 1),
        "json": {"i": i, "name": f"n{i}"},
    }


def _make(i: int) -> dict | Skipped:
    if i % 7 == 3:
        return Skipped(f"item{i:04d}", "bad image")
    if i % 11 == 5:
        return Skipped(f"item{i:04d}", "no caption")
    return _sample(i)


class CountingMake:
    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, i: int) -> dict | Skipped:
        self.calls.append(i)
        return _make(i)


def _prepare(folder: Path, make=_make, n: int = 50) -> dict:
    return prepare_split(folder, "train", range(n), make, samples_per_shard=10)


def test_write_shard_is_deterministic(tmp_path: Path) -> None:
    a, b = tmp_path / "a.tar", tmp_path / "sub" / "b.tar"
    assert write_shard(a, (_sample(i) for i in range(5)))[0] == 5
    write_shard(b, [_sample(i) for i in range(5)])
    assert sha256_file(a) == sha256_file(b)
    with tarfile.open(a) as tar:
        members = tar.getmembers()
    assert [m.name for m in members[:4]] == ["item0000.bin", "item0000.json", "item0000.txt", "item0001.bin"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.mode) for m in members} == {(0, 0, 0, "", 0o644)}
    back = list(read_shard(a))
    assert back[2] == {
        "__key__": "item0002",
        "txt": b"caption 2",
        "bin": b"\x02\x02\x02",
        "json": {"i": 2, "name": "n2"},
    }


def test_write_shard_is_atomic(tmp_path: Path) -> None:
    target = tmp_path / "shard.tar"
    write_shard(target, [_sample(0)])
    before = target.read_bytes()

    def exploding():
        yield _sample(1)
        raise RuntimeError("killed mid-shard")

    with pytest.raises(RuntimeError):
        write_shard(target, exploding())
    assert target.read_bytes() == before  # the old shard is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard.tar"]  # and no temp file is left
    with pytest.raises(ValueError, match="must not contain"):
        write_shard(tmp_path / "x.tar", [{"__key__": "a.b", "txt": "x"}])
    assert not (tmp_path / "x.tar").exists()


def test_resume_rebuilds_only_missing_shards_identically(tmp_path: Path) -> None:
    folder = tmp_path / "ds"
    first = _prepare(folder)
    shards = sorted((folder / "train").glob("shard-*.tar"))
    assert len(shards) == 5
    original = {p: p.read_bytes() for p in shards}
    mtimes = {p: p.stat().st_mtime_ns for p in shards}
    shards[2].unlink()  # as if the run was killed before writing shard 2
    make = CountingMake()
    again = _prepare(folder, make)
    assert again == first
    assert make.calls == list(range(20, 30))  # only shard 2's items were processed again
    assert {p: p.read_bytes() for p in shards} == original
    assert all(p.stat().st_mtime_ns == mtimes[p] for p in shards if p != shards[2])


def test_stale_sidecar_is_redone(tmp_path: Path) -> None:
    folder = tmp_path / "ds"
    first = _prepare(folder)
    sidecar = folder / "train" / "shard-000001.tar.json"
    record = json.loads(sidecar.read_text())
    record["sha256"] = "0" * 64
    sidecar.write_text(json.dumps(record))
    make = CountingMake()
    assert _prepare(folder, make) == first
    assert make.calls == list(range(10, 20))
    assert json.loads(sidecar.read_text())["sha256"] == sha256_file(folder / "train" / "shard-000001.tar")
    # a truncated sidecar too
    sidecar.write_text("{")
    make = CountingMake()
    assert _prepare(folder, make) == first and make.calls == list(range(10, 20))


def test_skipped_reasons_are_counted(tmp_path: Path) -> None:
    folder = tmp_path / "ds"
    train = _prepare(folder)
    val = prepare_split(folder, "val", range(100, 120), _make, samples_per_shard=10)
    manifest = finish_manifest(folder, "ds", {"train": train, "val": val}, {"seed": 1}, {"images": 1})
    bad = sum(1 for i in [*range(50), *range(100, 120)] if i % 7 == 3)
    nocap = sum(1 for i in [*range(50), *range(100, 120)] if i % 7 != 3 and i % 11 == 5)
    assert manifest.skipped == {"bad image": bad, "no caption": nocap}
    assert manifest.samples("train") + manifest.samples("val") == 70 - bad - nocap
    assert train["skipped"] == sum(1 for i in range(50) if i % 7 == 3 or i % 11 == 5)
    assert read_manifest("ds", tmp_path) == manifest
    keys = [s["__key__"] for s in iter_split("ds", "train", tmp_path)]
    assert keys == [f"item{i:04d}" for i in range(50) if i % 7 != 3 and i % 11 != 5]


def test_verify_detects_modified_and_missing_shards(tmp_path: Path) -> None:
    folder = tmp_path / "ds"
    finish_manifest(folder, "ds", {"train": _prepare(folder)}, {}, {})
    assert verify("ds", tmp_path) == []
    shard = folder / "train" / "shard-000003.tar"
    data = bytearray(shard.read_bytes())
    data[600] ^= 0xFF  # flip one byte inside a member
    shard.write_bytes(bytes(data))
    assert verify("ds", tmp_path) == ["train: train/shard-000003.tar checksum mismatch"]
    (folder / "train" / "shard-000000.tar").unlink()
    assert verify("ds", tmp_path) == [
        "train: train/shard-000000.tar is missing",
        "train: train/shard-000003.tar checksum mismatch",
    ]


def test_manifest_errors_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DataMissingError, match="not prepared") as info:
        read_manifest("ds", tmp_path)
    assert info.value.fix == "run `mmthesis data prepare ds`"
    folder = tmp_path / "ds"
    manifest = finish_manifest(folder, "ds", {"train": _prepare(folder)}, {}, {})
    (folder / "manifest.json").write_text(json.dumps({**manifest.to_json(), "complete": False}))
    with pytest.raises(DataMissingError, match="only partly prepared"):
        read_manifest("ds", tmp_path)
    (folder / "manifest.json").write_text("{broken")
    with pytest.raises(DataMissingError, match="unreadable"):
        read_manifest("ds", tmp_path)
    with pytest.raises(DataMissingError, match="missing"):
        list(read_shard(folder / "train" / "nope.tar"))


def test_changed_config_discards_old_shards(tmp_path: Path) -> None:
    """Shard k is reused by checksum alone, so a preparation with another config must start clean."""
    folder = tmp_path / "ds"
    begin_preparation(folder, {"n": 50})
    finish_manifest(folder, "ds", {"train": _prepare(folder)}, {"n": 50}, {})
    begin_preparation(folder, {"n": 50})  # same config: everything kept
    assert (folder / "manifest.json").is_file() and len(list((folder / "train").glob("*.tar"))) == 5
    begin_preparation(folder, {"n": 30})
    assert not (folder / "manifest.json").exists() and list((folder / "train").glob("shard-*")) == []
    make = CountingMake()
    assert _prepare(folder, make, n=30)["samples"] == sum(1 for i in range(30) if i % 7 != 3 and i % 11 != 5)
    assert make.calls == list(range(30))
