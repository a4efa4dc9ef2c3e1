"""BEiTv2 ViT-B/16 as pretrained (no finetuning): timm ``Beit`` with a shared relative position bias.

The thesis's teacher (REFERENCE.md 3.6) is unilm's
``VisionTransformerForMaskedImageModeling`` (``beit2/modeling_pretrain.py``)
loaded from ``beitv2_base_patch16_224_pt1k.pth``: patch 16, dim 768, 12 blocks,
12 heads, MLP ratio 4, q/v biases (k bias fixed at 0), LayerNorm eps 1e-6,
**one** relative position bias table shared by all blocks, no absolute
position embedding, LayerScale (``gamma_1``/``gamma_2``, init 0.1), final
LayerNorm, ``lm_head`` deleted. timm's ``Beit`` with
``use_shared_rel_pos_bias=True, use_abs_pos_emb=False`` computes the same
function with the same parameter names, so we reuse it and only add the
per-block hidden-state collection.

``BEiTv2FT`` is the same encoder after unilm's ImageNet-1K finetuning
(``beit2/modeling_finetune.py``, ``run_class_finetuning.py`` defaults, released
as ``beitv2_base_patch16_224_pt1k_ft1k.pth``; timm ships the same weights as
``beitv2_base_patch16_224.in1k_ft_in1k``): the shared relative position bias is
copied into **every block** before finetuning, so each block owns its table
(``blocks.{i}.attn.relative_position_bias_table``); the patch tokens are
mean-pooled (CLS excluded) and normalised by ``fc_norm`` (``norm`` is the
identity), then ``head`` (768 -> 1000) gives the class logits. The thesis's
"BEiTv2 FT" teacher (REFERENCE.md 3.11, Table 26) is distilled through those
logits with SHRe's KL loss. timm ``Beit(use_rel_pos_bias=True,
global_pool="avg")`` is this model.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from timm.models.beit import Beit
from torch import nn

from mmthesis.teachers.base import TeacherModule, first_blocks_copy
from mmthesis.teachers.output import TeacherOutput

PRESETS: dict[str, dict[str, Any]] = {
    "base": dict(embed_dim=768, num_heads=12, mlp_ratio=4.0, depth=12, img_size=224, patch_size=16, in_chans=3,
                 norm_eps=1e-6, init_values=0.1, drop_path_rate=0.1),
    "tiny": dict(embed_dim=64, num_heads=4, mlp_ratio=4.0, depth=4, img_size=64, patch_size=8, in_chans=3,
                 norm_eps=1e-6, init_values=0.1, drop_path_rate=0.1),
}


class BEiTv2(TeacherModule):
    """BEiTv2 pretrain-only encoder; ``model`` is a timm ``Beit`` without head."""

    teacher_name = "beitv2_base_pt"
    modality = "image"

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        c = self.config
        self.model = Beit(
            img_size=c["img_size"], patch_size=c["patch_size"], in_chans=c["in_chans"], embed_dim=c["embed_dim"],
            depth=c["depth"], num_heads=c["num_heads"], mlp_ratio=c["mlp_ratio"], qkv_bias=True,
            drop_path_rate=c["drop_path_rate"], norm_layer=partial(nn.LayerNorm, eps=c["norm_eps"]),
            init_values=c["init_values"], use_abs_pos_emb=False, **self._variant(),
        )

    def _variant(self) -> dict[str, Any]:
        """What sets the pretrain-only model apart: one relative position bias shared by all blocks, no head."""
        return dict(num_classes=0, global_pool="token", use_rel_pos_bias=False, use_shared_rel_pos_bias=True,
                    use_fc_norm=False)

    @property
    def num_blocks(self) -> int:
        return len(self.model.blocks)

    def forward(self, images: torch.Tensor) -> TeacherOutput:
        m = self.model
        x = m.patch_embed(images)
        x = torch.cat((m.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = m.pos_drop(x)
        embeddings = x
        shared = m.rel_pos_bias() if m.rel_pos_bias is not None else None  # else each block adds its own
        hidden = []
        for blk in m.blocks:
            x = blk(x, shared_rel_pos_bias=shared)
            hidden.append(x)
        return TeacherOutput(last_hidden_state=m.norm(x), hidden_states=hidden, embeddings=embeddings)

    def cropped(self, first_k_blocks: int) -> BEiTv2:
        """Patch embedding, CLS, relative position bias, blocks ``0..k-1`` and the final norm (and head)."""
        return first_blocks_copy(self, first_k_blocks, "model.blocks.")


FT_PRESETS: dict[str, dict[str, Any]] = {
    "base": dict(embed_dim=768, num_heads=12, mlp_ratio=4.0, depth=12, img_size=224, patch_size=16, in_chans=3,
                 norm_eps=1e-6, init_values=0.1, drop_path_rate=0.1, num_classes=1000, global_pool="avg"),
    # 100 classes: enough for the smoke sets' labels (shapes 24 + emoji categories), so that
    # teacher.prefit_steps can fit the teacher's own classifier as a stand-in for its ImageNet finetuning
    "tiny": dict(embed_dim=64, num_heads=4, mlp_ratio=4.0, depth=4, img_size=64, patch_size=8, in_chans=3,
                 norm_eps=1e-6, init_values=0.1, drop_path_rate=0.1, num_classes=100, global_pool="avg"),
}


class BEiTv2FT(BEiTv2):
    """BEiTv2 finetuned on ImageNet-1K: per-block relative position bias, mean-pooled ``fc_norm``, class ``head``.

    ``last_hidden_state`` is the last block's token sequence after ``norm`` (the identity for the
    mean-pooling model; a LayerNorm for ``global_pool="token"`` checkpoints, finetuned with ``--use_cls``);
    ``logits`` are ``head(fc_norm(mean of the patch tokens))`` (or ``head(norm(x)[:, 0])`` for ``token``).
    """

    teacher_name = "beitv2_base_ft1k"

    def _variant(self) -> dict[str, Any]:
        pool = self.config["global_pool"]
        return dict(num_classes=self.config["num_classes"], global_pool=pool, use_rel_pos_bias=True,
                    use_shared_rel_pos_bias=False, use_fc_norm=pool == "avg")

    def forward(self, images: torch.Tensor) -> TeacherOutput:
        out = super().forward(images)
        out.logits = self.model.forward_head(out.last_hidden_state)
        return out

