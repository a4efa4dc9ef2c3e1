"""Optional gradient checkpointing (``train.gradient_checkpointing``): recompute block activations in backward.

Trades compute for memory so that larger batches fit (the thesis's 24 GB cards
were the limit for batch 256, §3.2/§3.8). Every Transformer block is wrapped
(Data2Vec2/ViT ``blocks``, the shared block); Hugging Face models (BERT) use
their own switch. The function computed is unchanged, only memory and time.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.utils.checkpoint import checkpoint


def _wrap(block: nn.Module) -> None:
    forward = block.forward

    def checkpointed(*args: Any, **kwargs: Any) -> Any:
        if block.training and any(p.requires_grad for p in block.parameters()):
            return checkpoint(forward, *args, use_reentrant=False, **kwargs)
        return forward(*args, **kwargs)

    block.forward = checkpointed  # type: ignore[method-assign]


def enable_gradient_checkpointing(model: nn.Module) -> int:
    """Checkpoint every block of ``model``; returns how many blocks (HF models count as one) were switched."""
    count = 0
    for module in model.modules():
        # Hugging Face models: `activation_checkpointing_enable` (transformers >= 5), formerly gradient_...
        new = getattr(module, "activation_checkpointing_enable", None)
        old = getattr(module, "gradient_checkpointing_enable", None)
        if new is not None:
            new(activation_checkpointing_kwargs={"use_reentrant": False})
            count += 1
        elif old is not None:
            old(gradient_checkpointing_kwargs={"use_reentrant": False})
            count += 1
        blocks = getattr(module, "blocks", None)
        if isinstance(blocks, nn.ModuleList):
            for block in blocks:
                _wrap(block)
                count += 1
    shared = getattr(model, "shared", None)
    if isinstance(shared, nn.Module) and hasattr(shared, "attn"):
        _wrap(shared)
        count += 1
    return count
