"""Figures 4 and 5: seeded synthetic distributions (the thesis drew random bars; no data or model involved)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmthesis.eval.reproduce.engine import Context
from mmthesis.eval.reproduce.figures import FigureOutput, FigureSpec, register_figure
from mmthesis.eval.reproduce.figures.style import OKABE_ITO, new_figure


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    e = np.exp(z - z.max())
    return e / e.sum()


def smooth_logits(classes: int, true_class: int, margin: float, seed: int) -> np.ndarray:
    """Random logits (standard normal, ``seed``) with ``margin`` added to the true class, so it is the mode."""
    if not 0 <= true_class < classes:
        raise ValueError(f"true_class must be in [0, {classes}), got {true_class}")
    logits = np.random.default_rng(seed).standard_normal(classes)
    logits[true_class] += margin
    return logits


@dataclass
class TargetParams:
    classes: int = 10
    true_class: int = 3
    margin: float = 2.0  # added to the true class's random logit
    seed: int = 0

    def __post_init__(self) -> None:
        if self.classes < 2:
            raise ValueError(f"classes must be at least 2, got {self.classes}")
        if not 0 <= self.true_class < self.classes:
            raise ValueError(f"true_class must be in [0, {self.classes}), got {self.true_class}")


@register_figure("target-distributions", params=TargetParams)
def target_distributions(spec: FigureSpec, ctx: Context) -> FigureOutput:
    """Figure 4: a one-hot target next to a smooth distribution over the same classes."""
    p: TargetParams = spec.params
    one_hot = np.zeros(p.classes)
    one_hot[p.true_class] = 1.0
    smooth = softmax(smooth_logits(p.classes, p.true_class, p.margin, p.seed))
    fig, axes = new_figure(6.4, 2.6, ncols=2, sharey=True)
    classes = np.arange(p.classes)
    for ax, probs, name, colour in ((axes[0], one_hot, "one-hot", OKABE_ITO[0]), (axes[1], smooth, "smooth", OKABE_ITO[1])):
        ax.bar(classes, probs, color=colour)
        ax.set_title(f"{name} distribution")
        ax.set_xlabel("class")
        ax.set_xticks(classes)
        ax.grid(axis="x", visible=False)
    axes[0].set_ylabel("probability")
    axes[0].set_ylim(0, 1.05)
    caption = (
        f"Synthetic illustration: a one-hot target (class {p.true_class}) vs a smooth distribution over {p.classes} "
        f"classes (softmax of standard-normal logits with seed {p.seed}, +{p.margin:g} on class {p.true_class})."
    )
    values = {"classes": classes.tolist(), "one_hot": one_hot.tolist(), "smooth": smooth.round(6).tolist()}
    return FigureOutput(fig, caption, status="illustration", values=values)


@dataclass
class TemperatureParams:
    classes: int = 10
    true_class: int = 3
    margin: float = 3.0
    temperature: float = 4.0  # Hinton et al.'s softened softmax, p_i = exp(z_i / T) / sum_j exp(z_j / T)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if not 0 <= self.true_class < self.classes:
            raise ValueError(f"true_class must be in [0, {self.classes}), got {self.true_class}")


@register_figure("temperature-smoothing", params=TemperatureParams)
def temperature_smoothing(spec: FigureSpec, ctx: Context) -> FigureOutput:
    """Figure 5: a teacher's distribution (T = 1) and the same logits softened with temperature T."""
    p: TemperatureParams = spec.params
    logits = smooth_logits(p.classes, p.true_class, p.margin, p.seed)
    teacher, soft = softmax(logits), softmax(logits, p.temperature)
    fig, ax = new_figure(5.2, 3.0)
    classes = np.arange(p.classes)
    width = 0.4
    ax.bar(classes - width / 2, teacher, width, label="teacher (T = 1)", color=OKABE_ITO[0])
    ax.bar(classes + width / 2, soft, width, label=f"smoothed (T = {p.temperature:g})", color=OKABE_ITO[1])
    ax.set_xlabel("class")
    ax.set_ylabel("probability")
    ax.set_xticks(classes)
    ax.grid(axis="x", visible=False)
    ax.legend(frameon=False)
    caption = (
        f"Synthetic illustration: a teacher distribution over {p.classes} classes (softmax of seeded random logits, "
        f"seed {p.seed}) and its temperature-smoothed version softmax(z / {p.temperature:g})."
    )
    values = {
        "classes": classes.tolist(),
        "logits": logits.round(6).tolist(),
        "teacher": teacher.round(6).tolist(),
        "smoothed": soft.round(6).tolist(),
        "temperature": p.temperature,
    }
    return FigureOutput(fig, caption, status="illustration", values=values)
