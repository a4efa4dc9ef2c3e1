"""CLIP-style zero-shot classification with the thesis protocol (REFERENCE.md §5.4).

Each class name is put into every prompt template (``{c}`` = class name), the
prompts are encoded, the normalised prompt embeddings averaged and the mean
re-normalised: that is the class prototype. Logits are 100 * image_emb @
prototypes.T; top-1 and top-5 accuracy are reported in percent.

ImageNet-1K uses the 1,000 OpenAI class names and the 80 OpenAI templates
bundled in mmthesis.data (``mmthesis.data.zeroshot``; from the OpenAI CLIP repository, MIT), where
training's zero-shot validation reads them too.
The smoke datasets (``shapes``, ``emoji``) have short label names such as
"red circle"; for them ``SMOKE_TEMPLATES`` is used: three phrasings close to
how their captions are written. It is a smoke-scale choice, not the thesis's.

Custom class names and prompts come from JSON files in the formats
CLIP_benchmark's ``--custom_classname_file`` / ``--custom_template_file``
accept: an object keyed by dataset name whose value is the list of class
names, or the list of templates (``{c}`` = class name) or, per class, the
list of its prompts (CuPL style). A bare list applies to any dataset, and our
bundled asset's ``{"classnames": [...], "templates": [...]}`` works too.

This module is the one zero-shot implementation: the protocol runner, the
robustness curves and library users all build prototypes with
``zero_shot_classifier`` and score them with ``zero_shot_ranks``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from mmthesis.core.errors import ConfigError
from mmthesis.core.registry import lookup
from mmthesis.data.tokenizers import Tokenizer
from mmthesis.data.zeroshot import (  # noqa: F401 (the protocol's names stay importable from here)
    format_prompts,
    imagenet_classnames,
    imagenet_templates,
    prototypes_from_prompt_embeddings,
)
from mmthesis.eval.models import ImageTextModel, embed_in_batches
from mmthesis.eval.retrieval import _rank

LOGIT_SCALE = 100.0
SMOKE_TEMPLATES = ("a photo of a {c}.", "{c}", "an emoji of {c}.")


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


# templates with the ``{c}`` slot, or each class's own prompts (CuPL style)
Prompts = Sequence[str] | dict[str, list[str]]
# a dataset's name in CLIP_benchmark's files, where it differs from ours
CLIP_BENCHMARK_NAMES = {"imagenet": "imagenet1k"}


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"{what} file {path} does not exist", "give an existing JSON file") from e
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{what} file {path} is not readable JSON: {e}", "fix the file (UTF-8 JSON)") from e


def _for_dataset(data: Any, dataset: str, own_key: str, path: Path, what: str) -> Any:
    """The entry of a CLIP_benchmark-style file for ``dataset`` (a bare list applies to every dataset)."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        for key in (dataset, CLIP_BENCHMARK_NAMES.get(dataset), own_key):
            if key is not None and key in data:
                return data[key]
        keys = ", ".join(sorted(map(str, data))[:8])
        raise ConfigError(
            f"{what} file {path} has no entry for dataset {dataset!r} (keys: {keys})",
            f'add "{dataset}": [...] to it, or give a plain JSON list',
        )
    raise ConfigError(f"{what} file {path} holds a {type(data).__name__}", "give a JSON object or list")


def load_classnames_file(path: Path, dataset: str) -> list[str]:
    """Class names for ``dataset`` from a CLIP_benchmark-style class-name file (index = class id)."""
    names = _for_dataset(_read_json(path, "class-name"), dataset, "classnames", path, "class-name")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(f"class-name file {path}: the entry for {dataset!r} is not a list of names", "fix the file")
    return names


def load_templates_file(path: Path, dataset: str) -> Prompts:
    """Templates (``{c}`` slot) or per-class prompts for ``dataset`` from a CLIP_benchmark-style template file."""
    entry = _for_dataset(_read_json(path, "template"), dataset, "templates", path, "template")
    ok = (isinstance(entry, list) and entry and all(isinstance(t, str) for t in entry)) or (
        isinstance(entry, dict)
        and entry
        and all(isinstance(v, list) and v and all(isinstance(t, str) for t in v) for v in entry.values())
    )
    if not ok:
        raise ConfigError(
            f"template file {path}: the entry for {dataset!r} is neither a list of templates nor class -> prompts",
            'write ["a photo of a {c}.", ...] or {"class name": ["prompt", ...], ...}',
        )
    return entry


def class_prompts(class_names: list[str], prompts: Prompts) -> list[list[str]]:
    """Each class's prompts: its name put into every template, or its own list from a per-class dict."""
    if isinstance(prompts, dict):
        missing = [c for c in class_names if c not in prompts]
        if missing:
            raise ValueError(f"per-class prompts lack {len(missing)} class(es), e.g. {missing[0]!r}")
        return [list(prompts[c]) for c in class_names]
    return [format_prompts(name, list(prompts)) for name in class_names]


@torch.no_grad()
def zero_shot_classifier(
    embed_texts: Callable[[list[str]], torch.Tensor], class_names: list[str], prompts: Prompts
) -> torch.Tensor:
    """(C, D) class prototypes (§5.4): every class's prompts embedded, normalised, averaged, re-normalised.

    ``embed_texts`` maps a list of texts to (N, D) embeddings (``text_encoder`` builds one from a model and a
    tokenizer; the eval context's ``embed_texts`` is another).
    """
    if not class_names:
        raise ValueError("zero-shot classification needs at least one class name")
    groups = class_prompts(class_names, prompts)
    emb = embed_texts([p for group in groups for p in group])
    sizes = [len(g) for g in groups]
    if len(set(sizes)) == 1:
        return prototypes_from_prompt_embeddings(emb.view(len(groups), sizes[0], -1))
    parts = torch.split(F.normalize(emb.float(), dim=-1), sizes)
    return F.normalize(torch.stack([p.mean(dim=0) for p in parts]), dim=-1)


def text_encoder(
    model: ImageTextModel, tokenizer: Tokenizer, max_length: int = 64, batch_size: int = 256
) -> Callable[[list[str]], torch.Tensor]:
    """``texts -> (N, D)`` through ``model.encode_text`` in batches (the argument ``zero_shot_classifier`` takes)."""

    def embed(texts: list[str]) -> torch.Tensor:
        ids, mask = tokenizer.encode_batch(texts, max_length)
        return embed_in_batches(model.encode_text, ids, mask, batch_size=batch_size)

    return embed


@torch.no_grad()
def zero_shot_ranks(
    image_emb: torch.Tensor, prototypes: torch.Tensor, labels: torch.Tensor, logit_scale: float = LOGIT_SCALE
) -> tuple[torch.Tensor, torch.Tensor]:
    """(rank of each image's label, 0 = best; top-1 prediction) of logits = logit_scale * image_emb @ prototypes.T.

    Ties are broken towards the lower class index (as in retrieval), so a result never depends on sort stability.
    """
    n, c = image_emb.shape[0], prototypes.shape[0]
    labels = labels.long().to(image_emb.device)
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
    if n and (labels.min() < 0 or labels.max() >= c):
        raise ValueError(f"labels must lie in [0, {c}) (one prototype per class)")
    logits = logit_scale * image_emb.float() @ prototypes.float().t()
    return _rank(logits, labels), logits.argmax(dim=1)  # argmax: the first maximum, the lower index


def mean_per_class_recall(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over the classes present in ``labels`` of the share of their images predicted right, in percent
    (scikit-learn's balanced accuracy; CLIP_benchmark's ``mean_per_class_recall``)."""
    labels = labels.long()
    if not len(labels):
        return 0.0
    counts = torch.bincount(labels)
    right = torch.bincount(labels, weights=(predictions.long() == labels).double(), minlength=len(counts))
    present = counts > 0
    return 100.0 * float((right[present] / counts[present]).mean())


def zero_shot_metrics(
    rank: torch.Tensor, predictions: torch.Tensor, labels: torch.Tensor, ks: Sequence[int]
) -> dict[str, float]:
    """top-k accuracy (percent) for each k and the mean per-class recall of the top-1 predictions."""
    n = max(len(rank), 1)
    return {f"top{k}": 100.0 * int((rank < k).sum()) / n for k in ks} | {
        "mean_per_class_recall": mean_per_class_recall(predictions, labels)
    }


@torch.no_grad()
def zero_shot_accuracy(
    image_emb: torch.Tensor,
    prototypes: torch.Tensor,
    labels: torch.Tensor,
    ks: tuple[int, ...] = (1, 5),
    logit_scale: float = LOGIT_SCALE,
) -> dict[str, float]:
    """Top-k accuracy (percent) of logits = logit_scale * image_emb @ prototypes.T (see ``zero_shot_ranks``).

    ``k`` larger than the number of classes is an error (it would be 100%).
    """
    c = prototypes.shape[0]
    if any(k < 1 or k > c for k in ks):
        raise ValueError(f"every k must lie in [1, {c}] for {c} classes, got {ks}")
    rank, _ = zero_shot_ranks(image_emb, prototypes, labels, logit_scale)
    return {f"top{k}": 100.0 * int((rank < k).sum()) / max(len(rank), 1) for k in ks}
