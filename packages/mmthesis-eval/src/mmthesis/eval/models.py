"""The model interface every evaluation task uses (DESIGN.md).

Anything with ``encode_image(images) -> (B, D)`` and
``encode_text(ids, padding_mask) -> (B, D)`` returning normalised embeddings
can be evaluated: trained mmthesis students, teachers, or an open_clip model
behind an adapter.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class ImageTextModel(Protocol):
    def encode_image(self, images: torch.Tensor) -> torch.Tensor: ...

    def encode_text(self, text_ids: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor: ...


@torch.no_grad()
def embed_in_batches(
    fn, *tensors: torch.Tensor, batch_size: int = 256, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Apply ``fn`` over the first dimension of ``tensors`` in batches; returns the concatenated float32 result."""
    outs = []
    total = tensors[0].shape[0]
    for start in range(0, total, batch_size):
        chunk = [t[start : start + batch_size].to(device) for t in tensors]
        outs.append(fn(*chunk).float().cpu())
    return torch.cat(outs) if outs else torch.empty(0)
