"""fairseq MMapIndexedDataset: exact header bytes, round trip, Megatron variant, streaming, errors."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from mmthesis.core.errors import DataMissingError
from mmthesis.data import indexed_dataset as ix

SEQS = [[5, 6, 7], [], [65535, 0], [42]]


def build(prefix: Path, seqs, dtype=np.uint16, **kw) -> tuple[Path, Path]:
    b = ix.MMapIndexedDatasetBuilder(prefix, dtype=dtype, **kw)
    for i, s in enumerate(seqs):
        b.add_item(np.array(s, dtype=np.int64))
        if i == 1:
            b.end_document()
    return b.finalize()


def test_fairseq_index_bytes_exactly(tmp_path: Path) -> None:
    bin_, idx = build(tmp_path / "train", SEQS)
    expected = (
        b"MMIDIDX\x00\x00"
        + struct.pack("<Q", 1)
        + struct.pack("<B", 8)  # uint16
        + struct.pack("<Q", 4)
        + np.array([3, 0, 2, 1], dtype="<i4").tobytes()
        + np.array([0, 6, 6, 10], dtype="<i8").tobytes()  # byte offsets: 2 bytes per token
    )
    assert idx.read_bytes() == expected
    assert bin_.read_bytes() == np.array([5, 6, 7, 65535, 0, 42], dtype="<u2").tobytes()


def test_round_trip(tmp_path: Path) -> None:
    build(tmp_path / "train", SEQS)
    ds = ix.MMapIndexedDataset(tmp_path / "train")
    assert len(ds) == 4 and ds.dtype == np.uint16 and ds.doc_idx is None
    assert [ds[i].tolist() for i in range(4)] == SEQS
    assert ds[-1].tolist() == [42]
    assert ds.num_tokens == 6 and ds.tokens.tolist() == [5, 6, 7, 65535, 0, 42]
    with pytest.raises(IndexError):
        ds[4]


def test_megatron_document_index_variant(tmp_path: Path) -> None:
    _, idx = build(tmp_path / "m", SEQS, dtype=np.int32, document_index=True)
    raw = idx.read_bytes()
    assert raw[17] == 4  # int32
    assert struct.unpack_from("<QQ", raw, 18) == (4, 3)  # sequences, doc_idx entries
    ds = ix.MMapIndexedDataset(tmp_path / "m")
    assert ds.doc_idx.tolist() == [0, 2, 4]
    assert [ds[i].tolist() for i in range(4)] == SEQS


def test_streaming_spool_matches_in_memory_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 50000, size=int(n)).tolist() for n in rng.integers(0, 9, size=23)]
    monkeypatch.setattr(ix, "_CHUNK", 4)  # force many spool flushes and pointer chunks
    build(tmp_path / "a", seqs)
    monkeypatch.setattr(ix, "_CHUNK", 1 << 20)
    build(tmp_path / "b", seqs)
    assert (tmp_path / "a.idx").read_bytes() == (tmp_path / "b.idx").read_bytes()
    ds = ix.MMapIndexedDataset(tmp_path / "a")
    assert [ds[i].tolist() for i in range(len(ds))] == seqs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "a.idx", "b.bin", "b.idx"]  # no spool files left


def test_failure_inside_with_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with ix.MMapIndexedDatasetBuilder(tmp_path / "x") as b:
            b.add_item([1, 2])
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_values_must_fit_the_dtype(tmp_path: Path) -> None:
    b = ix.MMapIndexedDatasetBuilder(tmp_path / "x", dtype=np.uint16)
    with pytest.raises(ValueError, match="do not fit"):
        b.add_item([70000])
    with pytest.raises(ValueError, match="1-D"):
        b.add_item([[1]])
    b.abort()


def test_dtype_codes_and_choice() -> None:
    assert ix.dtype_code(np.uint16) == 8 and ix.dtype_code(np.int32) == 4 and ix.dtype_code(np.int64) == 5
    assert ix.best_fitting_int_dtype(50264) == np.uint16
    assert ix.best_fitting_int_dtype(70000) == np.uint32


def test_corrupt_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataMissingError, match="missing"):
        ix.MMapIndexedDataset(tmp_path / "none")
    bin_, idx = build(tmp_path / "t", SEQS)
    bin_.write_bytes(bin_.read_bytes()[:-2])
    with pytest.raises(DataMissingError, match="index describes"):
        ix.MMapIndexedDataset(tmp_path / "t")
    idx.write_bytes(b"TNTIDX\x00\x00" + idx.read_bytes()[8:])
    with pytest.raises(DataMissingError, match="bad magic"):
        ix.MMapIndexedDataset(tmp_path / "t")
    bin_, idx = build(tmp_path / "u", SEQS)
    idx.write_bytes(idx.read_bytes()[:-3])
    with pytest.raises(DataMissingError, match="truncated|fits neither"):
        ix.MMapIndexedDataset(tmp_path / "u")
