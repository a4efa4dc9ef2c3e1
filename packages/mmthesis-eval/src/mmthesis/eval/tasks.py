"""Evaluation runs of trained students, recorded as result.json and cached.

An evaluation is keyed by the trained run's config hash, the task and the
dataset fingerprint, so re-running ``reproduce`` reuses it. Embeddings are
computed once per (model, split) inside a run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from mmthesis.core.console import console
from mmthesis.core.results import RunRecorder, RunResult, find_finished_run
from mmthesis.data.image_text import RetrievalSplit, load_retrieval_split
from mmthesis.data.registry import check_data
from mmthesis.data.transforms import eval_transform
from mmthesis.eval.models import embed_in_batches
from mmthesis.eval.retrieval import retrieval_recall
from mmthesis.students.artifact import load_trained_tuple as load_trained


def chance_recall_at_1(caption_image_index: torch.Tensor, num_images: int) -> dict[str, float]:
    """Expected R@1 (percent) of a random ranking: i2t = mean captions per image / M, t2i = 1 / N."""
    m = caption_image_index.numel()
    per_image = torch.bincount(caption_image_index, minlength=num_images).double()
    return {"chance_i2t_r1": 100.0 * float(per_image.mean()) / m, "chance_t2i_r1": 100.0 / num_images}


@dataclass
class RetrievalTaskConfig:
    train_run: str  # config hash of the trained run (folder name)
    recipe_run: str  # run name, e.g. s-smke-cdl-mb-smoke
    dataset: str
    split: str = "test"
    batch_size: int = 256
    dataset_fingerprint: str = ""


PairMetrics = Callable[[torch.Tensor, torch.Tensor, RetrievalSplit], dict[str, float]]


def evaluate_paired_embeddings(
    kind: str, run: Path, dataset: str, split: str, metrics: PairMetrics, *, root: Path | None = None
) -> RunResult:
    """Embed every image and caption of a split once with a trained run, then compute ``metrics``.

    The result is cached as the run ``eval-<kind>-<dataset>`` keyed by the task config, so
    retrieval and representation analysis share the loading, embedding and caching.
    """
    fingerprint = check_data([dataset])[dataset]
    task = RetrievalTaskConfig(
        train_run=run.name, recipe_run=run.parent.name, dataset=dataset, split=split, dataset_fingerprint=fingerprint
    )
    name = f"eval-{kind}-{dataset}"
    if (done := find_finished_run(name, task, root)) is not None:
        return done
    config, tokenizer, model = load_trained(run)
    with RunRecorder(
        name, scale=run.parent.name.rsplit("-", 1)[-1], config=task, root=root, datasets={dataset: fingerprint}
    ) as rec:
        data = load_retrieval_split(
            dataset, split, eval_transform(config.model.img_size), tokenizer, max_length=config.data.max_text_length
        )
        console.print(f"{kind} on {dataset}/{split}: {data.num_images} images x {data.num_captions} captions")
        with torch.inference_mode():
            image_emb = embed_in_batches(model.encode_image, data.images, batch_size=task.batch_size)
            text_emb = embed_in_batches(
                model.encode_text, data.text_ids, data.text_padding_mask, batch_size=task.batch_size
            )
        rec.result.metrics = metrics(image_emb, text_emb, data)
        rec.result.metrics.update({"images": data.num_images, "captions": data.num_captions})
    return rec.result


def _retrieval_metrics(image_emb: torch.Tensor, text_emb: torch.Tensor, data: RetrievalSplit) -> dict[str, float]:
    return {
        **retrieval_recall(image_emb, text_emb, data.caption_image_index),
        **chance_recall_at_1(data.caption_image_index, data.num_images),
    }


def evaluate_retrieval(run: Path, dataset: str, split: str = "test", *, root: Path | None = None) -> RunResult:
    """Retrieval R@1/5/10 of a trained run on ``dataset``/``split`` (cached by config)."""
    return evaluate_paired_embeddings("retrieval", run, dataset, split, _retrieval_metrics, root=root)
