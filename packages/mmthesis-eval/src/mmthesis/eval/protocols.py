"""Protocol runners: a resolved task + an evaluation context -> metrics (and per-sample rows).

Each runner validates the task's ``params`` into a typed dataclass (unknown
keys are errors), takes embeddings from the context's cache and calls the
pure metric functions (``retrieval``, ``zeroshot``, ``linear_probe``,
``analysis``), so the numbers are the ones those modules' tests check.
Finetuning, GLUE and robustness live in their own modules and register here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mmthesis.core.config import from_dict
from mmthesis.core.errors import ConfigError, DataMissingError, UnknownNameError
from mmthesis.core.registry import lookup
from mmthesis.data.image_text import RetrievalSplit
from mmthesis.eval.analysis import representation_analysis
from mmthesis.eval.context import EvalContext
from mmthesis.eval.data_access import TransformedImages
from mmthesis.eval.linear_probe import DEFAULT_L2, DEFAULT_TOL, MAX_ITER, fit_linear_probe, top1_accuracy, topk_accuracy
from mmthesis.eval.retrieval import (
    KS,
    TIE_RULES,
    RankStats,
    amr_from_median_ranks,
    chance_recall_at_1,
    image_order_by_id,
    median_ranks,
    retrieval_rank_stats,
    tie_aware_recall,
    top_candidates,
)
from mmthesis.eval.task_registry import ResolvedTask
from mmthesis.eval.zeroshot import (
    CLASSNAMES,
    LOGIT_SCALE,
    TEMPLATES,
    Prompts,
    classnames_of,
    load_classnames_file,
    load_templates_file,
    templates_of,
    zero_shot_classifier,
    zero_shot_metrics,
    zero_shot_ranks,
)


@dataclass
class TaskOutput:
    metrics: dict[str, Any]
    per_sample: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


Runner = Callable[[EvalContext, ResolvedTask], TaskOutput]
RUNNERS: dict[str, Runner] = {}
# what each protocol needs of a model (``LoadedModel.require``): checked for every task before anything runs or is
# written, so a task the model cannot serve fails in one line and leaves no result.json behind
NEEDS: dict[str, Callable[[ResolvedTask], tuple[str, ...]]] = {}


def register(
    protocol: str, needs: tuple[str, ...] | Callable[[ResolvedTask], tuple[str, ...]] = ()
) -> Callable[[Runner], Runner]:
    def wrap(fn: Runner) -> Runner:
        RUNNERS[protocol] = fn
        NEEDS[protocol] = needs if callable(needs) else (lambda task: needs)
        return fn

    return wrap


def model_needs(task: ResolvedTask) -> tuple[str, ...]:
    """What ``task`` needs of the model (image, text, image_backbone, text_backbone)."""
    runner(task.protocol)  # registers every protocol
    return NEEDS[task.protocol](task)


def params_of(cls: type, task: ResolvedTask):
    try:
        return from_dict(cls, task.params, prefix="params.")
    except (ConfigError, UnknownNameError) as e:
        raise type(e)(f"task {task.name}: {e.message}", e.fix) from e


# ------------------------------------------------------------------------------ retrieval
@dataclass
class RetrievalParams:
    ks: list[int] = field(default_factory=lambda: list(KS))
    ties: str = "index"  # which tie rule gives the headline R@K (retrieval.TIE_RULES); all are reported beside it

    def __post_init__(self) -> None:
        lookup(dict.fromkeys(TIE_RULES), "retrieval tie rule", self.ties)
        if not self.ks or any(k < 1 for k in self.ks):
            raise ValueError(f"ks must be positive integers, got {self.ks}")


def retrieval_inputs(
    ctx: EvalContext, task: ResolvedTask, image_corruption=None, text_corruption=None
) -> tuple[RetrievalSplit, torch.Tensor, torch.Tensor]:
    """The task's image-caption split and its (cached) image and caption embeddings, either optionally corrupted.

    What every protocol over image-caption pairs reads (retrieval, median rank, analysis, robustness).
    """
    return (
        ctx.retrieval_split(task.dataset, task.split),
        ctx.image_embeddings(task.dataset, task.split, image_corruption),
        ctx.text_embeddings(task.dataset, task.split, text_corruption),
    )


def retrieval_metrics(
    data: RetrievalSplit, image_emb: torch.Tensor, text_emb: torch.Tensor, ks: tuple[int, ...], ties: str = "index"
) -> tuple[RankStats, RankStats, dict[str, Any]]:
    """I->T and T->I rank stats and R@K (``ks``) plus ``mean`` under tie rule ``ties``, every rule beside it."""
    i2t, t2i = retrieval_rank_stats(image_emb, text_emb, data.caption_image_index)
    return i2t, t2i, tie_aware_recall(i2t, t2i, ks, ties)


def _rank_rows(
    ids: list[str], direction: str, stats: RankStats, top: list[list[str]] | None = None
) -> list[dict[str, Any]]:
    """Per-sample rows: the deterministic rank, the best / worst rank over tie orders and (``top``) the ids of the
    best-ranked candidates, ties to the lower index as the deterministic rank."""
    best = stats.better.tolist()
    worst = (stats.better + stats.tied - stats.tied_positives).tolist()
    rows = [
        {"id": i, "direction": direction, "rank": int(r), "rank_optimistic": int(b), "rank_pessimistic": int(w)}
        for i, r, b, w in zip(ids, stats.rank.tolist(), best, worst, strict=True)
    ]
    for row, candidates in zip(rows, top or [], strict=False):
        row["top"] = candidates
    return rows


@register("retrieval", needs=("image", "text"))
def run_retrieval(ctx: EvalContext, task: ResolvedTask) -> TaskOutput:
    p = params_of(RetrievalParams, task)
    data, image_emb, text_emb = retrieval_inputs(ctx, task)
    i2t, t2i, metrics = retrieval_metrics(data, image_emb, text_emb, tuple(p.ks), p.ties)
    metrics |= chance_recall_at_1(data.caption_image_index, data.num_images) | {
        "images": data.num_images,
        "captions": data.num_captions,
    }
    # and the ids of each query's max(ks) best candidates (the figures' retrieval examples mark them correct / wrong)
    k = max(p.ks)
    i2t_top = [[data.caption_ids[c] for c in top] for top in top_candidates(image_emb, text_emb, k).tolist()]
    t2i_top = [[data.image_ids[i] for i in top] for top in top_candidates(text_emb, image_emb, k).tolist()]
    rows = _rank_rows(data.image_ids, "i2t", i2t, i2t_top) + _rank_rows(data.caption_ids, "t2i", t2i, t2i_top)
    return TaskOutput(metrics, rows)


# ------------------------------------------------------------------------------ median rank
@dataclass
class MedianRankParams:
    chunk_size: int = 1000  # SHRe: 5 chunks of 1k of the COCO 5k test images (REFERENCE.md §5.2)
    chunks: int = 5
    captions_per_image: int = 5  # caption choices per chunk; each image needs at least this many captions


@register("median-rank", needs=("image", "text"))
def run_median_rank(ctx: EvalContext, task: ResolvedTask) -> TaskOutput:
    """SHRe's average median rank (Tables 2, 11, 13): images sorted by id, chunked, one caption per image."""
    p = params_of(MedianRankParams, task)
    data, image_emb, text_emb = retrieval_inputs(ctx, task)
    order = image_order_by_id(data.image_ids)
    row_in_order = torch.empty_like(order)
    row_in_order[order] = torch.arange(len(order))
    try:
        i2t, t2i = median_ranks(
            image_emb[order],
            text_emb,
            row_in_order[data.caption_image_index],
            p.chunk_size,
            p.chunks,
            p.captions_per_image,
        )
    except ValueError as e:
        raise ConfigError(
            f"task {task.name} on {task.dataset}/{task.split}: {e}",
            "use a split with enough images and captions, or lower params.chunks, chunk_size or captions_per_image",
        ) from e
    metrics = amr_from_median_ranks(i2t, t2i, p.chunk_size) | {"images": data.num_images, "captions": data.num_captions}
    rows = [
        {
            "chunk": c,
            "caption": k,
            "first_image_id": data.image_ids[int(order[c * p.chunk_size])],
            "i2t_median_rank": float(i2t[c, k]),
            "t2i_median_rank": float(t2i[c, k]),
        }
        for c in range(p.chunks)
        for k in range(p.captions_per_image)
    ]
    return TaskOutput(metrics, rows)


# ------------------------------------------------------------------------------ zero-shot
@dataclass
class ZeroShotParams:
    classnames: str = "dataset"  # "imagenet1k" (bundled OpenAI names) or "dataset" (the manifest's label names)
    templates: str = "smoke"  # "imagenet80" (the 80 OpenAI templates, §5.4) or "smoke"
    logit_scale: float = LOGIT_SCALE
    ks: list[int] = field(default_factory=lambda: [1, 5])
    # CLIP_benchmark-style JSON files (``mmthesis eval --classnames/--templates``); they replace the two above.
    # The harness records each file's sha256 in the evaluation's config, so an edited file is never reused.
    classnames_file: str | None = None
    templates_file: str | None = None

    def __post_init__(self) -> None:  # unknown names fail when the task is read, not after embedding
        lookup(CLASSNAMES, "zero-shot classnames", self.classnames)
        lookup(TEMPLATES, "zero-shot templates", self.templates)


def zero_shot_setup(ctx: EvalContext, task: ResolvedTask, p: ZeroShotParams):
    """Labelled images of the split and (class names, templates or per-class prompts) of the task."""
    images = ctx.labelled_images(task.dataset, task.split)
    if p.classnames_file is not None:
        names = load_classnames_file(Path(p.classnames_file), task.dataset)
        if len(names) != len(images.label_names):
            raise ConfigError(
                f"class-name file {p.classnames_file} gives {len(names)} names, "
                f"{task.dataset} has {len(images.label_names)} classes",
                "give one name per class, in class-id order",
            )
    else:
        names = classnames_of(p.classnames, images.label_names)
    templates: Prompts = (
        load_templates_file(Path(p.templates_file), task.dataset) if p.templates_file else templates_of(p.templates)
    )
    if int(images.labels.max()) >= len(names):
        raise DataMissingError(
            f"dataset {task.dataset!r} has labels beyond its {len(names)} class names", "re-prepare the dataset"
        )
    return images, names, templates


def labelled_image_embeddings(ctx: EvalContext, task: ResolvedTask, corruption=None) -> torch.Tensor:
    """Embeddings of the split's labelled images (cached like the retrieval ones)."""
    from mmthesis.eval.features import cached_features

    images = TransformedImages(ctx.labelled_images(task.dataset, task.split), ctx.loaded.image_transform, corruption)

    def compute():
        what = f"images {task.dataset}/{task.split}"
        return {"emb": ctx.embed_images(ctx.loaded.model.encode_image, images, what=what)}

    return cached_features(ctx._key(task.dataset, task.split, "labelled-image-embedding", corruption), compute)["emb"]


def zero_shot_scores(ctx, task, p, image_emb, names, templates, labels, text_corruption=None):
    """(rank of each label, metrics): ``zeroshot``'s classifier over the context's (optionally corrupted) prompts."""
    try:
        protos = zero_shot_classifier(
            lambda texts: ctx.embed_texts(texts, task.dataset, text_corruption), names, templates
        )
    except ValueError as e:
        raise ConfigError(f"task {task.name}: {e}", "fix the class names or prompt templates") from e
    rank, predictions = zero_shot_ranks(image_emb, protos, labels, p.logit_scale)
    return rank, zero_shot_metrics(rank, predictions, labels, [k for k in p.ks if k <= len(names)])


@register("zero-shot", needs=("image", "text"))
def run_zero_shot(ctx: EvalContext, task: ResolvedTask) -> TaskOutput:
    p = params_of(ZeroShotParams, task)
    images, names, templates = zero_shot_setup(ctx, task, p)
    image_emb = labelled_image_embeddings(ctx, task)
    rank, metrics = zero_shot_scores(ctx, task, p, image_emb, names, templates, images.labels)
    metrics |= {
        "images": len(images.ids),
        "classes": len(names),
        "templates": None if isinstance(templates, dict) else len(templates),  # None: per-class prompts
        "prompts": sum(len(templates[c]) for c in names) if isinstance(templates, dict) else len(names) * len(templates),
        "chance_top1": 100.0 / len(names),
    }
    rows = [
        {"id": i, "label": int(y), "rank_of_label": int(r)}
        for i, y, r in zip(images.ids, images.labels.tolist(), rank.tolist(), strict=True)
    ]
    return TaskOutput(metrics, rows)


# ------------------------------------------------------------------------------ linear probe
@dataclass
class LinearProbeParams:
    feature: str = "patch-mean"  # §5.3: mean of the image encoder's patch tokens; "embedding" for any model
    l2: float = DEFAULT_L2
    tol: float = DEFAULT_TOL  # L-BFGS stops when max |gradient| <= tol (``converged`` in the result)
    max_iter: int = MAX_ITER  # safety cap; reaching it leaves ``converged`` false
    ks: list[int] = field(default_factory=lambda: [1, 5])

    def __post_init__(self) -> None:
        from mmthesis.eval.features import FEATURE_KINDS

        lookup(FEATURE_KINDS, "linear-probe feature kind", self.feature)


def _linear_probe_needs(task: ResolvedTask) -> tuple[str, ...]:
    patch_mean = task.params.get("feature", LinearProbeParams.feature) == "patch-mean"
    return ("image", "image_backbone") if patch_mean else ("image",)


@register("linear-probe", needs=_linear_probe_needs)
def run_linear_probe(ctx: EvalContext, task: ResolvedTask) -> TaskOutput:
    from mmthesis.eval.features import cached_features, image_feature_fn

    p = params_of(LinearProbeParams, task)
    if task.train_split is None:
        raise ConfigError(f"task {task.name} needs train_split", "add train_split to its YAML")
    fn = image_feature_fn(ctx.loaded.model, p.feature, backbone=ctx.loaded.image_backbone)

    def features(split: str) -> dict[str, torch.Tensor]:
        def compute():
            data = ctx.labelled_images(task.dataset, split)
            images = TransformedImages(data, ctx.loaded.image_transform)
            return {
                "features": ctx.embed_images(fn, images, what=f"features {task.dataset}/{split}"),
                "labels": data.labels,
            }

        return cached_features(ctx._key(task.dataset, split, f"image-{p.feature}", None), compute)

    train, test = features(task.train_split), features(task.split)
    classes = int(max(train["labels"].max(), test["labels"].max())) + 1
    probe = fit_linear_probe(train["features"], train["labels"], classes, p.l2, tol=p.tol, max_iter=p.max_iter)
    metrics: dict[str, Any] = {
        f"top{k}": topk_accuracy(probe, test["features"], test["labels"], k) for k in p.ks if k <= classes
    }
    metrics |= {
        "train_top1": top1_accuracy(probe, train["features"], train["labels"]),
        "train_loss": probe.converged_loss,
        "iterations": probe.iterations,
        "converged": probe.converged,
        "grad_max": probe.grad_max,
        "train_images": len(train["labels"]),
        "test_images": len(test["labels"]),
        "classes": classes,
        "majority_top1": 100.0 * float(torch.bincount(test["labels"], minlength=classes).max()) / len(test["labels"]),
    }
    preds = probe.predict(test["features"]).tolist()
    rows = [
        {"index": i, "label": int(y), "prediction": int(q)}
        for i, (y, q) in enumerate(zip(test["labels"].tolist(), preds, strict=True))
    ]
    notes = (
        []
        if probe.converged
        else [f"linear probe stopped at {probe.iterations} iterations with max |grad| {probe.grad_max:.1e} > tol {p.tol:g}"]
    )
    return TaskOutput(metrics, rows, notes)


# ------------------------------------------------------------------------------ analysis
@dataclass
class AnalysisParams:
    pass


@register("analysis", needs=("image", "text"))
def run_analysis(ctx: EvalContext, task: ResolvedTask) -> TaskOutput:
    params_of(AnalysisParams, task)
    data, image_emb, text_emb = retrieval_inputs(ctx, task)
    metrics = representation_analysis(image_emb, text_emb, data.caption_image_index)
    return TaskOutput(metrics)


def runner(protocol: str) -> Runner:
    # the modules below register themselves on import
    from mmthesis.eval import finetune, glue_finetune, robustness, shapes_tasks  # noqa: F401

    return lookup(RUNNERS, "eval protocol", protocol)
