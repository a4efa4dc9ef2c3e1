"""fairseq data2vec 2.0 checkpoints (``Data2VecMultiModel``) -> our Data2Vec2 image / text modules.

Key layout, from the public fairseq code (``examples/data2vec/models/data2vec2.py``,
``modalities/{base,images,text,modules}.py``) — fairseq itself cannot be
imported on Python 3.11, so this was written from reading that code, not by
loading a released file here:

image (``{"cfg": ..., "model": state_dict}``, modality key ``IMAGE``)
  modality_encoders.IMAGE.local_encoder.proj.{weight,bias}     -> patch_embed.proj.*  (timm PatchEmbed)
  modality_encoders.IMAGE.extra_tokens           (1, 1, D)     -> cls_token
  modality_encoders.IMAGE.fixed_positional_encoder.positions (1, N, D) -> pos_embed (fixed sin-cos)
  modality_encoders.IMAGE.context_encoder.norm.{weight,bias}   -> pre_norm.*  (applied before the prenet)
  modality_encoders.IMAGE.context_encoder.blocks.{i}.*         -> blocks.{i}.*            (prenet, i < 2)
  blocks.{j}.*                                                 -> blocks.{prenet + j}.*   (shared blocks)
text (modality key ``TEXT``)
  modality_encoders.TEXT.local_encoder.embed_tokens.weight     -> embed_tokens.weight
  modality_encoders.TEXT.local_encoder.embed_positions.weight  -> embed_positions.weight
  modality_encoders.TEXT.local_encoder.layernorm_embedding.*   -> layernorm_embedding.*
  modality_encoders.TEXT.context_encoder.{norm,blocks.i}.*     -> pre_norm.*, blocks.{i}.* (absent: prenet_depth 0)
  blocks.{j}.*                                                 -> blocks.{prenet + j}.*

Dropped as training-only (listed, never guessed): the modality decoders
(``modality_encoders.*.decoder.*``), ``_ema`` (the EMA teacher's fp32 params,
saved as a nested dict by ``Data2VecMultiModel.state_dict``), ``ema.*``,
``shared_decoder.*``, ``recon_proj.*`` and other modalities' encoders.
Refused (reported unexpected): a top-level ``norm.*`` (only exists with
``layer_norm_first=True``), ``alibi_scale`` / ``alibi_bias`` (ALiBi encoders)
and anything else: those models compute a different function.
Uncertain: released checkpoints were not available here; key names follow
the code at fairseq main (2023). The number of attention heads is not
recoverable from shapes: it is read from the checkpoint's ``cfg`` when
present, else taken from the size preset (12 for 768-d).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from mmthesis.core.errors import CheckpointError
from mmthesis.teachers.converters.common import Converted, block_ids, map_keys, shape

BLOCK_PARAM = r"(norm1\.(?:weight|bias)|attn\.qkv\.(?:weight|bias)|attn\.proj\.(?:weight|bias)" \
              r"|norm2\.(?:weight|bias)|mlp\.fc[12]\.(?:weight|bias))"
COMMON_DROPS = ("_ema", "ema.", "shared_decoder.", "recon_proj.")


def _drops(modality: str) -> tuple[str, ...]:
    others = tuple(f"modality_encoders.{m}." for m in ("AUDIO", "IMAGE", "TEXT") if m != modality)
    return COMMON_DROPS + (f"modality_encoders.{modality}.decoder.",) + others


def _block_rules(enc: str, prenet: int) -> list:
    return [
        (rf"{enc}\.context_encoder\.blocks\.(\d+)\.{BLOCK_PARAM}", r"blocks.\1.\2"),
        (rf"blocks\.(\d+)\.{BLOCK_PARAM}", lambda m: f"blocks.{int(m.group(1)) + prenet}.{m.group(2)}"),
    ]


def _model_cfg(cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    if not isinstance(cfg, Mapping):
        return {}
    model = cfg.get("model", cfg)
    return dict(model) if isinstance(model, Mapping) else {}


def _check_cfg(mcfg: Mapping[str, Any], modality: str, fmt: str) -> list[str]:
    notes = []
    if mcfg.get("layer_norm_first") is True:
        raise CheckpointError(f"{fmt} checkpoint was trained with layer_norm_first=true (pre-LN)",
                              "only the post-LN data2vec 2.0 base models are supported")
    mods = mcfg.get("modalities") or {}
    mod_cfg = mods.get(modality.lower()) if isinstance(mods, Mapping) else None
    if isinstance(mod_cfg, Mapping) and mod_cfg.get("use_alibi_encoder"):
        raise CheckpointError(f"{fmt} checkpoint uses ALiBi attention biases", "only ALiBi-free models are supported")
    if mcfg.get("end_of_block_targets") is True:
        notes.append("trained with end_of_block_targets=true: layer_results are still FFN outputs here")
    return notes


def _common_config(sd: Mapping[str, Any], fmt: str, mcfg: Mapping[str, Any], enc: str, first_block: str) -> dict:
    d = shape(sd, f"{first_block}.norm1.weight", fmt)[0]
    hidden = shape(sd, f"{first_block}.mlp.fc1.weight", fmt)[0]
    out: dict[str, Any] = {
        "embed_dim": d,
        "mlp_ratio": hidden / d,
        "prenet_depth": len(block_ids(sd, f"{enc}.context_encoder.blocks.")),
        "depth": len(block_ids(sd, "blocks.")),
    }
    for ours, theirs in (("num_heads", "num_heads"), ("norm_eps", "norm_eps")):
        if theirs in mcfg and mcfg[theirs] is not None:
            out[ours] = type(1.0 if ours == "norm_eps" else 1)(mcfg[theirs])
    for ours, theirs in (("encoder_dropout", "encoder_dropout"), ("attention_dropout", "attention_dropout"),
                         ("activation_dropout", "activation_dropout"), ("post_mlp_drop", "post_mlp_drop")):
        if theirs in mcfg and mcfg[theirs] is not None:
            out[ours] = float(mcfg[theirs])
    return out


def convert_image(sd: Mapping[str, Any], cfg: Mapping[str, Any] | None = None) -> Converted:
    """fairseq data2vec 2.0 image checkpoint -> ``Data2Vec2Image`` state dict."""
    fmt, enc = "fairseq_data2vec2_image", "modality_encoders.IMAGE"
    mcfg = _model_cfg(cfg)
    prenet = len(block_ids(sd, f"{enc}.context_encoder.blocks."))
    rules = [
        (rf"{enc}\.local_encoder\.proj\.(weight|bias)", r"patch_embed.proj.\1"),
        (rf"{enc}\.extra_tokens", "cls_token"),
        (rf"{enc}\.fixed_positional_encoder\.positions", "pos_embed"),
        (rf"{enc}\.context_encoder\.norm\.(weight|bias)", r"pre_norm.\1"),
        *_block_rules(enc, prenet),
    ]
    out = map_keys(fmt, sd, rules, _drops("IMAGE"))
    out.notes += _check_cfg(mcfg, "IMAGE", fmt)
    first = f"{enc}.context_encoder.blocks.0" if prenet else "blocks.0"
    conf = _common_config(sd, fmt, mcfg, enc, first)
    extra = shape(sd, f"{enc}.extra_tokens", fmt)
    if extra[1] != 1:
        raise CheckpointError(f"{fmt} checkpoint has {extra[1]} extra tokens", "only 1 (the CLS token) is supported")
    proj = shape(sd, f"{enc}.local_encoder.proj.weight", fmt)
    n = shape(sd, f"{enc}.fixed_positional_encoder.positions", fmt)[1]
    side = math.isqrt(n)
    if side * side != n:
        raise CheckpointError(f"{fmt} checkpoint has {n} positions, not a square grid", "use a square-image model")
    conf.update(patch_size=proj[-1], in_chans=proj[1], img_size=side * proj[-1])
    out.config = conf
    return out


def convert_text(sd: Mapping[str, Any], cfg: Mapping[str, Any] | None = None) -> Converted:
    """fairseq data2vec 2.0 text checkpoint -> ``Data2Vec2Text`` state dict."""
    fmt, enc = "fairseq_data2vec2_text", "modality_encoders.TEXT"
    mcfg = _model_cfg(cfg)
    prenet = len(block_ids(sd, f"{enc}.context_encoder.blocks."))
    rules = [
        (rf"{enc}\.local_encoder\.embed_tokens\.weight", "embed_tokens.weight"),
        (rf"{enc}\.local_encoder\.embed_positions\.weight", "embed_positions.weight"),
        (rf"{enc}\.local_encoder\.layernorm_embedding\.(weight|bias)", r"layernorm_embedding.\1"),
        (rf"{enc}\.context_encoder\.norm\.(weight|bias)", r"pre_norm.\1"),
        *_block_rules(enc, prenet),
    ]
    out = map_keys(fmt, sd, rules, _drops("TEXT"))
    out.notes += _check_cfg(mcfg, "TEXT", fmt)
    first = f"{enc}.context_encoder.blocks.0" if prenet else "blocks.0"
    conf = _common_config(sd, fmt, mcfg, enc, first)
    vocab = shape(sd, f"{enc}.local_encoder.embed_tokens.weight", fmt)[0]
    npos = shape(sd, f"{enc}.local_encoder.embed_positions.weight", fmt)[0]
    pad_idx = 1  # fairseq Dictionary: <s>=0, <pad>=1
    conf.update(vocab_size=vocab, pad_idx=pad_idx, max_source_positions=npos - pad_idx - 1)
    out.config = conf
    return out
