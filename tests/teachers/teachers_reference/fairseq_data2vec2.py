"""fairseq data2vec 2.0 (``Data2VecMultiModel``) inference path, written from the public code.

Sources: fairseq ``examples/data2vec/models/data2vec2.py`` (model, ``state_dict``
adds ``_ema``), ``modalities/base.py`` (``ModalitySpecificEncoder``),
``modalities/images.py`` (``ImageEncoder``: timm ``PatchEmbed``, fixed sin-cos
``FixedPositionalEncoder``, ``BlockEncoder`` with a LayerNorm when
``layer_norm_first`` is false, ``Decoder2d``), ``modalities/text.py``
(``TextLocalEncoder``, ``Decoder1d``), ``modalities/modules.py`` (``AltBlock``,
``AltAttention``, ``BlockEncoder``) and the configs
``config/v2/base_images_only_task.yaml`` / ``base_text_only_task.yaml``.
Training-only parts (masking, EMA updates, decoders' forward) are reduced to
their parameters so the saved layout is complete.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def get_2d_sincos_pos_embed(embed_dim, grid_size):
    grid_h = np.arange(grid_size, dtype=np.float32)
    grid_w = np.arange(grid_size, dtype=np.float32)
    grid = np.stack(np.meshgrid(grid_w, grid_h), axis=0).reshape([2, 1, grid_size, grid_size])

    def one(d, pos):
        omega = np.arange(d // 2, dtype=np.float64)
        omega /= d / 2.0
        omega = 1.0 / 10000**omega
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    return np.concatenate([one(embed_dim // 2, grid[0]), one(embed_dim // 2, grid[1])], axis=1)


class PatchEmbed(nn.Module):  # timm.models.vision_transformer.PatchEmbed (as imported by mae.py)
    def __init__(self, img_size, patch_size, in_chans, embed_dim):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class Mlp(nn.Module):  # timm Mlp
    def __init__(self, in_features, hidden_features):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class AltAttention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, padding_mask=None):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        dtype = q.dtype
        attn = (q * self.scale) @ k.transpose(-2, -1)
        if padding_mask is not None and padding_mask.any():
            attn = attn.masked_fill(padding_mask.unsqueeze(1).unsqueeze(2).to(torch.bool), float("-inf"))
        attn = attn.softmax(dim=-1, dtype=torch.float32).to(dtype=dtype)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class AltBlock(nn.Module):
    """layer_norm_first=False, ffn_targets=True (end_of_block_targets: false)."""

    def __init__(self, dim, num_heads, mlp_ratio, eps):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = AltAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x, padding_mask=None):
        x = x + self.attn(x, padding_mask)
        r = x = self.norm1(x)
        x = self.mlp(x)
        t = x
        x = self.norm2(r + x)
        return x, t


class BlockEncoder(nn.Module):
    def __init__(self, blocks, norm_layer):
        super().__init__()
        self.blocks = blocks
        self.norm = norm_layer

    def forward(self, x, padding_mask):
        if self.norm is not None:  # not layer_norm_first: norm before the blocks
            x = self.norm(x)
        for blk in self.blocks:
            x, _ = blk(x, padding_mask)
        return x


class FixedPositionalEncoder(nn.Module):
    def __init__(self, pos_embed):
        super().__init__()
        self.positions = pos_embed

    def forward(self, x, padding_mask):
        return self.positions


class Decoder2d(nn.Module):  # parameters only (training-time decoder)
    def __init__(self, dim, dec_dim, groups, kernel, layers):
        super().__init__()
        self.blocks = nn.Sequential(*[
            nn.Sequential(nn.Conv2d(dim if i == 0 else dec_dim, dec_dim, kernel, padding=kernel // 2, groups=groups),
                          nn.GELU())
            for i in range(layers)])
        self.proj = nn.Linear(dec_dim, dim)


class Decoder1d(nn.Module):  # parameters only; projection_layers=2, ratio 2
    def __init__(self, dim, dec_dim, groups, kernel, layers):
        super().__init__()
        self.blocks = nn.Sequential(*[
            nn.Sequential(nn.Conv1d(dim if i == 0 else dec_dim, dec_dim, kernel, padding=kernel // 2, groups=groups),
                          nn.GELU())
            for i in range(layers)])
        self.proj = nn.Sequential(nn.Linear(dec_dim, dec_dim * 2), nn.GELU(), nn.Linear(dec_dim * 2, dim))


class ImageEncoder(nn.Module):
    def __init__(self, dim, heads, mlp_ratio, eps, img_size, patch_size, prenet_depth, dec_dim, dec_layers):
        super().__init__()
        self.local_encoder = PatchEmbed(img_size, patch_size, 3, dim)
        self.project_features = nn.Identity()
        n = (img_size // patch_size) ** 2
        pos = nn.Parameter(torch.zeros(1, n, dim), requires_grad=False)
        if pos.device.type != "meta":
            pos.data.copy_(torch.from_numpy(get_2d_sincos_pos_embed(dim, int(n**0.5))).float().unsqueeze(0))
        self.fixed_positional_encoder = FixedPositionalEncoder(pos)
        self.context_encoder = BlockEncoder(
            nn.ModuleList(AltBlock(dim, heads, mlp_ratio, eps) for _ in range(prenet_depth)), nn.LayerNorm(dim, eps=eps))
        self.decoder = Decoder2d(dim, dec_dim, 16 if dec_dim % 16 == 0 else 1, 3, dec_layers)
        self.extra_tokens = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.normal_(self.extra_tokens)

    def forward(self, source, padding_mask):
        x = self.project_features(self.local_encoder(source))
        x = x + self.fixed_positional_encoder(x, padding_mask)
        x = torch.cat([self.extra_tokens.expand(x.size(0), -1, -1), x], dim=1)
        return self.context_encoder(x, padding_mask), padding_mask


class LearnedPositionalEmbedding(nn.Embedding):
    def __init__(self, num_embeddings, embedding_dim, padding_idx):
        super().__init__(num_embeddings, embedding_dim, padding_idx)

    def forward(self, input):
        mask = input.ne(self.padding_idx).int()
        positions = (torch.cumsum(mask, dim=1).type_as(mask) * mask).long() + self.padding_idx
        return F.embedding(positions, self.weight, self.padding_idx)


class TextLocalEncoder(nn.Module):
    def __init__(self, vocab, dim, max_source_positions, pad_idx):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab, dim, pad_idx)
        self.embed_positions = LearnedPositionalEmbedding(max_source_positions + pad_idx + 1, dim, pad_idx)
        self.layernorm_embedding = nn.LayerNorm(dim)  # fairseq LayerNorm, eps 1e-5

    def forward(self, src_tokens):
        x = self.embed_tokens(src_tokens) + self.embed_positions(src_tokens)
        return self.layernorm_embedding(x)


class TextEncoder(nn.Module):
    def __init__(self, vocab, dim, max_pos, pad_idx, dec_dim, dec_layers):
        super().__init__()
        self.local_encoder = TextLocalEncoder(vocab, dim, max_pos, pad_idx)
        self.project_features = nn.Identity()
        self.context_encoder = BlockEncoder(nn.ModuleList(), None)  # prenet_depth 0 -> no norm
        self.decoder = Decoder1d(dim, dec_dim, 1, 9, dec_layers)

    def forward(self, source, padding_mask):
        x = self.local_encoder(source)
        return self.context_encoder(x, padding_mask), padding_mask


class Data2VecMultiModel(nn.Module):
    def __init__(self, modality, dim=768, heads=12, depth=10, mlp_ratio=4.0, eps=1e-6, img_size=224, patch_size=16,
                 prenet_depth=2, vocab=50265, max_pos=512, pad_idx=1, dec_dim=768, dec_layers=6, ema_encoder_only=False):
        super().__init__()
        self.modality = modality
        if modality == "IMAGE":
            enc = ImageEncoder(dim, heads, mlp_ratio, eps, img_size, patch_size, prenet_depth, dec_dim, dec_layers)
        else:
            enc = TextEncoder(vocab, dim, max_pos, pad_idx, dec_dim, dec_layers)
        self.modality_encoders = nn.ModuleDict({modality: enc})
        self.blocks = nn.ModuleList(AltBlock(dim, heads, mlp_ratio, eps) for _ in range(depth))
        self.norm = None  # layer_norm_first: false
        self.ema_encoder_only = ema_encoder_only

    def state_dict(self, *args, **kwargs):  # as fairseq: the EMA teacher's params under `_ema`
        state = super().state_dict(*args, **kwargs)
        src = self.blocks if self.ema_encoder_only else self
        state["_ema"] = {k: v.detach().clone() for k, v in nn.Module.state_dict(src).items() if ".decoder." not in f".{k}"}
        return state

    def forward(self, source, padding_mask=None):
        enc = self.modality_encoders[self.modality]
        x, padding_mask = enc(source, padding_mask)
        layer_results = []
        for blk in self.blocks:
            x, lr = blk(x, padding_mask)
            layer_results.append(lr)
        return {"x": x, "layer_results": layer_results}


def image_model(size: str = "base") -> Data2VecMultiModel:
    if size == "base":
        return Data2VecMultiModel("IMAGE")
    return Data2VecMultiModel("IMAGE", dim=64, heads=4, depth=4, img_size=64, patch_size=8, dec_dim=32, dec_layers=2)


def text_model(size: str = "base") -> Data2VecMultiModel:
    if size == "base":
        return Data2VecMultiModel("TEXT", depth=12, eps=1e-5, dec_layers=5, ema_encoder_only=True)
    return Data2VecMultiModel("TEXT", dim=64, heads=4, depth=4, eps=1e-5, vocab=1000, max_pos=128, dec_dim=64,
                              dec_layers=2, ema_encoder_only=True)


__all__ = ["Data2VecMultiModel", "image_model", "text_model"]
