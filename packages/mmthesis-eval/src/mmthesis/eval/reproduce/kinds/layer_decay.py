"""``layer-decay`` kind (Table 5): the per-layer learning rates of layer-wise LR decay.

The rates come from ``mmthesis.eval.finetune.layer_learning_rates``, the function
the finetuning's parameter groups use, with the base LR and decay of the eval
task's full configuration and the block count of the recipe's image encoder, once
per reading of REFERENCE.md §10 item 1 (the code's 8 blocks, the text's 6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from mmthesis.eval.reproduce.engine import Built, Context, title
from mmthesis.eval.reproduce.render import RenderedTable
from mmthesis.eval.reproduce.specs import Kind, SpecHeader, register_kind


@dataclass
class Reading:
    name: str
    overrides: list[str] = field(default_factory=list)


@dataclass
class LayerDecaySpec(SpecHeader):
    task: str = ""  # the finetuning eval task whose lr and layer_decay are used
    recipe: str = ""  # the model being finetuned (its image encoder's block count)
    readings: list[Reading] = field(default_factory=list)
    published: list[float] = field(default_factory=list)  # layers 0..L+1
    notes: list[str] = field(default_factory=list)


def thesis_format(v: float) -> str:
    """2.3e-4 / 1e-3: two significant digits, as the thesis prints learning rates."""
    exp = math.floor(math.log10(abs(v)))
    mantissa = f"{v / 10**exp:.1f}".rstrip("0").rstrip(".")
    if mantissa == "10":
        mantissa, exp = "1", exp + 1
    return f"{mantissa}e{exp}"


def build(spec: LayerDecaySpec, ctx: Context) -> Built:
    from mmthesis.eval.finetune import FinetuneParams, layer_learning_rates
    from mmthesis.eval.protocols import params_of
    from mmthesis.eval.task_registry import get_task
    from mmthesis.students.recipes import load_recipe

    params = params_of(FinetuneParams, get_task(spec.task).at_scale("full"))
    rows: dict[str, list[float]] = {}
    blocks: dict[str, int] = {}
    for reading in spec.readings:
        config = load_recipe(spec.recipe, "full", list(reading.overrides))
        blocks[reading.name] = config.model.image.blocks
        rows[reading.name] = layer_learning_rates(params.lr, params.layer_decay, config.model.image.blocks)
    width = max([len(spec.published), *(len(r) for r in rows.values())])
    header = ["Layer no.", *(str(i) for i in range(width))]
    pad = lambda cells: cells + ["-"] * (width - len(cells))  # noqa: E731
    body = [["Learning rate (published)", *pad([thesis_format(v) for v in spec.published])]]
    notes = [
        f"Reproduced by `mmthesis.eval.finetune.layer_learning_rates` (the function the finetuning's parameter groups use) "
        f"with task {spec.task}'s full configuration: base LR {params.lr:g}, layer decay {params.layer_decay:g}; "
        "lr_l = lr · decay^(L + 1 − l), layer 0 = patch embedding, CLS and positions, layers 1..L = the Transformer "
        "blocks, layer L + 1 = the new LayerNorm + linear head. Configuration, not training: the same at every scale."
    ]
    for name, rates in rows.items():
        cells = [thesis_format(v) for v in rates]
        same = cells == [thesis_format(v) for v in spec.published]
        marked = cells if same else [c + (" ≠" if i >= len(spec.published) or c != thesis_format(spec.published[i]) else "") for i, c in enumerate(cells)]
        body.append([f"Learning rate ({name}, L = {blocks[name]})", *pad(marked)])
        notes.append(
            f"{name}: L = {blocks[name]} blocks -> layers 0..{blocks[name] + 1}; "
            + ("equals the published row." if same else "differs from the published row (marked ≠).")
        )
    notes += spec.notes
    values = {"published": spec.published, "reproduced": rows, "lr": params.lr, "layer_decay": params.layer_decay}
    return Built(RenderedTable(title(spec, None), header, body, notes), values, status="derived")


register_kind(Kind("layer-decay", "derived", LayerDecaySpec, build, scale_independent=True))
