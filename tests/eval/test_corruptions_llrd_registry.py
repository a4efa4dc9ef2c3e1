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
from mmthesis.eval.finetune import ImageClassifier, layer_decay_param_groups
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


def test_bundled_tasks_load_and_scale_blocks_apply():
    tasks = all_tasks()
    assert {"retrieval-coco", "retrieval-flickr30k", "zero-shot-imagenet1k", "finetune-cifar100", "glue-mnli"} <= set(
        tasks
    )
    assert len([t for t in tasks if t.startswith("glue-")]) == 9
    coco = get_task("retrieval-coco")
    assert (coco.dataset, coco.split) == ("coco", "test") and coco.at_scale("smoke").dataset == "shapes"
    ft = get_task("finetune-imagenet1k").at_scale("smoke")
    assert ft.params["layer_decay"] == 0.81 and ft.params["max_steps"] == 150  # merged key by key
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
    with pytest.raises(ConfigError, match="protocol 'retreival'"):
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
