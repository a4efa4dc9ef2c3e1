"""Decode + augment throughput per worker: the path training reads vs torchvision ImageFolder.

All sides read the same JPEGs (written here as an ImageNet-style folder, then
prepared into shards by ``mmthesis.data.datasets.imagenet``) and apply the
same thesis train transform (``train_transform``: RandomResizedCrop 224, scale
``--scale``, bicubic, flip, normalise) in one process (= one DataLoader
worker). Each side runs ``--rounds`` times, alternating, and its best round
counts (less noise on a shared machine). The last line is ``ratio: <training
path / baseline>`` for the path training uses: ``ImageSplit`` (``SplitIndex``
random access in a shuffled order, the JPEG handed to the transform undecoded
so it decodes reduced when the crop allows); the sequential ``ShardStream`` is
reported on the line before.

    python benchmarks/loader.py [--images 400] [--rounds 3] [--size 320x240] [--scale 0.08,1]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.datasets import ImageFolder

from mmthesis.data.datasets import imagenet
from mmthesis.data.streaming import ImageDecoder, ShardStream
from mmthesis.data.transforms import train_transform
from mmthesis.students.unimodal_data import ImageSplit


def natural_jpeg(rng: np.random.Generator, width: int, height: int) -> bytes:
    """A smooth random image (upsampled noise + grain): compresses like a photo, unlike pure noise."""
    small = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    im = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
    grain = rng.normal(0, 8, (height, width, 3))
    im = Image.fromarray(np.clip(np.asarray(im, dtype=np.float32) + grain, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def write_folder(root: Path, n: int, width: int, height: int, classes: int = 4) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        wnid = f"n{i % classes:08d}"
        path = root / "train" / wnid / f"{wnid}_{i}.JPEG"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(natural_jpeg(rng, width, height))


def images_per_second(samples: Iterable, n: int) -> float:
    torch.manual_seed(0)
    start = time.perf_counter()
    count = sum(1 for _ in samples)
    elapsed = time.perf_counter() - start
    assert count == n, f"expected {n} images, got {count}"
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", default="320x240", help="WIDTHxHEIGHT of the generated JPEGs")
    parser.add_argument(
        "--scale", default="0.08,1", help="RandomResizedCrop scale (image KD 0.08,1; pretraining 0.9,1)"
    )
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    low, high = (float(v) for v in args.scale.split(","))
    torch.set_num_threads(1)  # one worker = one core
    transform = train_transform(224, scale=(low, high))
    with tempfile.TemporaryDirectory() as tmp:
        raw, out = Path(tmp) / "raw", Path(tmp) / "prepared" / "bench"
        write_folder(raw, args.images, width, height)
        manifest = imagenet.prepare_from_raw(raw, out, samples_per_shard=100)
        shards = manifest.shard_paths(out, "train")
        ours_stream = ShardStream(shards, ImageDecoder(transform), shuffle=False)
        baseline_set = ImageFolder(str(raw / "train"), transform=transform)
        indexed = ImageSplit(out.name, "train", transform, root=out.parent)
        order = np.random.default_rng(0).permutation(len(indexed)).tolist()
        ours, baseline, random_access = [], [], []
        for _ in range(args.rounds):
            baseline.append(images_per_second((baseline_set[i] for i in range(len(baseline_set))), args.images))
            ours.append(images_per_second(ours_stream, args.images))
            random_access.append(images_per_second((indexed[i] for i in order), args.images))
    print(
        f"images: {args.images} JPEG {width}x{height}, transform: RandomResizedCrop(224, ({low:g}, {high:g})) + flip + normalise, 1 worker"
    )
    print(
        f"baseline (ImageFolder, PIL decode) img/s per worker: {max(baseline):.1f}  rounds: {', '.join(f'{v:.1f}' for v in baseline)}"
    )
    print(
        f"sequential (tar shards, ShardStream) img/s per worker: {max(ours):.1f}  rounds: {', '.join(f'{v:.1f}' for v in ours)}  "
        f"ratio to baseline: {max(ours) / max(baseline):.3f}"
    )
    print(
        f"training path (SplitIndex random access, ImageSplit) img/s per worker: {max(random_access):.1f}  "
        f"rounds: {', '.join(f'{v:.1f}' for v in random_access)}  vs sequential: {max(random_access) / max(ours):.3f}"
    )
    print(f"ratio: {max(random_access) / max(baseline):.3f}")


if __name__ == "__main__":
    main()
