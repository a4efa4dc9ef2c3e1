"""Thesis figures: ``reproductions/figure-N.yaml`` specs, their builders, and what a build returns.

A spec names its builder (``figure: NAME``) and carries the builder's own
parameters beside the header fields every spec has. A builder is a function
``(spec, ctx) -> FigureOutput`` registered with ``@register_figure(NAME)``; it
draws with ``style.new_figure`` (the engine runs it inside the thesis style) and
returns the plotted numbers, the run records it read and what stood in for what,
so the JSON sidecar says exactly what the picture shows. ``FIGURE_MODULES``
lists the modules that register builders.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

from matplotlib.figure import Figure

from mmthesis.core.config import from_dict
from mmthesis.core.errors import ConfigError
from mmthesis.core.registry import Registry

FigureCategory = Literal["data", "model", "synthetic", "chart"]
FigureStatus = Literal["reproduced", "illustration", "partial"]

# Modules under mmthesis.eval.reproduce.figures that register builders.
FIGURE_MODULES = ("synthetic", "curves", "memory", "summary", "model_figures")
def _import_builders() -> None:
    for module in FIGURE_MODULES:
        importlib.import_module(f"mmthesis.eval.reproduce.figures.{module}")
    from mmthesis.eval.reproduce.specs import PLUGIN_MODULES  # packages above eval register builders there too

    for module in PLUGIN_MODULES:
        importlib.import_module(module)


@dataclass
class FigureSpec:
    """``reproductions/figure-N.yaml``: the header fields tables have, the builder and its parameters."""

    figure: str  # the builder's registered name
    label: str  # the thesis's label, e.g. distil_d2v2_loss
    title: str
    section: str
    kind: str  # always "figure"
    scales: list[str]
    category: FigureCategory  # data (logs, measurements) | model (running a model) | synthetic | chart (tables)
    number: int = 0  # from the file name figure-N.yaml; 0 for a figure outside the thesis (figure-vae-traversal)
    path: str = ""
    params: Any = None  # the builder's parameter dataclass (or a dict when it declared none)

    @property
    def name(self) -> str:
        return f"figure-{self.number}" if self.number else Path(self.path).stem


@dataclass
class FigureOutput:
    """What a builder returns: the drawn figure and everything the sidecar JSON records about it."""

    figure: Figure
    caption: str
    status: FigureStatus = "reproduced"
    records: list[str] = field(default_factory=list)  # result.json of the runs and evaluations used
    standins: list[str] = field(default_factory=list)  # "X stands in for Y" at this scale
    values: dict[str, Any] = field(default_factory=dict)  # the plotted numbers, JSON-able

    def __post_init__(self) -> None:
        if self.status not in get_args(FigureStatus):
            raise ValueError(f"figure status must be one of {', '.join(get_args(FigureStatus))}, got {self.status!r}")


@dataclass(frozen=True)
class FigureBuilder:
    name: str
    build: Callable[..., FigureOutput]  # (spec, ctx) -> FigureOutput
    plan: Callable[..., Any] | None = None  # (spec, ctx) -> list[PlannedStep]
    params: type | None = None  # dataclass of the spec's builder parameters


BUILDERS: Registry[FigureBuilder] = Registry("figure builder")


def register_figure(name: str, *, plan: Callable[..., Any] | None = None, params: type | None = None):
    """Decorator registering ``builder(spec, ctx) -> FigureOutput`` as the figure builder ``name``.

    ``plan(spec, ctx) -> list[PlannedStep]`` is what ``--dry-run`` lists (default: one build step);
    ``params`` is the dataclass the spec's builder parameters are read into (unknown keys are errors).
    """

    def wrap(builder: Callable[..., FigureOutput]) -> Callable[..., FigureOutput]:
        BUILDERS.register(name, FigureBuilder(name, builder, plan, params))
        return builder

    return wrap


def get_builder(name: str) -> FigureBuilder:
    if name not in BUILDERS:  # as get_kind: import every builder module, a test may have imported one
        _import_builders()
    return BUILDERS.get(name)


def parse_spec(raw: dict[str, Any], path: Path) -> FigureSpec:
    """A figure spec from its YAML mapping: header keys into FigureSpec, the rest into the builder's params."""
    match = re.fullmatch(r"figure-(\d+|[a-z][a-z0-9-]*)", path.stem)
    if match is None:
        raise ConfigError(
            f"figure spec {path.name} must be named figure-N.yaml (or figure-NAME.yaml outside the thesis)",
            "rename it, e.g. figure-19.yaml",
        )
    header = {f.name for f in fields(FigureSpec)} - {"number", "path", "params"}
    if "figure" not in raw:
        raise ConfigError(f"spec {path.name} has no `figure:` (the builder)", f"add one of: {', '.join(builder_names())}")
    builder = get_builder(str(raw["figure"]))
    rest = {k: v for k, v in raw.items() if k not in header}
    try:
        params = from_dict(builder.params, rest) if builder.params is not None else rest
        spec = from_dict(FigureSpec, {k: v for k, v in raw.items() if k in header})
    except ConfigError as e:
        raise ConfigError(f"spec {path.name}: {e.message}", e.fix) from None
    number = int(match.group(1)) if match.group(1).isdigit() else 0
    spec.number, spec.path, spec.params = number, str(path), params
    return spec


def builder_names() -> list[str]:
    _import_builders()
    return BUILDERS.names()


__all__ = [
    "FigureSpec",
    "FigureOutput",
    "FigureBuilder",
    "FigureCategory",
    "FigureStatus",
    "register_figure",
    "get_builder",
    "builder_names",
    "parse_spec",
    "FIGURE_MODULES",
]
