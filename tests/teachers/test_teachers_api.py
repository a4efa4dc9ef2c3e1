"""The API contract the training code relies on: build_model, TeacherOutput, crop, load_teacher, targets."""

from __future__ import annotations

import logging

import pytest
import torch

from mmthesis.core.errors import ConfigError, MMThesisError, UnknownNameError
from mmthesis.teachers import (
    TeacherOutput,
    build_model,
    cls_target,
    crop,
    data2vec_target,
    image_kd_layers,
    list_teachers,
    load_teacher,
    param_count,
    text_kd_layers,
)

IMAGE = ["data2vec2_image", "beitv2_base_pt", "beitv2_base_ft1k", "dino_vitb16"]
TEXT = ["bert_base_uncased", "data2vec2_text"]


def _inputs(model):
    if model.modality == "image":
        return (torch.randn(2, 3, 64, 64),)
    ids = torch.randint(5, 100, (2, 9))
    pad = torch.zeros(2, 9, dtype=torch.bool)
    pad[1, 6:] = True
    return ids, pad


@pytest.mark.parametrize("name", IMAGE + TEXT)
def test_output_contract(name: str) -> None:
    m = build_model(name, size="tiny", **({"vocab_size": 100} if name in TEXT else {"img_size": 64, "patch_size": 8}))
    m.eval()
    out = m(*_inputs(m))
    assert isinstance(out, TeacherOutput)
    b, n, d = out.last_hidden_state.shape
    assert b == 2 and d == m.embed_dim == 64
    assert torch.equal(out.cls, out.last_hidden_state[:, 0])
    assert len(out.hidden_states) == m.num_blocks
    assert all(h.shape == (b, n, d) for h in out.hidden_states)
    assert m.modality == ("image" if name in IMAGE else "text")


def test_tiny_depths_follow_real_structure() -> None:
    d2v = build_model("data2vec2_image", size="tiny")
    assert (d2v.prenet_depth, d2v.num_blocks) == (2, 6)
    assert build_model("bert_base_uncased", size="tiny").num_blocks == 4
    assert build_model("beitv2_base_pt", size="tiny").num_blocks == 4


def test_unknown_names_and_fields_are_errors() -> None:
    with pytest.raises(UnknownNameError, match="mmthesis teachers list"):
        build_model("beitv3")
    with pytest.raises(ConfigError, match="img_sise"):
        build_model("dino_vitb16", size="tiny", img_sise=32)


@pytest.mark.parametrize("name", IMAGE + TEXT)
def test_crop_copies_prefix_exactly(name: str) -> None:
    m = build_model(name, size="tiny").eval()
    k = 3
    s = crop(m, first_k_blocks=k).eval()
    assert type(s) is type(m) and s.num_blocks == k and s.training is False
    x = _inputs(m)
    with torch.no_grad():
        full, part = m(*x), s(*x)
    for i in range(k):
        assert torch.allclose(full.hidden_states[i], part.hidden_states[i], atol=1e-6)
    # copies, not views: changing the student leaves the teacher alone
    before = {n: p.clone() for n, p in m.named_parameters()}
    with torch.no_grad():
        for p in s.parameters():
            p.add_(1.0)
    assert all(torch.equal(before[n], p) for n, p in m.named_parameters())
    assert all(p.requires_grad for p in s.parameters())


def test_data2vec2_crop_readings_flattened_numbering() -> None:
    """REFERENCE.md section 10 item 1: 'first 6 blocks' = 6 flattened (thesis) or 2 prenet + 6 shared (code)."""
    with torch.device("meta"):
        teacher = build_model("data2vec2_image", size="base")
        thesis = crop(teacher, 6)
        code = crop(teacher, 6, reading="code")
    assert (thesis.num_blocks, thesis.prenet_depth) == (6, 2)
    assert (code.num_blocks, code.prenet_depth) == (8, 2)
    n_thesis = sum(p.numel() for p in thesis.parameters())
    n_code = sum(p.numel() for p in code.parameters())
    assert round(n_thesis / 1e6, 1) == 43.1  # the thesis's student size
    assert round(n_code / 1e6) == 57  # what `model.blocks[:6]` gave with the prenet
    assert thesis.config["depth"] == 4 and code.config["depth"] == 6


def test_crop_reading_code_on_tiny_matches_teacher_blocks() -> None:
    m = build_model("data2vec2_image", size="tiny").eval()
    s = crop(m, 2, reading="code")
    assert s.num_blocks == 4
    with torch.no_grad():
        x = torch.randn(1, 3, 64, 64)
        assert torch.allclose(m(x).hidden_states[3], s(x).last_hidden_state, atol=1e-6)


def test_crop_bounds() -> None:
    m = build_model("bert_base_uncased", size="tiny")
    with pytest.raises(MMThesisError, match="between 1 and 4"):
        crop(m, 5)


def test_load_teacher_random_is_frozen_and_stays_eval(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mmthesis.teachers"):
        t = load_teacher("beitv2_base_pt", path=None, size="tiny")
    assert "random weights" in caplog.text
    assert not t.training and all(not p.requires_grad for p in t.parameters())
    t.train()
    assert not t.training and not any(mod.training for mod in t.modules())
    wrapper = torch.nn.ModuleDict({"teacher": t, "head": torch.nn.Linear(2, 2)})
    wrapper.train()  # what Lightning does at each epoch start
    assert not t.training and wrapper["head"].training
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(t(x).cls, t(x).cls)  # drop-path off


def test_list_teachers_rows() -> None:
    rows = {r["name"]: r for r in list_teachers()}
    assert set(rows) >= {"data2vec2_image", "data2vec2_text", "beitv2_base_pt", "dino_vitb16", "bert_base_uncased",
                         "resnet50_a1", "efficientnet_lite0"}
    assert rows["resnet50_a1"]["params"] == 25_557_032
    assert round(rows["beitv2_base_pt"]["params"] / 1e6) == 86
    assert rows["beitv2_base_ft1k"]["params"] == 86_530_984  # timm's beitv2_base_patch16_224 (1000 classes)
    assert param_count("data2vec2_image") == 85_647_360


def test_targets() -> None:
    m = build_model("data2vec2_image", size="tiny").eval()
    out = m(torch.randn(2, 3, 64, 64))
    layers = image_kd_layers(m, out)
    assert len(layers) == 4  # shared blocks only, prenet excluded
    y = data2vec_target(layers, final_layer_norm=True)
    assert y.shape == out.last_hidden_state.shape
    manual = torch.stack([torch.nn.functional.instance_norm(t.transpose(1, 2)).transpose(1, 2) for t in layers]).mean(0)
    manual = torch.nn.functional.layer_norm(manual, manual.shape[-1:])
    assert torch.allclose(y, manual, atol=1e-5)
    top2 = data2vec_target(layers, top_k=2)
    assert torch.allclose(top2, data2vec_target(layers[2:]))
    assert torch.equal(cls_target(out), out.last_hidden_state[:, 0])
    b = build_model("beitv2_base_pt", size="tiny").eval()
    bo = b(torch.randn(2, 3, 64, 64))
    assert torch.equal(cls_target(bo, pre_norm=True), bo.hidden_states[-1][:, 0])
    assert not torch.allclose(cls_target(bo, pre_norm=True), cls_target(bo))
    t = build_model("bert_base_uncased", size="tiny").eval()
    to = t(torch.randint(5, 100, (2, 7)), torch.zeros(2, 7, dtype=torch.bool))
    assert len(text_kd_layers(to)) == 5 and len(text_kd_layers(to, include_embeddings=False)) == 4


def test_supervised_outputs_logits() -> None:
    m = build_model("resnet50_a1", size="tiny").eval()
    x = torch.randn(2, 3, 64, 64)
    out = m(x)
    assert torch.allclose(out.logits, m.model(x), atol=1e-5)
    assert out.cls.shape == (2, m.embed_dim)
    with pytest.raises(MMThesisError):
        crop(m, 1)


def test_unfreeze_undoes_freeze() -> None:
    t = build_model("beitv2_base_pt", size="tiny").freeze()
    assert t.frozen and not t.training
    assert t.unfreeze() is t and not t.frozen
    assert all(p.requires_grad for p in t.parameters())
    t.train()
    assert t.training  # .train() is obeyed again
    t.freeze()
    t.train()
    assert t.frozen and not t.training and not any(p.requires_grad for p in t.parameters())
