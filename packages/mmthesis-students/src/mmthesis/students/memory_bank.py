"""FIFO memory bank of frozen-teacher targets for contrastive distillation (§3.10).

Because the teacher is frozen its embeddings never go stale, so the last G
targets can serve as extra negatives (G = 65,536 in the thesis, from MoCo).
As in the thesis code the bank starts filled with random unit vectors and is
overwritten in FIFO order after every step. It is a module buffer, so it is
saved in checkpoints and restored on resume.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TeacherMemoryBank(nn.Module):
    def __init__(self, size: int, dim: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if size < 0:
            raise ValueError(f"memory bank size must be >= 0, got {size}")
        # uniform components then L2-normalised, as the thesis code pre-fills the bank
        init = torch.rand(size, dim, generator=generator)
        self.register_buffer("bank", F.normalize(init, dim=-1) if size else init)
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return self.bank.shape[0]

    @torch.no_grad()
    def enqueue(self, targets: torch.Tensor) -> None:
        """Write ``targets`` (n x D) at the pointer, wrapping around; the oldest entries go first."""
        if self.size == 0:
            return
        targets = F.normalize(targets.detach().to(self.bank.dtype), dim=-1)
        n = targets.shape[0]
        if n > self.size:
            targets, n = targets[-self.size :], self.size
        start = int(self.pointer)
        idx = (torch.arange(n, device=self.bank.device) + start) % self.size
        self.bank[idx] = targets
        self.pointer.fill_((start + n) % self.size)

    def forward(self) -> torch.Tensor:
        return self.bank
