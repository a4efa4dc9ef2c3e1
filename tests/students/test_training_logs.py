"""What a training run logs: per-modality KD halves, the validation loop (val loss, retrieval R@1), the loggers.

Hand computations on tiny tensors for the KD halves and for R@1; short real runs for what lands in
``logs/metrics.csv``, ``losses.csv`` and ``result.json``.
"""

from __future__ import annotations

import csv
import math
from types import SimpleNamespace

import pytest
import torch

from mmthesis.core.config import config_hash
from mmthesis.core.errors import ConfigError
from mmthesis.core.results import read_result, run_dir
from mmthesis.students.artifact import LOSSES, load_trained, read_logged_metrics, run_name
from mmthesis.students.lightning_module import VLDistillationModule, contrastive_kd, kl_kd, mse_kd
from mmthesis.students.recipes import load_recipe
from mmthesis.students.train import train_recipe
from mmthesis.students.validation import RetrievalAccumulator, image_keys, retrieval_r1, zero_shot_top1


def _out(kd):
    return SimpleNamespace(kd=torch.tensor(kd))


def _log_softmax(row):
    m = math.log(sum(math.exp(v) for v in row))
    return [v - m for v in row]


# -- KD halves: hand computations ------------------------------------------------------------------------------
IMG, TXT = [[1.0, 0.0], [0.0, 2.0]], [[0.5, 0.5], [1.0, -1.0]]
TARGET = [[1.0, 1.0], [0.0, 1.0]]


def test_mse_kd_halves_are_each_modalitys_mse():
    img, txt = mse_kd(None, _out(IMG), _out(TXT), torch.tensor(TARGET), None)
    # image: (0^2 + 1^2 + 0^2 + 1^2) / 4; text: (0.25 + 0.25 + 1 + 4) / 4
    assert img.item() == pytest.approx(0.5) and txt.item() == pytest.approx(5.5 / 4)


def test_kl_kd_halves_are_each_modalitys_kl():
    img, txt = kl_kd(None, _out(IMG), _out(TXT), torch.tensor(TARGET), None)

    def kl(student):
        total = 0.0
        for s_row, t_row in zip(student, TARGET, strict=True):
            ls, lt = _log_softmax(s_row), _log_softmax(t_row)
            total += sum(math.exp(b) * (b - a) for a, b in zip(ls, lt, strict=True))
        return total / len(student)

    assert img.item() == pytest.approx(kl(IMG), rel=1e-6) and txt.item() == pytest.approx(kl(TXT), rel=1e-6)


@pytest.mark.parametrize("with_bank", [False, True])
def test_contrastive_kd_halves_are_each_modalitys_cdl(with_bank):
    bank = [[-1.0, 0.0]]
    module = SimpleNamespace(
        kd_log_scale=torch.tensor(math.log(2.0)),
        bank=SimpleNamespace(bank=torch.tensor(bank)) if with_bank else None,
        config=SimpleNamespace(loss=SimpleNamespace(kd_keys="local")),
    )
    img, txt = contrastive_kd(module, _out(IMG), _out(TXT), torch.tensor(TARGET), None)

    def unit(v):
        n = math.sqrt(sum(x * x for x in v))
        return [x / n for x in v]

    keys = [unit(k) for k in TARGET + (bank if with_bank else [])]

    def cdl(student):
        total = 0.0
        for i, row in enumerate(student):
            logits = [2.0 * sum(a * b for a, b in zip(unit(row), k, strict=True)) for k in keys]
            total -= _log_softmax(logits)[i]
        return total / len(student)

    assert img.item() == pytest.approx(cdl(IMG), rel=1e-6) and txt.item() == pytest.approx(cdl(TXT), rel=1e-6)


@pytest.mark.parametrize("recipe", ["s-smke", "shre", "s-smke-cdl-mb", "s-smke-t-cmli"])
def test_module_kd_is_the_mean_of_its_halves(recipe, random_batch, smoke_home, monkeypatch):
    monkeypatch.setenv("MMTHESIS_HOME", str(smoke_home))
    config = load_recipe(recipe, "smoke", ["teacher.prefit_steps=0"])
    module = VLDistillationModule(config, vocab_size=50)
    out = module.losses(random_batch(config))
    assert out["kd_image"].item() != pytest.approx(out["kd_text"].item())  # two real halves
    assert out["kd"].item() == pytest.approx(0.5 * (out["kd_image"] + out["kd_text"]).item(), rel=1e-7)
    assert out["loss"].item() == pytest.approx((out["itc"] + out["kd"]).item(), rel=1e-6)


# -- retrieval R@1 ------------------------------------------------------------------------------------------------
def test_retrieval_r1_hand_case():
    # 3 images; captions 0, 1 belong to image 0, caption 2 to image 1, caption 3 to image 2
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    texts = torch.tensor([[0.0, 1.0], [0.9, 0.1], [0.7, 0.7], [0.0, 1.0]])
    text_image = torch.tensor([0, 0, 1, 2])
    # sims (rows = images): img0 -> [0, .9, .7, 0] best caption 1 (its own): hit
    # img1 -> [1, .1, .7, 1] best caption 0 (first of the tie; image 0's): miss
    # img2 -> [.8, .62, .98, .8] best caption 2 (image 1's): miss  => i2t 1/3
    # captions: c0 -> images [0, 1, .8] best 1 (own 0): miss; c1 -> [.9, .1, .62] best 0: hit
    # c2 -> [.7, .7, .98] best 2 (own 1): miss; c3 -> [0, 1, .8] best 1 (own 2): miss  => t2i 1/4
    i2t, t2i = retrieval_r1(images, texts, text_image)
    assert i2t == pytest.approx(100 / 3) and t2i == pytest.approx(25.0)


def test_accumulator_keeps_each_image_once_across_batches():
    acc = RetrievalAccumulator()
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # pairs (image a, caption 0), (a, 1) | (b, 2): image a appears in two pairs and two batches
    acc.add(images[[0, 0]], torch.tensor([[0.0, 1.0], [1.0, 0.0]]), image_keys(["a", "a"]))
    acc.add(images[[1]], torch.tensor([[0.1, 2.0]]), image_keys(["b"]))
    # image a's best caption is 1 (own), b's best is 2 (own): i2t 100; captions: c0 -> b (miss), c1 -> a, c2 -> b
    i2t, t2i, images_once, labels = acc.compute()
    assert (i2t, t2i) == pytest.approx((100.0, 200 / 3))
    assert sorted(images_once.tolist()) == sorted(images.tolist()) and labels is None  # each image once
    assert acc.compute() is None  # cleared


# -- what a run writes --------------------------------------------------------------------------------------------
FAST_VL = ["data.train=[shapes]", "data.retrieval_eval=[shapes]", "data.batch_size=8", "teacher.prefit_steps=0"]


def test_config_hash_leaves_out_the_loggers_but_not_validation():
    base = load_recipe("s-smke", "smoke")
    assert config_hash(load_recipe("s-smke", "smoke", ["train.loggers=[csv,wandb]"])) == config_hash(base)
    assert config_hash(load_recipe("s-smke", "smoke", ["train.val_every_n_steps=7"])) != config_hash(base)


@pytest.mark.smoke
def test_vl_run_logs_kd_halves_validation_and_tensorboard(smoke_home, monkeypatch):
    monkeypatch.setenv("MMTHESIS_HOME", str(smoke_home))
    config = load_recipe(
        "s-smke-cdl-mb",
        "smoke",
        [
            *FAST_VL,
            "train.max_steps=4",
            "train.val_every_n_steps=2",
            "train.val_batches=2",
            "train.log_every_n_steps=1",
        ],
    )
    result = train_recipe(config, "smoke")
    folder = run_dir(run_name(config, "smoke"), config_hash(config))
    series = read_logged_metrics(folder)
    for key in ("val/loss", "val/kd_image", "val/retrieval_i2t_r1", "val/retrieval_t2i_r1", "val/retrieval_r1"):
        assert [s for s, _ in series[key]] == [1, 3], key  # after 2 and 4 steps (Lightning's 0-based step)
    for (_, i2t), (_, t2i), (_, mean) in zip(
        series["val/retrieval_i2t_r1"], series["val/retrieval_t2i_r1"], series["val/retrieval_r1"], strict=True
    ):
        assert 0.0 <= i2t <= 100.0 and mean == pytest.approx(0.5 * (i2t + t2i))
    for (_, kd), (_, a), (_, b) in zip(
        series["train/kd"], series["train/kd_image"], series["train/kd_text"], strict=True
    ):
        assert kd == pytest.approx(0.5 * (a + b), rel=1e-6)
    rows = list(csv.DictReader((folder / LOSSES).open()))
    assert len(rows) == 4 and {"kd_image", "kd_text"} <= rows[0].keys()
    for r in rows:
        assert float(r["kd"]) == pytest.approx(0.5 * (float(r["kd_image"]) + float(r["kd_text"])), rel=1e-6)
    assert list((folder / "logs").glob("events.out.tfevents.*"))  # TensorBoard, installed here
    assert result.metrics["val_retrieval_r1_last"] == pytest.approx(series["val/retrieval_r1"][-1][1])
    assert read_result(folder).metrics["val_loss_last"] == pytest.approx(series["val/loss"][-1][1])


@pytest.mark.smoke
@pytest.mark.parametrize(
    ("recipe", "overrides"),
    [
        ("distil-data2vec2", ["data.train=[shapes]", "data.batch_size=8"]),
        ("f-distilbert", ["data.batch_size=4", "data.text_block_size=32"]),
    ],
)
def test_unimodal_runs_log_val_loss(recipe, overrides, smoke_home, monkeypatch):
    monkeypatch.setenv("MMTHESIS_HOME", str(smoke_home))
    config = load_recipe(
        recipe, "smoke", [*overrides, "train.max_steps=2", "train.val_every_n_steps=1", "train.val_batches=1"]
    )
    train_recipe(config, "smoke")
    series = read_logged_metrics(run_dir(run_name(config, "smoke"), config_hash(config)))
    assert [s for s, _ in series["val/loss"]] == [0, 1] and all(v > 0 for _, v in series["val/loss"])
    assert not any(k.startswith("val/retrieval") for k in series)


@pytest.mark.smoke
def test_wandb_offline_logs_into_the_run_folder(smoke_home, monkeypatch):
    monkeypatch.setenv("MMTHESIS_HOME", str(smoke_home))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    fast = [*FAST_VL, "train.max_steps=2", "train.log_every_n_steps=1"]
    config = load_recipe("s-smke-no-kd", "smoke", [*fast, "train.loggers=[csv,wandb]"])
    assert config_hash(config) == config_hash(load_recipe("s-smke-no-kd", "smoke", fast))
    train_recipe(config, "smoke")
    folder = run_dir(run_name(config, "smoke"), config_hash(config))
    (run,) = (folder / "wandb").glob("offline-run-*")
    assert list(run.glob("*.wandb"))  # the offline run's records, for `wandb sync`
    assert "train/loss" in read_logged_metrics(folder)  # the CSV log is written as well


# -- model selection (SHRe: best epoch by zero-shot accuracy) -----------------------------------------------------
def test_zero_shot_top1_hand_case():
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6]])
    classes = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # predictions 0, 1, 0 against labels 0, 0, 0: one of three right... and labels 0, 1, 0: all right
    assert zero_shot_top1(images, classes, torch.tensor([0, 0, 0])) == pytest.approx(200 / 3)
    assert zero_shot_top1(images, classes, torch.tensor([0, 1, 0])) == pytest.approx(100.0)


def test_keep_best_needs_a_mode_and_validation():
    with pytest.raises(ConfigError, match="keep_best"):
        load_recipe("s-smke", "smoke", ["train.keep_best=val/loss"])
    with pytest.raises(ConfigError, match="keep_best"):
        load_recipe("s-smke", "smoke", ["train.keep_best=val/loss:min", "train.val_every_n_steps=0"])
    assert load_recipe("shre", "smoke").train.keep_best == "val/loss:min"  # the code's; test_zero_shot_validation


@pytest.mark.smoke
def test_keep_best_writes_the_best_validations_weights(smoke_home, monkeypatch):
    monkeypatch.setenv("MMTHESIS_HOME", str(smoke_home))
    config = load_recipe(
        "s-smke-no-kd",
        "smoke",
        [
            *FAST_VL,
            "train.max_steps=3",
            "train.val_every_n_steps=1",
            "train.val_batches=2",
            "train.keep_best=val/loss:min",
        ],
    )
    result = train_recipe(config, "smoke")
    folder = run_dir(run_name(config, "smoke"), config_hash(config))
    series = read_logged_metrics(folder)
    assert [s for s, _ in series["val/zero_shot_top1"]] == [0, 1, 2]  # shapes' val split has class names
    losses = [v for _, v in series["val/loss"]]
    best_step = losses.index(min(losses)) + 1
    assert result.metrics["kept_step"] == best_step and result.metrics["kept_score"] == pytest.approx(min(losses))
    assert any("best validation by val/loss" in n for n in result.notes)
    best = torch.load(folder / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    kept = load_trained(folder).model.state_dict()
    assert all(torch.equal(kept[k], best[f"student.{k}"]) for k in kept)
