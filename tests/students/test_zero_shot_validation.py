"""Training-time CLIP-style zero-shot (``train.zero_shot_val``): prototypes, top-k, DDP sharding, model selection.

Hand computations on tiny embeddings for the prototypes and top-k; a two-rank run simulated with threads for the
sharded scoring (every rank must log the single-process numbers); short SHRe smoke runs on a tiny labelled
classification set prepared in the test home, under both readings of SHRe's model selection.
"""

from __future__ import annotations

import io
import math
import threading
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mmthesis.core.config import config_hash
from mmthesis.core.errors import ConfigError
from mmthesis.core.paths import data_root
from mmthesis.core.results import run_dir
from mmthesis.data.zeroshot import (
    PHOTO_TEMPLATE,
    dataset_class_names,
    imagenet_classnames,
    prototypes_from_prompt_embeddings,
    zero_shot_classes,
)
from mmthesis.students.artifact import load_trained, read_logged_metrics, run_name
from mmthesis.students.recipes import load_recipe
from mmthesis.students.train import train_recipe
from mmthesis.students.validation import (
    ZeroShotValidation,
    evenly_spaced,
    gather_rows,
    shard,
    zero_shot_top1,
    zero_shot_topk,
)


# -- prototypes and top-k: hand computations ---------------------------------------------------------------------
def test_prototypes_normalise_average_templates_and_renormalise():
    prompts = torch.tensor([[[3.0, 4.0], [2.0, 0.0]], [[0.0, 5.0], [-1.0, 1.0]]])  # 2 classes x 2 templates
    # class 0: (0.6, 0.8) and (1, 0) -> mean (0.8, 0.4) -> / sqrt(0.8); class 1: (0, 1), (-r, r) with r = 1/sqrt 2
    r = 1 / math.sqrt(2)
    mean1 = (-r / 2, (1 + r) / 2)
    n1 = math.hypot(*mean1)
    expected = torch.tensor([[0.8 / math.sqrt(0.8), 0.4 / math.sqrt(0.8)], [mean1[0] / n1, mean1[1] / n1]])
    assert torch.allclose(prototypes_from_prompt_embeddings(prompts), expected, atol=1e-6)


def test_topk_counts_classes_above_the_label_and_ties_go_to_the_lower_index():
    protos = torch.eye(3)
    images = torch.tensor([[1.0, 0.5, 0.2], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    labels = torch.tensor([1, 2, 1])
    # image 0: class 0 scores above its label 1 (rank 1); image 1: rank 0; image 2: a tie with class 0 (rank 1)
    assert zero_shot_topk(images, protos, labels, ks=(1, 2, 3)) == pytest.approx({1: 100 / 3, 2: 100.0, 3: 100.0})
    assert zero_shot_topk(images, protos, labels, ks=(1,))[1] == pytest.approx(zero_shot_top1(images, protos, labels))
    assert zero_shot_topk(images, protos, torch.tensor([0, 2, 0]), ks=(1,)) == {1: 100.0}


def test_evenly_spaced_rows_cover_the_split_without_random_numbers():
    assert evenly_spaced(10, 0) == list(range(10)) and evenly_spaced(3, 5) == [0, 1, 2]
    assert evenly_spaced(10, 4) == [0, 2, 5, 7]


@pytest.mark.parametrize(("n", "world"), [(7, 3), (5, 4), (2, 3), (6, 1)])
def test_shards_gathered_in_rank_order_are_the_rows_in_order(n, world):
    rows = torch.arange(n * 2, dtype=torch.float32).view(n, 2)
    blocks = [rows[shard(n, r, world).start : shard(n, r, world).stop] for r in range(world)]
    assert sum(len(b) for b in blocks) == n
    padded: list[torch.Tensor] = []
    for b in blocks:  # what each rank hands to all_gather
        gather_rows(b, n, world, lambda t: padded.append(t) or torch.zeros(world, *t.shape))
    for b in blocks:
        assert torch.equal(gather_rows(b, n, world, lambda t: torch.stack(padded[:world])), rows)


# -- the callback's scoring, one process vs two ranks ------------------------------------------------------------
class _Student:
    """Images: their first 3 pixels; prompts: a fixed vector per first token (plus noise from the second)."""

    def __init__(self) -> None:
        self.table = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
        self.encoded: list[int] = []  # how many images each call encoded

    def encode_image(self, images):
        self.encoded.append(images.shape[0])
        return F.normalize(images.flatten(1)[:, :3], dim=-1)

    def encode_text(self, ids, mask):
        return F.normalize(self.table[ids[:, 0]] + 0.1 * self.table[ids[:, 1]], dim=-1)


def _collate(items):
    return SimpleNamespace(image=torch.stack([i["image"] for i in items]), label=torch.tensor([i["label"] for i in items]))


IMAGES = [
    {"image": torch.tensor([[1.0, 0.1, 0.0]]), "label": 0},
    {"image": torch.tensor([[0.1, 1.0, 0.2]]), "label": 1},
    {"image": torch.tensor([[0.0, 0.2, 1.0]]), "label": 1},  # nearest class 2
    {"image": torch.tensor([[0.9, 0.0, 0.8]]), "label": 2},
    {"image": torch.tensor([[0.0, 0.0, 1.0]]), "label": 2},
]
# 3 classes x 2 templates: (first token, second token) per prompt
PROMPTS = (torch.tensor([[0, 3], [0, 1], [1, 0], [1, 2], [2, 1], [2, 0]]), torch.zeros(6, 2, dtype=torch.bool))


def _callback() -> ZeroShotValidation:
    return ZeroShotValidation(IMAGES, _collate, PROMPTS, templates=2, batch_size=2)


def test_scoring_is_the_prompt_ensemble_classifier():
    student = _Student()
    module = SimpleNamespace(student=student, device=torch.device("cpu"), all_gather=None)
    scores = _callback().score(module)
    protos = prototypes_from_prompt_embeddings(student.encode_text(*PROMPTS).view(3, 2, -1))
    images = torch.stack([F.normalize(i["image"][0], dim=0) for i in IMAGES])
    hand = [int((images[i] @ protos.t()).argmax()) == IMAGES[i]["label"] for i in range(5)]
    assert sum(hand) == 3  # images 2 and 3 fall nearer another class
    assert scores == pytest.approx({1: 60.0})  # 3 classes: no top-5


def test_two_ranks_each_encode_their_shard_and_both_log_the_single_process_scores():
    single = _callback().score(SimpleNamespace(student=_Student(), device=torch.device("cpu"), all_gather=None))
    world, slots, barrier = 2, [None, None], threading.Barrier(2)
    results, students = [None, None], [_Student(), _Student()]

    def all_gather(rank, t):  # what DDP's all_gather gives every rank: (world, *t.shape) in rank order
        slots[rank] = t
        barrier.wait()
        out = torch.stack(list(slots))
        barrier.wait()
        return out

    def run(rank):
        module = SimpleNamespace(
            student=students[rank], device=torch.device("cpu"), all_gather=lambda t: all_gather(rank, t)
        )
        results[rank] = _callback().score(module, rank, world)

    threads = [threading.Thread(target=run, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results[0] == results[1] == single
    assert [sum(s.encoded) for s in students] == [3, 2]  # each rank encoded its block of the 5 images


# -- class names and templates -----------------------------------------------------------------------------------
def _png(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), color).save(buf, format="PNG")
    return buf.getvalue()


COLORS = {"red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220), "white": (250, 250, 250),
          "black": (5, 5, 5), "yellow": (230, 230, 10)}  # fmt: skip


def _tiny_classification_set(tmp_path, name: str = "tinycls") -> str:
    """Six colour classes (2 train, 2 val images each) prepared by ImageNet's preparer from its folder layout."""
    from mmthesis.data.datasets import imagenet

    raw = tmp_path / "raw"
    for split in ("train", "val"):
        for label, color in COLORS.items():
            folder = raw / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(2):
                (folder / f"{label}_{split}_{i}.png").write_bytes(_png(color))
    imagenet.prepare_from_raw(raw, data_root() / name, name=name)
    return name


def test_class_names_come_from_the_manifest_and_imagenet_uses_the_80_templates(tmp_path, monkeypatch):
    monkeypatch.setenv("MMTHESIS_HOME", str(tmp_path / "home"))
    name = _tiny_classification_set(tmp_path)
    assert dataset_class_names(name) == sorted(COLORS)
    assert zero_shot_classes(name, name) == (sorted(COLORS), [PHOTO_TEMPLATE])
    # "imagenet" with fewer than its 1000 classes (the smoke stand-in) keeps its own names
    assert zero_shot_classes("imagenet", name) == (sorted(COLORS), [PHOTO_TEMPLATE])
    from mmthesis.data import zeroshot

    monkeypatch.setattr(zeroshot, "dataset_class_names", lambda folder: [f"n{i:08d}" for i in range(1000)])
    names, templates = zero_shot_classes("imagenet", "imagenet")
    assert names == imagenet_classnames() and len(templates) == 80


# -- short SHRe runs: both readings of model selection -----------------------------------------------------------
FAST_SHRE = [
    "data.train=[shapes]",
    "data.retrieval_eval=[shapes]",
    "data.batch_size=8",
    "train.max_steps=3",
    "train.val_every_n_steps=1",
    "train.val_batches=1",
    "train.zero_shot_val=tinycls",
]


def test_shre_recipes_default_to_the_codes_selection_at_every_scale():
    for recipe in ("shre", "shre-t", "shre-ddp"):
        for scale in ("smoke", "small", "full"):
            assert load_recipe(recipe, scale).train.keep_best == "val/loss:min"
        assert load_recipe(recipe, "full").train.zero_shot_val == "imagenet"  # scored as the code's callback did


@pytest.fixture(scope="module")
def classification_home(smoke_home, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("MMTHESIS_HOME", str(smoke_home))
    if not (data_root() / "tinycls").is_dir():
        _tiny_classification_set(tmp_path_factory.mktemp("tinycls"))
    mp.undo()
    return smoke_home


@pytest.mark.smoke
@pytest.mark.parametrize(("keep_best", "reading"), [("val/loss:min", "code"), ("val/zero_shot_top1:max", "text")])
def test_shre_run_logs_zero_shot_and_keeps_the_best_validation(classification_home, monkeypatch, keep_best, reading):
    monkeypatch.setenv("MMTHESIS_HOME", str(classification_home))
    overrides = FAST_SHRE if reading == "code" else [*FAST_SHRE, f"train.keep_best={keep_best}"]
    config = load_recipe("shre", "smoke", overrides)
    assert config.train.keep_best == keep_best
    result = train_recipe(config, "smoke")
    folder = run_dir(run_name(config, "smoke"), config_hash(config))
    series = read_logged_metrics(folder)
    assert [s for s, _ in series["val/zero_shot_top1"]] == [0, 1, 2]
    assert [s for s, _ in series["val/zero_shot_top5"]] == [0, 1, 2]  # 6 classes
    top1, top5 = ([v for _, v in series[k]] for k in ("val/zero_shot_top1", "val/zero_shot_top5"))
    # 12 val images: every accuracy is a whole number of images, and top-5 of 6 classes is at least top-1
    assert all(abs(v * 12 / 100 - round(v * 12 / 100)) < 1e-4 for v in top1 + top5)
    assert all(b >= a for a, b in zip(top1, top5, strict=True))
    metric, _, mode = keep_best.rpartition(":")
    values = [v for _, v in series[metric]]
    best = max(values) if mode == "max" else min(values)
    assert result.metrics["kept_step"] == values.index(best) + 1
    assert result.metrics["kept_score"] == pytest.approx(best)
    assert any(f"best validation by {metric}" in n for n in result.notes)
    kept = load_trained(folder).model.state_dict()
    ckpt = torch.load(folder / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert all(torch.equal(kept[k], ckpt[f"student.{k}"]) for k in kept)


def test_zero_shot_selection_without_a_zero_shot_source_is_refused(classification_home, monkeypatch):
    monkeypatch.setenv("MMTHESIS_HOME", str(classification_home))
    config = load_recipe("shre", "smoke", [*FAST_SHRE[:-1], "train.keep_best=val/zero_shot_top5:max"])
    with pytest.raises(ConfigError, match="zero_shot_val"):
        train_recipe(config, "smoke")


def test_zero_shot_val_needs_validation_and_a_vision_language_task():
    with pytest.raises(ConfigError, match="zero_shot_val"):
        load_recipe("shre", "smoke", ["train.zero_shot_val=imagenet", "train.val_every_n_steps=0", "train.keep_best="])
    with pytest.raises(ConfigError, match="zero_shot_val"):
        load_recipe("distil-data2vec2", "smoke", ["train.zero_shot_val=imagenet"])
