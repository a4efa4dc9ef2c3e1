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
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from timm.models.beit import Beit
from torch import nn

from mmthesis.teachers.base import TeacherModule, check_k, device_of, dtype_of
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
            img_size=c["img_size"], patch_size=c["patch_size"], in_chans=c["in_chans"], num_classes=0,
            global_pool="token", embed_dim=c["embed_dim"], depth=c["depth"], num_heads=c["num_heads"],
            mlp_ratio=c["mlp_ratio"], qkv_bias=True, drop_path_rate=c["drop_path_rate"],
            norm_layer=partial(nn.LayerNorm, eps=c["norm_eps"]), init_values=c["init_values"],
            use_abs_pos_emb=False, use_rel_pos_bias=False, use_shared_rel_pos_bias=True, use_fc_norm=False,
        )

    @property
    def num_blocks(self) -> int:
        return len(self.model.blocks)

    def forward(self, images: torch.Tensor) -> TeacherOutput:
        m = self.model
        x = m.patch_embed(images)
        x = torch.cat((m.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = m.pos_drop(x)
        embeddings = x
        rel = m.rel_pos_bias()
        hidden = []
        for blk in m.blocks:
            x = blk(x, shared_rel_pos_bias=rel)
            hidden.append(x)
        return TeacherOutput(last_hidden_state=m.norm(x), hidden_states=hidden, embeddings=embeddings)

    def cropped(self, first_k_blocks: int) -> BEiTv2:
        """Patch embedding, CLS, shared relative position bias, blocks ``0..k-1`` and the final norm."""
        check_k(self, first_k_blocks)
        new = BEiTv2({**self.config, "depth": first_k_blocks}).to(device=device_of(self), dtype=dtype_of(self))
        sd = {k: v.detach().clone() for k, v in self.state_dict().items()
              if not k.startswith("model.blocks.") or int(k.split(".")[2]) < first_k_blocks}
        new.load_state_dict(sd, strict=True)
        return new
