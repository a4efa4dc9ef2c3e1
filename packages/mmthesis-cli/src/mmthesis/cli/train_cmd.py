"""`mmthesis train`: list and run the thesis's training recipes."""

from __future__ import annotations

import typer
from rich.table import Table

from mmthesis.cli.errors import CommandGroup
from mmthesis.core.console import console
from mmthesis.core.results import run_dir

app = typer.Typer(cls=CommandGroup, no_args_is_help=True)


@app.command("list")
def list_recipes() -> None:
    """List the recipes with their thesis name and section.

    Example: mmthesis train list
    """
    from mmthesis.students.recipes import recipe_header, recipe_names

    table = Table("recipe", "what (from the recipe header)", title="Training recipes")
    for name in recipe_names():
        table.add_row(name, recipe_header(name).splitlines()[0])
    console.print(table)


@app.command("run")
def run(
    recipe: str = typer.Argument(..., help="Recipe name, see `mmthesis train list`."),
    scale: str = typer.Option("smoke", "--scale", help="smoke | small | full"),
    overrides: list[str] = typer.Argument(None, help="Config overrides key=value, e.g. train.max_steps=10"),
    force: bool = typer.Option(False, "--force", help="Train again even if a finished run with this config exists."),
) -> None:
    """Train RECIPE at a scale; a finished run with the same config is reused.

    Example: mmthesis train run s-smke-cdl-mb --scale smoke train.max_steps=50
    """
    from mmthesis.core.config import config_hash
    from mmthesis.students.recipes import load_recipe
    from mmthesis.students.train import run_name, train_recipe

    config = load_recipe(recipe, scale, overrides or [])
    result = train_recipe(config, scale, force=force)
    folder = run_dir(run_name(config, scale), config_hash(config))
    table = Table("metric", "value", title=f"{recipe} ({scale})")
    for key, value in result.metrics.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)
    console.print(f"run folder: {folder}")


@app.command("precompute")
def precompute(
    recipe: str = typer.Argument(..., help="Recipe name, see `mmthesis train list`."),
    out: str = typer.Option(..., "--out", help="Target file to write (safetensors)."),
    scale: str = typer.Option("smoke", "--scale", help="smoke | small | full"),
    overrides: list[str] = typer.Argument(None, help="Config overrides key=value (same as for `train run`)."),
) -> None:
    """Run the recipe's frozen teacher once over its training images and save the targets.

    Training with teacher.precomputed_targets=FILE then reads them instead of running the teacher
    (the teacher sees each image resized, not the step's random crop; see students/precompute.py).

    Example: mmthesis train precompute s-smke-cdl-mb --scale smoke --out targets.safetensors
    """
    from pathlib import Path

    from mmthesis.students.recipes import load_recipe
    from mmthesis.students.train import precompute_recipe_targets

    config = load_recipe(recipe, scale, overrides or [])
    path = precompute_recipe_targets(config, scale, Path(out))
    console.print(f"train with: mmthesis train run {recipe} --scale {scale} teacher.precomputed_targets={path}")
