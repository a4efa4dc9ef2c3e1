"""The SHRe teacher's top-k ImageNet class probabilities for image-text pairs (Figure 37).

These distributions are SHRe's KD targets (``loss.kd=kl``: softmax of the frozen
supervised teacher's logits); the figure shows how much of an image-text pair's
content a 1000-class distribution keeps.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import torch
from matplotlib.figure import Figure

from mmthesis.data.transforms import denormalise
from mmthesis.eval.reproduce.engine import Context
from mmthesis.eval.reproduce.figures import FigureOutput, FigureSpec, register_figure


@dataclass
class TopClasses:
    probabilities: torch.Tensor  # (B, k) softmax probabilities, descending
    indices: torch.Tensor  # (B, k) class indices


@torch.no_grad()
def top_class_probabilities(teacher, images: torch.Tensor, k: int = 5) -> TopClasses:
    """Top-``k`` of softmax(teacher logits) for each image (images as the data pipeline normalises them)."""
    logits = teacher(images).logits
    probs, idx = logits.float().softmax(dim=-1).topk(k, dim=-1)
    return TopClasses(probs, idx)


def draw_top_classes(images: torch.Tensor, captions: list[str], top: TopClasses, class_names: list[str]) -> Figure:
    """Per pair: the image with its caption above, a horizontal bar chart of the top-k classes below."""
    from mmthesis.eval.reproduce.figures.run_parts import image_axes
    from mmthesis.eval.reproduce.figures.style import OKABE_ITO, new_figure

    n, k = top.indices.shape
    fig, axes = new_figure(2.3 * n, 3.8, nrows=2, ncols=n, squeeze=False, gridspec_kw={"height_ratios": [1.2, 1]})
    for i in range(n):
        ax = axes[0, i]
        ax.imshow(denormalise(images[i]).permute(1, 2, 0).numpy())
        ax.set_title("\n".join(textwrap.wrap(captions[i], 30)[:3]), fontsize=7)
        image_axes(ax)
        bars = axes[1, i]
        names = [textwrap.shorten(class_names[int(c)], 22, placeholder="…") for c in top.indices[i]]
        bars.barh(range(k), (100 * top.probabilities[i]).tolist(), color=OKABE_ITO[0])
        bars.set_yticks(range(k), names, fontsize=6)
        bars.invert_yaxis()
        bars.set_xlim(0, 100)
        bars.set_xlabel("probability (%)")
    return fig


# ------------------------------------------------------------------------------ builder (Figure 37)
@dataclass
class TopClassesParams:
    caption: str
    recipe: str = "shre-t"  # whose supervised teacher, loaded as the recipe loads it at the scale
    dataset: str = "coco"
    split: str = "train"
    pairs: int = 4
    k: int = 5
    seed: int = 0


@register_figure("teacher-top-classes", params=TopClassesParams)
def top_classes_figure(spec: FigureSpec, ctx: Context) -> FigureOutput:
    from mmthesis.core.errors import ConfigError
    from mmthesis.data.transforms import eval_transform
    from mmthesis.eval.reproduce.figures.run_parts import chosen_pairs, data_standin, teacher_description
    from mmthesis.eval.zeroshot import imagenet_classnames
    from mmthesis.students.lightning_module import build_teacher
    from mmthesis.students.recipes import load_recipe

    p: TopClassesParams = spec.params
    config = load_recipe(p.recipe, ctx.scale, [])
    teacher = build_teacher(config)
    classes = int(teacher.config.get("num_classes", 0))
    if classes != 1000:
        raise ConfigError(f"the teacher of {p.recipe} at scale {ctx.scale} has {classes or 'no'} classes, not ImageNet's 1000",
                          "use a recipe whose teacher has ImageNet weights (shre-t, shre)")
    pairs, folder = chosen_pairs(p.dataset, p.split, ctx.scale, p.pairs, p.seed)
    images = torch.stack([eval_transform(config.model.img_size)(img) for _, img, _ in pairs])
    top = top_class_probabilities(teacher, images, p.k)
    names = imagenet_classnames()
    fig = draw_top_classes(images, [c for _, _, c in pairs], top, names)
    what = teacher_description(config)
    standins = data_standin(p.dataset, folder, ctx.scale)
    if config.teacher.name != "resnet50_a1":
        standins.append(f"{what} stands in for ResNet-50-A1")
    size = teacher.config.get("input_size") or config.model.img_size
    caption = (f"{p.caption} Teacher of recipe {p.recipe} at scale {ctx.scale}: {what}, on {config.model.img_size} px "
               f"images (run at {size} px) of {folder} {p.split}.")
    if standins:
        caption += " " + "; ".join(standins) + "."
    values = {
        image_id: {"caption": c, "classes": [names[int(i)] for i in idx], "probabilities": pr.tolist()}
        for (image_id, _, c), idx, pr in zip(pairs, top.indices, top.probabilities, strict=True)
    }
    return FigureOutput(fig, caption, standins=standins, values=values)
