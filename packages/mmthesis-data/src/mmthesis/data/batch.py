"""The one batch format every loader produces and every model consumes (DESIGN.md).

``text_padding_mask`` is True at padding positions (fairseq/BERT-KD convention
of the thesis code); models convert it to an attention mask where needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch


@dataclass
class Batch:
    id: list[str]
    image: torch.Tensor | None = None  # (B, 3, H, W) float, normalised
    text_ids: torch.Tensor | None = None  # (B, L) long
    text_padding_mask: torch.Tensor | None = None  # (B, L) bool, True = pad
    label: torch.Tensor | None = None  # (B,) long, class label if the dataset has one
    image_id: list[str] = field(default_factory=list)  # for captions: the id of their image

    def __len__(self) -> int:
        return len(self.id)

    def to(self, device: torch.device | str) -> Batch:
        moved = {}
        for f in fields(self):
            v = getattr(self, f.name)
            moved[f.name] = v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
        return Batch(**moved)
