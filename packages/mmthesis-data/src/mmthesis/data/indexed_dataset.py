"""fairseq's memory-mapped indexed dataset (``--dataset-impl mmap``): ``PREFIX.bin`` + ``PREFIX.idx``.

Why this format: Data2Vec2's text model and every fairseq/Megatron text
pipeline read it, so prepared OpenWebText can be fed to the original code
unchanged; and a memmap makes token counting and random access O(1) in RAM.

Layout (little endian), as written by ``fairseq/data/indexed_dataset.py``::

    .idx  b"MMIDIDX\\x00\\x00"  <Q version=1  <B dtype code  <Q n_sequences
          int32[n] sizes (tokens per sequence)  int64[n] pointers (byte offset in .bin)
    .bin  the token arrays of all sequences, concatenated, in the dtype

Megatron-LM extends the header with ``<Q n_docs`` after ``n_sequences`` and
appends ``int64[n_docs] doc_idx``; fairseq's reader would misread that, so we
write fairseq's layout by default (``document_index=True`` writes Megatron's)
and the reader accepts both, telling them apart by the exact file size.

The builder streams: sizes go to a temporary side file, so memory does not
grow with the corpus; both files appear atomically at ``finalize``.
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import numpy as np

from mmthesis.core.errors import DataMissingError

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
CODE_TO_DTYPE: dict[int, type[np.generic]] = {
    1: np.uint8,
    2: np.int8,
    3: np.int16,
    4: np.int32,
    5: np.int64,
    6: np.float64,
    7: np.double,
    8: np.uint16,
    9: np.uint32,
    10: np.uint64,
}
_CHUNK = 1 << 20  # entries per streamed block of sizes / pointers


def dtype_code(dtype: type[np.generic] | np.dtype) -> int:
    """fairseq's header code of ``dtype`` (first match, as ``_dtype_header_code`` does)."""
    dt = np.dtype(dtype)
    for code, candidate in CODE_TO_DTYPE.items():
        if np.dtype(candidate) == dt:
            return code
    raise ValueError(f"dtype {dt} has no fairseq indexed-dataset code")


def best_fitting_int_dtype(max_int: int | None) -> type[np.generic]:
    """fairseq's choice of token dtype for a vocabulary whose largest id is below ``max_int``."""
    if max_int is None:
        return np.uint32
    if max_int < 65500:
        return np.uint16
    if max_int < 4294967295:
        return np.uint32
    return np.int64


def index_path(prefix: str | os.PathLike[str]) -> Path:
    return Path(f"{os.fspath(prefix)}.idx")


def data_path(prefix: str | os.PathLike[str]) -> Path:
    return Path(f"{os.fspath(prefix)}.bin")


class _Int64Spool:
    """An append-only on-disk int array (for sizes / doc_idx), so the builder's memory stays constant."""

    def __init__(self, folder: Path, dtype: type[np.generic]) -> None:
        fd, name = tempfile.mkstemp(prefix=".spool-", suffix=".tmp", dir=folder)
        self.path = Path(name)
        self.file = os.fdopen(fd, "w+b")
        self.dtype = np.dtype(dtype)
        self.buffer: list[int] = []
        self.count = 0

    def append(self, value: int) -> None:
        self.buffer.append(value)
        self.count += 1
        if len(self.buffer) >= _CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            self.file.write(np.asarray(self.buffer, dtype=self.dtype).tobytes())
            self.buffer.clear()

    def chunks(self) -> Iterator[np.ndarray]:
        self.flush()
        self.file.flush()
        self.file.seek(0)
        step = _CHUNK * self.dtype.itemsize
        while data := self.file.read(step):
            yield np.frombuffer(data, dtype=self.dtype)

    def close(self) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)


class MMapIndexedDatasetBuilder:
    """Write ``prefix.bin``/``prefix.idx`` one sequence at a time; files appear only at ``finalize``.

    ``end_document()`` marks document boundaries (Megatron semantics: ``doc_idx``
    starts with 0 and gets the running sequence count at each document end).
    """

    def __init__(
        self, prefix: str | os.PathLike[str], dtype: type[np.generic] = np.uint16, document_index: bool = False
    ) -> None:
        self.prefix = Path(prefix)
        self.dtype = np.dtype(dtype)
        dtype_code(self.dtype)  # fail early on an unsupported dtype
        self.document_index = document_index
        folder = self.prefix.parent
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{self.prefix.name}.bin.", suffix=".tmp", dir=folder)
        self._bin_tmp = Path(name)
        self._bin = os.fdopen(fd, "wb")
        self._sizes = _Int64Spool(folder, np.int32)
        self._docs = _Int64Spool(folder, np.int64)
        self._docs.append(0)
        self._last_doc_end = 0
        self.num_tokens = 0
        self._closed = False

    @property
    def num_sequences(self) -> int:
        return self._sizes.count

    @property
    def num_documents(self) -> int:
        return self._docs.count - 1

    def add_item(self, tokens: np.ndarray | list[int]) -> None:
        arr = np.asarray(tokens)
        if arr.ndim != 1:
            raise ValueError(f"a sequence must be 1-D, got shape {arr.shape}")
        if arr.size and np.issubdtype(arr.dtype, np.integer):
            info = np.iinfo(self.dtype) if np.issubdtype(self.dtype, np.integer) else None
            if info is not None and (arr.min() < info.min or arr.max() > info.max):
                raise ValueError(f"token ids {arr.min()}..{arr.max()} do not fit {self.dtype}")
        if arr.size > np.iinfo(np.int32).max:
            raise ValueError("a sequence longer than 2**31-1 tokens cannot be indexed")
        self._bin.write(arr.astype(self.dtype, copy=False).tobytes(order="C"))
        self._sizes.append(int(arr.size))
        self.num_tokens += int(arr.size)

    def end_document(self) -> None:
        """Close the current document (no-op if no sequence was added since the last one)."""
        if self._sizes.count > self._last_doc_end:
            self._docs.append(self._sizes.count)
            self._last_doc_end = self._sizes.count

    def finalize(self) -> tuple[Path, Path]:
        """Write the index and move both files into place; returns (bin, idx)."""
        self.end_document()
        self._bin.close()
        idx_target, bin_target = index_path(self.prefix), data_path(self.prefix)
        fd, name = tempfile.mkstemp(prefix=f".{self.prefix.name}.idx.", suffix=".tmp", dir=self.prefix.parent)
        idx_tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(MAGIC)
                f.write(struct.pack("<Q", VERSION))
                f.write(struct.pack("<B", dtype_code(self.dtype)))
                f.write(struct.pack("<Q", self._sizes.count))
                if self.document_index:
                    f.write(struct.pack("<Q", self._docs.count))
                for chunk in self._sizes.chunks():
                    f.write(chunk.astype("<i4", copy=False).tobytes())
                address = 0
                itemsize = self.dtype.itemsize
                for chunk in self._sizes.chunks():
                    ends = np.cumsum(chunk.astype(np.int64) * itemsize) + address
                    starts = np.concatenate(([address], ends[:-1])).astype("<i8")
                    f.write(starts.tobytes())
                    address = int(ends[-1])
                if self.document_index:
                    for chunk in self._docs.chunks():
                        f.write(chunk.astype("<i8", copy=False).tobytes())
                f.flush()
                os.fsync(f.fileno())
            os.replace(self._bin_tmp, bin_target)
            os.replace(idx_tmp, idx_target)
        finally:
            idx_tmp.unlink(missing_ok=True)
            self._cleanup()
        return bin_target, idx_target

    def _cleanup(self) -> None:
        if not self._closed:
            self._closed = True
            self._sizes.close()
            self._docs.close()
            if not self._bin.closed:
                self._bin.close()
            self._bin_tmp.unlink(missing_ok=True)

    def abort(self) -> None:
        """Drop everything written so far (no output files are left)."""
        self._cleanup()

    def __enter__(self) -> MMapIndexedDatasetBuilder:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            if not self._closed:
                self.finalize()
        else:
            self.abort()


class MMapIndexedDataset:
    """Read-only view of ``prefix.bin``/``prefix.idx``; ``ds[i]`` is a numpy view of sequence ``i``."""

    def __init__(self, prefix: str | os.PathLike[str]) -> None:
        self.prefix = Path(prefix)
        idx, bin_ = index_path(prefix), data_path(prefix)
        fix = "re-run the dataset's `mmthesis data prepare` command"
        for p in (idx, bin_):
            if not p.is_file():
                raise DataMissingError(f"indexed dataset file {p} is missing", fix)
        with open(idx, "rb") as f:
            header = f.read(9 + 8 + 1 + 8 + 8)
        if len(header) < 26 or header[:9] != MAGIC:
            raise DataMissingError(f"{idx} is not an MMIDIDX index (bad magic)", fix)
        (version,) = struct.unpack_from("<Q", header, 9)
        if version != VERSION:
            raise DataMissingError(f"{idx} has index version {version}, expected {VERSION}", fix)
        (code,) = struct.unpack_from("<B", header, 17)
        if code not in CODE_TO_DTYPE:
            raise DataMissingError(f"{idx} has unknown dtype code {code}", fix)
        self.dtype = np.dtype(CODE_TO_DTYPE[code])
        (n,) = struct.unpack_from("<Q", header, 18)
        size = idx.stat().st_size
        offset = 26
        self.doc_idx: np.ndarray | None = None
        n_docs = 0
        if size == offset + 12 * n:
            pass  # fairseq layout
        elif len(header) == 34:
            (n_docs,) = struct.unpack_from("<Q", header, 26)
            if size != 34 + 12 * n + 8 * n_docs:
                raise DataMissingError(
                    f"{idx} has {size} bytes, which fits neither the fairseq nor the Megatron layout for {n} sequences",
                    fix,
                )
            offset = 34
        else:
            raise DataMissingError(f"{idx} is truncated ({size} bytes for {n} sequences)", fix)
        self._idx_map = np.memmap(idx, mode="r", dtype=np.uint8)
        self.sizes = np.frombuffer(self._idx_map, dtype="<i4", count=n, offset=offset)
        self.pointers = np.frombuffer(self._idx_map, dtype="<i8", count=n, offset=offset + 4 * n)
        if offset == 34:
            self.doc_idx = np.frombuffer(self._idx_map, dtype="<i8", count=n_docs, offset=offset + 12 * n)
        self.num_tokens = int(self.sizes.sum(dtype=np.int64))
        expected = self.num_tokens * self.dtype.itemsize
        actual = bin_.stat().st_size
        if actual != expected:
            raise DataMissingError(f"{bin_} has {actual} bytes but its index describes {expected}", fix)
        self._bin_map = np.memmap(bin_, mode="r", dtype=self.dtype) if expected else np.zeros(0, dtype=self.dtype)

    def __len__(self) -> int:
        return int(self.sizes.shape[0])

    def __getitem__(self, i: int) -> np.ndarray:
        if not -len(self) <= i < len(self):
            raise IndexError(f"sequence {i} out of range for {len(self)} sequences")
        i %= len(self)
        start = int(self.pointers[i]) // self.dtype.itemsize
        return self._bin_map[start : start + int(self.sizes[i])]

    @property
    def tokens(self) -> np.ndarray:
        """All tokens of all sequences as one flat memmap (what fairseq's TokenBlockDataset slices)."""
        return self._bin_map
