"""End-to-end smoke slice of S-SMKE_CDL_MB on `shapes`: train with Lightning, evaluate retrieval."""

from __future__ import annotations

import csv
import json

import pytest

from mmthesis.core.config import config_hash
from mmthesis.core.paths import data_root
from mmthesis.core.results import run_dir
from mmthesis.data.registry import PrepareRequest, get_dataset
from mmthesis.eval.harness import evaluate
from mmthesis.students.artifact import LOSSES, WEIGHTS, load_trained, run_name
from mmthesis.students.recipes import load_recipe
from mmthesis.students.train import train_recipe

SHAPES_ONLY = ["data.train=[shapes]", "data.retrieval_eval=[shapes]"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    home = tmp_path_factory.mktemp("smoke_home")
    mp = pytest.MonkeyPatch()
    mp.setenv("MMTHESIS_HOME", str(home))
    get_dataset("shapes").prepare(PrepareRequest(out_root=data_root(), raw=None, workers=1, scale="smoke"))
    config = load_recipe("s-smke-cdl-mb", "smoke", SHAPES_ONLY)
    result = train_recipe(config, "smoke")
    folder = run_dir(run_name(config, "smoke"), config_hash(config))
    yield config, result, folder
    mp.undo()


@pytest.mark.smoke
@pytest.mark.slow
def test_smoke_slice_trains_and_beats_chance(trained, monkeypatch):
    config, result, folder = trained
    monkeypatch.setenv("MMTHESIS_HOME", str(folder.parents[2]))
    assert result.status == "finished"
    assert "tiny random-initialised encoders" in " ".join(result.notes)
    result = evaluate(["retrieval-shapes"], str(folder), scale="smoke", show_progress=False)
    metrics = result.metrics["retrieval-shapes"]
    chance = metrics["chance_t2i_r1"]
    assert metrics["t2i_r1"] >= 5 * chance, metrics
    assert metrics["i2t_r1"] >= 5 * metrics["chance_i2t_r1"], metrics
    # the result.json of the evaluation carries provenance and the metrics
    record = json.loads((run_dir(result.name, result.config_hash) / "result.json").read_text())
    assert record["status"] == "finished" and record["metrics"]["retrieval-shapes"]["t2i_r1"] == metrics["t2i_r1"]
    assert record["config"]["tasks"][0]["dataset"] == "shapes" and record["datasets"]["shapes"]


@pytest.mark.smoke
@pytest.mark.slow
def test_losses_are_recorded_and_both_kd_and_contrastive_loss_decrease(trained):
    # The smoke teacher is pre-fitted on the shapes labels (teacher.prefit_steps, students/smoke_teacher.py), so its
    # CLS differs across images and contrastive distillation has something to teach.
    _, result, folder = trained
    m = result.metrics
    print(
        f"ITC {m['train_itc_first']:.3f} -> {m['train_itc_last']:.3f}, KD {m['train_kd_first']:.3f} -> {m['train_kd_last']:.3f}"
        f" (mean of the first / last {max(5, int(m['steps']) // 10)} of {int(m['steps'])} steps)"
    )
    assert m["train_itc_last"] < 0.9 * m["train_itc_first"], m
    assert m["train_kd_last"] < 0.9 * m["train_kd_first"], m
    rows = list(csv.DictReader((folder / LOSSES).open()))
    assert len(rows) == int(m["steps"]) and {"itc", "kd", "loss"} <= set(rows[0])
    assert "pre-fitted" in " ".join(result.notes)


@pytest.mark.smoke
@pytest.mark.slow
def test_finished_run_is_reused_and_weights_reload(trained, monkeypatch):
    config, result, folder = trained
    monkeypatch.setenv("MMTHESIS_HOME", str(folder.parents[2]))
    before = (folder / WEIGHTS).stat().st_mtime_ns
    again = train_recipe(config, "smoke")
    assert again.config_hash == result.config_hash and (folder / WEIGHTS).stat().st_mtime_ns == before
    loaded = load_trained(folder)
    assert loaded.task == "vl" and not loaded.model.training and loaded.tokenizer.vocab_size > 10
