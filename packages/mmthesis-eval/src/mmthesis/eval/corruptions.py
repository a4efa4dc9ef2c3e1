"""Graded input corruptions for the modality-robustness suite (pure functions).

Images are float tensors in [0, 1], (C, H, W) or (B, C, H, W), corrupted in
pixel space before the model's own transform, so every model sees the same
damage whatever its normalisation. Texts are token-id rows with a padding
mask (True = pad); the first and the last non-pad token are the model's
special tokens ([CLS]/[SEP], or open_clip's start/end) and are kept.

Strength 0 is the identity for every corruption. Strength 1 of ``occlusion``
(the whole image replaced by the ImageNet mean colour) and of
``token_dropout`` (only the special tokens left) is the *missing modality*.
Randomness comes only from the ``generator`` argument: same seed, same output.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

MEAN_RGB = (0.485, 0.456, 0.406)  # fill colour of occlusion: the ImageNet mean (timm IMAGENET_DEFAULT_MEAN)
IMAGE_CORRUPTIONS = ("gaussian_noise", "gaussian_blur", "occlusion")
TEXT_CORRUPTIONS = ("token_dropout", "token_shuffle")


def _check_strength(strength: float, upper: float | None = 1.0) -> None:
    if strength < 0 or (upper is not None and strength > upper):
        raise ValueError(
            f"strength must lie in [0, {upper}], got {strength}" if upper else f"strength must be >= 0, got {strength}"
        )


def gaussian_noise(images: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """Add N(0, sigma^2) per pixel and channel, clamp to [0, 1]."""
    _check_strength(sigma, None)
    if sigma == 0:
        return images.clone()
    noise = torch.randn(images.shape, generator=generator, dtype=images.dtype)
    return (images + sigma * noise).clamp(0.0, 1.0)


def gaussian_blur(images: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Gaussian blur with standard deviation ``sigma`` pixels (kernel 2 * ceil(3 sigma) + 1)."""
    _check_strength(sigma, None)
    if sigma == 0:
        return images.clone()
    size = 2 * math.ceil(3 * sigma) + 1
    return TF.gaussian_blur(images, kernel_size=[size, size], sigma=[sigma, sigma])


def occlusion_mask(height: int, width: int, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """(H, W) bool mask of exactly round(fraction * H * W) pixels forming one near-square block.

    The block is ``w - 1`` full columns of height ``h`` plus one partial column, so its area is
    exact (not rounded to a rectangle); its top-left corner is uniformly random where it fits.
    """
    _check_strength(fraction)
    k = round(fraction * height * width)
    mask = torch.zeros(height, width, dtype=torch.bool)
    if k == 0:
        return mask
    h = min(height, math.ceil(math.sqrt(k)))
    w = math.ceil(k / h)
    top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
    mask[top : top + h, left : left + w - 1] = True
    mask[top : top + k - h * (w - 1), left + w - 1] = True
    return mask


def occlusion(images: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """Replace a block covering ``fraction`` of each image by the mean colour (1.0 = missing image)."""
    out = images.clone()
    batch = out if out.ndim == 4 else out[None]
    fill = torch.tensor(MEAN_RGB, dtype=out.dtype)[:, None]
    for img in batch:
        mask = occlusion_mask(img.shape[-2], img.shape[-1], fraction, generator)
        img[:, mask] = fill.expand(img.shape[0], int(mask.sum())) if img.shape[0] == 3 else 0.5
    return out


def _content_positions(mask_row: torch.Tensor) -> torch.Tensor:
    real = (~mask_row).nonzero().flatten()
    return real[1:-1] if len(real) > 2 else real[:0]


def token_dropout(
    ids: torch.Tensor, padding_mask: torch.Tensor, p: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop each content token with probability ``p``; the rest move left, padding fills the end."""
    _check_strength(p)
    out_ids, out_mask = torch.zeros_like(ids), torch.ones_like(padding_mask)
    pad_id = int(ids[padding_mask][0]) if padding_mask.any() else 0
    out_ids.fill_(pad_id)
    for row in range(ids.shape[0]):
        real = (~padding_mask[row]).nonzero().flatten()
        content = _content_positions(padding_mask[row])
        drop = torch.rand(len(content), generator=generator) < p
        keep = torch.cat([real[:1], content[~drop], real[-1:]]) if len(real) >= 2 else real
        out_ids[row, : len(keep)] = ids[row, keep]
        out_mask[row, : len(keep)] = False
    return out_ids, out_mask


def token_shuffle(
    ids: torch.Tensor, padding_mask: torch.Tensor, fraction: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Randomly permute a random ``fraction`` of each row's content tokens among their own positions."""
    _check_strength(fraction)
    out = ids.clone()
    for row in range(ids.shape[0]):
        content = _content_positions(padding_mask[row])
        k = round(fraction * len(content))
        if k < 2:
            continue
        chosen = content[torch.randperm(len(content), generator=generator)[:k]]
        out[row, chosen] = ids[row, chosen[torch.randperm(k, generator=generator)]]
    return out, padding_mask.clone()


def corrupt_image(image: torch.Tensor, kind: str, strength: float, generator: torch.Generator) -> torch.Tensor:
    fns = {"gaussian_noise": gaussian_noise, "gaussian_blur": gaussian_blur, "occlusion": occlusion}
    if kind not in fns:
        raise ValueError(f"unknown image corruption {kind!r}; use one of {', '.join(IMAGE_CORRUPTIONS)}")
    return fns[kind](image, strength, generator)


def corrupt_uint8_image(array: np.ndarray, corruption: tuple[str, float, int], row: int) -> np.ndarray:
    """Corrupt a uint8 (H, W, 3) image in [0, 1] pixel space, seeded per image (``seed * 1_000_003 + row``).

    One image of a robustness curve is damaged the same way whichever task or loader asks for it.
    """
    kind, strength, seed = corruption
    pixels = torch.from_numpy(array).permute(2, 0, 1).float() / 255.0
    damaged = corrupt_image(pixels, kind, strength, torch.Generator().manual_seed(seed * 1_000_003 + row))
    return (damaged * 255.0).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def corrupt_text(
    ids: torch.Tensor, padding_mask: torch.Tensor, kind: str, strength: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    fns = {"token_dropout": token_dropout, "token_shuffle": token_shuffle}
    if kind not in fns:
        raise ValueError(f"unknown text corruption {kind!r}; use one of {', '.join(TEXT_CORRUPTIONS)}")
    return fns[kind](ids, padding_mask, strength, generator)
