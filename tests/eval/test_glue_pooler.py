"""GLUE re-attaches the pretrained BERT pooler of the checkpoint the text encoder comes from (REFERENCE.md §3.12)."""

from __future__ import annotations

import pytest
import torch

from mmthesis.core.errors import CheckpointError
from mmthesis.eval.adapters import load_model
from mmthesis.eval.glue_finetune import build_classifier


@pytest.fixture
def hf_bert(tmp_path):
    """A tiny random HF ``BertModel`` *with* its pooler, saved as a HF folder."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=1000,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=128,
    )
    model = BertModel(config, add_pooling_layer=True).eval()
    with torch.no_grad():  # away from the default init, so a random pooler could not pass by chance
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(tmp_path / "bert")
    return model, tmp_path / "bert"


def _inputs():
    ids = torch.randint(5, 1000, (3, 11))
    mask = torch.zeros(3, 11, dtype=torch.bool)
    mask[1, 8:] = True
    mask[2, 5:] = True
    ids[mask] = 0
    types = torch.zeros_like(ids)
    types[0, 6:] = 1
    types[1, 4:8] = 1
    return ids, mask, types


def test_teacher_checkpoint_pooler_reattached(hf_bert):
    hf, folder = hf_bert
    loaded = load_model(f"teacher:bert_base_uncased:{folder}", scale="smoke")
    clf, notes = build_classifier(loaded, outputs=3, dropout=0.1)
    assert notes == []
    assert torch.equal(clf.pooler[0].weight, hf.pooler.dense.weight)
    assert torch.equal(clf.pooler[0].bias, hf.pooler.dense.bias)
    ids, mask, types = _inputs()
    clf.eval()
    with torch.no_grad():
        ours = clf.pooled(ids, mask, types)
        ref = hf(input_ids=ids, attention_mask=(~mask).long(), token_type_ids=types).pooler_output
    err = ((ours - ref).abs().max() / ref.abs().max()).item()
    print(f"GLUE pooled output vs HF pooler_output: max rel err {err:.2e}")
    assert err <= 1e-5
    assert clf.pooler[0].weight.requires_grad  # finetuned with the rest (REFERENCE.md §5.3)


def test_random_teacher_keeps_the_note():
    loaded = load_model("teacher:bert_base_uncased", scale="smoke")
    _, notes = build_classifier(loaded, outputs=2, dropout=0.1)
    assert len(notes) == 1 and notes[0].startswith("pooler initialised randomly")


def test_student_run_takes_the_pooler_of_its_text_checkpoint(in_eval_home, hf_bert, save_random_run):
    hf, bert_folder = hf_bert
    loaded = load_model(str(save_random_run([f"model.text.checkpoint={bert_folder}"])), scale="smoke")
    clf, notes = build_classifier(loaded, outputs=2, dropout=0.1)
    assert notes == []
    assert torch.equal(clf.pooler[0].weight, hf.pooler.dense.weight)
    assert torch.equal(clf.pooler[0].bias, hf.pooler.dense.bias)


def test_student_run_from_random_text_encoder_keeps_the_note(in_eval_home):
    loaded = load_model(str(in_eval_home[1]), scale="smoke")  # conftest's run: model.text.checkpoint=null
    clf, notes = build_classifier(loaded, outputs=2, dropout=0.1)
    assert len(notes) == 1 and "random weights" in notes[0]


def test_student_run_whose_bert_checkpoint_is_gone_is_an_error(in_eval_home, tmp_path, save_random_run):
    loaded = load_model(str(save_random_run([f"model.text.checkpoint={tmp_path / 'moved-away'}"])), scale="smoke")
    with pytest.raises(CheckpointError, match="GLUE needs its pretrained pooler"):
        build_classifier(loaded, outputs=2, dropout=0.1)
