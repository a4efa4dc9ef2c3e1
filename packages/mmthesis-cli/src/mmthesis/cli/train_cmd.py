"""`mmthesis train`: list, show and run the thesis's training recipes."""

from __future__ import annotations

import typer
from rich.table import Table

from mmthesis.cli.errors import CommandGroup
from mmthesis.cli.run_tables import print_recipes, print_run_result
from mmthesis.core.console import console
from mmthesis.core.results import run_dir

app = typer.Typer(cls=CommandGroup, no_args_is_help=True)


@app.command("list")
def list_recipes() -> None:
    """List the recipes with their thesis name and section.

    Example: mmthesis train list
    """
    from mmthesis.students.recipes import recipe_header, recipe_names

    print_recipes("Training recipes", recipe_names(), recipe_header)


@app.command("show")
def show(
    recipe: str = typer.Argument(..., help="Recipe name, see `mmthesis train list`."),
    scale: str = typer.Option("full", "--scale", help="smoke | small | full"),
    overrides: list[str] = typer.Argument(None, help="Config overrides key=value, e.g. model.image.blocks=6"),
) -> None:
    """Print RECIPE's resolved config and, per code-vs-text disagreement (REFERENCE.md §10), the reading in force.

    Example: mmthesis train show s-smke-cdl-mb --scale full model.image.blocks=6
    """
    import yaml
    from rich.markup import escape

    from mmthesis.core.config import to_dict
    from mmthesis.students.config import READINGS, get_key, reading_in_force
    from mmthesis.students.recipes import load_recipe

    config = load_recipe(recipe, scale, overrides or [])
    console.print(f"[bold]{recipe}[/] ({scale}): resolved config")
    console.print(escape(yaml.safe_dump(to_dict(config), sort_keys=False, default_flow_style=None, width=118)))
    table = Table(
        "key", "value", "in force", "§10", "code", "thesis text", "what", title=f"{recipe} ({scale}): readings"
    )
    for r in READINGS:
        if not r.applies(config):
            continue
        code, text = r.values(config)
        table.add_row(
            r.key,
            escape(str(get_key(config, r.key))),
            reading_in_force(r, config),
            f"item {r.item}" if r.item is not None else "not in §10",
            "not stated" if code is None else escape(str(code)),
            "not stated" if text is None else escape(str(text)),
            escape(r.what),
        )
    console.print(table)


@app.command("run")
def run(
    recipe: str = typer.Argument(..., help="Recipe name, see `mmthesis train list`."),
    scale: str = typer.Option("smoke", "--scale", help="smoke | small | full"),
    overrides: list[str] = typer.Argument(None, help="Config overrides key=value, e.g. train.max_steps=10"),
    force: bool = typer.Option(False, "--force", help="Train again even if a finished run with this config exists."),
    verbose: bool = typer.Option(
        False,
        "--verbose",
        help="Also print library warnings and Lightning's info lines (always in the run's train.log).",
    ),
) -> None:
    """Train RECIPE at a scale; a finished run with the same config is reused.

    Logs go to the run folder: logs/metrics.csv (and TensorBoard events; W&B with train.loggers=[csv,wandb]),
    library warnings and Lightning's messages to train.log.

    Example: mmthesis train run s-smke-cdl-mb --scale smoke train.max_steps=50
    """
    from mmthesis.core.config import config_hash
    from mmthesis.students.artifact import run_name
    from mmthesis.students.recipes import load_recipe
    from mmthesis.students.run_safety import launched_rank_zero
    from mmthesis.students.train import train_recipe

    config = load_recipe(recipe, scale, overrides or [])
    result = train_recipe(config, scale, force=force, verbose=verbose)
    if not launched_rank_zero():
        return  # a DDP worker process: rank 0 reports
    print_run_result(f"{recipe} ({scale})", result.metrics, run_dir(run_name(config, scale), config_hash(config)))


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
    console.print(
        f"train with: mmthesis train run {recipe} --scale {scale} teacher.precomputed_targets={path}"
        " teacher.independent_augmentation=false"
    )
