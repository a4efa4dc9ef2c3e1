"""Training-example counts of prepared unimodal datasets (the thesis's Table 3).

One function for every scale: ``mmthesis reproduce table-3`` calls it on the
real prepared datasets at full scale and on the stand-ins at smoke scale, so
the smoke table exercises exactly the code that counts the real data. Counts
come from the prepared files themselves where that is cheap (OpenWebText's
``.idx``, GLUE's JSON lines) and are checked against the manifest; ImageNet's
count is the manifest's per-shard sample counts (recorded when each shard was
written; ``mmthesis data verify`` re-checks the shards' checksums).

Definitions (Table 3 and its footnote):
- ImageNet-1K: prepared ``train`` images (files that failed to decode are not counted).
- OpenWebText: the train split's token stream (GPT-2 BPE -> fairseq ids,
  ``</s>`` after every line) cut into consecutive 256-token slices, the last
  partial slice included (fairseq ``TokenBlockDataset`` ``break_mode="none"``).
- GLUE: the sum of the nine tasks' prepared training rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmthesis.core.errors import DataMissingError, UnknownNameError
from mmthesis.core.registry import unknown_name
from mmthesis.data.indexed_dataset import MMapIndexedDataset
from mmthesis.data.manifest import Manifest, dataset_dir, read_manifest
from mmthesis.data.registry import get_dataset, prepare_command, prepared_name
from mmthesis.data.tokenizers import Tokenizer, bert_wordpiece, default_bert_vocab


@dataclasses.dataclass(frozen=True)
class TrainingExampleCount:
    dataset: str  # registry name, e.g. "imagenet"
    examples: int
    unit: str  # what one example is, e.g. "256-token slices"
    detail: dict[str, Any]
    stand_in: str | None  # description of the stand-in that was counted, None for the real data


def _corrupt(name: str, what: str, fix: str) -> DataMissingError:
    return DataMissingError(f"prepared dataset {name!r} is inconsistent: {what}", f"re-run `{fix}`")


def _imagenet(manifest: Manifest, folder: Path, fix: str) -> tuple[int, str, dict[str, Any]]:
    train = manifest.split("train")
    missing = [s["file"] for s in train["shards"] if not (folder / s["file"]).is_file()]
    if missing:
        raise _corrupt(manifest.name, f"{len(missing)} train shard(s) missing, e.g. {missing[0]}", fix)
    n = sum(int(s["samples"]) for s in train["shards"])
    if n != int(train["samples"]):
        raise _corrupt(manifest.name, f"train shards hold {n} samples but the manifest says {train['samples']}", fix)
    detail = {
        "split": "train",
        "classes": manifest.stats.get("num_classes"),
        "shards": len(train["shards"]),
        "skipped": int(train.get("skipped", 0)),
        "val_images": manifest.splits["val"]["samples"] if "val" in manifest.splits else None,
    }
    return n, "images", detail


def _openwebtext(manifest: Manifest, folder: Path, fix: str) -> tuple[int, str, dict[str, Any]]:
    from mmthesis.data.datasets.openwebtext import count_slices

    train = manifest.split("train")
    slice_tokens = int(train["slice_tokens"])
    ds = MMapIndexedDataset(folder / "train")
    tokens = ds.num_tokens
    if tokens != int(train["tokens"]) or len(ds) != int(train["sequences"]):
        raise _corrupt(
            manifest.name,
            f"train.idx has {tokens} tokens in {len(ds)} sequences, the manifest {train['tokens']} in {train['sequences']}",
            fix,
        )
    slices = count_slices(tokens, slice_tokens)
    detail = {
        "split": "train",
        "tokens": tokens,
        "slice_tokens": slice_tokens,
        "full_slices": tokens // slice_tokens,
        "partial_slice_tokens": tokens % slice_tokens,
        "sequences": len(ds),
        "documents": int(train["documents"]),
        "chunks": list(train["chunks"]),
        "lines_removed": dict(train["lines_removed"]),
    }
    return slices, f"{slice_tokens}-token slices", detail


def _glue(manifest: Manifest, folder: Path, fix: str) -> tuple[int, str, dict[str, Any]]:
    from mmthesis.data.datasets.glue import TASKS

    per_task: dict[str, int] = {}
    for task in TASKS:
        entry = manifest.split(f"{task}/train")
        path = folder / entry["shards"][0]["file"]
        if not path.is_file():
            raise _corrupt(manifest.name, f"{path.name} of {task} is missing", fix)
        with open(path, "rb") as f:
            rows = sum(1 for line in f if line.strip())
        if rows != int(entry["samples"]):
            raise _corrupt(manifest.name, f"{task}/train has {rows} rows but the manifest says {entry['samples']}", fix)
        per_task[task] = rows
    skipped = {task: int(manifest.split(f"{task}/train").get("skipped", 0)) for task in TASKS}
    return sum(per_task.values()), "training rows", {"per_task": per_task, "skipped": skipped}


_COUNTERS: dict[str, Callable[[Manifest, Path, str], tuple[int, str, dict[str, Any]]]] = {
    "imagenet": _imagenet,
    "openwebtext": _openwebtext,
    "glue": _glue,
}


def count_training_examples(name: str, scale: str = "full", root: Path | None = None) -> TrainingExampleCount:
    """Count the training examples of prepared dataset ``name`` at ``scale`` (under ``root``, default ``data_root()``)."""
    if name not in _COUNTERS:
        raise unknown_name("dataset for training-example counts", name, _COUNTERS)
    spec = get_dataset(name)
    if scale not in spec.scales:
        raise UnknownNameError(f"dataset {name!r} has no scale {scale!r}", f"use one of: {', '.join(spec.scales)}")
    prepared = prepared_name(name, scale)
    fix = prepare_command(name, scale)
    manifest = read_manifest(prepared, root, prepare_hint=fix)
    examples, unit, detail = _COUNTERS[name](manifest, dataset_dir(prepared, root), fix)
    return TrainingExampleCount(
        dataset=name, examples=examples, unit=unit, detail=detail, stand_in=manifest.stats.get("stand_in")
    )


# -- Table 4: image-text training data ----------------------------------------------------------
# The thesis does not state the unit of Table 4's "Avg. Caption Length" (REFERENCE.md Table 4 note; it speaks
# of tokens elsewhere). Words are read from the manifest (counted when the shards were written); BERT tokens
# are counted on request from the train shards' captions with the real bert-base-uncased WordPiece vocabulary,
# without [CLS]/[SEP] and without the 64-token truncation of training.
CAPTION_UNITS = {
    "words": "whitespace words",
    "bert-tokens": "BERT-uncased WordPiece tokens (no [CLS]/[SEP])",
}
TOKEN_BATCH = 4096


@dataclasses.dataclass(frozen=True)
class ImageTextSummary:
    """Table 4's columns for a prepared image-text dataset's train split."""

    dataset: str
    images: int
    pairs: int
    captions_per_image: float
    avg_caption_length: float
    caption_length_unit: str
    skipped: dict[str, int]  # reason -> count, all splits
    stand_in: str | None


def check_caption_unit(unit: str) -> str:
    if unit not in CAPTION_UNITS:
        raise unknown_name("caption length unit", unit, CAPTION_UNITS)
    return unit


def caption_token_counts(captions: list[str], tokenizer: Tokenizer) -> list[int]:
    """WordPiece tokens per caption, without [CLS]/[SEP] and untruncated."""
    return [len(e.ids) for e in tokenizer.hf.encode_batch(captions, add_special_tokens=False)]


def avg_caption_tokens(manifest: Manifest, folder: Path, tokenizer: Tokenizer, split: str = "train") -> float:
    """Mean WordPiece tokens per caption over ``split``'s shards (each caption of each image counted once)."""
    from mmthesis.data.datasets.captioned import iter_json

    fix = f"mmthesis data verify {manifest.name}"
    pairs = tokens = 0
    batch: list[str] = []
    for shard in manifest.split(split)["shards"]:
        path = folder / shard["file"]
        if not path.is_file():
            raise _corrupt(manifest.name, f"{split} shard {shard['file']} is missing", fix)
        for meta in iter_json(path):
            batch.extend(meta["captions"])
            if len(batch) >= TOKEN_BATCH:
                pairs, tokens = pairs + len(batch), tokens + sum(caption_token_counts(batch, tokenizer))
                batch = []
    pairs, tokens = pairs + len(batch), tokens + sum(caption_token_counts(batch, tokenizer))
    expected = manifest.stats["pairs"][split]
    if pairs != int(expected):
        raise _corrupt(manifest.name, f"{split} shards hold {pairs} captions but the manifest says {expected}", fix)
    return round(tokens / pairs, 3) if pairs else 0.0


def image_text_summary(
    manifest: Manifest,
    stand_in: str | None = None,
    *,
    caption_unit: str = "words",
    folder: Path | None = None,
    vocab: Path | str | None = None,
) -> ImageTextSummary | None:
    """Table 4's row from a prepared image-text manifest; None if it has no such statistics (e.g. shapes).

    ``caption_unit="bert-tokens"`` counts the captions in the shards under ``folder`` (the prepared dataset's
    folder) with ``vocab`` (default: bert-base-uncased's vocab.txt, ``default_bert_vocab()``).
    """
    check_caption_unit(caption_unit)
    st = manifest.stats
    if not isinstance(st.get("pairs"), dict) or "train" not in st["pairs"] or not isinstance(st.get("images"), dict):
        return None
    if caption_unit == "words":
        length = float(st["avg_caption_words"]["train"])
        unit = str(st.get("caption_length_unit", CAPTION_UNITS["words"]))
    else:
        if folder is None:
            raise ValueError("counting caption tokens needs the prepared dataset's folder")
        tokenizer = bert_wordpiece(vocab if vocab is not None else default_bert_vocab(), lowercase=True)
        length, unit = avg_caption_tokens(manifest, folder, tokenizer), CAPTION_UNITS[caption_unit]
    return ImageTextSummary(
        dataset=manifest.name,
        images=int(st["images"]["train"]),
        pairs=int(st["pairs"]["train"]),
        captions_per_image=float(st["avg_captions_per_image"]["train"]),
        avg_caption_length=length,
        caption_length_unit=unit,
        skipped={str(k): int(v) for k, v in manifest.skipped.items()},
        stand_in=stand_in,
    )


def summarize_image_text(
    name: str,
    scale: str = "full",
    root: Path | None = None,
    *,
    caption_unit: str = "words",
    vocab: Path | str | None = None,
) -> ImageTextSummary:
    """Table 4's row for prepared image-text dataset ``name`` at ``scale``, from its manifest.

    The manifest's numbers were computed from the written shards when they were
    prepared (``captioned.split_stats``); ``mmthesis data verify`` re-checks the shards.
    With ``caption_unit="bert-tokens"`` the caption length is counted from the train
    shards instead (reads every caption once; ``vocab`` as in ``image_text_summary``).
    """
    check_caption_unit(caption_unit)
    spec = get_dataset(name)
    if spec.kind != "image-text":
        raise UnknownNameError(f"dataset {name!r} is not an image-text dataset", "Table 4 summarises coco, cc3m, cc12m")
    if scale not in spec.scales:
        raise UnknownNameError(f"dataset {name!r} has no scale {scale!r}", f"use one of: {', '.join(spec.scales)}")
    fix = prepare_command(name, scale)
    prepared = prepared_name(name, scale)
    manifest = read_manifest(prepared, root, prepare_hint=fix)
    try:
        summary = image_text_summary(
            manifest,
            spec.stand_in.get(scale),
            caption_unit=caption_unit,
            folder=dataset_dir(prepared, root),
            vocab=vocab,
        )
    except (KeyError, TypeError) as e:
        raise _corrupt(manifest.name, f"its manifest's Table 4 statistics are incomplete ({e})", fix) from e
    if summary is None:
        raise _corrupt(manifest.name, "its manifest lacks the train split's Table 4 statistics", fix)
    return summary
