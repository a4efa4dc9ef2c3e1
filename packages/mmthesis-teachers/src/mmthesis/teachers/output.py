"""The one output type every teacher (and every cropped student encoder) returns.

Distillation code reads the same fields whatever the architecture, so swapping
BEiTv2 for DINO or Data2Vec2 as the teacher changes a name, not the code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class TeacherOutput:
    """Outputs of one forward pass.

    last_hidden_state: (B, N, D) final token sequence, CLS at index 0, after the
        model's final norm when it has one (BEiTv2, DINO). For CNN teachers the
        "CLS" at index 0 is the globally pooled feature and the rest are the
        flattened last feature map.
    cls: (B, D) ``last_hidden_state[:, 0]``.
    hidden_states: one (B, N, D) tensor per block, in the flattened block
        numbering (Data2Vec2 image: 2 prenet blocks then the main blocks), each
        the block's full output (before any final norm).
    layer_results: Data2Vec2 only: each block's FFN output before the block's
        last residual + LayerNorm (fairseq ``layer_results`` with
        ``end_of_block_targets=False``), the tensors data2vec-style targets use.
    embeddings: the sequence that enters the first block (after embeddings /
        positions / pre-block norm); BERT's HF ``hidden_states[0]``.
    padding_mask: (B, N) bool, True = padding (text models), else None.
    logits: class logits of supervised teachers (SHRe KD), else None.
    """

    last_hidden_state: torch.Tensor
    hidden_states: list[torch.Tensor] = field(default_factory=list)
    layer_results: list[torch.Tensor] | None = None
    embeddings: torch.Tensor | None = None
    padding_mask: torch.Tensor | None = None
    logits: torch.Tensor | None = None

    @property
    def cls(self) -> torch.Tensor:
        return self.last_hidden_state[:, 0]
