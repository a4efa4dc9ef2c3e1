"""GPT-2 byte-level BPE (known ids, lossless round trip) and the fairseq dictionary mapping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmthesis.core.errors import DataMissingError
from mmthesis.data import gpt2_bpe as g


@pytest.fixture(scope="module")
def bpe() -> g.GPT2BPE:
    return g.gpt2_bpe()


@pytest.fixture(scope="module")
def fd() -> g.FairseqDictionary:
    return g.fairseq_dictionary()


def test_known_gpt2_ids(bpe: g.GPT2BPE) -> None:
    assert bpe.vocab_size == 50257
    assert bpe.encode("Hello world") == [15496, 995]
    assert bpe.encode(" Hello") == [18435]
    assert bpe.encode("Hello") == [15496]
    # no prefix space is added, and "<|endoftext|>" in raw text is plain characters (as in fairseq's encoder)
    assert bpe.encode("<|endoftext|>") == [27, 91, 437, 1659, 5239, 91, 29]
    assert bpe.encode_batch(["Hello world", " Hello"]) == [[15496, 995], [18435]]


@pytest.mark.parametrize(
    "text",
    [
        "Grüße aus Hannover! naïve café",
        "日本語のテキスト 👋🏽 emoji, ZWJ 👩‍👩‍👧",
        "  leading and trailing  ",
        "tabs\tand\nnewlines\r\n",
        "é" * 50,
        "",
    ],
)
def test_round_trip_is_lossless(bpe: g.GPT2BPE, text: str) -> None:
    ids = bpe.encode(text)
    assert all(0 <= i < 50257 for i in ids)
    assert bpe.decode(ids) == text


def test_fairseq_mapping_follows_dict_txt(fd: g.FairseqDictionary) -> None:
    lines = g.DICT_TXT.read_text(encoding="utf-8").splitlines()
    assert len(fd) == 4 + len(lines) == 50264
    assert fd.symbols[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    # fairseq id = 4 + line number of the GPT-2 id in dict.txt
    for lineno in (0, 1, 2, 1000, 50256):
        gpt2_id = int(lines[lineno].split()[0])
        assert fd.from_gpt2([gpt2_id]).tolist() == [4 + lineno]
        assert fd.to_gpt2([4 + lineno]).tolist() == [gpt2_id]
    assert lines[0].split()[0] == "13"  # "." is the most frequent GPT-2 token
    assert fd.from_gpt2([13]).tolist() == [4]


def test_roberta_ids_for_hello_world(bpe: g.GPT2BPE, fd: g.FairseqDictionary) -> None:
    # RoBERTa / Data2Vec2-text encode "Hello world" as <s> 31414 232 </s>
    assert fd.from_gpt2(bpe.encode("Hello world"), append_eos=True).tolist() == [31414, 232, 2]


def test_inverse_mapping(bpe: g.GPT2BPE, fd: g.FairseqDictionary) -> None:
    ids = bpe.encode("The quick brown fox ☃ jumps.")
    mapped = fd.from_gpt2(ids, append_eos=True)
    assert mapped[-1] == fd.eos
    assert fd.to_gpt2(mapped).tolist() == ids  # </s> is stripped
    with pytest.raises(ValueError, match="not GPT-2 tokens"):
        fd.to_gpt2([fd.index("madeupword0000")])
    with pytest.raises(ValueError):
        fd.from_gpt2([50257])
    assert fd.index("not-a-symbol") == fd.unk


def test_every_gpt2_id_maps_to_a_distinct_fairseq_id(fd: g.FairseqDictionary) -> None:
    mapped = fd.from_gpt2(np.arange(50257))
    assert len(set(mapped.tolist())) == 50257 and mapped.min() >= 4


def test_assets_ship_with_the_package() -> None:
    for path in (g.ENCODER_JSON, g.VOCAB_BPE, g.DICT_TXT, g.ASSETS / "LICENSE"):
        assert path.is_file()
        assert "shared" not in path.resolve().parts


def test_missing_or_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(DataMissingError, match="missing"):
        g.GPT2BPE(tmp_path / "encoder.json", g.VOCAB_BPE)
    bad = tmp_path / "dict.txt"
    bad.write_text("13 100\nnot-a-count\n")
    with pytest.raises(DataMissingError, match="dict.txt:2"):
        g.FairseqDictionary.load(bad)
    dup = tmp_path / "dup.txt"
    dup.write_text("13 100\n13 5\n")
    with pytest.raises(DataMissingError, match="repeats"):
        g.FairseqDictionary.load(dup)
    ok = tmp_path / "ok.txt"
    ok.write_text("262 10\n13 5 #fairseq:overwrite\n")
    small = g.FairseqDictionary.load(ok)
    assert small.from_gpt2([262, 13, 11]).tolist() == [4, 5, small.unk]


def test_fairseq_tokenizer_writes_roberta_format() -> None:
    tok = g.FairseqTokenizer()
    ids, mask = tok.encode_batch(["Hello world", "Hello"], max_length=64)
    # <s>=0 31414 232 </s>=2, padded with <pad>=1 (mask True = pad)
    assert ids.tolist() == [[0, 31414, 232, 2], [0, 31414, 2, 1]]
    assert mask.tolist() == [[False] * 4, [False, False, False, True]]
    assert tok.encode_ids(["Hello world"], max_length=3) == [[0, 31414, 2]]  # truncated, both specials kept
    assert tok.encode_batch([""], max_length=8, pad_to_max_length=True)[0].tolist() == [[0, 2, 1, 1, 1, 1, 1, 1]]
    assert tok.decode(ids[0].tolist()) == "Hello world" and tok.vocab_size == 50264
    assert not hasattr(tok, "hf")  # GLUE's WordPiece pair format does not apply
    with pytest.raises(ValueError, match="max_length must be >= 2"):
        tok.encode_ids(["x"], max_length=1)
