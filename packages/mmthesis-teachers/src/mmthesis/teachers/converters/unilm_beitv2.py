"""unilm BEiTv2 pretraining checkpoints (``beit2/modeling_pretrain.py``) -> our ``BEiTv2`` (timm ``Beit``).

unilm key                                           ours
cls_token                                           model.cls_token
patch_embed.proj.{weight,bias}                      model.patch_embed.proj.*
rel_pos_bias.relative_position_bias_table (R, H)    model.rel_pos_bias.relative_position_bias_table
blocks.{i}.gamma_1 / gamma_2                        model.blocks.{i}.gamma_1 / gamma_2   (LayerScale)
blocks.{i}.norm1|norm2.{weight,bias}                model.blocks.{i}.norm1|norm2.*
blocks.{i}.attn.qkv.weight, attn.q_bias, v_bias     model.blocks.{i}.attn.*  (k bias is a fixed zero buffer)
blocks.{i}.attn.proj.*, mlp.fc1.*, mlp.fc2.*        model.blocks.{i}.*
norm.{weight,bias}                                  model.norm.*

Dropped (listed): ``mask_token`` and ``lm_head.*`` (masked-image-modelling
head; the thesis deletes it), ``cls_pt_layers.*`` / ``cls_pt_norm.*`` /
``cls_pt_lm_head.*`` (the CLS-pretraining "condenser" head of
``VisionTransformerForMaskedImageModelingCLS``), and
``rel_pos_bias.relative_position_index`` (a buffer timm recomputes; checked
equal to ours when present). Per-block ``attn.relative_position_bias_table``
(finetuned BEiT) or ``pos_embed`` are unexpected: a different model.

``convert_ft``: unilm finetuned checkpoints (``beit2/modeling_finetune.py``
``VisionTransformer``, e.g. ``beitv2_base_patch16_224_pt1k_ft1k.pth``) and timm's
``beitv2_base_patch16_224.in1k_ft_in1k`` (the same weights and key names) -> ``BEiTv2FT``:

unilm / timm key                                    ours
blocks.{i}.attn.relative_position_bias_table        model.blocks.{i}.attn.relative_position_bias_table (one per block)
blocks.{i}.attn.relative_position_index             dropped (a buffer timm recomputes; checked equal to ours)
fc_norm.{weight,bias}                               model.fc_norm.*   (mean pooling; ``norm`` is the identity)
norm.{weight,bias}                                  model.norm.*      (only ``--use_cls`` checkpoints: CLS pooling)
head.{weight,bias}                                  model.head.*      (num_classes x embed_dim)
everything else                                     as above

A shared ``rel_pos_bias.*`` table, ``pos_embed`` or ``mask_token`` in such a file is unexpected.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from mmthesis.core.errors import CheckpointError
from mmthesis.teachers.converters.common import Converted, block_ids, map_keys, shape

FMT = "unilm_beitv2"
BLOCK = r"(gamma_1|gamma_2|norm1\.(?:weight|bias)|norm2\.(?:weight|bias)|attn\.qkv\.weight|attn\.q_bias|attn\.v_bias" \
        r"|attn\.proj\.(?:weight|bias)|mlp\.fc[12]\.(?:weight|bias))"
RULES = [
    (r"cls_token", "model.cls_token"),
    (r"patch_embed\.proj\.(weight|bias)", r"model.patch_embed.proj.\1"),
    (r"rel_pos_bias\.relative_position_bias_table", "model.rel_pos_bias.relative_position_bias_table"),
    (rf"blocks\.(\d+)\.{BLOCK}", r"model.blocks.\1.\2"),
    (r"norm\.(weight|bias)", r"model.norm.\1"),
]
DROPS = ("mask_token", "lm_head.", "cls_pt_layers.", "cls_pt_norm.", "cls_pt_lm_head.",
         "rel_pos_bias.relative_position_index")


def relative_position_index(grid: int) -> torch.Tensor:
    """BEiT's index table (incl. the 3 CLS entries), as unilm's ``RelativePositionBias`` builds it."""
    coords = torch.stack(torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += grid - 1
    rel[:, :, 1] += grid - 1
    rel[:, :, 0] *= 2 * grid - 1
    n = (2 * grid - 1) ** 2 + 3
    idx = torch.zeros((grid * grid + 1,) * 2, dtype=rel.dtype)
    idx[1:, 1:] = rel.sum(-1)
    idx[0, 0:] = n - 3
    idx[0:, 0] = n - 2
    idx[0, 0] = n - 1
    return idx


def _vit_config(sd: Mapping[str, Any], fmt: str, table_key: str, index_keys: list[str]) -> dict[str, Any]:
    """Shapes of a BEiT(v2) checkpoint as a config; checks the relative position tables' window and index."""
    table = shape(sd, table_key, fmt)
    proj = shape(sd, "patch_embed.proj.weight", fmt)
    grid = (math.isqrt(table[0] - 3) + 1) // 2
    if (2 * grid - 1) ** 2 + 3 != table[0]:
        raise CheckpointError(f"{fmt} relative position table has {table[0]} rows, not a square window",
                              "use a square-image BEiTv2 model")
    expected = relative_position_index(grid)
    for key in index_keys:
        idx = sd.get(key)
        if isinstance(idx, torch.Tensor) and not idx.is_meta and not torch.equal(idx.long(), expected):
            raise CheckpointError(f"{fmt} {key} differs from BEiT's layout",
                                  "the checkpoint is not a standard BEiTv2 model")
    d = shape(sd, "cls_token", fmt)[-1]
    config = {
        "embed_dim": d,
        "num_heads": table[1],
        "depth": len(block_ids(sd, "blocks.")),
        "mlp_ratio": shape(sd, "blocks.0.mlp.fc1.weight", fmt)[0] / d,
        "patch_size": proj[-1],
        "in_chans": proj[1],
        "img_size": grid * proj[-1],
    }
    return config


def _layer_scale(sd: Mapping[str, Any], out: Converted) -> Converted:
    if "blocks.0.gamma_1" not in sd:
        out.notes.append("no LayerScale (gamma_1/gamma_2) in the checkpoint")
        out.config["init_values"] = None
    return out


def convert(sd: Mapping[str, Any]) -> Converted:
    out = map_keys(FMT, sd, RULES, DROPS)
    out.config = _vit_config(sd, FMT, "rel_pos_bias.relative_position_bias_table",
                             ["rel_pos_bias.relative_position_index"])
    return _layer_scale(sd, out)


FT_FMT = "unilm_beitv2_ft"
FT_RULES = [
    (r"cls_token", "model.cls_token"),
    (r"patch_embed\.proj\.(weight|bias)", r"model.patch_embed.proj.\1"),
    (rf"blocks\.(\d+)\.({BLOCK[1:-1]}|attn\.relative_position_bias_table)", r"model.blocks.\1.\2"),
    (r"(fc_norm|norm|head)\.(weight|bias)", r"model.\1.\2"),
]
FT_DROP_PATTERNS = (r"blocks\.\d+\.attn\.relative_position_index",)


def convert_ft(sd: Mapping[str, Any]) -> Converted:
    """A finetuned BEiT(v2) classifier: per-block relative position bias tables, pooled norm, class head."""
    out = map_keys(FT_FMT, sd, FT_RULES, (), FT_DROP_PATTERNS)
    depth = len(block_ids(sd, "blocks."))
    config = _vit_config(sd, FT_FMT, "blocks.0.attn.relative_position_bias_table",
                         [f"blocks.{i}.attn.relative_position_index" for i in range(depth)])
    if "fc_norm.weight" in sd:
        pool = "avg"
    elif "norm.weight" in sd:
        pool = "token"
    else:
        raise CheckpointError(f"{FT_FMT} checkpoint has neither fc_norm nor norm weights",
                              "check that the file is a finetuned BEiTv2 classifier")
    out.config = {**config, "num_classes": shape(sd, "head.weight", FT_FMT)[0], "global_pool": pool}
    return _layer_scale(sd, out)
