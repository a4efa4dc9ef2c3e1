"""OpenWebText subset -> cleaned lines -> GPT-2 BPE -> fairseq ``.bin``/``.idx`` (Data2Vec2 text format).

Raw layouts (``--raw`` points at the folder):

* the official download: ``urlsf_subset00.tar`` ... ``urlsf_subset20.tar``
  (each holds ``*.xz`` archives of ``.txt`` documents); chunk k = the k-th tar
  in sorted order (1-based). Read in place with ``tarfile``/``lzma``, nothing
  is extracted; members whose names leave the archive (absolute, ``..``) are
  refused and counted.
* extracted chunks: one sub-folder per chunk (sorted; e.g. ``urlsf_subset00/``),
  each holding ``.txt`` documents (searched recursively, sorted).
* a flat folder of ``.txt`` documents = a single chunk 1.

The thesis trains on chunks 1-6 and validates on chunk 7 of the 21
(REFERENCE §4.1); that is ``OpenWebTextConfig``'s default at every scale.

Cleaning, per line of each document (in this order; counted by reason):
``nul byte`` (the raw line contains ``\\x00``), ``invalid utf-8`` (the line is
*dropped*, not repaired, so no U+FFFD enters training text), ``empty``
(whitespace only) and ``separator`` (the stripped line is ``---``). Kept lines
are stripped of surrounding whitespace and BPE-encoded one line at a time, as
fairseq's ``multiprocessing_bpe_encoder`` does; each line becomes one sequence
of fairseq dictionary ids followed by ``</s>`` (= ``fairseq-preprocess
--only-source --srcdict dict.txt``). Documents with no line left are counted
as ``empty documents``.

Training examples (Table 3): the split's token stream (all sequences
concatenated, ``</s>`` included) cut into consecutive ``slice_tokens``-token
slices; the last, partial slice counts (fairseq ``TokenBlockDataset``,
``break_mode="none"``), so slices = ceil(tokens / 256). The thesis's own code
packed BERT-uncased lines into <=254-token blocks + [CLS]/[SEP]; its "13M"
therefore differs in definition (REFERENCE §10 item 13).

Memory does not depend on corpus size: documents stream through in batches
and the indexed-dataset writer spools its index to disk.
"""

from __future__ import annotations

import dataclasses
import io
import json
import lzma
import math
import os
import posixpath
import shutil
import tarfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mmthesis.core.console import console, progress
from mmthesis.core.errors import DataMissingError, MMThesisError
from mmthesis.core.io import atomic_path, atomic_write_json, sha256_file, sha256_json
from mmthesis.data.gpt2_bpe import DICT_TXT, GPT2BPE, FairseqDictionary, fairseq_dictionary, gpt2_bpe
from mmthesis.data.indexed_dataset import MMapIndexedDataset, MMapIndexedDatasetBuilder, best_fitting_int_dtype
from mmthesis.data.manifest import MANIFEST, Manifest, dataset_dir, reuse_prepared, write_manifest
from mmthesis.data.registry import DatasetSpec, PrepareRequest, prepare_command, prepared_name, register
from mmthesis.data.standins import build_once, standin_dir

NAME = "openwebtext"
FORMAT_VERSION = 1
RAW_HINT = "openwebtext/ (urlsf_subset00.tar ... urlsf_subset20.tar)"
STAND_IN = "Python's bundled documentation topics (pydoc_data) as a raw English corpus"
SLICE_TOKENS = 256
STANDIN_CHUNKS = 7

# line / document skip reasons (stable: the manifest counts them)
NUL = "nul byte"
INVALID_UTF8 = "invalid utf-8"
EMPTY = "empty"
SEPARATOR = "separator"
EMPTY_DOC = "empty document"
UNSAFE_MEMBER = "unsafe archive member"
CORRUPT_XZ = "corrupt xz archive"
LINE_REASONS = (NUL, INVALID_UTF8, EMPTY, SEPARATOR)


@dataclasses.dataclass(frozen=True)
class OpenWebTextConfig:
    """Which chunks form which split, and the example length. Defaults = the thesis (chunks 1-6 / 7, 256)."""

    train_chunks: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
    valid_chunks: tuple[int, ...] = (7,)
    slice_tokens: int = SLICE_TOKENS
    batch_lines: int = 4096  # lines per tokenizer call; affects speed/memory only, not the output

    def __post_init__(self) -> None:
        if set(self.train_chunks) & set(self.valid_chunks):
            raise MMThesisError(
                f"train_chunks {self.train_chunks} and valid_chunks {self.valid_chunks} overlap",
                "give each chunk to one split",
            )
        if not self.train_chunks or min((*self.train_chunks, *self.valid_chunks)) < 1:
            raise MMThesisError(
                "chunks are numbered from 1 and train_chunks must not be empty",
                "use e.g. train_chunks=(1, 2, 3, 4, 5, 6)",
            )
        if self.slice_tokens < 1:
            raise MMThesisError(f"slice_tokens must be positive, got {self.slice_tokens}", "use 256 (the thesis)")

    def output_config(self) -> dict[str, Any]:
        """The part of the config that determines the prepared files."""
        return {
            "train_chunks": list(self.train_chunks),
            "valid_chunks": list(self.valid_chunks),
            "slice_tokens": self.slice_tokens,
        }


def count_slices(tokens: int, slice_tokens: int = SLICE_TOKENS) -> int:
    """Training examples in a stream of ``tokens``: consecutive slices, the partial last one included."""
    return math.ceil(tokens / slice_tokens) if tokens > 0 else 0


# --------------------------------------------------------------------------- raw reading


@dataclasses.dataclass
class RawStats:
    lines_removed: Counter[str] = dataclasses.field(default_factory=Counter)
    other_skipped: Counter[str] = dataclasses.field(default_factory=Counter)


def _safe_name(name: str) -> bool:
    if not name or name.startswith(("/", "\\")) or "\\" in name or ":" in name.split("/", 1)[0]:
        return False
    return ".." not in posixpath.normpath(name).split("/")


def find_chunks(raw: Path) -> tuple[str, dict[int, Path]]:
    """The raw layout's name and chunk number -> source (a tar, a folder, or the flat folder)."""
    raw = Path(raw).expanduser()
    fix = f"pass --raw with {RAW_HINT}, or a folder of chunk sub-folders of .txt documents"
    if not raw.is_dir():
        raise DataMissingError(f"OpenWebText raw folder {raw} does not exist", fix)
    tars = sorted(
        p for p in raw.iterdir() if p.is_file() and p.name.startswith("urlsf_subset") and p.name.endswith(".tar")
    )
    if tars:
        return "urlsf_subset tars", {k: p for k, p in enumerate(tars, 1)}
    folders = sorted(p for p in raw.iterdir() if p.is_dir() and not p.name.startswith("."))
    if folders:
        return "chunk folders", {k: p for k, p in enumerate(folders, 1)}
    if any(p.suffix == ".txt" for p in raw.iterdir() if p.is_file()):
        return "flat folder (one chunk)", {1: raw}
    raise DataMissingError(f"{raw} holds no urlsf_subset*.tar, no chunk folders and no .txt files", fix)


def _iter_folder(folder: Path) -> Iterator[tuple[str, bytes]]:
    """``.txt`` files under ``folder``, depth first, each folder's files in sorted order (one listing at a time)."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(f for f in filenames if f.endswith(".txt") and not f.startswith(".")):
            path = Path(dirpath) / name
            yield str(path.relative_to(folder)), path.read_bytes()


def _iter_xz(name: str, data: bytes, stats: RawStats) -> Iterator[tuple[str, bytes]]:
    """Documents of one ``.xz`` member: a tar.xz of ``.txt`` files (OpenWebText), or a single xz text."""
    try:
        plain = lzma.decompress(data)
    except (lzma.LZMAError, EOFError):
        stats.other_skipped[CORRUPT_XZ] += 1
        return
    try:
        inner = tarfile.open(fileobj=io.BytesIO(plain), mode="r:")
    except tarfile.TarError:
        yield name, plain  # an xz-compressed text document, not an archive
        return
    with inner:
        try:
            for member in inner:
                if not _safe_name(member.name):
                    stats.other_skipped[UNSAFE_MEMBER] += 1
                    continue
                if member.isfile() and member.name.endswith(".txt"):
                    f = inner.extractfile(member)
                    yield f"{name}/{member.name}", f.read() if f is not None else b""
        except (tarfile.TarError, EOFError):
            stats.other_skipped[CORRUPT_XZ] += 1


def _iter_tar(path: Path, stats: RawStats) -> Iterator[tuple[str, bytes]]:
    try:
        with tarfile.open(path, "r|") as tar:
            for member in tar:
                if not _safe_name(member.name):
                    stats.other_skipped[UNSAFE_MEMBER] += 1
                    continue
                if not member.isfile():
                    continue
                f = tar.extractfile(member)
                data = f.read() if f is not None else b""
                if member.name.endswith(".xz"):
                    yield from _iter_xz(member.name, data, stats)
                elif member.name.endswith(".txt"):
                    yield member.name, data
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataMissingError(f"{path} is not a readable tar ({e})", "re-download this urlsf_subset tar") from e


def iter_documents(source: Path, stats: RawStats) -> Iterator[tuple[str, bytes]]:
    """(document id, raw bytes) of one chunk, in a deterministic order."""
    if source.is_file():
        yield from _iter_tar(source, stats)
    else:
        yield from _iter_folder(source)


def clean_lines(data: bytes, removed: Counter[str]) -> list[str]:
    """The thesis's line filter (see module doc); returns the kept, stripped lines."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the newline that ends the last line does not start another one
    kept: list[str] = []
    for raw_line in lines:
        if b"\x00" in raw_line:
            removed[NUL] += 1
            continue
        try:
            text = raw_line.decode("utf-8")
        except UnicodeDecodeError:
            removed[INVALID_UTF8] += 1
            continue
        text = text.strip()
        if not text:
            removed[EMPTY] += 1
        elif text == "---":
            removed[SEPARATOR] += 1
        else:
            kept.append(text)
    return kept


# --------------------------------------------------------------------------- encoding


@dataclasses.dataclass
class SplitResult:
    tokens: int
    sequences: int
    documents: int
    chunks: list[int]
    lines_removed: dict[str, int]
    other_skipped: dict[str, int]


def _flush(
    docs: list[list[str]], builder: MMapIndexedDatasetBuilder, bpe: GPT2BPE, dictionary: FairseqDictionary
) -> None:
    flat = [line for doc in docs for line in doc]
    encoded = bpe.encode_batch(flat) if flat else []
    i = 0
    for doc in docs:
        for _ in doc:
            builder.add_item(dictionary.from_gpt2(encoded[i], append_eos=True))
            i += 1
        builder.end_document()
    docs.clear()


def encode_split(
    chunks: dict[int, Path], wanted: tuple[int, ...], prefix: Path, config: OpenWebTextConfig, label: str
) -> SplitResult:
    """Stream the wanted chunks into ``prefix.bin``/``prefix.idx`` (written atomically at the end)."""
    bpe, dictionary = gpt2_bpe(), fairseq_dictionary()
    stats = RawStats()
    documents = 0
    pending: list[list[str]] = []
    pending_lines = 0
    builder = MMapIndexedDatasetBuilder(prefix, dtype=best_fitting_int_dtype(len(dictionary)))
    with builder, progress() as bar:
        task = bar.add_task(label, total=len(wanted))
        for k in wanted:
            for _doc_id, data in iter_documents(chunks[k], stats):
                lines = clean_lines(data, stats.lines_removed)
                if not lines:
                    stats.other_skipped[EMPTY_DOC] += 1
                    continue
                documents += 1
                pending.append(lines)
                pending_lines += len(lines)
                if pending_lines >= config.batch_lines:
                    _flush(pending, builder, bpe, dictionary)
                    pending_lines = 0
            bar.advance(task)
        _flush(pending, builder, bpe, dictionary)
        result = SplitResult(
            tokens=builder.num_tokens,
            sequences=builder.num_sequences,
            documents=documents,
            chunks=list(wanted),
            lines_removed={r: stats.lines_removed[r] for r in LINE_REASONS},
            other_skipped=dict(sorted(stats.other_skipped.items())),
        )
    return result


def _file_record(folder: Path, name: str, samples: int) -> dict[str, Any]:
    path = folder / name
    return {"file": name, "sha256": sha256_file(path), "samples": samples, "bytes": path.stat().st_size, "skipped": []}


def _fingerprint(source: Path) -> tuple[int, int]:
    """(files, bytes) of a chunk: a changed chunk must not be mistaken for a finished one on resume."""
    if source.is_file():
        return 1, source.stat().st_size
    files = size = 0
    for dirpath, _dirs, names in os.walk(source):
        for n in names:
            if n.endswith(".txt"):
                files += 1
                size += os.stat(os.path.join(dirpath, n)).st_size
    return files, size


def _split_done(folder: Path, split: str, key: dict[str, Any]) -> dict[str, Any] | None:
    """The recorded result of a finished split with the same inputs, if its files are intact."""
    sidecar = folder / f"{split}.json"
    try:
        record = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if record.get("key") != key:
        return None
    for shard in record.get("entry", {}).get("shards", []):
        path = folder / shard["file"]
        if not path.is_file() or sha256_file(path) != shard["sha256"]:
            return None
    return record["entry"]


def prepare_from_raw(
    raw: Path, folder: Path, config: OpenWebTextConfig | None = None, *, stand_in: str | None = None, name: str = NAME
) -> Manifest:
    """Prepare ``raw`` into ``folder`` (resumable per split); returns the written manifest."""
    config = config or OpenWebTextConfig()
    layout, chunks = find_chunks(raw)
    for split, wanted in (("train", config.train_chunks), ("valid", config.valid_chunks)):
        missing = [k for k in wanted if k not in chunks]
        if missing:
            raise DataMissingError(
                f"OpenWebText raw at {raw} ({layout}) has chunks 1..{max(chunks)}, but {split}_chunks asks for {missing}",
                f"pass the full download ({RAW_HINT}) or set {split}_chunks to chunks that exist",
            )
    dict_sha = sha256_file(DICT_TXT)
    manifest_config = {
        "format_version": FORMAT_VERSION,
        "raw": str(Path(raw).expanduser().resolve()),
        "layout": layout,
        **config.output_config(),
        "tokenizer": "gpt2-bpe (encoder.json + vocab.bpe) -> fairseq dict.txt ids, </s> after every line",
        "dict_sha256": dict_sha,
        "stand_in": stand_in,
    }
    if (existing := reuse_prepared(name, folder, manifest_config, required=(), verify_files=False)) is not None:
        return existing
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).unlink(missing_ok=True)  # the dataset is incomplete until the new manifest is written
    splits: dict[str, dict[str, Any]] = {}
    removed_total: Counter[str] = Counter()
    for split, wanted in (("train", config.train_chunks), ("valid", config.valid_chunks)):
        if not wanted:
            continue
        sources = {str(k): [str(chunks[k]), *_fingerprint(chunks[k])] for k in wanted}
        key = {
            "config": sha256_json(manifest_config),
            "split": split,
            "sources": sources,
        }  # JSON-shaped: compared with the sidecar
        entry = _split_done(folder, split, key)
        if entry is None:
            result = encode_split(chunks, wanted, folder / split, config, f"{name}/{split}")
            entry = {
                "samples": count_slices(result.tokens, config.slice_tokens),
                "tokens": result.tokens,
                "sequences": result.sequences,
                "documents": result.documents,
                "chunks": result.chunks,
                "slice_tokens": config.slice_tokens,
                "lines_removed": result.lines_removed,
                "other_skipped": result.other_skipped,
                "skipped": sum(result.lines_removed.values()) + sum(result.other_skipped.values()),
                "shards": [
                    _file_record(folder, f"{split}.bin", result.sequences),
                    _file_record(folder, f"{split}.idx", result.sequences),
                ],
            }
            atomic_write_json(folder / f"{split}.json", {"key": key, "entry": entry})
        splits[split] = entry
        removed_total.update(entry["lines_removed"])
        removed_total.update(entry["other_skipped"])
    with atomic_path(folder / "dict.txt") as tmp:  # fairseq expects dict.txt beside the .bin/.idx
        shutil.copyfile(DICT_TXT, tmp)
    stats = {
        "tokens": {s: e["tokens"] for s, e in splits.items()},
        "documents": {s: e["documents"] for s, e in splits.items()},
        f"slices_{config.slice_tokens}": {s: e["samples"] for s, e in splits.items()},
        "lines_removed": {s: e["lines_removed"] for s, e in splits.items()},
        "dictionary": {"file": "dict.txt", "sha256": dict_sha, "size": len(fairseq_dictionary())},
        "dtype": np.dtype(best_fitting_int_dtype(len(fairseq_dictionary()))).name,
        "stand_in": stand_in,
    }
    manifest = Manifest(
        name=name,
        splits=splits,
        config=manifest_config,
        stats=stats,
        skipped={r: n for r, n in sorted(removed_total.items()) if n},
    )
    write_manifest(folder, manifest)
    console.print(
        f"{name}: prepared "
        + ", ".join(
            f"{s} {e['tokens']:,} tokens / {e['samples']:,} slices of {config.slice_tokens}" for s, e in splits.items()
        )
        + f" at {folder}"
    )
    return manifest


def open_split(folder: Path, split: str) -> MMapIndexedDataset:
    """The prepared split as a memory-mapped fairseq indexed dataset."""
    return MMapIndexedDataset(folder / split)


# --------------------------------------------------------------------------- smoke stand-in


def standin_documents() -> dict[str, str]:
    """Python's ``pydoc_data.topics``: ~80 English documentation texts shipped with CPython."""
    try:
        from pydoc_data.topics import topics
    except ImportError as e:  # some distributions strip pydoc_data
        raise DataMissingError(
            "this Python has no pydoc_data (needed for the OpenWebText smoke stand-in)",
            f"install the full CPython standard library, or run `{prepare_command(NAME, 'full')}`",
        ) from e
    return dict(topics)


def build_standin_raw(dest: Path, n_chunks: int = STANDIN_CHUNKS) -> Path:
    """Write the topics as ``dest/urlsf_subsetNN/<topic>.txt`` in ``n_chunks`` contiguous chunk folders (once)."""
    docs = standin_documents()
    names = sorted(docs)

    def build(tmp: Path) -> None:
        for i, topic in enumerate(names):
            chunk = i * n_chunks // len(names)
            out = tmp / f"urlsf_subset{chunk:02d}" / f"{topic}.txt"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(docs[topic], encoding="utf-8")

    version = {"generator": "openwebtext-standin-v1", "chunks": n_chunks, "topics_sha256": sha256_json(docs)}
    return build_once(dest, STAND_IN, version, build)


def prepare(req: PrepareRequest, config: OpenWebTextConfig | None = None) -> Manifest:
    """``mmthesis data prepare openwebtext --raw openwebtext/`` (or ``--scale smoke`` for the pydoc stand-in)."""
    folder = dataset_dir(prepared_name(NAME, req.scale), req.out_root)
    if req.scale == "smoke" and req.raw is None:
        raw = build_standin_raw(standin_dir(folder.name))
        return prepare_from_raw(raw, folder, config, stand_in=STAND_IN, name=folder.name)
    if req.raw is None:
        raise DataMissingError(
            "OpenWebText needs your download of the corpus", f"run `{prepare_command(NAME, req.scale)}`"
        )
    return prepare_from_raw(req.raw, folder, config, name=folder.name)


register(
    DatasetSpec(
        name=NAME,
        kind="text",
        summary="OpenWebText subset (chunks 1-6 train, 7 valid), GPT-2 BPE in fairseq .bin/.idx; examples = 256-token slices",
        prepare=prepare,
        raw_hint=RAW_HINT,
        scales=("smoke", "full"),
        stand_in={"smoke": STAND_IN},
    )
)
