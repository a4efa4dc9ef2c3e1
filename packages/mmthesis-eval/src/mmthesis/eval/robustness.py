"""Modality robustness: retrieval or zero-shot under graded corruption of one modality.

For each corruption kind and strength the corrupted modality is re-embedded
(cached like clean embeddings, keyed by kind, strength and seed) while the
other modality stays clean; the base protocol's headline number at each
strength is a degradation curve. ``missing_image`` (occlusion of the whole
image by the mean colour) and ``missing_text`` (every content token dropped)
are the curves' strength-1 end points, reported on their own. ``relative_*``
is the mean over a curve's strengths of value / clean value: 1 = unaffected.

Zero-shot has no captions: text corruptions are applied to the class prompts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from mmthesis.core.config import from_dict
from mmthesis.core.registry import lookup, unknown_name
from mmthesis.eval.context import EvalContext
from mmthesis.eval.corruptions import IMAGE_CORRUPTIONS, TEXT_CORRUPTIONS
from mmthesis.eval.protocols import (
    TaskOutput,
    ZeroShotParams,
    labelled_image_embeddings,
    params_of,
    register,
    retrieval_inputs,
    retrieval_metrics,
    zero_shot_scores,
    zero_shot_setup,
)
from mmthesis.eval.retrieval import KS
from mmthesis.eval.task_registry import ResolvedTask


@dataclass
class RobustnessParams:
    base: str = "retrieval"  # retrieval (value: mean R@K) or zero-shot (value: top-1)
    image: dict[str, list[float]] = field(default_factory=dict)
    text: dict[str, list[float]] = field(default_factory=dict)
    seed: int = 0
    zero_shot: dict = field(default_factory=dict)  # ZeroShotParams for base zero-shot

    def __post_init__(self) -> None:
        lookup(BASES, "robustness base protocol", self.base)
        for modality, kinds, known in (("image", self.image, IMAGE_CORRUPTIONS), ("text", self.text, TEXT_CORRUPTIONS)):
            for kind in kinds:
                if kind not in known:
                    raise unknown_name(f"{modality} corruption", kind, known)
        if not self.image and not self.text:
            raise ValueError("give at least one image or text corruption with its strengths")


Value = Callable[..., float]  # value(image_c=None, text_c=None) -> the base protocol's headline number


def retrieval_value(ctx: EvalContext, task: ResolvedTask, p: RobustnessParams) -> Value:
    def value(image_c=None, text_c=None) -> float:
        return retrieval_metrics(*retrieval_inputs(ctx, task, image_c, text_c), KS)[2]["mean"]

    return value


def zero_shot_value(ctx: EvalContext, task: ResolvedTask, p: RobustnessParams) -> Value:
    zp = from_dict(ZeroShotParams, p.zero_shot, prefix="params.zero_shot.")
    images, names, templates = zero_shot_setup(ctx, task, zp)

    def value(image_c=None, text_c=None) -> float:
        image_emb = labelled_image_embeddings(ctx, task, image_c)
        return zero_shot_scores(ctx, task, zp, image_emb, names, templates, images.labels, text_c)[1]["top1"]

    return value


# the task YAML's ``params.base`` -> (builder of its value function, what the value is)
BASES: dict[str, tuple[Callable[[EvalContext, ResolvedTask, RobustnessParams], Value], str]] = {
    "retrieval": (retrieval_value, "mean R@K (percent)"),
    "zero-shot": (zero_shot_value, "zero-shot top-1 (percent)"),
}


@register("robustness", needs=("image", "text"))
def run_robustness(ctx: EvalContext, task: ResolvedTask) -> TaskOutput:
    p = params_of(RobustnessParams, task)
    build_value, value_name = BASES[p.base]
    value = build_value(ctx, task, p)
    clean = value()
    curves: dict[str, dict[str, list[float]]] = {}
    for modality, kinds in (("image", p.image), ("text", p.text)):
        for kind, strengths in kinds.items():
            vals = [
                clean
                if s == 0
                else (value(image_c=(kind, s, p.seed)) if modality == "image" else value(text_c=(kind, s, p.seed)))
                for s in strengths
            ]
            curves[f"{modality}/{kind}"] = {"strength": list(strengths), "value": vals}
    metrics: dict = {
        "clean": clean,
        "value": value_name,
    }
    metrics["missing_image"] = value(image_c=("occlusion", 1.0, p.seed))
    metrics["missing_text"] = value(text_c=("token_dropout", 1.0, p.seed))
    for name, curve in curves.items():
        metrics[f"relative_{name.replace('/', '_')}"] = (
            sum(v / clean for v in curve["value"]) / len(curve["value"]) if clean else float("nan")
        )
    metrics["curves"] = curves
    return TaskOutput(metrics)
