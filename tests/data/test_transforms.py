"""Transforms (REFERENCE.md §4.3): numerics of the eval transform by hand, behaviour of the train transform."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mmthesis.data.transforms import IMAGENET_MEAN, IMAGENET_STD, denormalise, eval_transform, train_transform


def _by_hand(rgb: tuple[int, int, int]) -> list[float]:
    return [(v / 255 - m) / s for v, m, s in zip(rgb, IMAGENET_MEAN, IMAGENET_STD, strict=True)]


def test_eval_transform_normalises_each_pixel() -> None:
    pixels = np.array([[[255, 0, 128], [10, 20, 30]], [[0, 0, 0], [200, 100, 50]]], dtype=np.uint8)
    out = eval_transform(2)(Image.fromarray(pixels))  # same size: the resize is the identity
    assert out.shape == (3, 2, 2) and out.dtype == torch.float32
    for y in range(2):
        for x in range(2):
            assert out[:, y, x].tolist() == pytest.approx(_by_hand(tuple(pixels[y, x])), abs=1e-6)
    # e.g. red 255 -> (1 - 0.485) / 0.229 = 2.2489...
    assert out[0, 0, 0].item() == pytest.approx(2.248908, abs=1e-5)


def test_eval_transform_squashes_without_cropping() -> None:
    """A 40x20 image, left half red and right half blue, resized to 8x8: both halves survive (no centre crop)."""
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = (255, 0, 0)
    pixels[:, 20:] = (0, 0, 255)
    out = eval_transform(8)(Image.fromarray(pixels))
    assert out.shape == (3, 8, 8)
    assert torch.allclose(out, out[:, :1, :].expand_as(out))  # every row is the same
    assert out[:, 0, 0].tolist() == pytest.approx(_by_hand((255, 0, 0)), abs=1e-6)
    assert out[:, 0, 7].tolist() == pytest.approx(_by_hand((0, 0, 255)), abs=1e-6)


def test_eval_transform_constant_image_any_size() -> None:
    out = eval_transform(7)(Image.new("RGB", (33, 17), (12, 150, 240)))
    expected = torch.tensor(_by_hand((12, 150, 240))).view(3, 1, 1).expand(3, 7, 7)
    assert torch.allclose(out, expected, atol=1e-6)


def test_eval_transform_accepts_uint8_tensors() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    from_pil = eval_transform(16)(Image.fromarray(pixels))
    from_tensor = eval_transform(16)(torch.from_numpy(pixels).permute(2, 0, 1).contiguous())
    assert torch.allclose(from_pil, from_tensor, atol=1e-6)


def test_train_transform_is_a_random_crop_and_flip() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8))
    full = eval_transform(16)(img)
    # scale (1, 1) on a square image: the crop is the whole image, so the result is the resize or its mirror
    t = train_transform(16, scale=(1.0, 1.0))
    flips = 0
    for _ in range(200):
        out = t(img)
        assert out.shape == (3, 16, 16)
        if torch.allclose(out, full, atol=1e-5):
            continue
        assert torch.allclose(out, full.flip(-1), atol=1e-5)
        flips += 1
    assert 70 < flips < 130  # p = 0.5
    # the default scale (0.9, 1.0) crops: outputs vary beyond flipping
    t = train_transform(16)
    outs = [t(img) for _ in range(20)]
    assert any(not torch.allclose(o, full, atol=1e-3) and not torch.allclose(o, full.flip(-1), atol=1e-3) for o in outs)


def test_denormalise_inverts() -> None:
    img = Image.fromarray(np.random.default_rng(2).integers(0, 256, size=(8, 8, 3), dtype=np.uint8))
    x = eval_transform(8)(img)
    back = denormalise(x)
    assert torch.allclose(back * 255, torch.from_numpy(np.array(img)).permute(2, 0, 1).float(), atol=1e-3)


def test_classification_eval_resizes_shorter_side_then_center_crops() -> None:
    from PIL import Image

    from mmthesis.data.transforms import classification_eval_transform, denormalise

    im = Image.new("RGB", (300, 100), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 100, 100))  # left third red: cropped away by a center crop, kept by a squash
    x = classification_eval_transform(32)(im)
    assert x.shape == (3, 32, 32)
    rgb = denormalise(x)
    assert rgb[2].mean() > 0.95 and rgb[0].mean() < 0.05
