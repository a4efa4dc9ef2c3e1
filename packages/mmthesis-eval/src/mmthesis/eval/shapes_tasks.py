"""Protocol runners ``latent-arithmetic`` and ``coherence``: shapes ground truth -> scores for any model.

The metric functions live in ``arithmetic`` (queries, retrieval and decoded scoring) and ``shapes_attributes``
(scenes, readers, the image classifier); this module wires them to the evaluation context (cached embeddings,
tokenizer, data) and records the readers' own accuracies beside the scores they produced.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from mmthesis.core.errors import ConfigError, DataMissingError
from mmthesis.data.batch import Batch
from mmthesis.eval.arithmetic import (
    QUERY_KINDS,
    SCORES,
    Scored,
    build_queries,
    chance_hits,
    check_kinds,
    mean_hits,
    score_decoded,
    score_retrieval,
    texts_of,
)
from mmthesis.eval.context import EvalContext
from mmthesis.eval.features import cached_features
from mmthesis.eval.generative import CrossModalGenerator, is_generator, require_generator
from mmthesis.eval.linear_probe import DEFAULT_L2, fit_linear_probe, top1_accuracy
from mmthesis.eval.protocols import TaskOutput, params_of, register
from mmthesis.eval.shapes_attributes import (
    ATTRIBUTE_VALUES,
    ATTRIBUTES,
    AttributeClassifier,
    Scene,
    ShapesSplit,
    Target,
    caption_target,
    load_or_train_classifier,
    load_shapes_split,
    match,
    read_caption,
    text_reader_accuracy,
)
from mmthesis.eval.task_registry import ResolvedTask


# ------------------------------------------------------------------------------ shared
def shapes_split(ctx: EvalContext, task: ResolvedTask, split: str) -> ShapesSplit:
    """The split's scenes and captions in the rows of ``ctx.retrieval_split`` (checked, not assumed)."""
    data = ctx.retrieval_split(task.dataset, split)
    shapes = load_shapes_split(ctx.dataset(task.dataset).folder, split)
    if shapes.ids != data.image_ids:
        raise DataMissingError(
            f"dataset {task.dataset!r} split {split!r}: scene metadata and images disagree on the image order",
            f"re-run `mmthesis data prepare {task.dataset}`",
        )
    return shapes


def classifier_of(ctx: EvalContext, task: ResolvedTask) -> AttributeClassifier:
    if task.train_split is None:
        raise ConfigError(f"task {task.name} needs train_split (the image classifier's)", "add train_split to its YAML")
    data = ctx.dataset(task.dataset)
    return load_or_train_classifier(data.folder, data.fingerprint, train_split=task.train_split, test_split=task.split)


def _latents(ctx: EvalContext, task: ResolvedTask, split: str, modality: str) -> torch.Tensor:
    """(N, Z) image latents / (M, Z) caption latents of a split, cached like embeddings."""
    gen = ctx.loaded.model
    data = ctx.retrieval_split(task.dataset, split)

    def compute() -> dict[str, torch.Tensor]:
        what = f"{modality} latents {task.dataset}/{split}"
        if modality == "image":
            return {"z": ctx._embed(gen.latent_image, data.images, what=what)}
        return {"z": ctx._embed(gen.latent_text, data.text_ids, data.text_padding_mask, what=what)}

    return cached_features(ctx._key(task.dataset, split, f"{modality}-latent", None), compute)["z"]


def _text_latents(ctx: EvalContext, task: ResolvedTask, texts: list[str]) -> dict[str, torch.Tensor]:
    ids, mask = ctx.tokenizer(task.dataset).encode_batch(texts, ctx.loaded.max_text_length)
    z = ctx._embed(ctx.loaded.model.latent_text, ids, mask, what="text latents")
    return dict(zip(texts, z, strict=True))


def decoder(
    ctx: EvalContext, gen: CrossModalGenerator, classifier: AttributeClassifier, max_len: int
) -> Callable[[torch.Tensor], tuple[list[Scene], list[str]]]:
    """z -> (scenes the classifier reads from the decoded images, greedy decoded texts)."""

    def decode(z: torch.Tensor) -> tuple[list[Scene], list[str]]:
        images = ctx._embed(gen.decode_image, z, what="decoding images")
        if images.ndim != 4 or images.shape[1] != 3 or images.min() < 0 or images.max() > 1:
            raise ValueError(f"decode_image must return (B, 3, H, W) in [0, 1], got {tuple(images.shape)}")
        texts: list[str] = []
        with torch.inference_mode():
            for start in range(0, len(z), ctx.batch_size):
                texts += gen.decode_text(z[start : start + ctx.batch_size], max_len=max_len, greedy=True)
        if len(texts) != len(z):
            raise ValueError(f"decode_text returned {len(texts)} texts for {len(z)} latents")
        return classifier.scenes(images), texts

    return decode


# ------------------------------------------------------------------------------ latent arithmetic
@dataclass
class ArithmeticParams:
    kinds: list[str] = field(default_factory=lambda: list(QUERY_KINDS))
    queries_per_kind: int = 100
    seed: int = 0
    k: int = 5  # also report whether any of the top k images has every target attribute
    decode: bool = True  # a CrossModalGenerator's summed latents are decoded and read too
    max_text_len: int = 32


@register("latent-arithmetic", needs=("image", "text"))
def run_latent_arithmetic(ctx: EvalContext, task: ResolvedTask) -> TaskOutput:
    p = params_of(ArithmeticParams, task)
    check_kinds(p.kinds, task.name)
    shapes = shapes_split(ctx, task, task.split)
    queries = build_queries(shapes.scenes, shapes.captions, p.kinds, p.queries_per_kind, p.seed)
    texts = texts_of(queries)
    text_emb = dict(zip(texts, ctx.embed_texts(texts, task.dataset), strict=True))
    image_emb = ctx.image_embeddings(task.dataset, task.split)
    scored = score_retrieval(queries, image_emb, text_emb, shapes.scenes, shapes.ids, p.k)
    metrics = {**scored.metrics, "images": float(len(shapes.ids)), **text_reader_accuracy(shapes)}
    notes = []
    gen = ctx.loaded.model
    if p.decode and is_generator(gen):
        classifier = classifier_of(ctx, task)
        decoded = score_decoded(
            queries,
            _latents(ctx, task, task.split, "image"),
            _text_latents(ctx, task, texts),
            decoder(ctx, gen, classifier, p.max_text_len),
            shapes.scenes,
            shapes.captions,
        )
        metrics |= decoded.metrics | classifier.metrics
        for row, extra in zip(scored.rows, decoded.rows, strict=True):
            row["decoded"] = {k: v for k, v in extra.items() if k != "query"}
    else:
        why = "params.decode is false" if not p.decode else "the model is not a CrossModalGenerator"
        notes.append(f"decoded arithmetic skipped: {why} (retrieval in the embedding space only)")
    return TaskOutput(metrics, scored.rows, notes)


# ------------------------------------------------------------------------------ coherence
@dataclass
class CoherenceParams:
    max_text_len: int = 32
    probe: bool = True  # linear probes on the image and text latents (train split -> test split)
    probe_l2: float = DEFAULT_L2
    elbo: bool = True  # mean test ELBO when the model has ``elbo(batch)``


def _need_generator(task: ResolvedTask) -> tuple[str, ...]:
    return ("image", "text", "generator")


def image_to_text(scenes: list[Scene], texts: list[str], captions: list[list[str]]) -> Scored:
    """Decoded text of each image vs the image's main shape; chance = a random test caption read the same way."""
    reads = [read_caption(t) for t in texts]
    hits = [match(r, s.main()) for (r, _), s in zip(reads, scenes, strict=True)]
    pool = [read_caption(c)[0] for caps in captions for c in caps]
    chances = [chance_hits(s.main(), pool, 1) for s in scenes]
    out = Scored()
    out.metrics = {f"i2t/{a}": v for a, v in mean_hits(hits).items()}
    out.metrics |= {f"i2t/chance/{a}": 100.0 * sum(c[a] for c in chances) / len(chances) for a in SCORES}
    out.metrics["i2t/exact_grammar"] = 100.0 * sum(ok for _, ok in reads) / len(reads)
    out.rows = [
        {"direction": "i2t", "image": i, "decoded_text": t, **h} for i, (t, h) in enumerate(zip(texts, hits, strict=True))
    ]
    return out


def text_to_image(
    caption_scenes: list[Scene], caption_texts: list[str], decoded: list[Scene], gallery: list[Scene]
) -> Scored:
    """Image decoded from each caption, read by the classifier, vs what the caption says (``caption_target``);
    chance = a random test image."""
    targets: list[Target] = [caption_target(s, c) for s, c in zip(caption_scenes, caption_texts, strict=True)]
    hits = [match(d, t) for d, t in zip(decoded, targets, strict=True)]
    chances = [chance_hits(t, gallery, 1) for t in targets]
    out = Scored()
    out.metrics = {f"t2i/{a}": v for a, v in mean_hits(hits).items()}
    for a in SCORES:
        values = [c[a] for c in chances if a in c]
        out.metrics[f"t2i/chance/{a}"] = 100.0 * sum(values) / len(values)
    out.rows = [{"direction": "t2i", "caption": c, **h} for c, h in zip(caption_texts, hits, strict=True)]
    return out


def attribute_labels(targets: list[Target], attribute: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows that state the attribute, class index of each) for a linear probe."""
    values = ATTRIBUTE_VALUES[attribute]
    rows = [i for i, t in enumerate(targets) if getattr(t, attribute) is not None]
    return torch.tensor(rows, dtype=torch.long), torch.tensor(
        [values.index(getattr(targets[i], attribute)) for i in rows], dtype=torch.long
    )


def probe_metrics(
    name: str, train_z: torch.Tensor, train_t: list[Target], test_z: torch.Tensor, test_t: list[Target], l2: float
) -> dict[str, float]:
    """Per attribute: test top-1 of a linear probe on the latents, and the test majority-class rate."""
    out = {}
    for a in ATTRIBUTES:
        (tr_rows, tr_y), (te_rows, te_y) = attribute_labels(train_t, a), attribute_labels(test_t, a)
        if not len(tr_rows) or not len(te_rows):
            continue
        classes = len(ATTRIBUTE_VALUES[a])
        probe = fit_linear_probe(train_z[tr_rows], tr_y, classes, l2)
        out[f"probe/{name}/{a}"] = top1_accuracy(probe, test_z[te_rows], te_y)
        out[f"probe/{name}/majority/{a}"] = 100.0 * float(torch.bincount(te_y, minlength=classes).max()) / len(te_y)
    return out


def _caption_targets(shapes: ShapesSplit) -> list[Target]:
    return [caption_target(s, c) for s, caps in zip(shapes.scenes, shapes.captions, strict=True) for c in caps]


def mean_elbo(ctx: EvalContext, task: ResolvedTask) -> float:
    """Mean of ``model.elbo(batch)`` over the test (image, caption) pairs (per-pair values or a batch mean)."""
    data = ctx.retrieval_split(task.dataset, task.split)
    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, data.num_captions, ctx.batch_size):
            rows = slice(start, start + ctx.batch_size)
            index = data.caption_image_index[rows]
            batch = Batch(
                id=data.caption_ids[rows],
                image=data.images[index],
                text_ids=data.text_ids[rows],
                text_padding_mask=data.text_padding_mask[rows],
                image_id=[data.image_ids[int(i)] for i in index],
            )
            value = torch.as_tensor(ctx.loaded.model.elbo(batch)).double()
            total += float(value.sum()) if value.ndim else float(value) * len(batch)
            count += len(batch)
    return total / count


@register("coherence", needs=_need_generator)
def run_coherence(ctx: EvalContext, task: ResolvedTask) -> TaskOutput:
    p = params_of(CoherenceParams, task)
    gen = require_generator(ctx.loaded.model, ctx.loaded.spec, task.name)
    shapes = shapes_split(ctx, task, task.split)
    data = ctx.retrieval_split(task.dataset, task.split)
    classifier = classifier_of(ctx, task)
    decode = decoder(ctx, gen, classifier, p.max_text_len)
    _, i2t_texts = decode(_latents(ctx, task, task.split, "image"))
    i2t = image_to_text(shapes.scenes, i2t_texts, shapes.captions)
    t2i_scenes, _ = decode(_latents(ctx, task, task.split, "text"))
    caption_scenes = [shapes.scenes[int(i)] for i in data.caption_image_index]
    t2i = text_to_image(caption_scenes, data.captions, t2i_scenes, shapes.scenes)
    metrics: dict[str, Any] = {**i2t.metrics, **t2i.metrics, **classifier.metrics, **text_reader_accuracy(shapes)}
    notes = []
    if p.probe:
        if task.train_split is None:
            raise ConfigError(f"task {task.name} needs train_split for its probes", "add train_split to its YAML")
        train = shapes_split(ctx, task, task.train_split)
        metrics |= probe_metrics(
            "image",
            _latents(ctx, task, task.train_split, "image"),
            [s.main() for s in train.scenes],
            _latents(ctx, task, task.split, "image"),
            [s.main() for s in shapes.scenes],
            p.probe_l2,
        )
        metrics |= probe_metrics(
            "text",
            _latents(ctx, task, task.train_split, "text"),
            _caption_targets(train),
            _latents(ctx, task, task.split, "text"),
            _caption_targets(shapes),
            p.probe_l2,
        )
    if p.elbo and hasattr(gen, "elbo"):
        metrics["elbo"] = mean_elbo(ctx, task)
    elif p.elbo:
        notes.append("no test ELBO: the model has no elbo(batch) method")
    metrics |= {"images": float(len(shapes.ids)), "captions": float(data.num_captions)}
    return TaskOutput(metrics, i2t.rows + t2i.rows, notes)
