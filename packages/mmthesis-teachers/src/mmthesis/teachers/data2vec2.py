"""Data2Vec2 (data2vec 2.0) image and text encoders, written for this package.

Why our own module: neither timm nor transformers implements data2vec 2.0's
``Data2VecMultiModel``. Its blocks (fairseq ``AltBlock``) are *post*-LayerNorm
(``layer_norm_first: false``: ``x = norm1(x + attn(x)); x = norm2(x + mlp(x))``)
and return the FFN output before the last residual as the per-layer target
(``layer_results``), which timm's pre-LN ``Block`` cannot express; and fairseq
itself does not import on Python 3.11. Where a timm module computes exactly the
same function we use it: ``timm.layers.Attention`` (one qkv Linear with bias,
softmax attention, output proj: fairseq ``AltAttention`` without ALiBi/cosine
attention), ``timm.layers.Mlp`` (fairseq imports that very class) and
``timm.layers.PatchEmbed`` (ditto, via ``examples/data2vec/models/mae.py``).

Structure (from the public code, ``examples/data2vec/models/data2vec2.py`` and
``modalities/{base,images,text,modules}.py``, configs
``config/v2/base_{images,text}_only_task.yaml``):

image: patch embed -> + fixed 2-D sin-cos positions (patches only; the CLS
  "extra token" gets none) -> prepend CLS -> LayerNorm (the modality
  ``context_encoder.norm``) -> ``prenet_depth`` = 2 modality blocks -> ``depth``
  = 10 shared blocks -> no final norm. LayerNorm eps 1e-6 (``norm_eps``).
text: token embedding (unscaled) + learned positions with fairseq's padding
  offset -> ``layernorm_embedding`` (eps 1e-5) -> 0 prenet blocks (so no
  context-encoder norm) -> 12 blocks (LayerNorm eps 1e-5) -> no final norm.

We number all blocks in one flat list: image ``blocks.0-1`` are the prenet,
``blocks.2-11`` the shared blocks (``prenet_depth`` records the split). That is
what lets ``crop`` express both readings of the thesis's "first 6 blocks"
(REFERENCE.md section 10 item 1): 6 flattened blocks (thesis, 43.1M params) or
2 prenet + 6 shared = 8 (the original code's ``model.blocks[:6]``).

Only the inference path is implemented: no masking, no decoder, no EMA, no
ALiBi (``use_alibi_encoder`` is false in both released base configs),
``layer_norm_first=False`` only (both base configs).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from timm.layers import Attention, Mlp, PatchEmbed
from torch import nn

from mmthesis.teachers.base import TeacherModule, check_k, device_of, dtype_of
from mmthesis.teachers.output import TeacherOutput

IMAGE_PRESETS: dict[str, dict[str, Any]] = {
    "base": dict(embed_dim=768, num_heads=12, mlp_ratio=4.0, depth=10, prenet_depth=2, img_size=224, patch_size=16,
                 in_chans=3, norm_eps=1e-6, encoder_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                 post_mlp_drop=0.0),
    "tiny": dict(embed_dim=64, num_heads=4, mlp_ratio=4.0, depth=4, prenet_depth=2, img_size=64, patch_size=8,
                 in_chans=3, norm_eps=1e-6, encoder_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                 post_mlp_drop=0.0),
}

# fairseq Dictionary: <s>=0 <pad>=1 </s>=2 <unk>=3, then the 50,260 lines of the
# GPT-2 dict.txt, then the masked-LM task's <mask>: 50,265 rows.
TEXT_PRESETS: dict[str, dict[str, Any]] = {
    "base": dict(embed_dim=768, num_heads=12, mlp_ratio=4.0, depth=12, prenet_depth=0, vocab_size=50265,
                 max_source_positions=512, pad_idx=1, norm_eps=1e-5, embed_norm_eps=1e-5, encoder_dropout=0.1,
                 attention_dropout=0.1, activation_dropout=0.0, post_mlp_drop=0.1, embed_dropout=0.1),
    "tiny": dict(embed_dim=64, num_heads=4, mlp_ratio=4.0, depth=4, prenet_depth=0, vocab_size=1000,
                 max_source_positions=128, pad_idx=1, norm_eps=1e-5, embed_norm_eps=1e-5, encoder_dropout=0.1,
                 attention_dropout=0.1, activation_dropout=0.0, post_mlp_drop=0.1, embed_dropout=0.1),
}


def sincos_2d(embed_dim: int, grid: int) -> torch.Tensor:
    """MAE's fixed 2-D sin-cos table (grid*grid, D), as data2vec 2.0 builds its ``positions``."""
    grid_h = np.arange(grid, dtype=np.float32)
    grid_w = np.arange(grid, dtype=np.float32)
    g = np.stack(np.meshgrid(grid_w, grid_h), axis=0).reshape(2, 1, grid, grid)

    def one_d(d: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    emb = np.concatenate([one_d(embed_dim // 2, g[0]), one_d(embed_dim // 2, g[1])], axis=1)
    return torch.from_numpy(emb).float()


def key_padding_bias(padding_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """(B, L) bool, True = pad -> additive (B, 1, 1, L) mask (fairseq fills padded keys with -inf)."""
    if padding_mask is None or not bool(padding_mask.any()):
        return None
    bias = torch.zeros(padding_mask.shape, dtype=dtype, device=padding_mask.device)
    return bias.masked_fill(padding_mask, float("-inf"))[:, None, None, :]


class AltBlock(nn.Module):
    """fairseq ``AltBlock`` with ``layer_norm_first=False`` (post-LN) and ``ffn_targets=True``.

    Returns ``(x, t)``: the block output and its FFN output before the last
    residual/LayerNorm (data2vec's target with ``end_of_block_targets=False``).
    Parameter names match fairseq: norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, norm_eps: float, encoder_dropout: float = 0.0,
                 attention_dropout: float = 0.0, activation_dropout: float = 0.0, post_mlp_drop: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=True, attn_drop=attention_dropout,
                              proj_drop=encoder_dropout)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU, drop=activation_dropout)
        self.post_mlp_dropout = nn.Dropout(post_mlp_drop)

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.norm1(x + self.attn(x, attn_mask=attn_bias))
        t = self.mlp(x)
        x = self.norm2(x + self.post_mlp_dropout(t))
        return x, t


def _make_blocks(cfg: dict[str, Any], n: int) -> nn.ModuleList:
    return nn.ModuleList(
        AltBlock(cfg["embed_dim"], cfg["num_heads"], cfg["mlp_ratio"], cfg["norm_eps"], cfg["encoder_dropout"],
                 cfg["attention_dropout"], cfg["activation_dropout"], cfg["post_mlp_drop"])
        for _ in range(n)
    )


def init_bert_params(module: nn.Module) -> None:
    """fairseq ``init_bert_params``: N(0, 0.02) weights, zero biases; the thesis code initialises its new layers with it."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()


class _Data2Vec2Base(TeacherModule):
    blocks: nn.ModuleList

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def prenet_depth(self) -> int:
        """How many of the flattened blocks are modality-specific prenet blocks."""
        return int(self.config["prenet_depth"])

    def _run_blocks(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> TeacherOutput:
        bias = key_padding_bias(padding_mask, x.dtype)
        hidden, results = [], []
        embeddings = x
        for blk in self.blocks:
            x, t = blk(x, bias)
            hidden.append(x)
            results.append(t)
        return TeacherOutput(last_hidden_state=x, hidden_states=hidden, layer_results=results, embeddings=embeddings,
                             padding_mask=padding_mask)

    def cropped(self, first_k_blocks: int) -> _Data2Vec2Base:
        """Copy of everything before the blocks plus blocks ``0..k-1`` (flattened numbering).

        Like the thesis code (``model.blocks = model.blocks[:6]``) nothing else
        changes: patch/token embeddings, CLS token, positions and the pre-block
        LayerNorm are copied as they are; there is no final norm to copy.
        """
        check_k(self, first_k_blocks)
        cfg = dict(self.config)
        # flattened numbering: the first `prenet_depth` blocks are the prenet
        cfg["prenet_depth"] = min(first_k_blocks, self.prenet_depth)
        cfg["depth"] = first_k_blocks - cfg["prenet_depth"]
        new = type(self)(cfg).to(device=device_of(self), dtype=dtype_of(self))
        keep = {k: v.detach().clone() for k, v in self.state_dict().items()
                if not k.startswith("blocks.") or int(k.split(".")[1]) < first_k_blocks}
        if getattr(new, "pre_norm", None) is None:
            keep = {k: v for k, v in keep.items() if not k.startswith("pre_norm.")}
        new.load_state_dict(keep, strict=True)
        return new


class Data2Vec2Image(_Data2Vec2Base):
    """Data2Vec2 ViT image encoder (fairseq ``modality_encoders.IMAGE`` + shared ``blocks``)."""

    teacher_name = "data2vec2_image"
    modality = "image"

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        cfg = self.config
        d = cfg["embed_dim"]
        self.patch_embed = PatchEmbed(cfg["img_size"], cfg["patch_size"], cfg["in_chans"], d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        grid = cfg["img_size"] // cfg["patch_size"]
        # fixed, never trained: a persistent buffer (fairseq: Parameter(requires_grad=False)),
        # so parameter counts match the thesis's trainable counts (43.1M for 6 blocks)
        # (built with numpy on the CPU; moved to the default device, e.g. `meta` for manifests)
        self.register_buffer("pos_embed", sincos_2d(d, grid).unsqueeze(0).to(torch.empty(0).device), persistent=True)
        self.pre_norm = nn.LayerNorm(d, eps=cfg["norm_eps"])
        self.blocks = _make_blocks(cfg, cfg["prenet_depth"] + cfg["depth"])
        self.apply(init_bert_params)
        nn.init.normal_(self.cls_token)  # init_extra_token_zero: false
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))

    def forward(self, images: torch.Tensor) -> TeacherOutput:
        x = self.patch_embed(images)
        x = x + self.pos_embed.to(x.dtype)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        x = self.pre_norm(x)
        return self._run_blocks(x, None)



def fairseq_positions(padding_mask: torch.Tensor, pad_idx: int) -> torch.Tensor:
    """fairseq ``utils.make_positions``: non-pad tokens count up from ``pad_idx + 1``, pads get ``pad_idx``."""
    keep = (~padding_mask).long()
    return torch.cumsum(keep, dim=1) * keep + pad_idx


class Data2Vec2Text(_Data2Vec2Base):
    """Data2Vec2 text encoder (fairseq ``modality_encoders.TEXT`` + shared ``blocks``), GPT-2 BPE ids."""

    teacher_name = "data2vec2_text"
    modality = "text"

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        cfg = self.config
        d = cfg["embed_dim"]
        self.pad_idx = int(cfg["pad_idx"])
        self.embed_tokens = nn.Embedding(cfg["vocab_size"], d, padding_idx=self.pad_idx)
        # fairseq LearnedPositionalEmbedding: max_positions + padding_idx + 1 rows
        self.embed_positions = nn.Embedding(cfg["max_source_positions"] + self.pad_idx + 1, d, padding_idx=self.pad_idx)
        self.layernorm_embedding = nn.LayerNorm(d, eps=cfg["embed_norm_eps"])
        self.embed_dropout = nn.Dropout(cfg["embed_dropout"])
        # context-encoder norm exists only when there are prenet blocks (text.py)
        self.pre_norm = nn.LayerNorm(d, eps=cfg["norm_eps"]) if cfg["prenet_depth"] > 0 else None
        self.blocks = _make_blocks(cfg, cfg["prenet_depth"] + cfg["depth"])
        self.apply(init_bert_params)

    def forward(self, input_ids: torch.Tensor, padding_mask: torch.Tensor | None = None) -> TeacherOutput:
        if padding_mask is None:
            padding_mask = input_ids.eq(self.pad_idx)
        padding_mask = padding_mask.bool()
        x = self.embed_tokens(input_ids) + self.embed_positions(fairseq_positions(padding_mask, self.pad_idx))
        x = self.embed_dropout(self.layernorm_embedding(x))
        if self.pre_norm is not None:
            x = self.pre_norm(x)
        return self._run_blocks(x, padding_mask)



__all__ = ["AltBlock", "Data2Vec2Image", "Data2Vec2Text", "IMAGE_PRESETS", "TEXT_PRESETS", "sincos_2d"]
