"""One evaluation session: a loaded model, the data it reads, and the embedding cache.

Embeddings of a (model, dataset, split, modality, corruption) are computed
once and stored with ``features.cached_features`` under a key of the model's
weight fingerprint, the dataset's manifest fingerprint, the split, the image
transform and the corruption, so a second task on the same data (retrieval,
then analysis, then a robustness curve's clean point) never re-encodes it, in
this process or the next. Decoded splits are memoised for the session.

``device`` and ``precision`` say where and how encoders run: inputs move to
the device batch by batch and, below fp32, run under ``torch.autocast`` (the
embeddings come back as float32 on the CPU). Both change the numbers, so a
non-default device type or precision is part of every cached embedding's key
(and of the evaluation's config, see ``harness``); the batch size and the
worker count are not: each embedding depends on its own input only (captions
and prompts are padded per split, not per batch).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from mmthesis.core.console import progress
from mmthesis.data.image_text import RetrievalSplit, decode_split, load_retrieval_split
from mmthesis.data.tokenizers import load_dataset_tokenizer
from mmthesis.eval.adapters import LoadedModel
from mmthesis.eval.corruptions import corrupt_text, corrupt_uint8_image
from mmthesis.eval.data_access import LabelledImages, PreparedDataset, load_labelled_images, resolve_dataset
from mmthesis.eval.features import cached_features, feature_key

Corruption = tuple[str, float, int]  # (kind, strength, seed)
PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class EvalContext:
    loaded: LoadedModel
    scale: str = "full"
    batch_size: int = 256
    show_progress: bool = True
    num_workers: int = 0  # DataLoader workers decoding images read from shards (classification sets)
    device: str = "cpu"
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast on the device)
    _datasets: dict[str, PreparedDataset] = field(default_factory=dict)
    _splits: dict[tuple[str, str], RetrievalSplit] = field(default_factory=dict)
    _raw: dict[tuple[str, str], list[np.ndarray]] = field(default_factory=dict)
    _labelled: dict[tuple[str, str], LabelledImages] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from mmthesis.core.errors import ConfigError
        from mmthesis.core.registry import lookup

        lookup(PRECISIONS, "precision", self.precision)
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {self.batch_size}", "pass --batch-size 1 or more")
        try:
            device = torch.device(self.device)
        except RuntimeError as e:
            raise ConfigError(f"unknown device {self.device!r}", "use cpu, cuda, cuda:N or mps") from e
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {self.device} asked for, but CUDA is not available here", "use --device cpu")
        if device.type != "cpu":
            for module in (self.loaded.model, self.loaded.image_backbone, self.loaded.text_backbone):
                if module is not None:
                    module.to(device)

    @property
    def numerics(self) -> str:
        """What of device and precision changes the numbers: '' for the CPU in fp32 (keys stay as they were)."""
        kind = torch.device(self.device).type
        return "" if (kind, self.precision) == ("cpu", "fp32") else f"{kind}-{self.precision}"

    def autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=torch.device(self.device).type, dtype=PRECISIONS[self.precision])

    # -- data ---------------------------------------------------------------------------------
    def dataset(self, name: str) -> PreparedDataset:
        if name not in self._datasets:
            self._datasets[name] = resolve_dataset(name, self.scale)
        return self._datasets[name]

    def tokenizer(self, dataset: str) -> Any:
        return self.loaded.tokenizer or load_dataset_tokenizer(self.dataset(dataset).folder)

    def retrieval_split(self, dataset: str, split: str) -> RetrievalSplit:
        key = (dataset, split)
        if key not in self._splits:
            self.loaded.require("image")
            folder = self.dataset(dataset).folder
            self._splits[key] = load_retrieval_split(
                folder, split, self.loaded.image_transform, self.tokenizer(dataset), self.loaded.max_text_length
            )
        return self._splits[key]

    def raw_images(self, dataset: str, split: str) -> list[np.ndarray]:
        """uint8 images in the rows of ``retrieval_split`` (first occurrence of each image id)."""
        key = (dataset, split)
        if key not in self._raw:
            decoded = decode_split(self.dataset(dataset).folder, split)
            first: dict[str, np.ndarray] = {}
            for image_id, image in zip(decoded.image_ids, decoded.images, strict=True):
                first.setdefault(image_id, image)
            self._raw[key] = [first[i] for i in self.retrieval_split(dataset, split).image_ids]
        return self._raw[key]

    def labelled_images(self, dataset: str, split: str) -> LabelledImages:
        key = (dataset, split)
        if key not in self._labelled:
            self._labelled[key] = load_labelled_images(self.dataset(dataset), split)
        return self._labelled[key]

    # -- embeddings ---------------------------------------------------------------------------
    def _key(self, dataset: str, split: str, kind: str, corruption: Corruption | None) -> str:
        tag = kind if corruption is None else f"{kind}/{corruption[0]}@{corruption[1]:g}/seed{corruption[2]}"
        if self.numerics:
            tag += f"/{self.numerics}"
        transform = (
            repr(self.loaded.image_transform) if kind.startswith("image") else f"text/max{self.loaded.max_text_length}"
        )
        return feature_key(self.loaded.fingerprint, self.dataset(dataset).fingerprint, split, transform, tag)

    def _embed_batches(self, fn, batches: Iterable[tuple[torch.Tensor, ...]], total: int, what: str) -> torch.Tensor:
        """``fn(*args)`` for each batch of arguments, with a progress bar; the results concatenated on the CPU."""
        outs = []
        device = torch.device(self.device)
        with progress(transient=True) as bar, torch.inference_mode(), self.autocast():
            task = bar.add_task(what, total=total, visible=self.show_progress)
            for args in batches:
                outs.append(fn(*(a.to(device) for a in args)).float().cpu())
                bar.advance(task, len(args[0]))
        return torch.cat(outs) if outs else torch.empty(0)

    def _embed(self, fn, *tensors: torch.Tensor, what: str) -> torch.Tensor:
        """``fn`` over in-memory tensors (split along the first dimension) in batches."""
        total, size = tensors[0].shape[0], self.batch_size
        batches = (tuple(t[start : start + size] for t in tensors) for start in range(0, total, size))
        return self._embed_batches(fn, batches, total, what)

    def embed_images(self, fn, images: Dataset, what: str) -> torch.Tensor:
        """``fn`` over a dataset of ``(image tensor, label)`` in batches, decoded by ``num_workers`` workers.

        Streams: only one batch of pixels is in memory at a time (ImageNet-1k does not fit).
        """
        loader = DataLoader(images, batch_size=self.batch_size, num_workers=self.num_workers)
        return self._embed_batches(fn, ((x,) for x, _ in loader), len(images), what)

    def image_embeddings(self, dataset: str, split: str, corruption: Corruption | None = None) -> torch.Tensor:
        """(N, D) normalised image embeddings of the split's images (optionally corrupted), cached."""
        self.loaded.require("image")

        def compute() -> dict[str, torch.Tensor]:
            images = (
                self.retrieval_split(dataset, split).images
                if corruption is None
                else self._corrupted_images(dataset, split, corruption)
            )
            return {"emb": self._embed(self.loaded.model.encode_image, images, what=f"images {dataset}/{split}")}

        return cached_features(self._key(dataset, split, "image-embedding", corruption), compute)["emb"]

    def text_embeddings(self, dataset: str, split: str, corruption: Corruption | None = None) -> torch.Tensor:
        """(M, D) normalised caption embeddings (optionally corrupted token ids), cached."""
        self.loaded.require("text")

        def compute() -> dict[str, torch.Tensor]:
            data = self.retrieval_split(dataset, split)
            ids, mask = data.text_ids, data.text_padding_mask
            if corruption is not None:
                g = torch.Generator().manual_seed(corruption[2])
                ids, mask = corrupt_text(ids, mask, corruption[0], corruption[1], g)
            return {"emb": self._embed(self.loaded.model.encode_text, ids, mask, what=f"captions {dataset}/{split}")}

        return cached_features(self._key(dataset, split, "text-embedding", corruption), compute)["emb"]

    def _corrupted_images(self, dataset: str, split: str, corruption: Corruption) -> torch.Tensor:
        """Corrupt each uint8 image in [0, 1] pixel space (seed = corruption seed + row), then transform."""
        return torch.stack(
            [
                self.loaded.image_transform(Image.fromarray(corrupt_uint8_image(array, corruption, row)))
                for row, array in enumerate(self.raw_images(dataset, split))
            ]
        )

    def embed_texts(self, texts: list[str], dataset: str, corruption: Corruption | None = None) -> torch.Tensor:
        """Normalised embeddings of free texts (zero-shot prompts), not cached (they are few)."""
        self.loaded.require("text")
        ids, mask = self.tokenizer(dataset).encode_batch(texts, self.loaded.max_text_length)
        if corruption is not None:
            ids, mask = corrupt_text(
                ids, mask, corruption[0], corruption[1], torch.Generator().manual_seed(corruption[2])
            )
        return self._embed(self.loaded.model.encode_text, ids, mask, what="prompts")
