"""Image transforms of the thesis (REFERENCE.md §4.3), with torchvision transforms v2.

- Multimodal pretraining, student image: RandomResizedCrop(size, scale (0.9, 1.0),
  bicubic) -> horizontal flip (p 0.5) -> normalise with the ImageNet mean/std.
  (Image KD uses scale (0.08, 1.0), retrieval finetuning (0.5, 1.0): pass ``scale``.)
- Retrieval / zero-shot evaluation: resize (squash, no crop) to size x size,
  bicubic -> normalise.
- Downstream classification evaluation (ImageNet, CIFAR): resize the shorter side
  to size, bicubic -> center crop -> normalise.

Inputs are PIL images or uint8 (C, H, W) tensors; outputs float32 (3, size, size).

The training crop is ``DraftRandomResizedCrop``: given a JPEG that PIL has opened
but not decoded (``image_text.transformed_sample_image`` hands it one, as training's
random-access datasets read), it decodes at 1/4 or 1/8 scale (libjpeg's scaled
IDCT, ``PIL.Image.draft``; 1/2 does not pay, ``DRAFT_MIN_REDUCTION``) whenever the
sampled crop stays at least the output size (e.g. images of 900 px and more at the
pretraining scale (0.9, 1)), and otherwise with
torchvision's libjpeg-turbo decoder into a tensor, as ``ShardStream`` does. The crop
box is sampled on the full image's size with the same random draws as
``v2.RandomResizedCrop`` and, for a reduced decode, mapped to the reduced image in
float coordinates, so the same relative region is taken; only the pixels differ
slightly (the DCT-domain downscale replaces part of the bicubic filter's; about 0.2
grey levels of 255 on average on a gradient, under 4 at most, tests/data/test_transforms.py).
Without a reduction the output is exactly ``v2.RandomResizedCrop`` on the decoded tensor.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.functional import pil_modes_mapping

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # timm IMAGENET_DEFAULT_MEAN
IMAGENET_STD = (0.229, 0.224, 0.225)  # timm IMAGENET_DEFAULT_STD


def _to_normalised_tensor() -> list[v2.Transform]:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


def undecoded_jpeg(image: Any) -> bool:
    """A PIL JPEG whose pixels are not decoded yet (so ``draft`` can still pick a reduced decode)."""
    return isinstance(image, Image.Image) and image.format == "JPEG" and bool(getattr(image, "tile", None))


# Reduce only by 1/4 or 1/8: at 1/2 the entropy decoding, which no scale saves, dominates, and PIL's float-box
# resize then costs more than torch's uint8 resize of the whole decode (640x480, crop scale 0.9-1: 201 vs 233 img/s
# per core here; 1280x960 at 1/4: 80 vs 51).
DRAFT_MIN_REDUCTION = 4


class DraftRandomResizedCrop(v2.RandomResizedCrop):
    """``v2.RandomResizedCrop`` that decodes an undecoded JPEG itself, as cheaply as the sampled crop allows.

    The box is sampled on the JPEG header's size (``make_params``, unchanged). If the crop keeps at least
    ``size`` pixels at 1/4 or 1/8 scale, PIL decodes at that scale (``draft``) and resizes the same
    relative box (float coordinates); otherwise torchvision decodes it (libjpeg-turbo, as ``ShardStream``) and
    the crop is ``v2.RandomResizedCrop``'s on that tensor. Either way a contiguous uint8 (3, H, W) tensor
    comes out. Other inputs (tensors, decoded PIL images) get plain ``v2.RandomResizedCrop``.
    """

    draft_aware = True  # image_text.transformed_sample_image passes the JPEG undecoded

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not undecoded_jpeg(inpt):
            if isinstance(inpt, Image.Image) and inpt.mode != "RGB":
                inpt = inpt.convert("RGB")
            return super().transform(inpt, params)
        full_w, full_h = inpt.size
        out_h, out_w = self.size
        top, left, height, width = params["top"], params["left"], params["height"], params["width"]
        scale = min(width // out_w, height // out_h)  # crop pixels per output pixel
        if scale < DRAFT_MIN_REDUCTION:  # decode whole, crop on the tensor
            return super().transform(_decode_whole(inpt), params)
        # draft keeps the image at least this large, so the crop still covers >= out_w x out_h pixels
        inpt.draft("RGB", (math.ceil(full_w * out_w / width), math.ceil(full_h * out_h / height)))
        image = inpt.convert("RGB")
        sx, sy = image.width / full_w, image.height / full_h
        box = (left * sx, top * sy, (left + width) * sx, (top + height) * sy)  # same relative box, sub-pixel exact
        resized = image.resize((out_w, out_h), resample=pil_modes_mapping[self.interpolation], box=box)
        return torch.from_numpy(np.array(resized)).permute(2, 0, 1).contiguous()


def _decode_whole(jpeg: Image.Image) -> Any:
    """The whole JPEG as uint8 (3, H, W), decoded as ``ShardStream`` decodes; PIL if its bytes are not at hand."""
    getvalue = getattr(jpeg.fp, "getvalue", None)
    if getvalue is None:
        return jpeg.convert("RGB")
    from mmthesis.data.streaming import ImageDecoder

    return ImageDecoder.image({"jpg": getvalue()})


def train_transform(img_size: int, scale: tuple[float, float] = (0.9, 1.0), hflip: float = 0.5) -> v2.Compose:
    """RandomResizedCrop(img_size, scale, ratio 3/4..4/3, bicubic) -> flip ``hflip`` -> normalise (REFERENCE.md §4.3).

    The crop is ``DraftRandomResizedCrop`` (reduced JPEG decoding when the crop allows it, module doc). ``hflip=0``
    leaves the flip out (captions that say "left of" stay true)."""
    return v2.Compose(
        [
            DraftRandomResizedCrop(
                img_size, scale=scale, ratio=(3 / 4, 4 / 3), interpolation=InterpolationMode.BICUBIC, antialias=True
            ),
            *([v2.RandomHorizontalFlip(hflip)] if hflip else []),
            *_to_normalised_tensor(),
        ]
    )


def eval_transform(img_size: int) -> v2.Compose:
    """Resize (squash, no crop) to img_size x img_size, bicubic -> normalise (REFERENCE.md §4.3, retrieval/zero-shot)."""
    return v2.Compose(
        [
            v2.Resize((img_size, img_size), interpolation=InterpolationMode.BICUBIC, antialias=True),
            *_to_normalised_tensor(),
        ]
    )


def classification_eval_transform(img_size: int) -> v2.Compose:
    """Resize the shorter side to img_size, bicubic -> center crop -> normalise (REFERENCE.md §4.3, downstream classification eval)."""
    return v2.Compose(
        [
            v2.Resize(img_size, interpolation=InterpolationMode.BICUBIC, antialias=True),
            v2.CenterCrop(img_size),
            *_to_normalised_tensor(),
        ]
    )


def denormalise(x: torch.Tensor) -> torch.Tensor:
    """Inverse of the normalisation, to [0, 1] (for figures and debugging)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return (x * std + mean).clamp(0, 1)
