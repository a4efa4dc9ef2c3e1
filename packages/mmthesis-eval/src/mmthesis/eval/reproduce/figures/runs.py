"""Training runs for figures, through the same run cache as the results tables (so `reproduce all` shares them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmthesis.core.errors import DataMissingError
from mmthesis.core.results import RunResult, run_dir
from mmthesis.eval.reproduce.engine import Context, PlannedStep


@dataclass
class TrainedRun:
    recipe: str
    overrides: list[str]
    folder: Path
    result: RunResult

    @property
    def label(self) -> str:
        return self.recipe + (f" [{' '.join(self.overrides)}]" if self.overrides else "")

    @property
    def record(self) -> str:
        return str(self.folder / "result.json")


def _config(recipe: str, overrides: list[str], scale: str) -> Any:
    from mmthesis.students.recipes import load_recipe

    return load_recipe(recipe, scale, list(overrides))


def trained_run(recipe: str, overrides: list[str], ctx: Context) -> TrainedRun:
    """The finished run of ``recipe`` at ``ctx.scale`` (trained now unless the same config finished before)."""
    from mmthesis.core.config import config_hash
    from mmthesis.students.artifact import run_name
    from mmthesis.students.train import train_recipe

    config = _config(recipe, overrides, ctx.scale)
    label = recipe + (f" [{' '.join(overrides)}]" if overrides else "")
    if ctx.progress is not None:
        ctx.progress.step("train", f"{label} ({ctx.scale})")
    result = train_recipe(config, ctx.scale, root=ctx.runs_root)
    return TrainedRun(recipe, list(overrides), run_dir(run_name(config, ctx.scale), config_hash(config), ctx.runs_root), result)


def plan_runs(runs: list[tuple[str, list[str]]], ctx: Context) -> list[PlannedStep]:
    """One train step per distinct run, cached when a finished run with the same config is on disk."""
    from mmthesis.core.config import config_hash
    from mmthesis.core.results import find_finished_run
    from mmthesis.eval.reproduce.kinds.results import _estimate
    from mmthesis.students.artifact import run_name

    steps, seen = [], set()
    for recipe, overrides in runs:
        config = _config(recipe, overrides, ctx.scale)
        name, cfg_hash = run_name(config, ctx.scale), config_hash(config)
        if (name, cfg_hash) in seen:
            continue
        seen.add((name, cfg_hash))
        label = recipe + (f" [{' '.join(overrides)}]" if overrides else "")
        cached = find_finished_run(name, config, ctx.runs_root) is not None
        steps.append(PlannedStep("train", f"{label} ({name}/{cfg_hash})", cached, _estimate("train", name, ctx)))
    return steps


def logged_series(run: TrainedRun, series: str) -> list[tuple[int, float]]:
    """``series`` of the run's logs/metrics.csv as (step, value) points; a one-line error when it was not logged."""
    from mmthesis.students.artifact import read_logged_metrics

    logged = read_logged_metrics(run.folder)
    points = logged.get(series)
    if not points:
        known = ", ".join(sorted(logged)) or "none"
        raise DataMissingError(
            f"run {run.label} ({run.folder.name}) logged no {series!r} (it logged: {known})",
            f"train it again with this version: `mmthesis train run {run.recipe} --scale {run.result.scale} --force`",
        )
    return points
