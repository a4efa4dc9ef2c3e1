"""What `mmthesis train` and `mmthesis vae` print the same way: their recipe list and a finished run's metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from rich.table import Table

from mmthesis.core.console import console


def print_recipes(title: str, names: Iterable[str], header: Callable[[str], str]) -> None:
    """One row per recipe: its name and the first line of its YAML header."""
    table = Table("recipe", "what (from the recipe header)", title=title)
    for name in names:
        table.add_row(name, header(name).splitlines()[0])
    console.print(table)


def print_run_result(title: str, metrics: Mapping[str, Any], folder: Path) -> None:
    """A run's result.json metrics (floats to 4 decimals) and where its folder is."""
    table = Table("metric", "value", title=title)
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)
    console.print(f"run folder: {folder}")
