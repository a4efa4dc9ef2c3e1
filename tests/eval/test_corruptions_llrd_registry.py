import pytest
import torch

from mmthesis.core.errors import ConfigError, UnknownNameError
from mmthesis.eval.corruptions import (
    gaussian_blur,
    gaussian_noise,
    occlusion,
    occlusion_mask,
    token_dropout,
    token_shuffle,
)
from mmthesis.eval.finetune import ImageClassifier, layer_decay_param_groups, layer_learning_rates
from mmthesis.eval.task_registry import all_tasks, get_task, load_task_file
from mmthesis.teachers import build_model


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_image_corruptions_identity_determinism_and_exact_occlusion():
    x = torch.rand(3, 20, 30, generator=gen(1))
    for fn in (gaussian_noise, gaussian_blur, occlusion):
        assert torch.equal(fn(x, 0.0, gen()), x)
    assert torch.equal(gaussian_noise(x, 0.2, gen(5)), gaussian_noise(x, 0.2, gen(5)))
    assert not torch.equal(gaussian_noise(x, 0.2, gen(5)), gaussian_noise(x, 0.2, gen(6)))
    assert gaussian_blur(x, 2.0).std() < x.std()
    for f in (0.1, 0.25, 0.37, 1.0):
        assert int(occlusion_mask(20, 30, f, gen()).sum()) == round(f * 600)
    full = occlusion(x, 1.0, gen())
    assert torch.allclose(full[:, 0, 0], torch.tensor([0.485, 0.456, 0.406])) and (full == full[:, :1, :1]).all()


def test_text_corruptions_keep_special_tokens():
    ids = torch.tensor([[2, 10, 11, 12, 13, 3, 0, 0], [2, 20, 3, 0, 0, 0, 0, 0]])
    mask = ids == 0
    assert torch.equal(token_dropout(ids, mask, 0.0, gen())[0], ids)
    dropped, dmask = token_dropout(ids, mask, 1.0, gen())
    assert dropped[0, :2].tolist() == [2, 3] and dmask[0].tolist() == [False, False] + [True] * 6
    shuffled, smask = token_shuffle(ids, mask, 1.0, gen(3))
    assert torch.equal(smask, mask) and shuffled[0, 0] == 2 and shuffled[0, 5] == 3
    assert sorted(shuffled[0, 1:5].tolist()) == [10, 11, 12, 13]
    assert torch.equal(token_shuffle(ids, mask, 0.5, gen(4))[0], token_shuffle(ids, mask, 0.5, gen(4))[0])


def test_layer_decay_learning_rates_are_exact():
    backbone = build_model("data2vec2_image", size="tiny")  # 6 flattened blocks
    model = ImageClassifier(backbone, 5)
    groups = layer_decay_param_groups(model, 6, lr=1e-3, weight_decay=0.05, layer_decay=0.75)
    by_name = {n: g for g in groups for n in g["names"]}
    assert by_name["backbone.patch_embed.proj.weight"]["lr"] == pytest.approx(1e-3 * 0.75**7)
    assert by_name["backbone.blocks.0.attn.qkv.weight"]["lr"] == pytest.approx(1e-3 * 0.75**6)
    assert by_name["backbone.blocks.5.mlp.fc1.weight"]["lr"] == pytest.approx(1e-3 * 0.75**1)
    assert by_name["head.weight"]["lr"] == pytest.approx(1e-3) and by_name["norm.weight"]["weight_decay"] == 0.0
    assert by_name["backbone.cls_token"]["weight_decay"] == 0.0 and by_name["head.weight"]["weight_decay"] == 0.05
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_layer_learning_rates_are_table_5s_formula_and_the_groups_carry_them():
    rates = layer_learning_rates(1e-3, 0.81, 6)  # Table 5: layers 0..7, lr_l = 1e-3 * 0.81 ** (7 - l)
    assert len(rates) == 8 and rates[-1] == 1e-3 and rates[-2] == pytest.approx(8.1e-4)
    assert rates[0] == pytest.approx(1e-3 * 0.81**7) and round(rates[0], 5) == 2.3e-4
    assert all(a < b for a, b in zip(rates, rates[1:], strict=False))
    assert layer_learning_rates(2e-3, 1.0, 0) == [2e-3, 2e-3]
    with pytest.raises(ValueError, match="num_blocks"):
        layer_learning_rates(1e-3, 0.81, -1)
    # a tiny model: every parameter's group has its layer's rate, and every layer 0..L+1 has parameters
    backbone = build_model("data2vec2_image", size="tiny")
    blocks = len(backbone.blocks)
    model = ImageClassifier(backbone, 3)
    rates = layer_learning_rates(1e-3, 0.81, blocks)
    groups = layer_decay_param_groups(model, blocks, lr=1e-3, weight_decay=0.01, layer_decay=0.81)
    assert {g["layer"] for g in groups} == set(range(blocks + 2))
    for g in groups:
        assert g["lr"] == rates[g["layer"]]
    opt = torch.optim.AdamW([{k: v for k, v in g.items() if k != "names"} for g in groups])
    lr_of = {id(p): group["lr"] for group in opt.param_groups for p in group["params"]}
    named = dict(model.named_parameters())
    assert lr_of[id(named["backbone.patch_embed.proj.weight"])] == rates[0]
    assert lr_of[id(named[f"backbone.blocks.{blocks - 1}.mlp.fc2.weight"])] == rates[blocks]
    assert lr_of[id(named["head.bias"])] == rates[blocks + 1] == 1e-3


def test_finetune_tasks_hold_table_32s_layer_decay_at_full_scale():
    decay = {
        n: get_task(f"finetune-{n}").at_scale("full").params["layer_decay"]
        for n in ("imagenet1k", "cifar10", "cifar100")
    }
    assert decay == {"imagenet1k": 0.81, "cifar10": 0.75, "cifar100": 0.75}


def test_bundled_tasks_load_and_scale_blocks_apply():
    tasks = all_tasks()
    assert {"retrieval-coco", "retrieval-flickr30k", "zero-shot-imagenet1k", "finetune-cifar100", "glue-mnli"} <= set(
        tasks
    )
    assert len([t for t in tasks if t.startswith("glue-")]) == 9
    coco = get_task("retrieval-coco")
    assert (coco.dataset, coco.split) == ("coco", "test") and coco.at_scale("smoke").dataset == "shapes"
    ft = get_task("finetune-imagenet1k").at_scale("smoke")
    assert ft.params["layer_decay"] == 0.81 and ft.params["max_steps"] == 60  # merged key by key
    with pytest.raises(UnknownNameError, match="unknown eval task"):
        get_task("retrieval-cocoa")


def test_task_files_are_strict(tmp_path):
    bad = tmp_path / "x.yaml"
    bad.write_text(
        "name: x\nversion: 1\ndescription: d\nprotocol: retrieval\ndataset: shapes\nsplit: test\nmetrics: [mean]\nsplitt: a\n"
    )
    with pytest.raises(ConfigError, match="x.yaml: unknown config key 'splitt'"):
        load_task_file(bad)
    bad.write_text(
        "name: y\nversion: 1\ndescription: d\nprotocol: retrieval\ndataset: shapes\nsplit: test\nmetrics: [mean]\n"
    )
    with pytest.raises(ConfigError, match="names the task 'y'"):
        load_task_file(bad)
    bad.write_text(
        "name: x\nversion: 1\ndescription: d\nprotocol: retreival\ndataset: shapes\nsplit: test\nmetrics: [mean]\n"
    )
    with pytest.raises(UnknownNameError, match="x.yaml: unknown eval protocol 'retreival', did you mean retrieval"):
        load_task_file(bad)


def test_task_files_include_shared_bases_which_are_not_tasks(tmp_path):
    (tmp_path / "_base.yaml").write_text(
        "version: 1\nprotocol: retrieval\ndataset: shapes\nsplit: test\nmetrics: [mean]\nparams: {a: 1, b: 2}\n"
    )
    (tmp_path / "x.yaml").write_text("include: _base.yaml\nname: x\ndescription: d\nparams: {b: 3}\n")
    assert set(all_tasks(tmp_path)) == {"x"}
    x = get_task("x", tmp_path)
    assert (x.dataset, x.params) == ("shapes", {"a": 1, "b": 3})
    with pytest.raises(UnknownNameError):
        get_task("_base", tmp_path)


def test_bundled_task_bases_are_not_tasks_and_glue_resolves_as_before():
    assert not [t for t in all_tasks() if t.startswith("_")]
    cola = get_task("glue-cola")
    assert cola.at_scale("full").to_json() == {
        "name": "glue-cola", "version": 2, "protocol": "glue", "scale": "full", "dataset": "glue", "split": "dev",
        "train_split": "train", "metrics": ["mcc"],
        "params": {
            "task": "CoLA", "epochs": 20, "batch_size": 16, "lr": 1e-05, "betas": [0.9, 0.98], "eps": 1e-06,
            "weight_decay": 0.1, "warmup_fraction": 0.1, "head_dropout": 0.1, "max_length": 256,
        },
    }  # fmt: skip
    smoke = get_task("glue-mnli").at_scale("smoke")
    assert smoke.split == "dev_matched" and smoke.metrics == ["accuracy_m", "accuracy_mm"]
    assert {k: smoke.params[k] for k in ("task", "epochs", "batch_size", "lr", "max_length")} == {
        "task": "MNLI", "epochs": 8, "batch_size": 8, "lr": 0.0003, "max_length": 64
    }  # fmt: skip
