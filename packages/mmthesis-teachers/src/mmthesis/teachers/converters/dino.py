"""DINO ViT checkpoints (facebookresearch/dino) -> our ``DINO`` (timm ``VisionTransformer``).

The released backbone file (``dino_vitbase16_pretrain.pth``) is a plain state
dict whose names are timm's: ``cls_token``, ``pos_embed`` (1, 1+N, D),
``patch_embed.proj.*``, ``blocks.{i}.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.*``,
``norm.*``; each maps to ``model.<same name>``. Full training checkpoints
(``..._full_checkpoint.pth``) hold ``teacher``/``student`` dicts with a
``module.``/``backbone.`` prefix (stripped by the reader, teacher preferred)
and the projection ``head.*`` (dropped, listed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from mmthesis.core.errors import CheckpointError
from mmthesis.teachers.converters.common import Converted, block_ids, map_keys, shape

FMT = "dino_vit"
BLOCK = r"(norm1\.(?:weight|bias)|attn\.qkv\.(?:weight|bias)|attn\.proj\.(?:weight|bias)|norm2\.(?:weight|bias)" \
        r"|mlp\.fc[12]\.(?:weight|bias))"
RULES = [
    (r"cls_token", "model.cls_token"),
    (r"pos_embed", "model.pos_embed"),
    (r"patch_embed\.proj\.(weight|bias)", r"model.patch_embed.proj.\1"),
    (rf"blocks\.(\d+)\.{BLOCK}", r"model.blocks.\1.\2"),
    (r"norm\.(weight|bias)", r"model.norm.\1"),
]
DROPS = ("head.",)


def strip_prefixes(sd: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in sd.items():
        for p in ("module.", "backbone."):
            if k.startswith(p):
                k = k[len(p):]
        out[k] = v
    return out


def convert(sd: Mapping[str, Any]) -> Converted:
    sd = strip_prefixes(sd)
    out = map_keys(FMT, sd, RULES, DROPS)
    proj = shape(sd, "patch_embed.proj.weight", FMT)
    n = shape(sd, "pos_embed", FMT)[1] - 1
    side = math.isqrt(n)
    if side * side != n:
        raise CheckpointError(f"{FMT} checkpoint has {n} patch positions, not a square grid", "use a square-image model")
    d = shape(sd, "cls_token", FMT)[-1]
    out.config = {
        "embed_dim": d,
        "depth": len(block_ids(sd, "blocks.")),
        "mlp_ratio": shape(sd, "blocks.0.mlp.fc1.weight", FMT)[0] / d,
        "patch_size": proj[-1],
        "in_chans": proj[1],
        "img_size": side * proj[-1],
    }
    return out
