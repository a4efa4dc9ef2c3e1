"""Retrieval finetuning (REFERENCE.md §3.13): a run started from a finished run of another recipe (init.from_recipe).

The child starts from the parent's trained student and its final-CLS logit scale, trains ITC only (no teacher),
reuses a finished parent instead of retraining it, and its full config is the thesis's (Table 36, code readings).
"""

from __future__ import annotations

import csv
import math
import shutil
from types import SimpleNamespace

import pytest
import torch

from mmthesis.core.checkpoint import save_weights
from mmthesis.core.config import config_hash
from mmthesis.core.errors import ConfigError
from mmthesis.core.results import run_dir
from mmthesis.students.artifact import (
    ITC_LOG_SCALES,
    LOSSES,
    WEIGHTS,
    load_trained,
    read_itc_log_scales,
    read_weights,
    read_weights_metadata,
    run_name,
)
from mmthesis.students.config import INIT_LOG_SCALE, READINGS, reading_in_force
from mmthesis.students.lightning_module import VLDistillationModule
from mmthesis.students.losses import MAX_LOGIT_SCALE
from mmthesis.students.recipes import load_recipe, parent_config

FAST = [
    "train.max_steps=2", "train.checkpoint_every_n_steps=1", "teacher.prefit_steps=0", "data.train=[shapes]",
    "data.retrieval_eval=[shapes]", "data.batch_size=8",
]  # fmt: skip
PARENT_FAST = [f"init.overrides.{o}" for o in [*FAST, "train.seed=11"]]  # a parent no other test trains
CHILD = "s-smke-cdl-mb-ft-coco"


def child_config(*extra: str):
    return load_recipe(CHILD, "smoke", FAST + PARENT_FAST + list(extra))


@pytest.fixture(scope="module")
def finetuned(smoke_home):
    """The child trained 2 steps from a parent trained 2 steps; records what the module held before step 1."""
    from mmthesis.students import train

    mp = pytest.MonkeyPatch()
    mp.setenv("MMTHESIS_HOME", str(smoke_home))
    seen = {}

    def on_train_start(self):
        seen["student"] = {k: v.detach().clone() for k, v in self.student.state_dict().items()}
        seen["log_scale"] = float(self.log_scale.detach())
        seen["teacher"] = self.teacher
        seen["log_scale_fc1"] = self.log_scale_fc1

    mp.setattr(VLDistillationModule, "on_train_start", on_train_start, raising=False)
    config = child_config()
    parent = parent_config(config, "smoke")
    parent_dir = run_dir(run_name(parent, "smoke"), config_hash(parent))
    assert not parent_dir.exists()  # the child's run trains its parent first
    result = train.train_recipe(config, "smoke")
    child_dir = run_dir(run_name(config, "smoke"), config_hash(config))
    mp.undo()
    return SimpleNamespace(config=config, result=result, child_dir=child_dir, parent_dir=parent_dir, seen=seen)


def test_child_starts_from_the_parents_weights_and_logit_scale(finetuned):
    assert finetuned.result.status == "finished"
    parent_state = read_weights(finetuned.parent_dir)
    before = finetuned.seen["student"]
    assert set(parent_state) - set(before) == {"kd_head.0.weight", "kd_head.0.bias", "kd_head.1.weight", "kd_head.1.bias"}
    for name, value in before.items():
        assert torch.equal(value, parent_state[name]), name
    scales = read_itc_log_scales(finetuned.parent_dir)
    assert set(scales) == {"log_scale", "log_scale_fc1"}  # the parent trained ITC on fc1 + final CLS
    assert scales["log_scale"] != INIT_LOG_SCALE  # the parent's scale moved, so equality below is informative
    assert finetuned.seen["log_scale"] == pytest.approx(min(max(scales["log_scale"], 0.0), MAX_LOGIT_SCALE))
    # and the child did train: its final weights differ from the parent's
    child_state = read_weights(finetuned.child_dir)
    assert not torch.equal(child_state["shared.attn.qkv.weight"], parent_state["shared.attn.qkv.weight"])
    assert any(f"started from the finished run {finetuned.parent_dir}" in n for n in finetuned.result.notes)


def test_child_has_no_teacher_and_trains_itc_on_the_final_cls_only(finetuned):
    assert finetuned.seen["teacher"] is None and finetuned.seen["log_scale_fc1"] is None
    assert not finetuned.config.uses_teacher
    rows = list(csv.DictReader((finetuned.child_dir / LOSSES).open()))
    assert len(rows) == 2 and "kd" not in rows[0]
    assert all(float(r["loss"]) == float(r["itc"]) > 0 for r in rows)
    assert "kd_head.1.weight" not in read_weights(finetuned.child_dir)


def test_child_is_a_normal_vl_run_with_the_parents_tokenizer(finetuned):
    run = load_trained(finetuned.child_dir)
    parent = load_trained(finetuned.parent_dir)
    assert run.task == "vl" and run.config.init.from_recipe == "s-smke-cdl-mb"
    assert run.tokenizer.vocab_size == parent.tokenizer.vocab_size
    assert run.tokenizer.encode_ids(["a red circle"]) == parent.tokenizer.encode_ids(["a red circle"])
    size = run.config.model.img_size
    image = run.model.encode_image(torch.zeros(2, 3, size, size))
    assert image.shape[0] == 2 and torch.allclose(image.norm(dim=-1), torch.ones(2))
    assert set(read_itc_log_scales(finetuned.child_dir)) == {"log_scale"}


def test_finished_parent_is_reused_and_a_changed_parent_changes_the_child(finetuned, smoke_home, monkeypatch):
    from mmthesis.students.train import train_recipe

    monkeypatch.setenv("MMTHESIS_HOME", str(smoke_home))
    parent_result = (finetuned.parent_dir / "result.json").read_bytes()
    parent_weights = (finetuned.parent_dir / WEIGHTS).stat().st_mtime_ns
    other = child_config("train.seed=7")  # another child of the same parent
    assert other.init.parent_hash == finetuned.config.init.parent_hash
    assert train_recipe(other, "smoke").status == "finished"
    assert (finetuned.parent_dir / "result.json").read_bytes() == parent_result  # not retrained
    assert (finetuned.parent_dir / WEIGHTS).stat().st_mtime_ns == parent_weights

    changed = child_config("init.overrides.train.max_steps=3")
    assert changed.init.parent_hash != finetuned.config.init.parent_hash
    assert config_hash(changed) != config_hash(finetuned.config)

    stale = child_config()
    stale.init.parent_hash = "0" * 16
    with pytest.raises(ConfigError, match="is not the hash of the parent s-smke-cdl-mb's config"):
        train_recipe(stale, "smoke")


def test_logit_scales_of_runs_without_metadata_come_from_the_last_checkpoint(finetuned, tmp_path):
    folder = tmp_path / "parent"
    shutil.copytree(finetuned.parent_dir, folder)
    meta = read_weights_metadata(folder)
    expected = read_itc_log_scales(folder)
    del meta[ITC_LOG_SCALES]
    save_weights(folder / WEIGHTS, read_weights(folder), meta)
    assert ITC_LOG_SCALES not in read_weights_metadata(folder)
    assert read_itc_log_scales(folder) == pytest.approx(expected)


def test_the_childs_model_must_be_the_parents():
    with pytest.raises(ConfigError, match=r"model.image.blocks=6 differs from the parent s-smke-cdl-mb's 8"):
        load_recipe(CHILD, "full", ["model.image.blocks=6"])
    both = load_recipe(CHILD, "full", ["model.image.blocks=6", "init.overrides.model.image.blocks=6"])
    assert both.model.image.blocks == parent_config(both, "full").model.image.blocks == 6
    with pytest.raises(ConfigError, match="init.from_recipe makes a cycle"):
        load_recipe(CHILD, "full", [f"init.from_recipe={CHILD}"])


@pytest.mark.parametrize(
    ("recipe", "dataset", "pairs", "code_steps"),
    # Karpathy pair counts (COCO train+restval, Flickr30K train); the code's scheduler lengths (retrieval_*.yaml)
    [("s-smke-cdl-mb-ft-coco", "coco", 566_747, 11_080), ("s-smke-cdl-mb-ft-flickr30k", "flickr30k", 145_000, 2_840)],
)
def test_full_config_is_table_36_with_the_codes_length(recipe, dataset, pairs, code_steps):
    config = load_recipe(recipe, "full")
    assert config.init.from_recipe == "s-smke-cdl-mb" and config.task == "vl"
    assert config.init.parent_hash == config_hash(load_recipe("s-smke-cdl-mb", "full"))
    assert config.data.train == [dataset] and config.data.retrieval_eval == [dataset]
    assert (config.loss.kd, config.loss.memory_bank_size, config.model.itc_on_fc1) == ("none", 0, False)
    assert config.data.batch_size == 1024 and config.train.devices == 1
    assert config.data.crop_scale == (0.5, 1.0)
    o = config.optim
    assert (o.lr, o.betas, o.eps, o.weight_decay, o.warmup_fraction) == (3e-5, (0.9, 0.98), 1e-6, 0.01, 0.1)
    assert not o.scale_lr_with_devices

    # steps per epoch with drop_last, as the loader runs them; the code's scheduler counted ceil(pairs / 1024)
    per_epoch = pairs // config.data.batch_size
    code_epochs = config.train.epochs
    assert code_epochs * math.ceil(pairs / config.data.batch_size) == code_steps
    readings = {r.key: r for r in READINGS}
    assert reading_in_force(readings["train.epochs"], config) == "code"
    text = load_recipe(recipe, "full", ["train.epochs=5"])  # Table 36: a quarter of the code's length
    assert reading_in_force(readings["train.epochs"], text) == "thesis text"
    assert 4 * text.train.epochs * math.ceil(pairs / 1024) == code_steps

    # the optimiser and schedule the module builds from this config on one GPU
    module = VLDistillationModule(load_recipe(recipe, "smoke"), vocab_size=50)
    module.config = config  # full optimiser settings; a tiny model keeps the test fast
    total = code_epochs * per_epoch
    module._trainer = SimpleNamespace(estimated_stepping_batches=total, world_size=2)
    setup = module.configure_optimizers()
    optimizer, scheduler = setup["optimizer"], setup["lr_scheduler"]["scheduler"]
    assert [g["initial_lr"] for g in optimizer.param_groups] == [3e-5, 3e-5]  # not multiplied by the 2 devices
    assert optimizer.defaults["betas"] == (0.9, 0.98) and optimizer.defaults["eps"] == 1e-6
    assert sorted(g["weight_decay"] for g in optimizer.param_groups) == [0.0, 0.01]
    warmup = int(0.1 * total)
    factors = [scheduler.lr_lambdas[0](s) for s in (warmup - 1, warmup, total)]
    assert factors == pytest.approx([1.0, 1.0, 0.0])
