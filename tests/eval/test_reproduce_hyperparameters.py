"""Tables 31-36 (kind ``hyperparameters``): cells read from the configs in force, differences marked and explained."""

from __future__ import annotations

import math
import shutil

import lightning as L
import pytest
import torch
import yaml

from mmthesis.core.errors import ConfigError
from mmthesis.core.paths import data_root
from mmthesis.data.datasets.glue import TASKS, prepare_from_raw, read_rows, write_standin_tsvs
from mmthesis.data.manifest import dataset_dir, read_manifest
from mmthesis.eval.reproduce.engine import reproduce
from mmthesis.eval.reproduce.kinds.hyperparameters import num, same
from mmthesis.eval.task_registry import get_task
from mmthesis.students import recipes
from mmthesis.students.distributed import ResumableDataLoader, ResumableSampler, SeededSamples
from mmthesis.students.recipes import load_recipe
from mmthesis.students.schedules import planned_steps
from mmthesis.students.train import build_tokenizer, build_training_data, training_examples


def test_published_and_reproduced_compare_up_to_number_spelling():
    assert same("1e-06", "1e-6") and same("1M", "1000000") and same("1k", "1000") and same("[0.08, 1.0]", "[0.08, 1]")
    assert same("(0.9, 0.98)", "(0.9,0.98)") and same("5004 (10% of total steps)", "5004 (10 % of total steps)")
    assert not same("10", "1") and not same("5e-4", "1e-4") and not same("(0.9,0.98)", "[0.9,0.98]")
    assert num(1e-4) == "1e-4" and num(5e-4) == "5e-4" and num(0.01) == "0.01" and num(2.5e-5) == "2.5e-5"


def test_table_31_full_marks_the_code_values_and_names_the_reading(tmp_path):
    config = load_recipe("distil-data2vec2", "full")
    values = reproduce("table-31", "full", tmp_path).values
    layers, lr = values["Layers"]["Value"], values["Base learning rate"]["Value"]
    assert layers["reproduced"] == str(config.model.image.blocks) and layers["same"] is False
    assert "§10 item 1" in layers["note"] and "`model.image.blocks=6`" in layers["note"]
    assert lr["reproduced"] == num(config.optim.lr) and lr["same"] is False and "`optim.lr=0.0001`" in lr["note"]
    assert values["Epochs"]["Value"] == {"published": "10", "reproduced": str(config.train.epochs), "same": True}
    assert values["Optimizer"]["Value"]["reproduced"] == "AdamW"
    assert values["Learning rate schedule"]["Value"]["reproduced"] == "Cosine"
    assert values["Hardware"]["Value"]["reproduced"] == f"{config.train.devices} × RTX 4090 24GB"
    assert "mmthesis data prepare imagenet" in values["Total steps"]["Value"]["missing"]  # not counted, not compared
    assert values["_unexplained"] == []
    md = (tmp_path / "table-31.md").read_text()
    assert "| Model | Layers | 6 | 8 ≠ [1] |" in md and r"$\neq$" in (tmp_path / "table-31.tex").read_text()


@pytest.fixture
def edited_recipes(tmp_path, monkeypatch):
    """A copy of the recipe folder the test may edit; load_recipe reads it."""
    folder = tmp_path / "recipes"
    shutil.copytree(recipes.recipe_dir(), folder)
    monkeypatch.setattr(recipes, "recipe_dir", lambda: folder)
    return folder


def test_a_config_change_shows_up_and_an_unexplained_difference_is_listed(in_eval_home, edited_recipes, tmp_path):
    path = edited_recipes / "distil-data2vec2.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["full"]["optim"] = {"lr": 1.0e-4}
    raw["full"]["model"]["image"]["blocks"] = 6
    raw["full"]["data"] = {"train": ["shapes"], "batch_size": 16, "crop_scale": [0.08, 1.0]}
    path.write_text(yaml.safe_dump(raw))
    values = reproduce("table-31", "full", tmp_path).values
    assert values["Base learning rate"]["Value"] == {"published": "1e-4", "reproduced": "1e-4", "same": True}
    assert values["Layers"]["Value"]["reproduced"] == "6" and values["Layers"]["Value"]["same"]
    images = int(read_manifest("shapes").split("train")["samples"])
    total = 10 * (images // 16)  # epochs x full batches, one device
    assert values["Total steps"]["Value"]["reproduced"] == str(total)
    assert values["Warmup steps"]["Value"]["reproduced"] == f"{int(0.1 * total)} (10% of total steps)"
    assert values["_unexplained"] == ["Total steps / Value", "Batch size / Value", "Warmup steps / Value"]


def test_table_34_glue_classes_metric_and_steps(in_eval_home, tmp_path):
    full = reproduce("table-34", "full", tmp_path).values
    mrpc = full["Num classes"]["MRPC"]
    assert mrpc["reproduced"] == str(len(TASKS["MRPC"].label_names)) and not mrpc["same"] and "item 12" in mrpc["note"]
    assert full["Num classes"]["STS-B"]["same"] and full["Metric"]["STS-B"]["same"]  # Spearman is among its metrics
    assert not full["Metric"]["CoLA"]["same"] and "Matthews" in full["Metric"]["CoLA"]["note"]
    assert full["Learning rate schedule"]["QQP"]["reproduced"] == "Polynomial decay"
    assert full["_unexplained"] == []

    raw = tmp_path / "glue-raw"
    write_standin_tsvs(raw)
    prepare_from_raw(raw, dataset_dir("glue-smoke", data_root()), name="glue-smoke")
    smoke = reproduce("table-34", "smoke", tmp_path).values
    folder = dataset_dir("glue-smoke", data_root())
    for column, task in (("MNLI", "glue-mnli"), ("STS-B", "glue-stsb"), ("WNLI", "glue-wnli")):
        params = get_task(task).at_scale("smoke").params
        rows = len(read_rows(folder, params["task"], "train"))
        total = params["epochs"] * math.ceil(rows / params["batch_size"])
        assert smoke["Total steps"][column]["reproduced"] == str(total)
        assert "same" not in smoke["Total steps"][column]  # smaller configs are not compared


def test_table_32_finetune_and_linear_probe_columns(in_eval_home, tmp_path):
    values = reproduce("table-32", "smoke", tmp_path).values
    labels = read_manifest("shapes").stats.get("label_names")
    params = get_task("finetune-cifar10").at_scale("smoke").params
    assert values["Num classes"]["CIFAR10 Finetune"]["reproduced"] == str(len(labels))
    assert (
        values["Warmup steps"]["CIFAR10 Finetune"]["reproduced"]
        == f"{int(0.1 * params['max_steps'])} (10% of total steps)"
    )
    assert values["Epochs"]["CIFAR10 Linear probe"]["reproduced"] is None
    full = reproduce("table-32", "full", tmp_path).values
    assert full["Magnitude"]["ImageNet Finetune"]["reproduced"] == "9" and full["# ops"]["ImageNet Finetune"]["same"]
    assert full["Mode"]["CIFAR100 Finetune"]["reproduced"] == "pixel"
    assert full["Layer Decay"]["ImageNet Finetune"]["reproduced"] == num(
        get_task("finetune-imagenet1k").params["layer_decay"]
    )
    assert full["_unexplained"] == []


def test_table_36_without_its_recipes_says_which_is_missing(edited_recipes, tmp_path):
    for name in ("s-smke-cdl-mb-ft-coco", "s-smke-cdl-mb-ft-flickr30k"):
        (edited_recipes / f"{name}.yaml").unlink(missing_ok=True)
    built = reproduce("table-36", "full", tmp_path)
    assert built.status == "partial"
    assert any("`s-smke-cdl-mb-ft-coco` is not in this checkout" in n for n in built.table.notes)
    assert built.values["Epochs"]["MSCOCO"]["reproduced"] is None


def test_unknown_config_key_fails_in_one_line(tmp_path, monkeypatch):
    from mmthesis.eval.reproduce.specs import specs_dir

    spec = yaml.safe_load((specs_dir() / "table-31.yaml").read_text())
    spec["rows"][0]["value"] = "optim.lrr"
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "table-31.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True))
    monkeypatch.setenv("MMTHESIS_REPRODUCTIONS", str(folder))
    with pytest.raises(ConfigError) as e:
        reproduce("table-31", "full", tmp_path / "out")
    assert "table-31.yaml" in e.value.one_line() and "'optim.lrr'" in e.value.one_line()
    assert "\n" not in e.value.one_line() and not (tmp_path / "out").exists()


def test_training_examples_is_the_length_of_the_training_data(in_eval_home):
    for name in ("shre", "distil-data2vec2"):
        config = load_recipe(name, "smoke", ["data.train=[shapes]"])
        dataset = build_training_data(config, build_tokenizer(config, "smoke"), "smoke")[0]
        assert training_examples(config, "smoke") == len(dataset)


class _Probe(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Linear(1, 1)

    def training_step(self, batch, index):
        return self.w(torch.stack([b["x"] for b in batch])).sum()

    def configure_optimizers(self):
        self.estimated = self.trainer.estimated_stepping_batches
        return torch.optim.SGD(self.parameters(), lr=0.0)


@pytest.mark.parametrize("epochs,max_steps", [(3, -1), (3, 10)])
def test_planned_steps_is_what_lightning_estimates_for_the_training_loader(epochs, max_steps):
    data = [{"x": torch.zeros(1)} for _ in range(37)]
    loader = ResumableDataLoader(
        SeededSamples(data), batch_size=5, sampler=ResumableSampler(37, 0), drop_last=True, collate_fn=list
    )
    module = _Probe()
    trainer = L.Trainer(
        max_epochs=epochs,
        max_steps=max_steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
    )
    trainer.fit(module, loader)
    assert module.estimated == planned_steps(37, 5, epochs, max_steps) == trainer.global_step
    assert planned_steps(37, 5, epochs, world_size=2) == epochs * ((37 // 2) // 5)  # per-rank shards (§10 item 10)
