"""`mmthesis bench`: list and run the benchmark scripts in benchmarks/."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import typer
from rich.table import Table

from mmthesis.cli.errors import CommandGroup
from mmthesis.core.console import console
from mmthesis.core.errors import DataMissingError
from mmthesis.core.paths import repo_root
from mmthesis.core.registry import unknown_name

app = typer.Typer(cls=CommandGroup, no_args_is_help=True)


def _bench_dir() -> Path:
    root = repo_root()
    if root is None or not (root / "benchmarks").is_dir():
        raise DataMissingError("cannot find the benchmarks/ folder", "run from a source checkout of mmthesis")
    return root / "benchmarks"


def _scripts() -> dict[str, Path]:
    return {p.stem: p for p in sorted(_bench_dir().glob("*.py")) if not p.name.startswith("_")}


@app.command("list")
def list_benchmarks() -> None:
    """List benchmark scripts with what they measure.

    Example: mmthesis bench list
    """
    table = Table("benchmark", "what it measures", title="Benchmarks (benchmarks/)")
    for name, path in _scripts().items():
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        table.add_row(name, doc.splitlines()[0] if doc else "")
    console.print(table)


@app.command("run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(ctx: typer.Context, name: str = typer.Argument(..., help="Benchmark name from `mmthesis bench list`.")) -> None:
    """Run one benchmark script; extra arguments are passed on. Its last line is `ratio: ...`.

    Example: mmthesis bench run retrieval_metrics --images 1000
    """
    scripts = _scripts()
    if name not in scripts:
        raise unknown_name("benchmark", name, scripts, "mmthesis bench list")
    code = subprocess.call([sys.executable, str(scripts[name]), *ctx.args])
    raise typer.Exit(code)
