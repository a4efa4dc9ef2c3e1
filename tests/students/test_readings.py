"""The code-vs-text readings (REFERENCE.md §10): one table, every recipe header lists it, defaults follow the code."""

from __future__ import annotations

import pytest
import torch

from mmthesis.students.config import READINGS, get_key, reading_in_force, readings_block
from mmthesis.students.lightning_module import VLDistillationModule, decays
from mmthesis.students.recipes import load_recipe, recipe_header, recipe_names


@pytest.mark.parametrize("recipe", recipe_names())
def test_recipe_header_lists_the_readings_that_apply_to_it(recipe):
    header = recipe_header(recipe).splitlines()
    for line in readings_block(load_recipe(recipe, "full")):
        assert line.strip() in header, f"{recipe}: header lacks {line.strip()!r}"


@pytest.mark.parametrize("recipe", recipe_names())
def test_full_scale_defaults_follow_the_code_except_precision(recipe):
    config = load_recipe(recipe, "full")
    in_force = {r.key: reading_in_force(r, config) for r in READINGS if r.applies(config)}
    assert in_force.pop("train.precision") == "other"  # bf16-mixed; 16-mixed is the code's and selectable
    deliberate = {
        ("shre", "teacher.independent_augmentation"),  # the MLP SHRe runs' code has no teacher view
        ("shre-ddp", "teacher.independent_augmentation"),
        ("s-smke-t-cmli", "teacher.independent_augmentation"),  # position-wise patch targets need aligned views
    }
    for key, label in in_force.items():
        assert label.startswith("code") or (recipe, key) in deliberate, (recipe, key, label)


def test_readings_name_real_config_keys_and_report_overrides():
    for r in READINGS:
        get_key(load_recipe("s-smke-cdl-mb", "full"), r.key)  # raises AttributeError for a wrong key
    readings = {r.key: r for r in READINGS}
    cdl_mb = load_recipe("s-smke-cdl-mb", "full")
    assert cdl_mb.model.image.blocks == 8 and cdl_mb.model.itc_on_fc1 and cdl_mb.loss.kd_keys == "local"
    assert reading_in_force(readings["model.image.blocks"], cdl_mb) == "code"
    thesis = load_recipe("s-smke-cdl-mb", "full", ["model.image.blocks=6", "loss.kd_keys=gathered"])
    assert reading_in_force(readings["model.image.blocks"], thesis) == "thesis text"
    assert reading_in_force(readings["loss.kd_keys"], thesis) == "thesis text"
    cdl = load_recipe("s-smke-cdl", "full")
    assert cdl.loss.kd_keys == "gathered" and reading_in_force(readings["loss.kd_keys"], cdl) == "code = thesis text"
    assert not load_recipe("shre-t", "full").model.itc_on_fc1  # b4c40d4: one ITC
    image_kd = load_recipe("distil-data2vec2", "full")
    assert (image_kd.model.image.blocks, image_kd.loss.student_kd_layers) == (8, 6)


def test_weight_decay_groups_follow_the_code():
    """The code: no decay for 1-D, biases, positions, extra tokens and any name containing 'embeddings'."""
    config = load_recipe("s-smke-cdl-mb", "smoke")
    module = VLDistillationModule(config, vocab_size=50)
    named = {n: p for n, p in module.named_parameters() if p.requires_grad and not n.startswith("teacher.")}
    no_decay = {n for n, p in named.items() if not decays(n, p)}
    word = "student.text_encoder.model.embeddings.word_embeddings.weight"
    assert word in no_decay and decays(word, named[word], no_decay_embeddings=False)
    assert {
        "student.text_encoder.model.embeddings.position_embeddings.weight",
        "student.image_encoder.cls_token",
        "student.token_type.weight",
        "student.shared.gamma_1",
        "log_scale",
    } <= no_decay
    decayed = set(named) - no_decay
    assert {
        "student.shared.attn.qkv.weight",
        "student.image_encoder.patch_embed.proj.weight",
        "student.kd_head.1.weight",
    } <= decayed
    assert all(named[n].ndim >= 2 and "embeddings" not in n for n in decayed)


def test_tte_without_layer_scale_adds_the_raw_type_embedding(random_batch):
    config = load_recipe("s-smke-tte", "smoke", ["model.tte_layer_scale=false"])
    student = VLDistillationModule(config, vocab_size=50).student.eval()
    assert student.tte_scale is None and student.token_type is not None
    batch = random_batch(config)
    with torch.no_grad():
        base = student.forward_image(batch.image).cls
        student.token_type.weight.add_(1.0)  # unscaled: a shift of the type vector changes the output
        assert not torch.allclose(base, student.forward_image(batch.image).cls)
    with_scale = VLDistillationModule(load_recipe("s-smke-tte", "smoke"), vocab_size=50).student
    assert with_scale.tte_scale is not None


def test_shre_mlp_representation_is_the_codes_fc2_output(random_batch):
    config = load_recipe("shre", "smoke")
    module = VLDistillationModule(config, vocab_size=50).eval()
    batch = random_batch(config)
    dim = module.student.embed_dim
    image = module.student.encode_image(batch.image)
    assert image.shape == (len(batch), dim) and torch.allclose(image.norm(dim=-1), torch.ones(len(batch)))
    out = module.student.forward_image(batch.image)
    assert torch.allclose(image, torch.nn.functional.normalize(out.mid, dim=-1), atol=1e-6)
    head = VLDistillationModule(load_recipe("shre", "smoke", ["model.mlp_representation=head"]), vocab_size=50)
    assert head.student.encode_text(batch.text_ids, batch.text_padding_mask).shape[1] == out.cls.shape[1] != dim
