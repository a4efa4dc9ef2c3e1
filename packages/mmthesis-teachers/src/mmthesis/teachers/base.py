"""Behaviour shared by every teacher wrapper: metadata, freezing, crop hooks.

Each architecture module (data2vec2, beitv2, dino, bert, supervised) defines a
``TeacherModule`` subclass; the registry builds them, the converters fill them,
``crop`` asks them for a shallower copy. Keeping the frozen-eval guarantee here
(REFERENCE.md section 10 item 16: teachers must stay in eval mode for the whole
run, whatever Lightning does to the module tree) means no caller can forget it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class TeacherModule(nn.Module):
    """Base class: ``embed_dim``, ``num_blocks``, ``modality`` and a freezable ``train``."""

    #: registry name (``data2vec2_image``, ``bert_base_uncased``, ...)
    teacher_name: str = ""
    modality: str = "image"

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = dict(config)
        self._frozen = False

    # -- metadata ---------------------------------------------------------
    @property
    def embed_dim(self) -> int:
        return int(self.config["embed_dim"])

    @property
    def num_blocks(self) -> int:
        raise NotImplementedError

    # -- freezing ---------------------------------------------------------
    def freeze(self) -> TeacherModule:
        """Stop gradients and pin eval mode (dropout / drop-path off) for good."""
        self.requires_grad_(False)
        self._frozen = True
        return super().train(False)

    def unfreeze(self) -> TeacherModule:
        """Undo ``freeze``: gradients on and ``.train()`` obeyed again (to finetune a teacher or a copy).

        The module stays in its current mode; call ``.train()`` to train it.
        """
        self._frozen = False
        self.requires_grad_(True)
        return self

    @property
    def frozen(self) -> bool:
        return self._frozen

    def train(self, mode: bool = True) -> TeacherModule:
        # A frozen teacher ignores .train(): Lightning calls model.train() on the
        # whole LightningModule at every epoch start.
        return super().train(False if self._frozen else mode)

    # -- cropping ---------------------------------------------------------
    def cropped(self, first_k_blocks: int) -> TeacherModule:
        """A new module with the first ``first_k_blocks`` blocks (flattened numbering)."""
        raise NotImplementedError


def check_k(model: TeacherModule, k: int) -> None:
    from mmthesis.core.errors import MMThesisError

    if not 1 <= k <= model.num_blocks:
        raise MMThesisError(
            f"cannot crop {model.teacher_name or type(model).__name__} to {k} blocks: it has {model.num_blocks}",
            f"pass first_k_blocks between 1 and {model.num_blocks}",
        )


def first_blocks_copy(model: TeacherModule, first_k_blocks: int, block_prefix: str) -> TeacherModule:
    """A new model of ``model``'s class with ``depth=k``: every tensor copied except blocks ``>= k``.

    ``block_prefix`` names the block list in the state dict (``model.blocks.``), so the block
    number is the key part right after it.
    """
    check_k(model, first_k_blocks)
    new = type(model)({**model.config, "depth": first_k_blocks}).to(device=device_of(model), dtype=dtype_of(model))
    at = block_prefix.count(".")
    state = {
        k: v.detach().clone()
        for k, v in model.state_dict().items()
        if not k.startswith(block_prefix) or int(k.split(".")[at]) < first_k_blocks
    }
    new.load_state_dict(state, strict=True)
    return new


def copy_module_weights(dst: nn.Module, src: nn.Module) -> None:
    """Copy parameters and buffers of ``src`` into the same-shaped ``dst`` (no aliasing)."""
    result = dst.load_state_dict({k: v.detach().clone() for k, v in src.state_dict().items()}, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


def param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def device_of(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    return torch.device("cpu")


def dtype_of(module: nn.Module) -> torch.dtype:
    for p in module.parameters():
        return p.dtype
    return torch.float32
