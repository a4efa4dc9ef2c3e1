"""OpenWebText: the thesis's line cleaning, both raw layouts, fairseq .bin/.idx read back and decoded, slices."""

from __future__ import annotations

import io
import lzma
import tarfile
from collections import Counter
from pathlib import Path

import pytest

from mmthesis.core.errors import DataMissingError, MMThesisError
from mmthesis.core.paths import data_root, raw_root
from mmthesis.data.datasets import openwebtext as owt
from mmthesis.data.gpt2_bpe import fairseq_dictionary, gpt2_bpe
from mmthesis.data.indexed_dataset import MMapIndexedDataset
from mmthesis.data.manifest import read_manifest, verify
from mmthesis.data.registry import PrepareRequest, get_dataset, prepare_command

# chunk number -> {document name: raw bytes}; 7 chunks as in the thesis's split (1-6 train, 7 valid)
DOCS: dict[int, dict[str, bytes]] = {
    1: {
        "0001-a.txt": b"Hello world\n\n---\n   \nbad\x00line\ncaf\xe9 is latin-1\n  Hello world  \r\n",
        "0002-b.txt": b"\n \n",  # nothing survives: an empty document
    },
    2: {"0003-c.txt": b" Hello"},  # no final newline; stripped to "Hello"
    3: {},
    4: {},
    5: {},
    6: {"0004-d.txt": b"--- not a separator\n"},
    7: {"0005-e.txt": b"Hello world\n---\n"},
}
# kept lines of the train chunks, in order, and their GPT-2 token counts (+1 for </s> each)
TRAIN_LINES = ["Hello world", "Hello world", "Hello", "--- not a separator"]


def write_folder_layout(raw: Path) -> Path:
    for k, docs in DOCS.items():
        chunk = raw / f"urlsf_subset{k - 1:02d}"
        chunk.mkdir(parents=True)
        for name, data in docs.items():
            (chunk / name).write_bytes(data)
    return raw


def _tar_bytes(files: dict[str, bytes], mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_tar_layout(raw: Path) -> Path:
    """The official download: urlsf_subsetNN.tar holding .xz archives (tar.xz) of .txt documents, plus planted bad members."""
    raw.mkdir(parents=True)
    for k, docs in DOCS.items():
        inner = {f"{name}": data for name, data in docs.items()}
        members: dict[str, bytes] = {}
        if inner:
            members[f"openwebtext/urlsf_subset{k - 1:02d}-{k}_data.xz"] = _tar_bytes(inner, "w:xz")
        if k == 1:
            members["../evil.txt"] = b"escaping the folder\n"  # refused
            members["openwebtext/broken.xz"] = b"\xfd7zXZ\x00 definitely not xz"  # counted as corrupt
            members["openwebtext/unsafe.xz"] = _tar_bytes(
                {"/etc/passwd.txt": b"root\n"}, "w:xz"
            )  # inner member refused
        (raw / f"urlsf_subset{k - 1:02d}.tar").write_bytes(_tar_bytes(members))
    return raw


def decoded_sequences(folder: Path, split: str) -> list[str]:
    ds = MMapIndexedDataset(folder / split)
    fd, bpe = fairseq_dictionary(), gpt2_bpe()
    out = []
    for i in range(len(ds)):
        seq = ds[i]
        assert seq[-1] == fd.eos  # one </s> per line, as fairseq-preprocess writes
        out.append(bpe.decode(fd.to_gpt2(seq[:-1], strip_specials=False)))
    return out


def test_registered() -> None:
    spec = get_dataset("openwebtext")
    assert spec.kind == "text" and spec.scales == ("smoke", "full")
    assert spec.stand_in == {"smoke": "Python's bundled documentation topics (pydoc_data) as a raw English corpus"}


def test_clean_lines_reasons() -> None:
    removed: Counter[str] = Counter()
    kept = owt.clean_lines(DOCS[1]["0001-a.txt"], removed)
    assert kept == ["Hello world", "Hello world"]
    assert removed == {"empty": 2, "separator": 1, "nul byte": 1, "invalid utf-8": 1}


def test_folder_layout_end_to_end(tmp_path: Path) -> None:
    raw = write_folder_layout(tmp_path / "raw")
    folder = tmp_path / "out" / "openwebtext"
    m = owt.prepare_from_raw(raw, folder, owt.OpenWebTextConfig(slice_tokens=3))
    # "Hello world" = 2 GPT-2 tokens, "Hello" = 1, "--- not a separator" = 5; +1 </s> per line
    n_tokens = [len(gpt2_bpe().encode(line)) + 1 for line in TRAIN_LINES]
    assert n_tokens == [3, 3, 2, 6]
    train = m.split("train")
    assert train["tokens"] == 14 and train["sequences"] == 4 and train["documents"] == 3
    assert train["samples"] == 5  # ceil(14 / 3): the partial last slice counts
    assert train["lines_removed"] == {"nul byte": 1, "invalid utf-8": 1, "empty": 4, "separator": 1}
    assert train["other_skipped"] == {"empty document": 1}
    assert m.split("valid")["tokens"] == 3 and m.split("valid")["chunks"] == [7]
    assert m.skipped == {
        "empty": 4,
        "empty document": 1,
        "invalid utf-8": 1,
        "nul byte": 1,
        "separator": 1 + 1,
    }  # valid adds one "---"
    assert decoded_sequences(folder, "train") == TRAIN_LINES
    assert decoded_sequences(folder, "valid") == ["Hello world"]
    assert MMapIndexedDataset(folder / "train")[0].tolist() == [31414, 232, 2]  # RoBERTa's ids for "Hello world"
    assert (folder / "dict.txt").is_file() and m.stats["dtype"] == "uint16"
    assert verify("openwebtext", tmp_path / "out") == []


def test_tar_of_xz_layout_gives_the_same_tokens(tmp_path: Path) -> None:
    write_folder_layout(tmp_path / "folder")
    write_tar_layout(tmp_path / "tars")
    a = owt.prepare_from_raw(tmp_path / "folder", tmp_path / "a" / "openwebtext")
    b = owt.prepare_from_raw(tmp_path / "tars", tmp_path / "b" / "openwebtext")
    assert b.config["layout"] == "urlsf_subset tars"
    for split in ("train", "valid"):
        assert (tmp_path / f"a/openwebtext/{split}.bin").read_bytes() == (
            tmp_path / f"b/openwebtext/{split}.bin"
        ).read_bytes()
    assert b.split("train")["other_skipped"] == {
        "corrupt xz archive": 1,
        "empty document": 1,
        "unsafe archive member": 2,
    }
    assert a.split("train")["samples"] == b.split("train")["samples"] == 1  # 14 tokens -> one 256-token slice


def test_plain_xz_member_is_one_document(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for k in range(1, 8):
        members = {f"openwebtext/doc{k}.xz": lzma.compress(f"Document {k}\n".encode())}
        (raw / f"urlsf_subset{k - 1:02d}.tar").write_bytes(_tar_bytes(members))
    owt.prepare_from_raw(raw, tmp_path / "out" / "openwebtext")
    assert decoded_sequences(tmp_path / "out" / "openwebtext", "train") == [f"Document {k}" for k in range(1, 7)]


def test_missing_chunks_and_bad_config(tmp_path: Path) -> None:
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "one.txt").write_text("Hello\n")
    with pytest.raises(DataMissingError, match=r"asks for \[2, 3, 4, 5, 6\]"):
        owt.prepare_from_raw(tmp_path / "flat", tmp_path / "out" / "openwebtext")
    m = owt.prepare_from_raw(
        tmp_path / "flat", tmp_path / "out" / "openwebtext", owt.OpenWebTextConfig(train_chunks=(1,), valid_chunks=())
    )
    assert m.split("train")["tokens"] == 2 and "valid" not in m.splits
    with pytest.raises(MMThesisError, match="overlap"):
        owt.OpenWebTextConfig(train_chunks=(1, 2), valid_chunks=(2,))
    with pytest.raises(DataMissingError, match="does not exist"):
        owt.find_chunks(tmp_path / "nope")
    with pytest.raises(DataMissingError) as info:
        owt.prepare(PrepareRequest(out_root=tmp_path, raw=None, scale="full"))
    assert prepare_command("openwebtext", "full") in info.value.fix


def test_rerun_reuses_finished_splits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = write_folder_layout(tmp_path / "raw")
    folder = tmp_path / "out" / "openwebtext"
    first = owt.prepare_from_raw(raw, folder)
    (folder / "manifest.json").unlink()  # as if killed after both splits but before the manifest
    monkeypatch.setattr(owt, "encode_split", lambda *a, **k: pytest.fail("finished splits must be reused"))
    assert owt.prepare_from_raw(raw, folder) == first
    (folder / "valid.bin").write_bytes(b"\x00\x00")  # a damaged split is redone, not trusted
    monkeypatch.undo()
    again = owt.prepare_from_raw(raw, folder)
    assert again.split("valid")["shards"] == first.split("valid")["shards"]


def test_smoke_stand_in_decodes_to_the_cleaned_corpus() -> None:
    m = get_dataset("openwebtext").prepare(PrepareRequest(out_root=data_root(), raw=None, scale="smoke"))
    assert m.name == "openwebtext-smoke" and m.stats["stand_in"] == owt.STAND_IN
    raw = raw_root() / "openwebtext-smoke"
    chunks = sorted(p for p in raw.iterdir() if p.is_dir())
    assert [p.name for p in chunks] == [f"urlsf_subset{k:02d}" for k in range(7)]
    expected = []
    for chunk in chunks[:6]:
        for doc in sorted(chunk.glob("*.txt")):
            expected += [s for line in doc.read_text().split("\n") if (s := line.strip()) and s != "---"]
    folder = data_root() / "openwebtext-smoke"
    assert decoded_sequences(folder, "train") == expected
    tokens = m.split("train")["tokens"]
    assert tokens == int(MMapIndexedDataset(folder / "train").sizes.sum()) > 50_000
    assert m.split("train")["samples"] == -(-tokens // 256)
    assert read_manifest("openwebtext-smoke").split("valid")["documents"] == len(list(chunks[6].glob("*.txt")))
