"""A second, independent image view for the teacher (REFERENCE.md §10 item 5, option ``teacher.independent_augmentation``).

The thesis text describes one augmentation pipeline (RandomResizedCrop [0.9, 1]
+ flip) whose output both student and teacher see; the thesis code instead drew
an independent view for the teacher, with the same crop and flip plus
ColorJitter 0.4. The default follows the code (``teacher.independent_augmentation``
true): this wrapper gives ``TwoViewBatch.teacher_image``, the teacher's view; false
= the text's one view.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode, v2

from mmthesis.data.batch import Batch
from mmthesis.data.image_text import ImageTextPairs
from mmthesis.data.transforms import IMAGENET_MEAN, IMAGENET_STD


@dataclass
class TwoViewBatch(Batch):
    teacher_image: torch.Tensor | None = None  # (B, 3, H, W) the teacher's own view

    def to(self, device: torch.device | str) -> TwoViewBatch:
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        moved = {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in moved.items()}
        return TwoViewBatch(**moved)


def teacher_transform(img_size: int, scale: tuple[float, float], color_jitter: float, hflip: float = 0.5) -> v2.Compose:
    """The code's teacher view: RandomResizedCrop(scale) -> flip ``hflip`` -> ColorJitter(b, c, s = ``color_jitter``)
    -> normalise."""
    return v2.Compose(
        [
            v2.RandomResizedCrop(
                img_size, scale=scale, ratio=(3 / 4, 4 / 3), interpolation=InterpolationMode.BICUBIC, antialias=True
            ),
            *([v2.RandomHorizontalFlip(hflip)] if hflip else []),
            v2.ColorJitter(brightness=color_jitter, contrast=color_jitter, saturation=color_jitter),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


class TwoViews(Dataset):
    """Wraps ``ImageTextPairs``: each example also carries an independently augmented teacher view."""

    def __init__(self, base: ImageTextPairs, transform: Callable[[Any], torch.Tensor]) -> None:
        self.base = base
        self.transform = transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.base.example(index, views={"teacher_image": self.transform})

    def collate(self, examples: Sequence[dict[str, Any]]) -> TwoViewBatch:
        batch = self.base.collate(examples)
        values = {f.name: getattr(batch, f.name) for f in fields(batch)}
        return TwoViewBatch(**values, teacher_image=torch.stack([e["teacher_image"] for e in examples]))
