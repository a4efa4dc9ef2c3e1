"""Figure 26: memory per stage of one momentum-encoder training step, in the two orders the thesis compared.

The thesis measured GPU memory on an RTX 4090 (24 GB): with the EMA update and
the momentum forward after the student forward the step ran out of memory;
moved before it, the step fit. ``mmthesis.students.memory_profile.stage_memory``
measures the same stages on this machine: ``torch.cuda.max_memory_allocated`` on
a GPU, and on CPU a documented substitute that the y-axis and caption name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mmthesis.eval.reproduce.engine import Context
from mmthesis.eval.reproduce.figures import FigureOutput, FigureSpec, register_figure
from mmthesis.eval.reproduce.figures.style import OKABE_ITO, new_figure

MIB = 1024**2


@dataclass
class Order:
    label: str
    momentum_first: bool  # EMA update + momentum forward before the student forward


@dataclass
class MemoryParams:
    caption: str
    recipe: str = "s-smke-itc-momentum"
    overrides: list[str] = field(default_factory=list)
    orders: list[Order] = field(
        default_factory=lambda: [Order("momentum after student forward", False), Order("momentum before student forward", True)]
    )

    def __post_init__(self) -> None:
        if not self.orders:
            raise ValueError("orders must list at least one order")


@register_figure("memory-stages", params=MemoryParams)
def memory_stages(spec: FigureSpec, ctx: Context) -> FigureOutput:
    from mmthesis.students.memory_profile import stage_memory
    from mmthesis.students.recipes import load_recipe

    p: MemoryParams = spec.params
    config = load_recipe(p.recipe, ctx.scale, list(p.overrides))
    if ctx.progress is not None:
        ctx.progress.expect(len(p.orders))
    profiles = []
    for order in p.orders:
        if ctx.progress is not None:
            ctx.progress.step("measure", f"{p.recipe}: {order.label}")
        profiles.append(stage_memory(config, ctx.scale, momentum_first=order.momentum_first))
    methods = sorted({prof.method for prof in profiles})
    devices = sorted({prof.device for prof in profiles})
    fig, axes = new_figure(3.3 * len(p.orders), 3.6, ncols=len(p.orders), sharey=True, squeeze=False)
    values: dict[str, Any] = {}
    for i, (ax, order, prof) in enumerate(zip(axes[0], p.orders, profiles, strict=True)):
        names = [name for name, _ in prof.stages]
        mib = [b / MIB for _, b in prof.stages]
        ax.bar(range(len(mib)), mib, color=OKABE_ITO[i % len(OKABE_ITO)])
        ax.set_xticks(range(len(mib)), names, rotation=35, ha="right")
        ax.set_title(order.label)
        ax.grid(axis="x", visible=False)
        values[order.label] = {"stage": names, "bytes": [int(b) for _, b in prof.stages], "momentum_first": order.momentum_first}
    on_gpu = all(d.startswith("cuda") for d in devices)
    # the method is long (the CPU substitute names its profiler): the axis says GPU or CPU, the caption the method
    axes[0][0].set_ylabel("GPU memory (MiB)" if on_gpu else "CPU memory, substitute (MiB)")
    caption = f"{p.caption} Recipe {p.recipe} at scale {ctx.scale}; measured with {', '.join(methods)} on {', '.join(devices)}."
    standins = []
    if not on_gpu:
        standins.append(
            f"{', '.join(methods)} on {', '.join(devices)} stands in for GPU memory (torch.cuda.max_memory_allocated) "
            "on the thesis's RTX 4090 24 GB"
        )
        caption += " On CPU this is a substitute for GPU memory, not a GPU measurement."
    if ctx.scale != "full":
        standins.append(f"the {ctx.scale}-scale model and batch stand in for the full-size S-SMKE step")
    values["method"], values["device"] = methods, devices
    return FigureOutput(fig, caption, standins=standins, values=values)
