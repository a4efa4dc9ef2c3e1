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


def test_train_transform_without_flip_keeps_left_left() -> None:
    """hflip=0 (the smoke stand-ins, whose captions say "left of"): red stays on the left in every draw; with the
    thesis's 0.5 some draws put it on the right."""
    pixels = np.zeros((64, 64, 3), dtype=np.uint8)
    pixels[:, :32] = (255, 0, 0)
    pixels[:, 32:] = (0, 0, 255)
    image = Image.fromarray(pixels)

    def red_on_left(transform) -> list[bool]:
        torch.manual_seed(0)
        outs = [transform(image) for _ in range(20)]
        return [bool(o[0, :, :4].mean() > o[0, :, -4:].mean()) for o in outs]

    assert all(red_on_left(train_transform(32, scale=(0.9, 1.0), hflip=0.0)))
    assert not all(red_on_left(train_transform(32, scale=(0.9, 1.0))))
    assert not any("Flip" in type(t).__name__ for t in train_transform(32, hflip=0.0).transforms)


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


# --------------------------------------------------------------------------- reduced (draft) JPEG decoding
def _gradient_jpeg(width: int = 640, height: int = 480) -> bytes:
    """Red grows left to right, green top to bottom: any shift of the crop box shows in the pixels."""
    import io

    x = np.linspace(0, 255, width)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height)[:, None].repeat(width, 1)
    buf = io.BytesIO()
    Image.fromarray(np.stack([x, y, (x + y) / 2], -1).astype(np.uint8)).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _reference(size: int, scale: tuple[float, float]):  # noqa: ANN202 - the plain v2 pipeline on a full decode
    from torchvision.transforms import InterpolationMode, v2

    crop = v2.RandomResizedCrop(
        size, scale=scale, ratio=(3 / 4, 4 / 3), interpolation=InterpolationMode.BICUBIC, antialias=True
    )
    return v2.Compose([crop, *train_transform(size, scale).transforms[1:]])


def _grey_levels(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (denormalise(a) - denormalise(b)).abs() * 255


@pytest.mark.parametrize("seed", range(4))
def test_draft_decode_takes_the_same_box_as_a_full_decode(seed: int) -> None:
    import io

    from torchvision.transforms import InterpolationMode, v2
    from torchvision.transforms.v2 import functional as F

    from mmthesis.data.transforms import DraftRandomResizedCrop

    data = _gradient_jpeg(1280, 960)
    kwargs = dict(scale=(0.9, 1.0), ratio=(3 / 4, 4 / 3), interpolation=InterpolationMode.BICUBIC, antialias=True)
    lazy = Image.open(io.BytesIO(data))
    torch.manual_seed(seed)
    ours = DraftRandomResizedCrop(224, **kwargs)(lazy).float()
    full_image = Image.open(io.BytesIO(data)).convert("RGB")
    torch.manual_seed(seed)
    crop = v2.RandomResizedCrop(224, **kwargs)
    params = crop.make_params([full_image])  # the same draws v2 makes on the full decode
    torch.manual_seed(seed)
    full = F.pil_to_tensor(crop(full_image)).float()
    assert lazy.size == (320, 240)  # decoded at 1/4 scale: the 0.9-1 crop of 1280x960 still covers >= 224 px
    diff = (ours - full).abs()
    assert diff.mean() < 0.5 and diff.max() < 4  # grey levels: same relative box; only the downscale differs
    # the check can fail: the same box moved by 8 source pixels (0.6 % of the width) is far off
    moved = F.resized_crop(
        full_image,
        params["top"],
        params["left"] + 8,
        params["height"],
        params["width"],
        [224, 224],
        kwargs["interpolation"],
    )
    assert (F.pil_to_tensor(moved).float() - full).abs().mean() > 3 * diff.mean()


def test_no_reduction_is_exactly_random_resized_crop() -> None:
    import io

    from mmthesis.data.streaming import ImageDecoder

    data = _gradient_jpeg(640, 480)  # the crop (scale 0.08-1 at 224) never allows a 1/4 decode
    for seed in range(3):
        lazy = Image.open(io.BytesIO(data))
        torch.manual_seed(seed)
        ours = train_transform(224, scale=(0.08, 1.0))(lazy)
        torch.manual_seed(seed)
        full = _reference(224, (0.08, 1.0))(ImageDecoder.image({"jpg": data}))  # decoded as ShardStream decodes
        assert lazy.size == (640, 480) and torch.equal(ours, full)
    tensor = torch.randint(0, 256, (3, 300, 400), dtype=torch.uint8)  # tensors (ShardStream) are untouched
    torch.manual_seed(0)
    ours = train_transform(64)(tensor)
    torch.manual_seed(0)
    assert torch.equal(ours, _reference(64, (0.9, 1.0))(tensor))


def test_transformed_sample_image_modes_and_corrupt_bytes() -> None:
    import io

    from mmthesis.core.errors import DataMissingError
    from mmthesis.data.image_text import transformed_sample_image

    buf = io.BytesIO()
    Image.fromarray(np.full((300, 300), 90, dtype=np.uint8), mode="L").save(buf, format="PNG")  # grey PNG: no draft
    out = transformed_sample_image({"__key__": "a", "png": buf.getvalue()}, "x", train_transform(32))
    assert out.shape == (3, 32, 32)
    buf = io.BytesIO()
    Image.fromarray(np.full((300, 300), 90, dtype=np.uint8), mode="L").save(buf, format="JPEG")  # grey JPEG, reduced
    grey = transformed_sample_image({"__key__": "b", "jpg": buf.getvalue()}, "x", train_transform(32))
    assert grey.shape == (3, 32, 32) and torch.allclose(denormalise(grey) * 255, torch.full_like(grey, 90.0), atol=2)
    data = _gradient_jpeg()
    with pytest.raises(DataMissingError, match=r"dataset 'x': image of sample 'c' is corrupt .*data verify x"):
        transformed_sample_image({"__key__": "c", "jpg": data[: len(data) // 3]}, "x", train_transform(224))
