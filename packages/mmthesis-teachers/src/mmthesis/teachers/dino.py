"""DINO ViT-B/16 (facebookresearch/dino ``vit_base``): timm ``VisionTransformer``.

DINO's ViT (``dino/vision_transformer.py``) is the standard pre-LN ViT: conv
patch embedding, CLS token, learned absolute positions for CLS + patches,
blocks with qkv bias and LayerNorm eps 1e-6, final LayerNorm, no head. timm's
``VisionTransformer`` has the same function and the same parameter names
(timm ships these weights as ``vit_base_patch16_224.dino``), so we reuse it.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.models.vision_transformer import VisionTransformer

from mmthesis.teachers.base import TeacherModule, first_blocks_copy
from mmthesis.teachers.output import TeacherOutput

PRESETS: dict[str, dict[str, Any]] = {
    "base": dict(embed_dim=768, num_heads=12, mlp_ratio=4.0, depth=12, img_size=224, patch_size=16, in_chans=3),
    "tiny": dict(embed_dim=64, num_heads=4, mlp_ratio=4.0, depth=4, img_size=64, patch_size=8, in_chans=3),
}


class DINO(TeacherModule):
    teacher_name = "dino_vitb16"
    modality = "image"

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        c = self.config
        self.model = VisionTransformer(
            img_size=c["img_size"], patch_size=c["patch_size"], in_chans=c["in_chans"], num_classes=0,
            global_pool="token", embed_dim=c["embed_dim"], depth=c["depth"], num_heads=c["num_heads"],
            mlp_ratio=c["mlp_ratio"], qkv_bias=True, class_token=True,
        )

    @property
    def num_blocks(self) -> int:
        return len(self.model.blocks)

    def forward(self, images: torch.Tensor) -> TeacherOutput:
        m = self.model
        x = m.patch_embed(images)
        x = m._pos_embed(x)  # prepend CLS, add positions (timm's own helper)
        x = m.norm_pre(m.patch_drop(x))
        embeddings = x
        hidden = []
        for blk in m.blocks:
            x = blk(x)
            hidden.append(x)
        return TeacherOutput(last_hidden_state=m.norm(x), hidden_states=hidden, embeddings=embeddings)

    def cropped(self, first_k_blocks: int) -> DINO:
        """Patch embedding, CLS, positions, blocks ``0..k-1`` and the final norm."""
        return first_blocks_copy(self, first_k_blocks, "model.blocks.")
