"""unilm BEiTv2 ``VisionTransformerForMaskedImageModeling`` (+ CLS-pretraining head), from the public code.

Sources: microsoft/unilm ``beit2/modeling_pretrain.py`` and ``beit2/modeling_finetune.py``
(``Block`` with ``gamma_1``/``gamma_2``, ``Attention`` with ``q_bias``/``v_bias`` and a
zero k bias, ``RelativePositionBias`` shared by all blocks, ``PatchEmbed``), built as
``beit_base_patch16_224_8k_vocab`` with ``use_shared_rel_pos_bias=True``,
``use_abs_pos_emb=False``, ``layer_scale_init_value=0.1``, LayerNorm eps 1e-6.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class PatchEmbed(nn.Module):
    def __init__(self, img_size, patch_size, in_chans, embed_dim):
        super().__init__()
        self.patch_shape = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.patch_shape[0] * self.patch_shape[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, rel_pos_bias=None):
        B, N, C = x.shape
        qkv_bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias, requires_grad=False), self.v_bias))
        qkv = F.linear(input=x, weight=self.qkv.weight, bias=qkv_bias)
        qkv = qkv.reshape(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        q = q * self.scale
        attn = q @ k.transpose(-2, -1)
        if rel_pos_bias is not None:
            attn = attn + rel_pos_bias
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, -1)
        return self.proj(x)


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio, init_values):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.gamma_1 = nn.Parameter(init_values * torch.ones(dim))
        self.gamma_2 = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x, rel_pos_bias=None):
        x = x + self.gamma_1 * self.attn(self.norm1(x), rel_pos_bias=rel_pos_bias)
        x = x + self.gamma_2 * self.mlp(self.norm2(x))
        return x


class RelativePositionBias(nn.Module):
    def __init__(self, window_size, num_heads):
        super().__init__()
        self.window_size = window_size
        self.num_relative_distance = (2 * window_size[0] - 1) * (2 * window_size[1] - 1) + 3
        self.relative_position_bias_table = nn.Parameter(torch.zeros(self.num_relative_distance, num_heads))
        coords = torch.stack(torch.meshgrid([torch.arange(window_size[0]), torch.arange(window_size[1])], indexing="ij"))
        coords_flatten = torch.flatten(coords, 1)
        relative_coords = (coords_flatten[:, :, None] - coords_flatten[:, None, :]).permute(1, 2, 0).contiguous()
        relative_coords[:, :, 0] += window_size[0] - 1
        relative_coords[:, :, 1] += window_size[1] - 1
        relative_coords[:, :, 0] *= 2 * window_size[1] - 1
        idx = torch.zeros(size=(window_size[0] * window_size[1] + 1,) * 2, dtype=relative_coords.dtype)
        idx[1:, 1:] = relative_coords.sum(-1)
        idx[0, 0:] = self.num_relative_distance - 3
        idx[0:, 0] = self.num_relative_distance - 2
        idx[0, 0] = self.num_relative_distance - 1
        self.register_buffer("relative_position_index", idx)

    def forward(self):
        n = self.window_size[0] * self.window_size[1] + 1
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        return bias.permute(2, 0, 1).contiguous()


class VisionTransformerForMaskedImageModeling(nn.Module):
    def __init__(self, img_size=224, patch_size=16, embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0,
                 vocab_size=8192, init_values=0.1, cls_pt_layers=0):
        super().__init__()
        self.patch_embed = PatchEmbed(img_size, patch_size, 3, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = None  # use_abs_pos_emb=False
        self.rel_pos_bias = RelativePositionBias(self.patch_embed.patch_shape, num_heads)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, init_values) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.lm_head = nn.Linear(embed_dim, vocab_size)
        if cls_pt_layers:  # VisionTransformerForMaskedImageModelingCLS's condenser head
            self.cls_pt_layers = nn.ModuleList(
                Block(embed_dim, num_heads, mlp_ratio, init_values) for _ in range(cls_pt_layers))

    def forward_features(self, x):
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        rel_pos_bias = self.rel_pos_bias()
        for blk in self.blocks:
            x = blk(x, rel_pos_bias=rel_pos_bias)
        return self.norm(x)


# ---------------------------------------------------------------- finetuned classifier (beit2/modeling_finetune.py)
class WindowAttention(Attention):
    """``Attention(window_size=...)`` of the finetuning code: the block's own relative position bias table."""

    def __init__(self, dim, num_heads, window_size):
        super().__init__(dim, num_heads)
        self.rpb = RelativePositionBias(window_size, num_heads)  # same table + index construction, per block
        # unilm registers them on the attention module itself: expose the same names for the state dict
        self.relative_position_bias_table = self.rpb.relative_position_bias_table
        self.register_buffer("relative_position_index", self.rpb.relative_position_index.clone())
        del self.rpb

    def forward(self, x, rel_pos_bias=None):
        n = self.relative_position_index.shape[0]
        own = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        return super().forward(x, rel_pos_bias=own.permute(2, 0, 1).unsqueeze(0))


class FinetuneBlock(Block):
    def __init__(self, dim, num_heads, mlp_ratio, init_values, window_size):
        super().__init__(dim, num_heads, mlp_ratio, init_values)
        self.attn = WindowAttention(dim, num_heads, window_size)


class VisionTransformer(nn.Module):
    """``modeling_finetune.VisionTransformer`` as ``run_class_finetuning.py`` builds it by default:
    ``use_rel_pos_bias=True`` (one table per block), ``use_abs_pos_emb=False``, ``use_mean_pooling=True``
    (``norm`` = identity, ``fc_norm`` on the mean of the patch tokens), LayerScale, class ``head``."""

    def __init__(self, img_size=224, patch_size=16, embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0,
                 num_classes=1000, init_values=0.1, use_mean_pooling=True):
        super().__init__()
        self.patch_embed = PatchEmbed(img_size, patch_size, 3, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.blocks = nn.ModuleList(
            FinetuneBlock(embed_dim, num_heads, mlp_ratio, init_values, self.patch_embed.patch_shape)
            for _ in range(depth))
        self.norm = nn.Identity() if use_mean_pooling else nn.LayerNorm(embed_dim, eps=1e-6)
        self.fc_norm = nn.LayerNorm(embed_dim, eps=1e-6) if use_mean_pooling else None
        self.head = nn.Linear(embed_dim, num_classes)

    def forward_tokens(self, x):
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def forward(self, x):
        x = self.forward_tokens(x)
        pooled = self.fc_norm(x[:, 1:].mean(1)) if self.fc_norm is not None else x[:, 0]
        return self.head(pooled)
