"""Table 9 (``parameter-counts``): counts of the built SHRe model against independently built models."""

from __future__ import annotations

import shutil

import pytest
import torch
from torch import nn

from mmthesis.core.errors import ConfigError
from mmthesis.eval.reproduce.engine import reproduce
from mmthesis.eval.reproduce.kinds.parameters import count_parameters, student_total
from mmthesis.eval.reproduce.specs import load_spec, specs_dir
from mmthesis.students.model import SSMKE
from mmthesis.students.recipes import load_recipe
from mmthesis.teachers.registry import get_spec

NULL_CHECKPOINTS = ["model.image.checkpoint=null", "model.text.checkpoint=null", "teacher.checkpoint=null"]


def numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def shre_student(blocks: int) -> SSMKE:
    """The SHRe student built directly (not through the training module), on the meta device."""
    config = load_recipe("shre", "full", [f"model.image.blocks={blocks}", *NULL_CHECKPOINTS])
    classes = get_spec(config.teacher.name).presets["base"]["num_classes"]
    with torch.device("meta"):
        return SSMKE(config.model, 30522, classes, load_pretrained=False)


@pytest.fixture(scope="module")
def table9(tmp_path_factory):
    out = tmp_path_factory.mktemp("tables")
    return reproduce("table-9", "smoke", out), out  # scale-independent: smoke builds the full configuration


def test_rows_are_the_students_submodules(table9):
    built, out = table9
    spec = load_spec("table-9")
    import timm

    with torch.device("meta"):
        resnet50 = numel(timm.create_model("resnet50", pretrained=False))  # the teacher ResNet-50-A1's architecture
    for reading, blocks in (("thesis text (6 image blocks)", 6), ("code default (8 image blocks)", 8)):
        assert f"model.image.blocks={blocks}" in built.values[reading]["overrides"]
        rows = built.values[reading]["rows"]
        student = shre_student(blocks)
        assert rows["Image Encoder"] == numel(student.image_encoder)
        assert rows["Text Encoder"] == numel(student.text_encoder)
        assert rows["Shared Encoder"] == numel(student.shared)
        assert rows["Total"] == rows["Image Encoder"] + rows["Text Encoder"] + rows["Shared Encoder"]
        assert rows["Total"] == numel(student)  # the three rows cover the whole student
        # what no row counts: the three ITC temperatures and the frozen teacher, nothing of the student
        rest = built.values[reading]["not_in_any_row"]
        assert rest == {"log_scale": 1, "log_scale_fc1": 1, "log_scale_mid": 1, "teacher": resnet50}
    assert {r.name for r in spec.rows} == set(built.values["published"])
    text = numel(shre_student(6).text_encoder)
    cell = f"{text / 1e6:.1f}M ({text:,})"
    md = (out / "table-9.md").read_text()
    assert f"| Text Encoder | {spec.rows[1].published.display} | {cell} | {cell} |" in md
    assert "Not in any row: log_scale 1, log_scale_fc1 1, log_scale_mid 1, teacher" in md


def test_library_parity_of_the_encoders(table9):
    """The 6-block encoders equal a timm ViT-B/16 and a transformers BERT of the same depth (hand-adjusted)."""
    from timm.models.vision_transformer import VisionTransformer
    from transformers import BertConfig, BertModel

    rows = table9[0].values["thesis text (6 image blocks)"]["rows"]
    with torch.device("meta"):
        # Data2Vec2: patch projection (with bias), CLS, fixed positions (a buffer), pre-block LayerNorm, no final norm
        vit = VisionTransformer(depth=6, num_classes=0, pos_embed="none", final_norm=False, global_pool="token")
        bert = BertModel(BertConfig(num_hidden_layers=6), add_pooling_layer=False)
    assert rows["Image Encoder"] == numel(vit) + 2 * 768
    assert rows["Text Encoder"] == numel(bert)
    # SHRe's MLP by hand: fc1 768->3072, LayerNorm(3072), fc2 3072->768, LayerNorm(768), head 768->1000
    assert rows["Shared Encoder"] == (768 * 3072 + 3072) + 2 * 3072 + (3072 * 768 + 768) + 2 * 768 + (768 * 1000 + 1000)


def test_the_two_readings_differ_by_two_blocks(table9):
    built, out = table9
    six = built.values["thesis text (6 image blocks)"]["rows"]
    eight = built.values["code default (8 image blocks)"]["rows"]
    block = numel(shre_student(6).image_encoder.blocks[0])
    assert eight["Image Encoder"] - six["Image Encoder"] == 2 * block
    assert eight["Total"] - six["Total"] == 2 * block
    assert eight["Text Encoder"] == six["Text Encoder"] and eight["Shared Encoder"] == six["Shared Encoder"]
    md = (out / "table-9.md").read_text()
    assert f"Image Encoder {2 * block:+,}" in md
    assert f"blocks 6 × {block:,}" in md and f"blocks 8 × {block:,}" in md
    # a value that differs from the published one is marked and explained
    image_row = next(line for line in md.splitlines() if line.startswith("| Image Encoder |"))
    assert image_row.count("≠") == 2
    assert "Image Encoder (thesis text (6 image blocks), code default (8 image blocks)):" in md


def test_count_parameters_for_other_tables():
    counts = count_parameters("shre", ["model.image.blocks=6"])
    student = shre_student(6)
    assert counts["student.image_encoder"] == numel(student.image_encoder)
    assert student_total(counts) == numel(student)
    assert counts["log_scale"] == 1
    assert not any(k.startswith("student.") and k.count(".") > 1 for k in counts)


def test_a_row_naming_no_module_fails(tmp_path, monkeypatch):
    shutil.copy(specs_dir() / "table-9.yaml", tmp_path / "table-9.yaml")
    text = (tmp_path / "table-9.yaml").read_text().replace("modules: [shared]", "modules: [shared_mlp]")
    (tmp_path / "table-9.yaml").write_text(text)
    monkeypatch.setenv("MMTHESIS_REPRODUCTIONS", str(tmp_path))
    with pytest.raises(ConfigError, match="the student has no module 'shared_mlp'") as e:
        reproduce("table-9", "full", tmp_path / "out")
    assert "image_encoder" in e.value.one_line()
    assert not (tmp_path / "out").exists()  # nothing half-written
