"""Precomputed teacher targets: the file holds what the live teacher computes, and training reads it instead."""

from __future__ import annotations

import pytest
import torch

from mmthesis.core.errors import CheckpointError, ConfigError
from mmthesis.core.paths import data_root
from mmthesis.data.batch import Batch
from mmthesis.data.registry import PrepareRequest, get_dataset
from mmthesis.data.transforms import eval_transform
from mmthesis.students.lightning_module import VLDistillationModule, build_teacher
from mmthesis.students.precompute import precompute_teacher_targets
from mmthesis.students.recipes import load_recipe
from mmthesis.students.train import build_tokenizer, build_training_data, precompute_recipe_targets, train_recipe

# one view per image: precomputed targets are computed on the resized image, not on a separate teacher view
ONE_VIEW = "teacher.independent_augmentation=false"
SHAPES = ["data.train=[shapes]", "data.retrieval_eval=[shapes]", "teacher.prefit_steps=0", ONE_VIEW]


@pytest.fixture()
def shapes_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MMTHESIS_HOME", str(tmp_path))
    get_dataset("shapes").prepare(PrepareRequest(out_root=data_root(), raw=None, workers=1, scale="smoke"))
    return tmp_path


def test_precomputed_targets_equal_the_live_teacher_and_replace_it(shapes_home):
    config = load_recipe("s-smke-cdl", "smoke", SHAPES)
    teacher = build_teacher(config)
    _, _, pairs = build_training_data(config, build_tokenizer(config, "smoke"), "smoke")
    path = precompute_teacher_targets(config, teacher, pairs, shapes_home / "targets.safetensors")
    shapes = pairs[0]
    with_file = load_recipe("s-smke-cdl", "smoke", [*SHAPES, f"teacher.precomputed_targets={path}"])
    module = VLDistillationModule(with_file, vocab_size=50)
    assert module.teacher is None and module.target_table is not None
    # the live forward of the same teacher on the resized images gives the stored rows
    live = VLDistillationModule(config, vocab_size=50)
    live.teacher = teacher
    rows = [3, 0, 7]
    read = [shapes.read_image(i) for i in rows]  # (image id, image, captions)
    images = torch.stack([eval_transform(config.model.img_size)(image) for _, image, _ in read])
    batch = Batch(id=[str(i) for i in rows], image=images, image_id=[image_id for image_id, _, _ in read])
    assert torch.allclose(module.targets_for(batch), live.targets_for(batch), atol=1e-5)
    with pytest.raises(CheckpointError, match="no precomputed target"):
        module.targets_for(Batch(id=["x"], image=images[:1], image_id=["not-an-id"]))


def test_precomputed_run_trains_and_wrong_kind_is_refused(shapes_home):
    config = load_recipe("s-smke-cdl", "smoke", SHAPES)
    path = precompute_recipe_targets(config, "smoke", shapes_home / "t.safetensors")  # the CLI's path
    run = load_recipe(
        "s-smke-cdl",
        "smoke",
        [*SHAPES, f"teacher.precomputed_targets={path}", "train.max_steps=2", "data.batch_size=8"],
    )
    result = train_recipe(run, "smoke")
    assert result.status == "finished" and result.metrics["train_kd_first"] > 0
    assert "precomputed" in " ".join(result.notes)
    # the file holds final-norm CLS targets; the bank recipe wants pre-norm ones
    with pytest.raises(CheckpointError, match="needs"):
        VLDistillationModule(
            load_recipe("s-smke-cdl-mb", "smoke", [f"teacher.precomputed_targets={path}", ONE_VIEW]), 50
        )
    with pytest.raises(ConfigError, match="one view"):
        load_recipe(
            "s-smke-cdl", "smoke", [f"teacher.precomputed_targets={path}", "teacher.independent_augmentation=true"]
        )
