"""GPT-2 byte-level BPE and the fairseq dictionary over it (Data2Vec2's text vocabulary).

Why: Data2Vec2's text model (fairseq, RoBERTa recipe) reads text that was
BPE-encoded with GPT-2's ``encoder.json``/``vocab.bpe`` and then mapped
through fairseq's ``dict.txt`` (lines ``<gpt2-id> <count>``, with ``<s>``,
``<pad>``, ``</s>``, ``<unk>`` prepended as ids 0-3). We build the tokenizer
with the HF ``tokenizers`` library directly from those two files (``BPE`` +
``ByteLevel`` pre-tokenizer without prefix space + ``ByteLevel`` decoder),
which is byte-identical to openai/gpt-2's ``encoder.py`` and to fairseq's
``gpt2_bpe``; ``transformers`` is not used (v5 ignores ``vocab_file=``).

``FairseqTokenizer`` puts both together as the eval harness's caption
tokenizer for that model (``<s> ... </s>``, ``<pad>`` = 1).

The three files ship with the package under ``assets/gpt2/`` (see its
LICENSE), so nothing is downloaded at run time.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from mmthesis.core.errors import DataMissingError
from mmthesis.data.tokenizers import PaddingEncoder

ASSETS = Path(__file__).resolve().parent / "assets" / "gpt2"
ENCODER_JSON = ASSETS / "encoder.json"
VOCAB_BPE = ASSETS / "vocab.bpe"
DICT_TXT = ASSETS / "dict.txt"

GPT2_VOCAB_SIZE = 50257
GPT2_EOT = 50256  # "<|endoftext|>" (not treated as special when encoding raw text, as in fairseq)


def _require(path: Path) -> Path:
    if not path.is_file():
        raise DataMissingError(
            f"GPT-2 BPE file {path} is missing",
            "reinstall mmthesis-data (the file ships in mmthesis/data/assets/gpt2/)",
        )
    return path


class GPT2BPE:
    """GPT-2 byte-level BPE: ``encode(text) -> GPT-2 ids`` and ``decode(ids) -> text`` (lossless)."""

    def __init__(self, encoder_json: Path = ENCODER_JSON, vocab_bpe: Path = VOCAB_BPE) -> None:
        model = models.BPE.from_file(str(_require(Path(encoder_json))), str(_require(Path(vocab_bpe))))
        tok = Tokenizer(model)
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        self.tokenizer = tok

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Encode many strings at once (the Rust side parallelises; used by data preparation)."""
        return [e.ids for e in self.tokenizer.encode_batch(list(texts))]

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode([int(i) for i in ids])


class FairseqDictionary:
    """fairseq's ``Dictionary`` over GPT-2 ids: ``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3, then ``dict.txt`` in order.

    Symbols in ``dict.txt`` are GPT-2 ids written as decimal strings, so fairseq
    id = 4 + line number of the GPT-2 id; ids absent from the file map to ``<unk>``.
    """

    bos, pad, eos, unk = 0, 1, 2, 3
    SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")

    def __init__(self, symbols: Sequence[str]) -> None:
        self.symbols = list(symbols)
        self.indices = {s: i for i, s in enumerate(self.symbols)}
        # dense GPT-2 id -> fairseq id table, for vectorised mapping
        table = np.full(GPT2_VOCAB_SIZE, self.unk, dtype=np.int64)
        for sym, idx in self.indices.items():
            if sym.isdigit() and int(sym) < GPT2_VOCAB_SIZE:
                table[int(sym)] = idx
        self._gpt2_to_fairseq = table
        inverse = np.full(len(self.symbols), -1, dtype=np.int64)
        inverse[table[table != self.unk]] = np.nonzero(table != self.unk)[0]
        self._fairseq_to_gpt2 = inverse

    @classmethod
    def load(cls, path: Path = DICT_TXT) -> FairseqDictionary:
        """Parse a fairseq ``dict.txt`` (``<symbol> <count>`` lines; a trailing ``#fairseq:overwrite`` flag is allowed)."""
        symbols = list(cls.SPECIALS)
        seen = set(symbols)
        with open(_require(Path(path)), encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                parts = line.rstrip("\n").split(" ")
                if parts and parts[-1] == "#fairseq:overwrite":
                    parts = parts[:-1]
                if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                    raise DataMissingError(
                        f"{path}:{lineno} is not a fairseq dictionary line ('<symbol> <count>')",
                        "use the dict.txt shipped with fairseq's GPT-2 BPE",
                    )
                if parts[0] in seen:
                    raise DataMissingError(
                        f"{path}:{lineno} repeats symbol {parts[0]!r}",
                        "use the dict.txt shipped with fairseq's GPT-2 BPE",
                    )
                seen.add(parts[0])
                symbols.append(parts[0])
        return cls(symbols)

    def __len__(self) -> int:
        return len(self.symbols)

    def index(self, symbol: str) -> int:
        return self.indices.get(symbol, self.unk)

    def from_gpt2(self, gpt2_ids: Sequence[int] | np.ndarray, append_eos: bool = False) -> np.ndarray:
        """GPT-2 ids -> fairseq ids (int64), like ``Dictionary.encode_line`` on the BPE output."""
        ids = np.asarray(gpt2_ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= GPT2_VOCAB_SIZE):
            raise ValueError(f"GPT-2 ids must lie in [0, {GPT2_VOCAB_SIZE}); got {ids.min()}..{ids.max()}")
        out = self._gpt2_to_fairseq[ids]
        return np.append(out, self.eos) if append_eos else out

    def to_gpt2(self, fairseq_ids: Sequence[int] | np.ndarray, strip_specials: bool = True) -> np.ndarray:
        """fairseq ids -> GPT-2 ids; special symbols are dropped (``strip_specials``) or rejected."""
        ids = np.asarray(fairseq_ids, dtype=np.int64)
        if strip_specials:
            ids = ids[ids >= len(self.SPECIALS)]
        if ids.size and (ids.min() < 0 or ids.max() >= len(self.symbols)):
            raise ValueError(f"fairseq ids must lie in [0, {len(self.symbols)})")
        out = self._fairseq_to_gpt2[ids]
        if (out < 0).any():
            bad = ids[out < 0][:5].tolist()
            raise ValueError(f"fairseq ids {bad} are not GPT-2 tokens (specials or made-up words)")
        return out


class FairseqTokenizer(PaddingEncoder):
    """Captions as Data2Vec2's text model reads them: ``<s> BPE </s>`` in fairseq ids, right-padded with ``<pad>``.

    The RoBERTa/data2vec text format (fairseq prepends ``<s>`` and ends every line with ``</s>``);
    same ``encode_batch(texts, max_length) -> (ids, padding_mask)`` interface as the WordPiece
    ``Tokenizer`` (mask True = pad), so every eval task can use it. It has no ``hf`` attribute on
    purpose: GLUE's ``[CLS] a [SEP] b [SEP]`` pairs are a BERT format it does not speak.
    """

    def __init__(self, bpe: GPT2BPE | None = None, dictionary: FairseqDictionary | None = None) -> None:
        self.bpe = bpe or gpt2_bpe()
        self.dictionary = dictionary or fairseq_dictionary()
        self.bos_id, self.pad_id, self.eos_id = FairseqDictionary.bos, FairseqDictionary.pad, FairseqDictionary.eos

    @property
    def vocab_size(self) -> int:
        """Rows an embedding table needs for every id this tokenizer emits (the dictionary's size)."""
        return len(self.dictionary)

    def encode_ids(self, texts: Sequence[str], max_length: int = 64) -> list[list[int]]:
        """``<s> tokens </s>`` per text, truncated so the whole sequence has at most ``max_length`` ids."""
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2 (room for <s> and </s>), got {max_length}")
        keep = max_length - 2
        return [
            [self.bos_id, *self.dictionary.from_gpt2(ids[:keep]).tolist(), self.eos_id]
            for ids in self.bpe.encode_batch(texts)
        ]

    def decode(self, ids: Iterable[int]) -> str:
        """fairseq ids -> text; special symbols are skipped."""
        return self.bpe.decode(self.dictionary.to_gpt2(list(ids)).tolist())


@functools.lru_cache(maxsize=1)
def gpt2_bpe() -> GPT2BPE:
    """The packaged GPT-2 BPE (loaded once per process)."""
    return GPT2BPE()


@functools.lru_cache(maxsize=1)
def fairseq_dictionary() -> FairseqDictionary:
    """The packaged fairseq GPT-2 dictionary (loaded once per process)."""
    return FairseqDictionary.load()
