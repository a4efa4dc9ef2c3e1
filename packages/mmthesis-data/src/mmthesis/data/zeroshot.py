"""Class names and prompt templates for CLIP-style zero-shot classification, and the prompt-ensemble reduction.

Here, not in ``mmthesis.eval``, because training's validation (``train.zero_shot_val`` in mmthesis.students)
scores zero-shot accuracy too and students must not import eval (core <- data <- teachers <- students <- eval);
``mmthesis.eval.zeroshot`` builds its protocol on these. The ImageNet-1K names and the 80 templates are OpenAI
CLIP's (``assets/imagenet1k.json``, MIT; REFERENCE.md §5.4).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from typing import Any

import torch
import torch.nn.functional as F

from mmthesis.core.errors import DataMissingError
from mmthesis.data.manifest import read_manifest

IMAGENET_CLASSES = 1000
# the one prompt of a dataset without a template list of its own (the smoke stand-ins' training-time signal)
PHOTO_TEMPLATE = "a photo of a {c}."


@lru_cache(maxsize=1)
def _imagenet_asset() -> dict[str, Any]:
    text = resources.files("mmthesis.data").joinpath("assets/imagenet1k.json").read_text(encoding="utf-8")
    return json.loads(text)


def imagenet_classnames() -> list[str]:
    """The 1,000 OpenAI ImageNet-1K class names, index = ILSVRC2012 class id."""
    return list(_imagenet_asset()["classnames"])


def imagenet_templates() -> list[str]:
    """The 80 OpenAI CLIP prompt templates for ImageNet (``{c}`` = class name)."""
    return list(_imagenet_asset()["templates"])


def format_prompts(class_name: str, templates: Sequence[str]) -> list[str]:
    """``class_name`` put into every template's ``{c}`` slot."""
    if not templates or any("{c}" not in t for t in templates):
        raise ValueError("every prompt template must contain '{c}' (the class-name slot)")
    return [t.replace("{c}", class_name) for t in templates]


@torch.no_grad()
def prototypes_from_prompt_embeddings(prompt_emb: torch.Tensor) -> torch.Tensor:
    """(C, T, D) prompt embeddings -> (C, D) prototypes: normalise, mean over templates, re-normalise."""
    if prompt_emb.ndim != 3:
        raise ValueError(f"prompt embeddings must be (classes, templates, dim), got {tuple(prompt_emb.shape)}")
    return F.normalize(F.normalize(prompt_emb.float(), dim=-1).mean(dim=1), dim=-1)


def dataset_class_names(folder: str) -> list[str]:
    """The class names of a prepared labelled dataset, in label order: its manifest's ``label_names`` (the
    stand-ins) or ``classes`` (ImageNet's wnids, or the stand-in's category folders)."""
    stats = read_manifest(folder).stats
    names = [str(n) for n in stats.get("label_names") or stats.get("classes") or []]
    if not names:
        raise DataMissingError(
            f"prepared dataset {folder!r} records no class names (manifest stats label_names / classes)",
            "use a labelled classification dataset (imagenet, shapes, emoji) or re-prepare it",
        )
    return names


def zero_shot_classes(name: str, folder: str) -> tuple[list[str], list[str]]:
    """(class names, templates) to score dataset ``name`` (prepared in ``folder``) zero-shot.

    ImageNet-1K (``imagenet`` with its 1,000 classes): the OpenAI class names x the 80 CLIP templates, as the
    thesis's zero-shot callback; any other labelled dataset: its own class names with ``PHOTO_TEMPLATE``.
    """
    names = dataset_class_names(folder)
    if name == "imagenet" and len(names) == IMAGENET_CLASSES:
        return imagenet_classnames(), imagenet_templates()
    return names, [PHOTO_TEMPLATE]
