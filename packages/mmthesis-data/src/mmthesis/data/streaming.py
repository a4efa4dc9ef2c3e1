"""Streaming loader over prepared tar shards, split across ranks and DataLoader workers.

Why: the pretraining corpora (COCO + CC3M + CC12M, ~1 TB) cannot be decoded
into memory; each process reads whole shards sequentially instead.

Assignment per epoch (``ShardStream``): the shard list is shuffled with
``(seed, epoch)`` (the same order on every rank), then consumer ``c`` of
``C = world_size * num_workers`` (``c = rank * num_workers + worker``) takes
shards ``c, c + C, ...``; with fewer shards than consumers every consumer reads
every shard and keeps samples ``c, c + C, ...`` of it. Either way each sample
is seen exactly once per epoch across all consumers. ``resample=True`` draws
shards with replacement instead (as ``webdataset.ResampledShards`` does), each
consumer from its own seeded stream, for ``samples_per_epoch`` samples per
consumer: for corpora whose shard counts do not divide evenly.
"""

from __future__ import annotations

import io
import os
import random
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from mmthesis.data.batch import Batch
from mmthesis.data.manifest import Sample, dataset_dir, read_manifest, read_shard
from mmthesis.data.tokenizers import Tokenizer


def dist_rank_world() -> tuple[int, int]:
    """(rank, world size) from torch.distributed if initialised, else RANK/WORLD_SIZE, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class ShardStream(IterableDataset):
    """Decoded samples of a prepared split; call ``set_epoch`` before each epoch (as with DistributedSampler)."""

    def __init__(
        self,
        shards: Sequence[Path],
        decode: Callable[[Sample], Any] | None = None,
        *,
        shuffle: bool = True,
        seed: int = 0,
        shuffle_buffer: int = 0,
        resample: bool = False,
        samples_per_epoch: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        if resample and not samples_per_epoch:
            raise ValueError("resample=True needs samples_per_epoch (per consumer), as the stream is otherwise endless")
        self.shards = [Path(s) for s in shards]
        self.decode = decode
        self.shuffle, self.seed, self.shuffle_buffer = shuffle, seed, shuffle_buffer
        self.resample, self.samples_per_epoch = resample, samples_per_epoch
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    @classmethod
    def from_prepared(cls, name: str, split: str, root: Path | None = None, **kwargs: Any) -> ShardStream:
        manifest = read_manifest(name, root)
        return cls(manifest.shard_paths(dataset_dir(name, root), split), **kwargs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def consumer(self) -> tuple[int, int]:
        """(this consumer's index, number of consumers) over all ranks and workers."""
        rank, world = dist_rank_world()
        rank = rank if self.rank is None else self.rank
        world = world if self.world_size is None else self.world_size
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        return rank * workers + worker, world * workers

    def _raw_samples(self) -> Iterator[Sample]:
        index, count = self.consumer()
        if self.resample:
            rng = random.Random(f"{self.seed}/{self.epoch}/{index}")
            produced = 0
            while True:
                for sample in read_shard(rng.choice(self.shards)):
                    if produced == self.samples_per_epoch:
                        return
                    produced += 1
                    yield sample
        order = list(self.shards)
        if self.shuffle:
            random.Random(f"{self.seed}/{self.epoch}").shuffle(order)
        if len(order) >= count:
            for shard in order[index::count]:
                yield from read_shard(shard)
            return
        position = 0
        for shard in order:
            for sample in read_shard(shard):
                if position % count == index:
                    yield sample
                position += 1

    def _buffered(self, samples: Iterator[Sample]) -> Iterator[Sample]:
        if not self.shuffle or self.shuffle_buffer <= 1:
            yield from samples
            return
        index, _ = self.consumer()
        rng = random.Random(f"{self.seed}/{self.epoch}/{index}/buffer")
        buffer: list[Sample] = []
        for sample in samples:
            buffer.append(sample)
            if len(buffer) >= self.shuffle_buffer:
                yield buffer.pop(rng.randrange(len(buffer)))
        rng.shuffle(buffer)
        yield from buffer

    def __iter__(self) -> Iterator[Any]:
        for sample in self._buffered(self._raw_samples()):
            if self.decode is None:
                yield sample
                continue
            decoded = self.decode(sample)
            if isinstance(decoded, list):  # one sample -> several examples (image-text pairs)
                yield from decoded
            else:
                yield decoded


IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")
# torchvision 0.29 deprecates torchvision.io decoding in favour of torchcodec; it is still the fastest
# decoder installed (benchmarks/loader.py), and ImageDecoder falls back to PIL if it goes away.
_DEPRECATED = "The image decoding and encoding capabilities of TorchVision"


def _decode_pil(data: bytes) -> torch.Tensor:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        array = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


class ImageDecoder:
    """``decode`` for ``ShardStream``: image bytes -> uint8 tensor (libjpeg-turbo via torchvision) -> ``transform``.

    Returns ``{"id", "image", "label", "captions"}``; label is None without ``cls``, captions empty
    for classification sets. Picklable, so it runs inside DataLoader workers.
    """

    def __init__(self, transform: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.transform = transform

    def __call__(self, sample: Sample) -> dict[str, Any]:
        image = self.image(sample)
        meta = sample.get("json", {})
        return {
            "id": str(meta.get("id", sample["__key__"])),
            "image": self.transform(image),
            "label": int(sample["cls"]) if "cls" in sample else None,
            "captions": list(meta.get("captions", [])),
        }

    @staticmethod
    def image(sample: Sample) -> torch.Tensor:
        """The sample's image as a uint8 (3, H, W) tensor."""
        key = next(k for k in IMAGE_KEYS if k in sample)
        try:
            from torchvision.io import ImageReadMode, decode_image

            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_DEPRECATED, category=DeprecationWarning)
                image = decode_image(
                    torch.frombuffer(bytearray(sample[key]), dtype=torch.uint8), mode=ImageReadMode.RGB
                )
        except (ImportError, RuntimeError):  # no torchvision.io, or a format it cannot read (PIL verified it)
            return _decode_pil(sample[key])
        return image


class PairDecoder(ImageDecoder):
    """One example per (image, caption) pair, as the thesis trains; the image is augmented anew for each pair."""

    def __call__(self, sample: Sample) -> list[dict[str, Any]]:  # type: ignore[override]
        image = self.image(sample)
        meta = sample.get("json", {})
        image_id = str(meta.get("id", sample["__key__"]))
        return [
            {"id": f"{image_id}_{k}", "image_id": image_id, "image": self.transform(image), "caption": c}
            for k, c in enumerate(meta.get("captions", []))
        ]


class PairCollate:
    """Pair examples -> ``Batch`` (DESIGN.md's one batch format): captions tokenized here, padded to the longest."""

    def __init__(self, tokenizer: Tokenizer, max_length: int = 64) -> None:
        self.tokenizer, self.max_length = tokenizer, max_length

    def __call__(self, examples: Sequence[dict[str, Any]]) -> Batch:
        ids, mask = self.tokenizer.encode_batch([e["caption"] for e in examples], self.max_length)
        return Batch(
            id=[e["id"] for e in examples],
            image=torch.stack([e["image"] for e in examples]),
            text_ids=ids,
            text_padding_mask=mask,
            image_id=[e["image_id"] for e in examples],
        )
