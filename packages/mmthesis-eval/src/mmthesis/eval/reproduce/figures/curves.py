"""Figures 19, 27, 30 and 31: metrics logged during training (logs/metrics.csv), one or more panels of lines.

Each line is one logged series of one run; the runs are trained (or reused from
the run cache) exactly as the results tables train them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mmthesis.eval.reproduce.engine import Context, PlannedStep
from mmthesis.eval.reproduce.figures import FigureOutput, FigureSpec, register_figure
from mmthesis.eval.reproduce.figures.runs import TrainedRun, logged_series, plan_runs, trained_run
from mmthesis.eval.reproduce.figures.style import new_figure


@dataclass
class Line:
    recipe: str
    series: str  # a metric of the run's logs/metrics.csv, e.g. val/loss
    label: str
    overrides: list[str] = field(default_factory=list)
    scale_by: float = 1.0  # unit conversion, e.g. 100 for a fraction shown in %
    style: str = "-"  # matplotlib line style: "-" solid, "--" dashed, ":" dotted
    marker: str = ""  # e.g. "o" for sparse series such as validation points


@dataclass
class Panel:
    ylabel: str  # with its unit, e.g. "MSE loss" or "mean R@1 (%)"
    lines: list[Line]
    title: str = ""
    logy: bool = False

    def __post_init__(self) -> None:
        if not self.lines:
            raise ValueError("a panel needs at least one line")


@dataclass
class CurvesParams:
    panels: list[Panel]
    caption: str  # what the figure shows; the engine adds the scale, runs and stand-ins
    xlabel: str = "training step"
    width: float = 6.0
    height: float = 3.4

    def __post_init__(self) -> None:
        if not self.panels:
            raise ValueError("panels must list at least one panel")


def _runs(params: CurvesParams) -> list[tuple[str, list[str]]]:
    return list(dict.fromkeys((line.recipe, tuple(line.overrides)) for p in params.panels for line in p.lines))  # type: ignore[arg-type]


def plan(spec: FigureSpec, ctx: Context) -> list[PlannedStep]:
    return plan_runs([(r, list(o)) for r, o in _runs(spec.params)], ctx)


@register_figure("training-curves", plan=plan, params=CurvesParams)
def training_curves(spec: FigureSpec, ctx: Context) -> FigureOutput:
    p: CurvesParams = spec.params
    wanted = _runs(p)
    if ctx.progress is not None:
        ctx.progress.expect(len(wanted))
    runs: dict[tuple[str, tuple[str, ...]], TrainedRun] = {
        (recipe, overrides): trained_run(recipe, list(overrides), ctx) for recipe, overrides in wanted  # type: ignore[misc]
    }
    fig, axes = new_figure(p.width * (1 if len(p.panels) == 1 else 0.9), p.height, ncols=len(p.panels), squeeze=False)
    values: dict[str, dict[str, dict[str, list[float]]]] = {}
    for ax, panel in zip(axes[0], p.panels, strict=True):
        plotted = values.setdefault(panel.title or panel.ylabel, {})
        for line in panel.lines:
            run = runs[(line.recipe, tuple(line.overrides))]
            points = logged_series(run, line.series)
            steps = [s for s, _ in points]
            ys = [v * line.scale_by for _, v in points]
            ax.plot(steps, ys, line.style, marker=line.marker or None, markersize=3, label=line.label)
            plotted[line.label] = {"run": run.label, "series": line.series, "step": steps, "value": ys}
        ax.set_xlabel(p.xlabel)
        ax.set_ylabel(panel.ylabel)
        if panel.title:
            ax.set_title(panel.title)
        if panel.logy:
            ax.set_yscale("log")
        ax.legend(frameon=False)
    used = list(runs.values())
    caption = (
        f"{p.caption} Scale {ctx.scale}; runs: "
        + "; ".join(f"{r.label} ({_steps(r)} steps)" for r in used)
        + "."
    )
    standins = _standins(used, ctx.scale)
    if standins:
        caption += " " + " ".join(standins)
    return FigureOutput(fig, caption, records=[r.record for r in used], standins=standins, values=values)


def _steps(run: TrainedRun) -> str:
    steps = run.result.metrics.get("steps")
    return f"{steps:.0f}" if isinstance(steps, (int, float)) else "?"


def _standins(runs: list[TrainedRun], scale: str) -> list[str]:
    """What the runs trained on at a reduced scale (the thesis trained on the full datasets)."""
    if scale == "full":
        return []
    out = []
    for r in runs:
        data = r.result.config.get("data", {}).get("train") or []
        if data:
            out.append(f"{r.label}: {scale}-scale training data {', '.join(map(str, data))} stand in for the thesis's data.")
    return out
