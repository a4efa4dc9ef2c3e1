import math

import pytest
import torch
import torch.nn.functional as F

from mmthesis.students.losses import (
    clip_contrastive_loss,
    clip_contrastive_loss_with_bank,
    contrastive_distillation_loss,
    kl_distillation_loss,
    masked_regression_loss,
    mse_distillation_loss,
    tcmli_distillation_loss,
)
from mmthesis.students.memory_bank import TeacherMemoryBank


def _ce(logits_row, target):
    return -logits_row[target] + math.log(sum(math.exp(v) for v in logits_row))


def test_clip_loss_matches_hand_computation():
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    txt = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # normalised: [1,0], [.7071,.7071]
    s = 2.0
    S = [[s * 1.0, s * 0.70710678], [0.0, s * 0.70710678]]
    i2t = (_ce(S[0], 0) + _ce(S[1], 1)) / 2
    t2i = (_ce([S[0][0], S[1][0]], 0) + _ce([S[0][1], S[1][1]], 1)) / 2
    got = clip_contrastive_loss(img, txt, torch.tensor(math.log(s)))
    assert got.item() == pytest.approx(0.5 * (i2t + t2i), rel=1e-6)


def test_clip_logit_scale_is_clamped_to_100():
    img, txt = torch.randn(4, 8), torch.randn(4, 8)
    assert clip_contrastive_loss(img, txt, torch.tensor(10.0)) == pytest.approx(
        clip_contrastive_loss(img, txt, torch.tensor(math.log(100.0))).item(), rel=1e-6
    )


def test_contrastive_distillation_with_bank_matches_hand_computation():
    student = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    teacher = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    bank = torch.tensor([[0.0, -5.0]])
    scale = 10.0
    keys = [[1.0, 0.0], [0.70710678, 0.70710678], [0.0, -1.0]]
    rows = [[scale * (1 * k[0] + 0 * k[1]) for k in keys], [scale * (0 * k[0] + 1 * k[1]) for k in keys]]
    expected = (_ce(rows[0], 0) + _ce(rows[1], 1)) / 2
    got = contrastive_distillation_loss(student, teacher, scale, bank)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # without the bank only the in-batch targets are keys
    rows_nb = [r[:2] for r in rows]
    assert contrastive_distillation_loss(student, teacher, scale).item() == pytest.approx(
        (_ce(rows_nb[0], 0) + _ce(rows_nb[1], 1)) / 2, rel=1e-6
    )


def test_mse_and_kl():
    a, b = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 4.0]])
    assert mse_distillation_loss(a, b).item() == pytest.approx((1 + 4) / 2)
    p, q = torch.tensor([[0.0, math.log(3.0)]]), torch.tensor([[0.0, 0.0]])  # student [.25,.75], teacher [.5,.5]
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert kl_distillation_loss(p, q).item() == pytest.approx(expected, rel=1e-6)


def test_memory_bank_is_fifo_and_normalised():
    bank = TeacherMemoryBank(size=5, dim=2, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(bank.bank.norm(dim=-1), torch.ones(5))
    first = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    bank.enqueue(first)
    assert torch.equal(bank.bank[:3], torch.tensor([[1.0, 0.0]] * 3)) and int(bank.pointer) == 3
    bank.enqueue(torch.tensor([[0.0, 1.0], [0.0, 2.0], [0.0, 3.0]]))  # wraps: slots 3, 4, 0
    assert torch.equal(bank.bank[[3, 4, 0]], torch.tensor([[0.0, 1.0]] * 3))
    assert torch.equal(bank.bank[[1, 2]], torch.tensor([[1.0, 0.0]] * 2)) and int(bank.pointer) == 1
    state = bank.state_dict()
    restored = TeacherMemoryBank(5, 2)
    restored.load_state_dict(state)
    assert torch.equal(restored.bank, bank.bank) and int(restored.pointer) == 1


def test_memory_bank_larger_batch_keeps_newest():
    bank = TeacherMemoryBank(size=2, dim=2)
    bank.enqueue(F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), dim=-1))
    assert torch.allclose(bank.bank, F.normalize(torch.tensor([[0.0, 1.0], [1.0, 1.0]]), dim=-1))


def test_clip_loss_with_banks_matches_hand_computation():
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    txt = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # normalised: identity
    img_bank = torch.tensor([[-1.0, 0.0]])
    txt_bank = torch.tensor([[3.0, 4.0]])  # normalised [.6, .8]
    s = 2.0
    # i2t: image i against [text_0, text_1, text_bank]
    i2t = (_ce([s * 1, 0.0, s * 0.6], 0) + _ce([0.0, s * 1, s * 0.8], 1)) / 2
    # t2i: text i against [image_0, image_1, image_bank]
    t2i = (_ce([s * 1, 0.0, -s * 1], 0) + _ce([0.0, s * 1, 0.0], 1)) / 2
    got = clip_contrastive_loss_with_bank(img, txt, torch.tensor(math.log(s)), image_bank=img_bank, text_bank=txt_bank)
    assert got.item() == pytest.approx(0.5 * (i2t + t2i), rel=1e-6)
    # without banks and keys it is the plain CLIP loss
    plain = clip_contrastive_loss_with_bank(img, txt, torch.tensor(math.log(s)))
    assert plain.item() == pytest.approx(clip_contrastive_loss(img, txt, torch.tensor(math.log(s))).item(), rel=1e-6)


def test_clip_loss_with_momentum_keys_uses_the_keys():
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    txt = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    keys_img = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # swapped: each query's positive key is orthogonal
    keys_txt = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    s = 3.0
    expected = _ce([0.0, s], 0)  # every row: positive at 0 with logit 0, negative with logit s
    got = clip_contrastive_loss_with_bank(img, txt, torch.tensor(math.log(s)), keys_img, keys_txt)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_masked_regression_loss_averages_over_non_padding_tokens():
    pred = torch.tensor([[[1.0, 1.0], [2.0, 0.0], [9.0, 9.0]]])
    target = torch.tensor([[[0.0, 1.0], [0.0, 0.0], [0.0, 0.0]]])
    pad = torch.tensor([[False, False, True]])
    # token errors (mean over dims): (1 + 0) / 2 = 0.5, (4 + 0) / 2 = 2; the padded token is ignored
    assert masked_regression_loss(pred, target, pad).item() == pytest.approx((0.5 + 2.0) / 2)
    assert masked_regression_loss(pred, target).item() == pytest.approx((0.5 + 2.0 + 81.0) / 3)


def test_tcmli_loss_matches_hand_computation():
    # one pair, two patches (D = 2) and two text tokens, of which the second is excluded (e.g. [SEP])
    student_patches = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    teacher_patches = torch.tensor([[[0.0, 0.0], [0.0, 2.0]]])
    i2i = ((1 + 0) / 2 + (0 + 4) / 2) / 2
    text_proj = torch.tensor([[[0.0, 3.0], [5.0, 5.0]]])  # token 0 points along the second patch
    teacher_proj = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    valid = torch.tensor([[True, False]])
    t2i = ((0 - 0) ** 2 + (3 - 1) ** 2) / 2  # matched to patch 1 (cosine 1)
    got = tcmli_distillation_loss(student_patches, teacher_patches, text_proj, teacher_proj, valid)
    assert got.item() == pytest.approx(0.5 * (i2i + t2i))


def test_kl_is_zero_for_equal_distributions_and_shift_invariant():
    logits = torch.tensor([[0.3, -1.0, 2.0]])
    assert kl_distillation_loss(logits, logits + 5.0).item() == pytest.approx(0.0, abs=1e-6)


def test_loss_kd_names_resolve_through_one_table_with_suggestions():
    from typing import get_args

    from mmthesis.core.errors import ConfigError, UnknownNameError
    from mmthesis.students.config import KDKind
    from mmthesis.students.lightning_module import KD_LOSSES, KD_TARGETS, distillation_target
    from mmthesis.students.recipes import load_recipe

    # every selectable name has its function (and its target), and nothing else is selectable
    assert set(get_args(KDKind)) == set(KD_LOSSES) | {"none"} and set(KD_TARGETS) == set(KD_LOSSES)
    with pytest.raises(ConfigError, match=r"loss.kd.*got 'contrastiv' \(did you mean 'contrastive'\?\)"):
        load_recipe("s-smke-cdl", "smoke", ["loss.kd=contrastiv"])
    with pytest.raises(UnknownNameError, match="unknown loss.kd 'mes', did you mean mse"):
        distillation_target(None, "mes", True)
