"""The vision-language students of the thesis: SHRe (§3.3), SHRe_T (§3.5) and the S-SMKE family (§3.6-§3.11).

One class with switches, because the thesis varies one thing at a time:

image encoder  = the first blocks of a pretrained Data2Vec2 image model (``crop``)
text encoder   = the first layers of BERT-base uncased (``crop``)
token types    = ``none`` | ``before`` (a learned vector per modality added to every
                 token with the positional encoding, before the encoders: §3.7
                 variant A) | ``after`` (added to each encoder's output, scaled by a
                 LayerScale shared by both modalities: variant B, kept; without
                 the LayerScale with ``tte_layer_scale=false``, Table 20's "TTE only")
shared encoder = ``transformer``: one randomly initialised pre-LN Transformer block,
                 applied to each modality's sequence separately (timm's BEiT
                 ``Block``: q/v-only biases, LayerScale, LN eps 1e-6 — the thesis
                 code's block, §10 item 9), then a head LayerNorm + Linear on the
                 CLS (regression head for feature KD, 1000-way head for KL);
                 ``mlp``: SHRe's 3-layer MLP on each encoder's CLS (§3.3).

Representations for retrieval and zero-shot (``encode_image`` / ``encode_text``)
are L2-normalised: the shared block's CLS (``StudentOutput.cls``); for SHRe's MLP
the fc2 output h'' (768-d), as the thesis code's retrieval and zero-shot used
(``model.mlp_representation=fc2``), or h''' (1000-d, ``head``), the thesis text's.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from timm.layers import LayerScale
from timm.models.beit import Block
from torch import nn

from mmthesis.core.errors import ConfigError
from mmthesis.students.config import ModelConfig
from mmthesis.students.paths import resolve_checkpoint
from mmthesis.teachers import build_model, crop, init_bert_params, load_teacher

IMAGE_TYPE, TEXT_TYPE = 1, 0  # thesis code: nn.Embedding(2, D), index 1 = image, 0 = text


@dataclass
class StudentOutput:
    cls: torch.Tensor  # (B, D') shared-block CLS (MLP: h''', the KD logits), not normalised
    fc1_cls: torch.Tensor | None  # (B, 4D) CLS of the shared fc1 pre-activation (§10 item 6; SHRe's h')
    kd: torch.Tensor | None  # (B, D_head) head output: regression target space or class logits
    tokens: torch.Tensor | None = None  # (B, N, D) shared-block output sequence (T-CMLI)
    mid: torch.Tensor | None = None  # SHRe MLP only: h'' (B, D)


class SharedMLP(nn.Module):
    """SHRe's shared encoder on a CLS vector (§3.3): h' = fc1(x); h'' = fc2(LN(GELU(h'))); h''' = head(LN(h'')).

    As the thesis code (timm ``Mlp`` with a LayerNorm(4D) between GELU and fc2,
    then LayerNorm(D) + Linear(D, classes)); every layer's output enters the ITC.
    """

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.norm = nn.LayerNorm(4 * dim, eps=1e-6)
        self.fc2 = nn.Linear(4 * dim, dim)
        self.head = nn.Sequential(nn.LayerNorm(dim, eps=1e-6), nn.Linear(dim, out_dim))

    def forward(self, cls: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h1 = self.fc1(cls)
        h2 = self.fc2(self.norm(self.act(h1)))
        return h1, h2, self.head(h2)


class SSMKE(nn.Module):
    def __init__(
        self, config: ModelConfig, vocab_size: int, kd_dim: int | None, *, load_pretrained: bool = True
    ) -> None:
        """``kd_dim``: width of the head (teacher width, or its number of classes); None = no head.

        ``load_pretrained=False`` skips reading the encoders' checkpoints (e.g. before loading trained weights).
        """
        super().__init__()
        self.config = config
        image_kw = {"img_size": config.img_size, "patch_size": config.patch_size, **config.image.overrides}
        text_kw = {"vocab_size": vocab_size, **config.text.overrides}
        image_ckpt = config.image.checkpoint if load_pretrained else None
        text_ckpt = config.text.checkpoint if load_pretrained else None
        self.image_encoder = crop(
            self._source(config.image.name, image_ckpt, config.size, image_kw), config.image.blocks
        )
        self.text_encoder = crop(self._source(config.text.name, text_ckpt, config.size, text_kw), config.text.blocks)
        for encoder in (self.image_encoder, self.text_encoder):
            encoder.train()
            encoder.requires_grad_(True)
        dim = self.image_encoder.embed_dim
        if self.text_encoder.embed_dim != dim:
            raise ConfigError(
                f"image ({dim}) and text ({self.text_encoder.embed_dim}) encoders must have the same width",
                "give both encoders the same embed_dim (model.image.overrides / model.text.overrides)",
            )
        self.embed_dim = dim
        self.token_type = nn.Embedding(2, dim) if config.token_type_embeddings != "none" else None
        self.tte_scale = (
            LayerScale(dim, init_values=config.tte_layer_scale_init)
            if config.token_type_embeddings == "after" and config.tte_layer_scale
            else None
        )
        if config.shared == "mlp":
            if not kd_dim:
                raise ConfigError("the shared MLP (SHRe) needs a supervised teacher's classes", "set loss.kd=kl")
            self.shared: nn.Module = SharedMLP(dim, kd_dim)
            self.kd_head = None
        else:
            self.shared = Block(
                dim=dim,
                num_heads=max(1, dim // 64),
                qkv_bias=True,
                mlp_ratio=4.0,
                init_values=config.shared_layer_scale_init,
                norm_layer=partial(nn.LayerNorm, eps=1e-6),
            )
            self.kd_head = nn.Sequential(nn.LayerNorm(dim, eps=1e-6), nn.Linear(dim, kd_dim)) if kd_dim else None
        for module in (self.token_type, self.shared, self.kd_head):
            if module is not None:
                module.apply(init_bert_params)  # as the thesis code initialises its new layers
        if isinstance(self.shared, Block):
            self.shared.reset_parameters()  # LayerScale gammas back to their init value after init_bert
        if config.token_type_embeddings == "before":
            self._add_type_before(self.image_encoder, IMAGE_TYPE)
            self._add_type_before(self.text_encoder, TEXT_TYPE)

    @staticmethod
    def _source(name: str, checkpoint: str | None, size: str, kwargs: dict) -> nn.Module:
        if checkpoint is None:
            return build_model(name, size=size, **kwargs)
        return load_teacher(name, path=resolve_checkpoint(name, checkpoint), size=size, freeze=False, **kwargs)

    def _add_type_before(self, encoder: nn.Module, type_id: int) -> None:
        """Variant A (§3.7): add the type vector where the encoder sums token and positional embeddings.

        The hook sits in front of the encoder's embedding LayerNorm, whose input is
        exactly that sum (BERT: word + position + segment; Data2Vec2 image: patches +
        positions with the CLS prepended), so every token, special ones included, gets it.
        """
        inner = getattr(encoder, "model", None)
        norm = getattr(getattr(inner, "embeddings", None), "LayerNorm", None)  # transformers BERT
        norm = norm or getattr(encoder, "pre_norm", None) or getattr(encoder, "layernorm_embedding", None)
        if norm is None:
            raise ConfigError(
                f"token_type_embeddings=before is not supported for {type(encoder).__name__}",
                "use model.token_type_embeddings=after",
            )

        def add_type(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
            return (args[0] + self.token_type.weight[type_id].to(args[0].dtype), *args[1:])

        norm.register_forward_pre_hook(add_type)

    # -- encoders ---------------------------------------------------------------------------------
    def _shared(
        self, tokens: torch.Tensor, type_id: int, padding_mask: torch.Tensor | None, want_fc1: bool
    ) -> StudentOutput:
        if isinstance(self.shared, SharedMLP):
            h1, h2, h3 = self.shared(tokens[:, 0])
            return StudentOutput(cls=h3, fc1_cls=h1, kd=h3, mid=h2)
        if self.config.token_type_embeddings == "after":
            type_vector = self.token_type.weight[type_id]
            if self.tte_scale is not None:
                type_vector = self.tte_scale(type_vector)
            tokens = tokens + type_vector.to(tokens.dtype)
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
        return StudentOutput(cls=cls, fc1_cls=fc1_cls, kd=kd, tokens=out)

    def forward_image(self, images: torch.Tensor) -> StudentOutput:
        hidden = self.image_encoder(images).last_hidden_state
        return self._shared(hidden, IMAGE_TYPE, None, self.config.itc_on_fc1)

    def forward_text(self, text_ids: torch.Tensor, padding_mask: torch.Tensor) -> StudentOutput:
        hidden = self.text_encoder(text_ids, padding_mask).last_hidden_state
        return self._shared(hidden, TEXT_TYPE, padding_mask, self.config.itc_on_fc1)

    # -- the model interface of DESIGN.md ---------------------------------------------------------
    def representation(self, out: StudentOutput) -> torch.Tensor:
        """The retrieval / zero-shot vector of a forward (not normalised): shared CLS, or h'' / h''' of the MLP."""
        if isinstance(self.shared, SharedMLP) and self.config.mlp_representation == "fc2":
            return out.mid
        return out.cls

    @torch.no_grad()
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.representation(self.forward_image(images)).float(), dim=-1)

    @torch.no_grad()
    def encode_text(self, text_ids: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.representation(self.forward_text(text_ids, padding_mask)).float(), dim=-1)
