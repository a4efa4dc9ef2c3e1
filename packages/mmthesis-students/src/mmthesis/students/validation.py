"""What the validation loop measures beyond the loss: image-text retrieval R@1 on the val embeddings.

Kept here rather than taken from ``mmthesis.eval`` because students must not import eval (the package
direction is core <- data <- teachers <- students <- eval): a training-time signal for Figures 19 and 27,
not the evaluation of record (that is ``mmthesis eval``, with its tie reporting).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import torch


def retrieval_r1(image_emb: torch.Tensor, text_emb: torch.Tensor, text_image: torch.Tensor) -> tuple[float, float]:
    """(image->text, text->image) R@1 in percent, COCO-style: an image is retrieved right if its nearest caption is one
    of its own captions; a caption if its nearest image is its own.

    ``image_emb`` (N, D) and ``text_emb`` (M, D) are compared by dot product (pass normalised vectors for cosine);
    ``text_image`` (M,) is the row of each caption's image. Ties go to the lowest index (``argmax``).
    """
    if text_image.numel() != text_emb.shape[0]:
        raise ValueError(f"{text_emb.shape[0]} captions but {text_image.numel()} image rows for them")
    sim = image_emb.float() @ text_emb.float().t()  # (N, M)
    rows = torch.arange(image_emb.shape[0], device=sim.device)
    i2t = (text_image.to(sim.device)[sim.argmax(dim=1)] == rows).float().mean()
    t2i = (sim.argmax(dim=0) == text_image.to(sim.device)).float().mean()
    return 100.0 * float(i2t), 100.0 * float(t2i)


def zero_shot_top1(image_emb: torch.Tensor, class_emb: torch.Tensor, labels: torch.Tensor) -> float:
    """CLIP-style zero-shot top-1 in percent: each image gets the class whose prompt embedding is nearest."""
    pred = (image_emb.float() @ class_emb.float().t()).argmax(dim=1)
    return 100.0 * float((pred == labels.to(pred.device)).float().mean())


def image_keys(image_ids: Sequence[str]) -> torch.Tensor:
    """A stable int64 key per image id (CRC-32; Python's ``hash`` of a str differs between processes), so val
    embeddings gathered from several ranks can be grouped by image."""
    return torch.tensor([zlib.crc32(i.encode("utf-8")) for i in image_ids], dtype=torch.int64)


class RetrievalAccumulator:
    """Collects the val embeddings of image-caption pairs and scores retrieval once per validation.

    Pairs repeat their image (several captions each): each image is kept once (its first embedding; in eval
    mode every copy is the same image under the same deterministic transform).
    """

    def __init__(self) -> None:
        self.images: list[torch.Tensor] = []
        self.texts: list[torch.Tensor] = []
        self.keys: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] | None = []  # None once a batch comes without class labels

    def add(
        self, image_emb: torch.Tensor, text_emb: torch.Tensor, keys: torch.Tensor, labels: torch.Tensor | None = None
    ) -> None:
        self.images.append(image_emb.detach().float().cpu())
        self.texts.append(text_emb.detach().float().cpu())
        self.keys.append(keys.cpu())
        if labels is None or self.labels is None:
            self.labels = None
        else:
            self.labels.append(labels.cpu())

    def compute(self) -> tuple[float, float, torch.Tensor, torch.Tensor | None] | None:
        """(i2t R@1, t2i R@1 in percent, the image embeddings (one per image), their labels or None); None without
        pairs. Clears what was collected."""
        if not self.keys:
            return None
        images, texts, keys = torch.cat(self.images), torch.cat(self.texts), torch.cat(self.keys)
        labels = torch.cat(self.labels) if self.labels else None
        self.__init__()
        unique, first = _first_occurrence(keys)
        text_image = torch.searchsorted(unique, keys)
        i2t, t2i = retrieval_r1(images[first], texts, text_image)
        return i2t, t2i, images[first], None if labels is None else labels[first]


def _first_occurrence(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sorted unique keys, the index of each one's first occurrence in ``keys``)."""
    unique, inverse = torch.unique(keys, sorted=True, return_inverse=True)
    positions = torch.arange(keys.numel())
    first = torch.full((unique.numel(),), keys.numel(), dtype=torch.long).scatter_reduce(
        0, inverse, positions, reduce="amin"
    )
    return unique, first
