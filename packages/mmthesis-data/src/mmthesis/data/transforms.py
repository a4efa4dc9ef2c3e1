"""Image transforms of the thesis (REFERENCE.md §4.3), with torchvision transforms v2.

- Multimodal pretraining, student image: RandomResizedCrop(size, scale (0.9, 1.0),
  bicubic) -> horizontal flip (p 0.5) -> normalise with the ImageNet mean/std.
  (Image KD uses scale (0.08, 1.0), retrieval finetuning (0.5, 1.0): pass ``scale``.)
- Retrieval / zero-shot evaluation: resize (squash, no crop) to size x size,
  bicubic -> normalise.
- Downstream classification evaluation (ImageNet, CIFAR): resize the shorter side
  to size, bicubic -> center crop -> normalise.

Inputs are PIL images or uint8 (C, H, W) tensors; outputs float32 (3, size, size).
"""

from __future__ import annotations

import torch
from torchvision.transforms import InterpolationMode, v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # timm IMAGENET_DEFAULT_MEAN
IMAGENET_STD = (0.229, 0.224, 0.225)  # timm IMAGENET_DEFAULT_STD


def _to_normalised_tensor() -> list[v2.Transform]:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


def train_transform(img_size: int, scale: tuple[float, float] = (0.9, 1.0)) -> v2.Compose:
    """RandomResizedCrop(img_size, scale, ratio 3/4..4/3, bicubic) -> flip 0.5 -> normalise (REFERENCE.md §4.3)."""
    return v2.Compose(
        [
            v2.RandomResizedCrop(
                img_size, scale=scale, ratio=(3 / 4, 4 / 3), interpolation=InterpolationMode.BICUBIC, antialias=True
            ),
            v2.RandomHorizontalFlip(0.5),
            *_to_normalised_tensor(),
        ]
    )


def eval_transform(img_size: int) -> v2.Compose:
    """Resize (squash, no crop) to img_size x img_size, bicubic -> normalise (REFERENCE.md §4.3, retrieval/zero-shot)."""
    return v2.Compose(
        [
            v2.Resize((img_size, img_size), interpolation=InterpolationMode.BICUBIC, antialias=True),
            *_to_normalised_tensor(),
        ]
    )


def classification_eval_transform(img_size: int) -> v2.Compose:
    """Resize the shorter side to img_size, bicubic -> center crop -> normalise (REFERENCE.md §4.3, downstream classification eval)."""
    return v2.Compose(
        [
            v2.Resize(img_size, interpolation=InterpolationMode.BICUBIC, antialias=True),
            v2.CenterCrop(img_size),
            *_to_normalised_tensor(),
        ]
    )


def denormalise(x: torch.Tensor) -> torch.Tensor:
    """Inverse of the normalisation, to [0, 1] (for figures and debugging)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return (x * std + mean).clamp(0, 1)
