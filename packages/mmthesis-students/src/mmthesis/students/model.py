"""The S-SMKE vision-language student (REFERENCE.md §3.5-§3.10).

image encoder  = the first blocks of a pretrained Data2Vec2 image model (``crop``)
text encoder   = the first layers of BERT-base uncased (``crop``)
+ token-type embedding added to each encoder's output, scaled by a LayerScale
  shared by both modalities (§3.7 variant B)
shared encoder = one randomly initialised pre-LN Transformer block, applied to
  each modality's sequence separately (timm's BEiT ``Block``: q/v-only biases,
  LayerScale, LN eps 1e-6 — exactly the thesis code's block, §10 item 9)
KD head        = LayerNorm + Linear on the shared CLS (regression head)

Representations for retrieval and zero-shot are the L2-normalised CLS of the
shared block's output (§5.1), exposed as ``encode_image`` / ``encode_text``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from timm.layers import LayerScale
from timm.models.beit import Block
from torch import nn

from mmthesis.students.config import ModelConfig
from mmthesis.teachers import build_model, crop, init_bert_params, load_teacher

IMAGE_TYPE, TEXT_TYPE = 1, 0  # thesis code: nn.Embedding(2, D), index 1 = image, 0 = text


@dataclass
class StudentOutput:
    cls: torch.Tensor  # (B, D) shared-block CLS, not normalised
    fc1_cls: torch.Tensor | None  # (B, 4D) CLS of the shared block's fc1 pre-activation (§10 item 6)
    kd: torch.Tensor | None  # (B, D_teacher) regression-head output


class SSMKE(nn.Module):
    def __init__(self, config: ModelConfig, vocab_size: int, kd_dim: int | None, *, load_pretrained: bool = True) -> None:
        """``load_pretrained=False`` skips reading the encoders' checkpoints (e.g. before loading trained weights)."""
        super().__init__()
        self.config = config
        image_kw = {"img_size": config.img_size, "patch_size": config.patch_size}
        image_ckpt = config.image.checkpoint if load_pretrained else None
        text_ckpt = config.text.checkpoint if load_pretrained else None
        image_src = self._source(config.image.name, image_ckpt, config.size, image_kw)
        text_src = self._source(config.text.name, text_ckpt, config.size, {"vocab_size": vocab_size})
        self.image_encoder = crop(image_src, config.image.blocks)
        self.text_encoder = crop(text_src, config.text.blocks)
        self.image_encoder.train()
        self.text_encoder.train()
        for p in list(self.image_encoder.parameters()) + list(self.text_encoder.parameters()):
            p.requires_grad_(True)
        dim = self.image_encoder.embed_dim
        if self.text_encoder.embed_dim != dim:
            raise ValueError(f"image ({dim}) and text ({self.text_encoder.embed_dim}) encoders must have the same width")
        self.embed_dim = dim
        heads = max(1, dim // 64)
        if config.token_type_embeddings == "after":
            self.token_type = nn.Embedding(2, dim)
            self.tte_scale = LayerScale(dim, init_values=config.tte_layer_scale_init)
        else:
            self.token_type = None
            self.tte_scale = None
        self.shared = Block(
            dim=dim,
            num_heads=heads,
            qkv_bias=True,
            mlp_ratio=4.0,
            init_values=config.shared_layer_scale_init,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
        )
        self.kd_head = nn.Sequential(nn.LayerNorm(dim, eps=1e-6), nn.Linear(dim, kd_dim)) if kd_dim else None
        new_modules = [m for m in (self.token_type, self.shared, self.kd_head) if m is not None]
        for module in new_modules:
            module.apply(init_bert_params)  # as the thesis code initialises its new layers
        self.shared.reset_parameters()  # LayerScale gammas back to their init value after init_bert

    @staticmethod
    def _source(name: str, checkpoint: str | None, size: str, kwargs: dict) -> nn.Module:
        if checkpoint is None:
            return build_model(name, size=size, **kwargs)
        return load_teacher(name, path=checkpoint, size=size, **kwargs)

    # -- encoders ---------------------------------------------------------------------------------
    def _shared(self, tokens: torch.Tensor, type_id: int, padding_mask: torch.Tensor | None, want_fc1: bool) -> StudentOutput:
        if self.token_type is not None:
            type_vec = self.token_type.weight[type_id]
            tokens = tokens + self.tte_scale(type_vec).to(tokens.dtype)
        bias = None
        if padding_mask is not None:
            # additive key-padding mask, broadcast over heads and queries
            bias = torch.zeros(padding_mask.shape, dtype=tokens.dtype, device=tokens.device)
            bias = bias.masked_fill(padding_mask, torch.finfo(tokens.dtype).min)[:, None, None, :]
        fc1_cls = None
        if want_fc1:
            block = self.shared
            h = tokens + block.gamma_1 * block.attn(block.norm1(tokens), shared_rel_pos_bias=bias)
            fc1_cls = block.mlp.fc1(block.norm2(h[:, 0]))
        out = self.shared(tokens, shared_rel_pos_bias=bias)
        cls = out[:, 0]
        kd = self.kd_head(cls) if self.kd_head is not None else None
        return StudentOutput(cls=cls, fc1_cls=fc1_cls, kd=kd)

    def forward_image(self, images: torch.Tensor) -> StudentOutput:
        hidden = self.image_encoder(images).last_hidden_state
        return self._shared(hidden, IMAGE_TYPE, None, self.config.itc_on_fc1)

    def forward_text(self, text_ids: torch.Tensor, padding_mask: torch.Tensor) -> StudentOutput:
        hidden = self.text_encoder(text_ids, padding_mask).last_hidden_state
        return self._shared(hidden, TEXT_TYPE, padding_mask, self.config.itc_on_fc1)

    # -- the model interface of DESIGN.md ---------------------------------------------------------
    @torch.no_grad()
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.forward_image(images).cls.float(), dim=-1)

    @torch.no_grad()
    def encode_text(self, text_ids: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.forward_text(text_ids, padding_mask).cls.float(), dim=-1)
