"""Cross-modal generation with a trained VAE run: images from captions, captions from image files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from mmthesis.core.errors import DataMissingError
from mmthesis.data.transforms import eval_transform
from mmthesis.vae.artifact import load_vae
from mmthesis.vae.model import MultimodalVAE


def _model(run: str | MultimodalVAE) -> MultimodalVAE:
    return run if isinstance(run, MultimodalVAE) else load_vae(run).model


def _slug(text: str, i: int) -> str:
    return f"{i:02d}-" + (re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "caption")


def to_pil(pixels: torch.Tensor) -> Image.Image:
    """A ``(3, H, W)`` tensor in [0, 1] as an RGB image."""
    array = (pixels.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(array)


@torch.no_grad()
def images_from_captions(run: str | MultimodalVAE, captions: list[str], out: Path) -> list[tuple[str, Path]]:
    """One PNG per caption (the decoded posterior mean given the caption alone) in ``out``."""
    model = _model(run)
    ids, mask = model.encode_captions(captions)
    pixels = model.decode_image(model.latent_text(ids, mask))
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, (caption, image) in enumerate(zip(captions, pixels, strict=True)):
        path = out / f"{_slug(caption, i)}.png"
        to_pil(image).save(path)
        written.append((caption, path))
    return written


@torch.no_grad()
def caption_images(
    run: str | MultimodalVAE, paths: list[Path], samples: int = 1, seed: int = 0, max_len: int = 32
) -> list[tuple[Path, list[str]]]:
    """Captions of image files: the greedy one (``samples=1``) or ``samples`` sampled ones (seeded)."""
    model = _model(run)
    transform = eval_transform(model.image_size)
    images = []
    for path in paths:
        try:
            images.append(transform(Image.open(path).convert("RGB")))
        except (OSError, UnidentifiedImageError) as e:
            raise DataMissingError(f"{path} is not a readable image ({e})", "pass a PNG or JPEG file") from e
    z = model.latent_image(torch.stack(images))
    if samples <= 1:
        return list(zip(paths, [[c] for c in model.decode_text(z, max_len=max_len)], strict=True))
    g = torch.Generator().manual_seed(seed)
    drawn = [model.decode_text(z, max_len=max_len, greedy=False, generator=g) for _ in range(samples)]
    return [(p, [d[i] for d in drawn]) for i, p in enumerate(paths)]
