"""The S-SMKE student: structure follows the thesis, teacher stays frozen, one step updates only the student."""

import pytest
import torch

from mmthesis.students.lightning_module import VLDistillationModule
from mmthesis.students.recipes import load_recipe, recipe_names
from mmthesis.students.schedules import cosine_with_warmup

VL_RECIPES = [r for r in recipe_names() if load_recipe(r, "smoke").task == "vl"]


@pytest.mark.parametrize("recipe", VL_RECIPES)
def test_each_recipe_builds_and_takes_a_step(recipe, random_batch):
    config = load_recipe(recipe, "smoke")
    module = VLDistillationModule(config, vocab_size=50)
    module.train()
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-3)
    out = module.losses(random_batch(config))
    assert torch.isfinite(out["loss"]) and set(out) >= {"itc", "loss"}
    if config.loss.kd == "none":
        assert module.teacher is None and "kd" not in out and module.student.kd_head is None
        out["loss"].backward()
        opt.step()
        return
    assert "kd" in out
    assert not module.teacher.training and all(not p.requires_grad for p in module.teacher.parameters())
    teacher_before = {k: v.clone() for k, v in module.teacher.state_dict().items()}
    out["loss"].backward()
    opt.step()
    assert all(torch.equal(v, module.teacher.state_dict()[k]) for k, v in teacher_before.items())


def test_padding_does_not_change_text_embedding():
    config = load_recipe("s-smke-cdl-mb", "smoke")
    student = VLDistillationModule(config, vocab_size=50).student.eval()
    ids = torch.tensor([[2, 7, 8, 9, 3]])
    mask = torch.zeros(1, 5, dtype=torch.bool)
    padded_ids = torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], 1)
    padded_mask = torch.cat([mask, torch.ones(1, 3, dtype=torch.bool)], 1)
    a = student.encode_text(ids, mask)
    b = student.encode_text(padded_ids, padded_mask)
    assert torch.allclose(a, b, atol=1e-5)


def test_shared_block_and_tte_follow_the_thesis_code():
    config = load_recipe("s-smke-cdl-mb", "smoke")
    student = VLDistillationModule(config, vocab_size=50).student
    assert torch.allclose(student.shared.gamma_1, torch.full_like(student.shared.gamma_1, 0.2))
    assert student.shared.attn.k_bias is not None and not student.shared.attn.k_bias.requires_grad  # q/v-only biases
    assert torch.allclose(student.tte_scale.gamma, torch.full_like(student.tte_scale.gamma, 1e-5))
    assert student.shared.norm1.eps == 1e-6


def test_cosine_schedule_with_warmup():
    assert cosine_with_warmup(0, 10, 100) == pytest.approx(0.1)
    assert cosine_with_warmup(9, 10, 100) == pytest.approx(1.0)
    assert cosine_with_warmup(10, 10, 100) == pytest.approx(1.0)
    assert cosine_with_warmup(55, 10, 100) == pytest.approx(0.5)
    assert cosine_with_warmup(100, 10, 100) == pytest.approx(0.0, abs=1e-12)
