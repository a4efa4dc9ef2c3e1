"""Figures 32 and 33: summary charts drawn from the reproduced tables plus quoted literature points.

A model's point comes from a table row (``table: N, row: NAME``): its reproduced
cells at this scale when the row is computed here, its published cells when the
table quotes it. Points only in the literature carry their numbers in the spec
(``quoted: ...``). Quoted points are drawn hollow / dashed and the legend says
so; reproduced ones are filled. A table whose JSON is missing or was built at
another scale is built first, by the same engine.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmthesis.core.errors import ConfigError
from mmthesis.eval.reproduce.engine import Context, PlannedStep, default_out_dir
from mmthesis.eval.reproduce.figures import FigureOutput, FigureSpec, register_figure
from mmthesis.eval.reproduce.figures.style import OKABE_ITO, new_figure


# -- table cells ------------------------------------------------------------------------------------
class Tables:
    """The reproduced tables a chart reads (thesis/tables/table-N.json), built at ``ctx.scale`` when missing."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.folder = ctx.tables_dir or default_out_dir()
        self._loaded: dict[int, tuple[dict[str, Any], list[str]]] = {}
        self.records: list[str] = []
        self.used: list[int] = []

    def path(self, number: int) -> Path:
        return self.folder / f"table-{number}.json"

    def is_current(self, number: int) -> bool:
        try:
            return json.loads(self.path(number).read_text(encoding="utf-8")).get("scale") == self.ctx.scale
        except (OSError, ValueError):
            return False

    def load(self, number: int) -> tuple[dict[str, Any], list[str]]:
        if number in self._loaded:
            return self._loaded[number]
        from mmthesis.eval.reproduce.engine import reproduce
        from mmthesis.eval.reproduce.specs import load_spec

        if not self.is_current(number):
            if self.ctx.progress is not None:
                self.ctx.progress.step("build", f"table-{number} ({self.ctx.scale})")
            reproduce(f"table-{number}", self.ctx.scale, self.folder, runs_root=self.ctx.runs_root)
        data = json.loads(self.path(number).read_text(encoding="utf-8"))
        spec = load_spec(f"table-{number}")
        columns = [c.name for c in getattr(spec, "columns", [])]
        if not columns:
            raise ConfigError(f"table-{number} has no result columns to chart", "name a results table in the figure spec")
        self._loaded[number] = (data, columns)
        self.records += [r for r in data.get("records", []) if r not in self.records]
        self.used.append(number)
        return data, columns

    def cell(self, number: int, row: str, columns: list[str]) -> tuple[float | None, bool, str]:
        """(mean of ``columns`` in ``row``, quoted?, why missing): reproduced cells when the row is computed here,
        else the published cells of a row the table quotes."""
        data, names = self.load(number)
        unknown = [c for c in columns if c not in names]
        if unknown:
            raise ConfigError(f"table-{number} has no column(s) {unknown}", f"use some of: {', '.join(names)}")
        entry = data["values"].get(row)
        if entry is None:
            raise ConfigError(f"table-{number} has no row {row!r}", f"use one of: {', '.join(data['values'])}")
        idx = [names.index(c) for c in columns]
        if "reproduced" in entry:
            cells = [entry["reproduced"][i] for i in idx]
            if all(isinstance(v, (int, float)) for v in cells):
                return float(np.mean(cells)), False, ""
            return None, False, next(str(v) for v in cells if not isinstance(v, (int, float)))
        if "quoted" in entry:
            cells = [entry["published"][i] for i in idx]
            if all(isinstance(v, (int, float)) for v in cells):
                return float(np.mean(cells)), True, ""
            return None, True, "not published"
        return None, False, entry.get("missing", "not computed")


def plan_tables(numbers: list[int], ctx: Context) -> list[PlannedStep]:
    from mmthesis.eval.reproduce.engine import plan

    tables = Tables(ctx)
    steps: list[PlannedStep] = []
    for n in dict.fromkeys(numbers):
        if tables.is_current(n):
            steps.append(PlannedStep("build", f"table-{n} ({ctx.scale})", cached=True))
        else:
            steps += plan(f"table-{n}", ctx.scale, runs_root=ctx.runs_root)
    return steps


# -- Figure 32: radar charts ------------------------------------------------------------------------
@dataclass
class Axis:
    name: str
    columns: list[str] = field(default_factory=list)  # the table columns averaged on this axis (one = that column)
    table: int | None = None  # the table of this axis, for models that name none


@dataclass
class RadarModel:
    """A model of one radar: its cells from tables (``table`` or each axis's table; ``rows`` and ``columns``
    override the row name per table and the columns per axis), or ``quoted`` values, one per axis."""

    name: str
    table: int | None = None
    rows: dict[str, str] = field(default_factory=dict)  # table number -> row name; default the model's name
    columns: dict[str, list[str]] = field(default_factory=dict)  # axis name -> the columns this model uses there
    quoted: list[float] = field(default_factory=list)
    source: str = ""  # where quoted numbers come from

    def cell_source(self, axis: Axis) -> tuple[int, str, list[str]]:
        table = self.table if self.table is not None else axis.table
        if table is None:
            raise ConfigError(f"radar model {self.name!r}: axis {axis.name!r} names no table", "give the axis or the model a table")
        columns = self.columns.get(axis.name, axis.columns)
        if not columns:
            raise ConfigError(f"radar model {self.name!r}: axis {axis.name!r} names no columns", "add columns: [...]")
        return table, self.rows.get(str(table), self.name), columns


@dataclass
class RadarPanel:
    title: str
    axes: list[Axis]
    models: list[RadarModel]

    def __post_init__(self) -> None:
        if len(self.axes) < 3:
            raise ValueError(f"radar panel {self.title!r} needs at least 3 axes, got {len(self.axes)}")
        axis_names = {a.name for a in self.axes}
        for m in self.models:
            unknown = sorted(set(m.columns) - axis_names)
            if unknown:
                raise ValueError(f"model {m.name!r} overrides columns of unknown axes {unknown}")
            if m.quoted and len(m.quoted) != len(self.axes):
                raise ValueError(f"model {m.name!r} in {self.title!r} has {len(m.quoted)} quoted values for {len(self.axes)} axes")


@dataclass
class RadarParams:
    caption: str
    panels: list[RadarPanel]


def min_max(columns: np.ndarray) -> np.ndarray:
    """Per-axis min-max normalisation of a (models, axes) array, NaN kept; an axis where all models are equal -> 1."""
    lo, hi = np.nanmin(columns, axis=0), np.nanmax(columns, axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    out = (columns - lo) / span
    return np.where(hi > lo, out, np.where(np.isnan(columns), np.nan, 1.0))


def _radar_tables(params: RadarParams) -> list[int]:
    return [m.cell_source(a)[0] for p in params.panels for m in p.models if not m.quoted for a in p.axes]


def plan_radar(spec: FigureSpec, ctx: Context) -> list[PlannedStep]:
    return plan_tables(_radar_tables(spec.params), ctx)


@register_figure("radar-charts", plan=plan_radar, params=RadarParams)
def radar_charts(spec: FigureSpec, ctx: Context) -> FigureOutput:
    p: RadarParams = spec.params
    tables = Tables(ctx)
    fig, axes = new_figure(3.6 * len(p.panels), 4.6, ncols=len(p.panels), squeeze=False, subplot_kw={"projection": "polar"})
    values: dict[str, Any] = {}
    missing: list[str] = []
    for ax, panel in zip(axes[0], p.panels, strict=True):
        raw: list[list[float]] = []
        quoted_flags: list[str] = []  # "all" | "part" | "" (reproduced)
        names: list[str] = []
        for m in panel.models:
            if m.quoted:
                row, quoted = [float(v) for v in m.quoted], "all"
            else:
                cells = [tables.cell(*m.cell_source(a)) for a in panel.axes]
                if any(v is None for v, _, _ in cells):
                    missing.append(f"{m.name} ({panel.title}): {next(w for v, _, w in cells if v is None)}")
                    continue
                row = [float(v) for v, _, _ in cells]  # type: ignore[arg-type]
                flags = [q for _, q, _ in cells]
                quoted = "all" if all(flags) else ("part" if any(flags) else "")
            raw.append(row)
            quoted_flags.append(quoted)
            names.append(m.name)
        angles = np.linspace(0, 2 * math.pi, len(panel.axes), endpoint=False)
        norm = min_max(np.array(raw, dtype=float)) if raw else np.zeros((0, len(panel.axes)))
        for i, (name, row, quoted) in enumerate(zip(names, norm, quoted_flags, strict=True)):
            colour = OKABE_ITO[i % len(OKABE_ITO)]
            closed_a, closed_r = np.append(angles, angles[0]), np.append(row, row[0])
            label = {"all": "quoted", "part": f"partly quoted, partly reproduced ({ctx.scale})"}.get(quoted, f"reproduced, {ctx.scale}")
            ax.plot(closed_a, closed_r, "--" if quoted else "-", color=colour, linewidth=1.2,
                    marker="o", markersize=4, markerfacecolor="none" if quoted else colour, label=f"{name} ({label})")
            if not quoted:
                ax.fill(closed_a, closed_r, color=colour, alpha=0.12)
        ax.set_xticks(angles, [a.name for a in panel.axes])
        ax.set_ylim(0, 1.05)
        ax.set_yticks([0, 0.5, 1.0], [])  # normalised: the rings are min, mid and max of each axis
        ax.tick_params(axis="x", pad=6)
        ax.set_title(panel.title, pad=22)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False, fontsize=7)
        values[panel.title] = {
            "axes": [a.name for a in panel.axes],
            "models": {n: {"raw": r, "normalised": [round(float(x), 6) for x in nr], "quoted": q == "all",
                           "partly_quoted": q == "part"}
                       for n, r, nr, q in zip(names, raw, norm, quoted_flags, strict=True)},
        }
    caption = (
        f"{p.caption} Axes min-max normalised per axis over the models shown. Filled = reproduced here at scale "
        f"{ctx.scale} (from {', '.join(f'Table {n}' for n in tables.used) or 'no table'}); dashed/hollow = quoted."
    )
    if missing:
        caption += " Not drawn (no value): " + "; ".join(missing) + "."
    standins = _scale_standin(ctx, tables)
    status = "partial" if missing else "reproduced"
    return FigureOutput(fig, caption, status, list(tables.records), standins, values)  # type: ignore[arg-type]


def _scale_standin(ctx: Context, tables: Tables) -> list[str]:
    if ctx.scale == "full" or not tables.used:
        return []
    return [f"the {ctx.scale}-scale reproduced values of Table(s) {', '.join(map(str, tables.used))} stand in for the "
            "thesis's full-scale results (smoke numbers show the pipeline, not the thesis's accuracy)"]


# -- Figure 33: bubble chart ----------------------------------------------------------------------------
@dataclass
class BubblePoint:
    name: str
    pairs_m: float  # image-text pairs seen in pretraining, millions (the x axis)
    params_m: float  # parameters, millions (the bubble area)
    finetuned: bool = False  # finetuned on retrieval (blue) vs applied directly after pretraining (vermillion)
    quoted: float | None = None  # mean R@1 as published, when the point is not from a table
    table: int | None = None
    row: str = ""
    columns: list[str] = field(default_factory=list)  # the table's R@1 columns averaged for y
    source: str = ""

    def __post_init__(self) -> None:
        if (self.table is None) == (self.quoted is None):
            raise ValueError(f"point {self.name!r} needs exactly one of table (+ row, columns) or quoted")
        if self.table is not None and not self.columns:
            raise ValueError(f"point {self.name!r} reads table {self.table} and needs columns")
        if self.pairs_m <= 0 or self.params_m <= 0:
            raise ValueError(f"point {self.name!r}: pairs_m and params_m must be positive")


@dataclass
class BubbleParams:
    caption: str
    points: list[BubblePoint]
    ylabel: str = "mean R@1, MSCOCO + Flickr30K (%)"
    xlabel: str = "image-text pairs in pretraining (millions, log scale)"

    def __post_init__(self) -> None:
        seen = [(p.name, p.finetuned) for p in self.points]
        dup = sorted({n for n in seen if seen.count(n) > 1})
        if dup:
            raise ValueError(f"points {dup} appear twice (name, finetuned)")


def plan_bubble(spec: FigureSpec, ctx: Context) -> list[PlannedStep]:
    return plan_tables([p.table for p in spec.params.points if p.table is not None], ctx)


@register_figure("pairs-vs-r1", plan=plan_bubble, params=BubbleParams)
def pairs_vs_r1(spec: FigureSpec, ctx: Context) -> FigureOutput:
    from matplotlib.lines import Line2D

    p: BubbleParams = spec.params
    tables = Tables(ctx)
    fig, ax = new_figure(6.4, 4.2)
    colours = {False: OKABE_ITO[3], True: OKABE_ITO[0]}  # vermillion = not finetuned, blue = finetuned
    values: dict[str, Any] = {}
    missing = []
    for pt in p.points:
        if pt.table is None:
            y, quoted = float(pt.quoted), True  # type: ignore[arg-type]
        else:
            y, quoted, why = tables.cell(pt.table, pt.row or pt.name, pt.columns)
            if y is None:
                missing.append(f"{pt.name}: {why}")
                continue
        colour = colours[pt.finetuned]
        size = 4.0 * math.sqrt(pt.params_m) * 3  # area in pt^2 grows with the parameter count (sqrt keeps 1.9B on the page)
        ax.scatter([pt.pairs_m], [y], s=size, facecolors="none" if quoted else colour, edgecolors=colour,
                   linewidths=1.4, alpha=0.9)
        ax.annotate(pt.name, (pt.pairs_m, y), textcoords="offset points", xytext=(0, 8), ha="center", fontsize=7)
        key = pt.name if pt.name not in values else f"{pt.name} ({'finetuned' if pt.finetuned else 'not finetuned'})"
        values[key] = {"pairs_m": pt.pairs_m, "mean_r1": round(y, 6), "params_m": pt.params_m,
                           "finetuned": pt.finetuned, "quoted": quoted}
    ax.set_xscale("log")
    ax.set_xlabel(p.xlabel)
    ax.set_ylabel(p.ylabel)
    handles = [
        Line2D([], [], marker="o", linestyle="", color=colours[False], label="applied after pretraining"),
        Line2D([], [], marker="o", linestyle="", color=colours[True], label="finetuned on retrieval"),
        Line2D([], [], marker="o", linestyle="", color="0.3", markerfacecolor="none", label="quoted (published)"),
        Line2D([], [], marker="o", linestyle="", color="0.3", label=f"reproduced here ({ctx.scale})"),
    ]
    ax.legend(handles=handles, frameon=False, loc="lower right")
    ax.margins(x=0.15, y=0.12)
    caption = (
        f"{p.caption} Bubble area grows with the parameter count. Hollow = quoted; filled = mean R@1 reproduced here at "
        f"scale {ctx.scale} (from {', '.join(f'Table {n}' for n in tables.used) or 'no table'}); the x position and "
        "size of every point are the published pair and parameter counts."
    )
    if missing:
        caption += " Not drawn (no value): " + "; ".join(missing) + "."
    status = "partial" if missing else "reproduced"
    return FigureOutput(fig, caption, status, list(tables.records), _scale_standin(ctx, tables), values)  # type: ignore[arg-type]


__all__ = ["Tables", "min_max", "radar_charts", "pairs_vs_r1"]
