"""What the validation loop measures beyond the loss: image-text retrieval R@1 on the val embeddings, and
CLIP-style zero-shot top-1 / top-5 on a labelled classification split (``train.zero_shot_val``).

Kept here rather than taken from ``mmthesis.eval`` because students must not import eval (the package
direction is core <- data <- teachers <- students <- eval): a training-time signal for Figures 19 and 27 and
for model selection (SHRe's best zero-shot epoch), not the evaluation of record (that is ``mmthesis eval``,
with its tie reporting). The class names, templates and prototype reduction are ``mmthesis.data.zeroshot``'s,
the same eval uses.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from mmthesis.core.errors import DataMissingError
from mmthesis.data.zeroshot import prototypes_from_prompt_embeddings


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


def zero_shot_topk(
    image_emb: torch.Tensor, prototypes: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)
) -> dict[int, float]:
    """Top-k zero-shot accuracy in percent for each k: an image is right at k if fewer than k classes score above
    its label's prototype, ties counted towards the lower class index (``argmax``'s rule, so top-1 equals
    ``zero_shot_top1``). Scores are dot products (pass normalised vectors for cosine)."""
    scores = image_emb.float() @ prototypes.float().t()  # (N, C)
    labels = labels.long().to(scores.device)
    own = scores.gather(1, labels[:, None])
    lower = torch.arange(scores.shape[1], device=scores.device)[None] < labels[:, None]
    rank = (scores > own).sum(dim=1) + ((scores == own) & lower).sum(dim=1)
    return {k: 100.0 * float((rank < k).float().mean()) for k in ks}


def evenly_spaced(n: int, cap: int) -> list[int]:
    """``cap`` row indices spread evenly over ``n`` rows (all rows when ``cap`` is 0 or at least ``n``): a fixed
    subset without drawing random numbers, covering every class of a class-ordered split."""
    if not cap or cap >= n:
        return list(range(n))
    return [i * n // cap for i in range(cap)]


def shard(n: int, rank: int, world: int) -> range:
    """The rows rank ``rank`` of ``world`` encodes: a contiguous block of ceil(n / world) rows (the last ranks'
    blocks may be shorter or empty), so the blocks in rank order are the rows in order (``gather_rows``)."""
    per = -(-n // world)
    return range(min(n, rank * per), min(n, (rank + 1) * per))


def gather_rows(
    local: torch.Tensor, n: int, world: int, all_gather: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """All ``n`` rows on every rank from each rank's ``shard`` block: blocks are padded to ceil(n / world) rows
    for ``all_gather`` (equal shapes) and the padding, all at the end, is cut off."""
    if world == 1:
        return local
    per = -(-n // world)
    padded = local.new_zeros((per, *local.shape[1:]))
    padded[: local.shape[0]] = local
    return all_gather(padded).reshape(world * per, *local.shape[1:])[:n]


class ZeroShotValidation(L.Callback):
    """``val/zero_shot_top1`` and ``val/zero_shot_top5`` (percent) at every validation, as the thesis code's
    zero-shot callback: each class's prompts encoded, averaged and re-normalised into a prototype, each image
    scored against all prototypes (``train.zero_shot_val``; built by ``train.build_zero_shot_validation``).

    Under DDP each rank encodes its ``shard`` of the images and of the prompts and every rank gathers all of
    them, so all ranks log the same numbers (``train.keep_best`` monitors them on every rank). The images are
    read in order under the eval transform by a loader with its own generator: nothing is drawn from the
    training's random state.
    """

    def __init__(
        self,
        images: Dataset,
        collate: Callable[[list[Any]], Any],
        prompts: tuple[torch.Tensor, torch.Tensor],
        templates: int,
        batch_size: int,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        ids, mask = prompts
        if templates < 1 or ids.shape[0] % templates:
            raise ValueError(f"{ids.shape[0]} prompts are not a whole number of classes x {templates} templates")
        self.images, self.collate, self.ids, self.mask = images, collate, ids, mask
        self.templates, self.batch_size, self.num_workers, self.seed = templates, batch_size, num_workers, seed
        self._loader: DataLoader | None = None

    @property
    def classes(self) -> int:
        return self.ids.shape[0] // self.templates

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        with trainer.precision_plugin.forward_context():
            scores = self.score(pl_module, trainer.global_rank, trainer.world_size)
        for k, value in scores.items():
            pl_module.log(f"val/zero_shot_top{k}", value)

    @torch.no_grad()
    def score(self, module: Any, rank: int = 0, world: int = 1) -> dict[int, float]:
        """Top-1 (and top-5 with at least 5 classes) of ``module.student``'s current weights."""
        student, device = module.student, module.device
        gather = module.all_gather
        rows = shard(len(self.images), rank, world)
        if self._loader is None:  # built once: its workers (if any) persist across validations
            self._loader = DataLoader(
                torch.utils.data.Subset(self.images, list(rows)),
                batch_size=self.batch_size,
                shuffle=False,
                num_workers=self.num_workers,
                collate_fn=self.collate,
                generator=torch.Generator().manual_seed(self.seed),
                persistent_workers=self.num_workers > 0,
            )
        embeddings, labels = [], []
        for batch in self._loader:
            if batch.label is None:
                raise DataMissingError("the zero-shot validation split has unlabelled images", "use a labelled split")
            embeddings.append(student.encode_image(batch.image.to(device)).float())
            labels.append(batch.label.to(device))
        # a rank with an empty shard (fewer rows than ranks) still joins the gathers, with the right width
        dim = student.encode_text(self.ids[:1].to(device), self.mask[:1].to(device)).shape[1]
        image_emb = torch.cat(embeddings) if embeddings else torch.zeros(0, dim, device=device)
        image_labels = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long, device=device)
        image_emb = gather_rows(image_emb, len(self.images), world, gather)
        image_labels = gather_rows(image_labels, len(self.images), world, gather)
        if int(image_labels.max()) >= self.classes:
            raise DataMissingError(
                f"the zero-shot validation split has labels beyond its {self.classes} class names",
                "re-prepare the dataset",
            )
        prompt_rows = shard(self.ids.shape[0], rank, world)
        ids, mask = self.ids[prompt_rows.start : prompt_rows.stop], self.mask[prompt_rows.start : prompt_rows.stop]
        text = [
            student.encode_text(ids[i : i + self.batch_size].to(device), mask[i : i + self.batch_size].to(device))
            for i in range(0, ids.shape[0], self.batch_size)
        ]
        text_emb = torch.cat(text).float() if text else torch.zeros(0, dim, device=device)
        text_emb = gather_rows(text_emb, self.ids.shape[0], world, gather)
        prototypes = prototypes_from_prompt_embeddings(text_emb.view(self.classes, self.templates, -1))
        ks = [k for k in (1, 5) if k <= self.classes]
        return zero_shot_topk(image_emb, prototypes, image_labels, ks)


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
