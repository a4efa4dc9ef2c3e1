"""ShardStream: every sample exactly once per epoch over ranks x workers, epoch reshuffle, resampling, decoding."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from mmthesis.data.manifest import write_shard
from mmthesis.data.streaming import ImageDecoder, ShardStream
from mmthesis.data.transforms import train_transform


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """7 shards of uneven size (3..9 samples), 42 samples in all, keys s<shard>_<i>."""
    folder = tmp_path_factory.mktemp("shards")
    paths = []
    for k, n in enumerate([3, 9, 5, 7, 4, 8, 6]):
        path = folder / f"shard-{k:06d}.tar"
        write_shard(path, [{"__key__": f"s{k}_{i}", "txt": f"{k}-{i}"} for i in range(n)])
        paths.append(path)
    return paths


def keys(stream: ShardStream) -> list[str]:
    return [s["__key__"] for s in stream]


def loader_keys(stream: ShardStream, workers: int) -> list[str]:
    loader = DataLoader(stream, batch_size=None, num_workers=workers, collate_fn=lambda s: s)
    return [s["__key__"] for s in loader]


@pytest.mark.parametrize("world", [1, 2, 3, 5, 8])
def test_ranks_partition_every_epoch(shards: list[Path], world: int) -> None:
    for epoch in (0, 1):
        seen: list[str] = []
        for rank in range(world):
            stream = ShardStream(shards, seed=7, rank=rank, world_size=world)
            stream.set_epoch(epoch)
            seen += keys(stream)
        assert Counter(seen) == Counter(f"s{k}_{i}" for k, n in enumerate([3, 9, 5, 7, 4, 8, 6]) for i in range(n))


def test_ranks_times_dataloader_workers_partition(shards: list[Path]) -> None:
    seen: list[str] = []
    for rank in range(2):
        seen += loader_keys(ShardStream(shards, seed=1, rank=rank, world_size=2), workers=2)
    assert len(seen) == 42 and len(set(seen)) == 42


def test_epochs_reshuffle_deterministically(shards: list[Path]) -> None:
    a, b = ShardStream(shards, seed=3, shuffle_buffer=10), ShardStream(shards, seed=3, shuffle_buffer=10)
    first = keys(a)
    assert first == keys(b)
    a.set_epoch(1)
    assert keys(a) != first and sorted(keys(a)) == sorted(first)
    assert keys(ShardStream(shards, shuffle=False)) == [
        f"s{k}_{i}" for k, n in enumerate([3, 9, 5, 7, 4, 8, 6]) for i in range(n)
    ]


def test_resampling(shards: list[Path]) -> None:
    streams = [ShardStream(shards, resample=True, samples_per_epoch=50, seed=5, rank=r, world_size=2) for r in range(2)]
    per_rank = [keys(s) for s in streams]
    assert [len(k) for k in per_rank] == [50, 50]
    assert per_rank[0] != per_rank[1]
    assert max(Counter(per_rank[0]).values()) > 1  # drawn with replacement: more than one pass
    assert keys(streams[0]) == per_rank[0]
    with pytest.raises(ValueError, match="samples_per_epoch"):
        ShardStream(shards, resample=True)


def test_image_decoder_batches(tmp_path: Path) -> None:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(buf, format="JPEG")
    write_shard(
        tmp_path / "shard-000000.tar",
        [{"__key__": f"k{i}", "jpg": buf.getvalue(), "cls": str(i), "json": {"id": f"img{i}"}} for i in range(4)],
    )
    stream = ShardStream([tmp_path / "shard-000000.tar"], ImageDecoder(train_transform(16)), shuffle=False)
    batch = next(iter(DataLoader(stream, batch_size=4)))
    assert batch["image"].shape == (4, 3, 16, 16) and batch["image"].dtype == torch.float32
    assert batch["label"].tolist() == [0, 1, 2, 3] and batch["id"] == ["img0", "img1", "img2", "img3"]
    assert batch["image"][:, 0].mean() > batch["image"][:, 2].mean()  # red stays red after normalisation
