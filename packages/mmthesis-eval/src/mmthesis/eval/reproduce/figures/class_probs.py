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
