"""``figure`` kind: a thesis figure drawn by a registered builder (see ``mmthesis.eval.reproduce.figures``)."""

from __future__ import annotations

from mmthesis.eval.reproduce.engine import Context, PlannedStep
from mmthesis.eval.reproduce.figures import FigureOutput, FigureSpec, get_builder, parse_spec
from mmthesis.eval.reproduce.figures.style import figure_style
from mmthesis.eval.reproduce.specs import Kind, register_kind


def build(spec: FigureSpec, ctx: Context) -> FigureOutput:
    """Run the spec's builder inside the thesis style (rcParams apply to artists as they are created)."""
    with figure_style():
        out = get_builder(spec.figure).build(spec, ctx)
    if not isinstance(out, FigureOutput):
        raise TypeError(f"figure builder {spec.figure!r} returned {type(out).__name__}, not FigureOutput")
    return out


def plan(spec: FigureSpec, ctx: Context) -> list[PlannedStep]:
    builder = get_builder(spec.figure)
    steps = builder.plan(spec, ctx) if builder.plan is not None else []
    return [*steps, PlannedStep("build", f"{spec.name}: draw {spec.figure} ({spec.category})", cached=False, estimate_s=2.0)]


register_kind(Kind("figure", "figure", FigureSpec, build, plan, parse=parse_spec))
