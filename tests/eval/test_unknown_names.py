"""Every name lookup fails with the one UnknownNameError: known names and a "did you mean"."""

from __future__ import annotations

import pytest

from mmthesis.core.errors import UnknownNameError


def _recipe(name):
    from mmthesis.students.recipes import recipe_file

    return recipe_file(name)


def _task(name):
    from mmthesis.eval.task_registry import get_task

    return get_task(name)


def _protocol(name):
    from mmthesis.eval.protocols import runner

    return runner(name)


def _spec(name):
    from mmthesis.eval.reproduce.specs import load_spec

    return load_spec(name)


def _dataset(name):
    from mmthesis.data.registry import get_dataset

    return get_dataset(name)


def _teacher(name):
    from mmthesis.teachers.registry import get_spec

    return get_spec(name)


def _model_kind(name):
    from mmthesis.eval.adapters import load_model

    return load_model(f"{name}:beitv2", "smoke")


def _classnames(name):
    from mmthesis.eval.zeroshot import classnames_of

    return classnames_of(name, ["a"])


def _templates(name):
    from mmthesis.eval.zeroshot import templates_of

    return templates_of(name)


def _zero_shot_params(name):
    from mmthesis.core.config import from_dict
    from mmthesis.eval.protocols import ZeroShotParams

    return from_dict(ZeroShotParams, {"templates": name})


def _probe_feature(name):
    from mmthesis.core.config import from_dict
    from mmthesis.eval.protocols import LinearProbeParams

    return from_dict(LinearProbeParams, {"feature": name})


def _robustness_base(name):
    from mmthesis.core.config import from_dict
    from mmthesis.eval.robustness import RobustnessParams

    return from_dict(RobustnessParams, {"base": name, "image": {"occlusion": [0.5]}})


def _corruption(name):
    from mmthesis.core.config import from_dict
    from mmthesis.eval.robustness import RobustnessParams

    return from_dict(RobustnessParams, {"image": {name: [0.5]}})


def _glue_task(name):
    from mmthesis.core.config import from_dict
    from mmthesis.eval.glue_finetune import GlueParams

    return from_dict(GlueParams, {"task": name})


def _teacher_size(name):
    from mmthesis.teachers import build_model

    return build_model("beitv2_base_pt", size=name)


def _caption_unit(name):
    from mmthesis.data.counts import check_caption_unit

    return check_caption_unit(name)


def _tokenizer(name):
    from mmthesis.students.recipes import load_recipe
    from mmthesis.students.train import build_tokenizer

    return build_tokenizer(load_recipe("s-smke", "smoke", [f"data.tokenizer={name}"]), "smoke")


@pytest.mark.parametrize(
    "lookup, typo, suggestion",
    [
        (_recipe, "s-smke-cdl-mv", "s-smke-cdl-mb"),
        (_task, "retrieval-cocoa", "retrieval-coco"),
        (_protocol, "retreival", "retrieval"),
        (_spec, "tabel-3", "table-3"),
        (_dataset, "shapse", "shapes"),
        (_teacher, "beitv2_base_p", "beitv2_base_pt"),
        (_model_kind, "techer", "teacher"),
        (_classnames, "imagenet1K", "imagenet1k"),
        (_templates, "imagenet08", "imagenet80"),
        (_zero_shot_params, "smkoe", "smoke"),
        (_probe_feature, "patch-maen", "patch-mean"),
        (_robustness_base, "zero_shot", "zero-shot"),
        (_corruption, "gaussian_nosie", "gaussian_noise"),
        (_glue_task, "SST2", "SST-2"),
        (_teacher_size, "tiyn", "tiny"),
        (_caption_unit, "word", "words"),
        (_tokenizer, "train-wordpeice", "train-wordpiece"),
    ],
)
def test_a_typo_in_every_registry_suggests_the_name(lookup, typo, suggestion):
    with pytest.raises(UnknownNameError) as e:
        lookup(typo)
    line = e.value.one_line()
    assert f"did you mean {suggestion}" in line and "use one of:" in line and "\n" not in line
