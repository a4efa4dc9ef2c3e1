"""CLIP-style zero-shot classification with the thesis protocol (REFERENCE.md §5.4).

Each class name is put into every prompt template (``{c}`` = class name), the
prompts are encoded, the normalised prompt embeddings averaged and the mean
re-normalised: that is the class prototype. Logits are 100 * image_emb @
prototypes.T; top-1 and top-5 accuracy are reported in percent.

ImageNet-1K uses the 1,000 OpenAI class names and the 80 OpenAI templates
bundled in ``assets/imagenet1k.json`` (from the OpenAI CLIP repository, MIT).
The smoke datasets (``shapes``, ``emoji``) have short label names such as
"red circle"; for them ``SMOKE_TEMPLATES`` is used: three phrasings close to
how their captions are written. It is a smoke-scale choice, not the thesis's.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

import torch
import torch.nn.functional as F

from mmthesis.core.registry import lookup
from mmthesis.data.tokenizers import Tokenizer
from mmthesis.eval.models import ImageTextModel, embed_in_batches
from mmthesis.eval.retrieval import _rank

LOGIT_SCALE = 100.0
SMOKE_TEMPLATES = ("a photo of a {c}.", "{c}", "an emoji of {c}.")


@lru_cache(maxsize=1)
def _imagenet_asset() -> dict[str, Any]:
    text = resources.files("mmthesis.eval").joinpath("assets/imagenet1k.json").read_text(encoding="utf-8")
    return json.loads(text)


def imagenet_classnames() -> list[str]:
    """The 1,000 OpenAI ImageNet-1K class names, index = ILSVRC2012 class id."""
    return list(_imagenet_asset()["classnames"])


def imagenet_templates() -> list[str]:
    """The 80 OpenAI CLIP prompt templates for ImageNet (``{c}`` = class name)."""
    return list(_imagenet_asset()["templates"])


def _dataset_classnames(label_names: list[str]) -> list[str]:
    return list(label_names)


def _smoke_templates() -> list[str]:
    return list(SMOKE_TEMPLATES)


# the zero-shot task YAML's ``params.classnames`` / ``params.templates`` values -> the function giving them
CLASSNAMES: dict[str, Any] = {
    "imagenet1k": lambda label_names: imagenet_classnames(),  # the bundled OpenAI names
    "dataset": _dataset_classnames,  # the prepared dataset's own label names
}
TEMPLATES: dict[str, Any] = {"imagenet80": imagenet_templates, "smoke": _smoke_templates}


def classnames_of(kind: str, label_names: list[str]) -> list[str]:
    """Class names for ``params.classnames`` (``label_names``: the dataset's own)."""
    return lookup(CLASSNAMES, "zero-shot classnames", kind)(label_names)


def templates_of(kind: str) -> list[str]:
    """Prompt templates for ``params.templates``."""
    return lookup(TEMPLATES, "zero-shot templates", kind)()


def templates_for(dataset: str) -> list[str]:
    """The thesis's 80 templates for ImageNet datasets, the small smoke set otherwise."""
    return imagenet_templates() if dataset.lower().startswith("imagenet") else list(SMOKE_TEMPLATES)


def format_prompts(class_name: str, templates: list[str] | tuple[str, ...]) -> list[str]:
    if not templates or any("{c}" not in t for t in templates):
        raise ValueError("every prompt template must contain '{c}' (the class-name slot)")
    return [t.replace("{c}", class_name) for t in templates]


@torch.no_grad()
def prototypes_from_prompt_embeddings(prompt_emb: torch.Tensor) -> torch.Tensor:
    """(C, T, D) prompt embeddings -> (C, D) prototypes: normalise, mean over templates, re-normalise."""
    if prompt_emb.ndim != 3:
        raise ValueError(f"prompt embeddings must be (classes, templates, dim), got {tuple(prompt_emb.shape)}")
    return F.normalize(F.normalize(prompt_emb.float(), dim=-1).mean(dim=1), dim=-1)


@torch.no_grad()
def zero_shot_classifier(
    model: ImageTextModel,
    class_names: list[str],
    templates: list[str] | tuple[str, ...],
    tokenizer: Tokenizer,
    max_length: int = 64,
    batch_size: int = 256,
) -> torch.Tensor:
    """(C, D) class prototypes from the text encoder (§5.4: all templates per class, averaged)."""
    if not class_names:
        raise ValueError("zero-shot classification needs at least one class name")
    prompts = [p for name in class_names for p in format_prompts(name, templates)]
    ids, mask = tokenizer.encode_batch(prompts, max_length)
    emb = embed_in_batches(model.encode_text, ids, mask, batch_size=batch_size)
    return prototypes_from_prompt_embeddings(emb.view(len(class_names), len(templates), -1))


@torch.no_grad()
def zero_shot_accuracy(
    image_emb: torch.Tensor,
    prototypes: torch.Tensor,
    labels: torch.Tensor,
    ks: tuple[int, ...] = (1, 5),
    logit_scale: float = LOGIT_SCALE,
) -> dict[str, float]:
    """Top-k accuracy (percent) of logits = logit_scale * image_emb @ prototypes.T.

    Ties are broken towards the lower class index (as in retrieval), so a result never depends
    on sort stability. ``k`` larger than the number of classes is an error (it would be 100%).
    """
    n, c = image_emb.shape[0], prototypes.shape[0]
    labels = labels.long().to(image_emb.device)
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
    if n and (labels.min() < 0 or labels.max() >= c):
        raise ValueError(f"labels must lie in [0, {c}) (one prototype per class)")
    if any(k < 1 or k > c for k in ks):
        raise ValueError(f"every k must lie in [1, {c}] for {c} classes, got {ks}")
    rank = _rank(logit_scale * image_emb.float() @ prototypes.float().t(), labels)
    return {f"top{k}": 100.0 * int((rank < k).sum()) / max(n, 1) for k in ks}
