"""`mmthesis eval`: evaluation tasks on any model.

mmthesis eval list
mmthesis eval TASK [TASK...] --model SPEC [--scale smoke] [--per-sample [FILE]]

There is one evaluation path: this command and `mmthesis reproduce` both call
``mmthesis.eval.harness.evaluate``.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import typer
from rich.table import Table

from mmthesis.cli.errors import CommandGroup
from mmthesis.core.console import console

EVALUATE = "evaluate"


class TasksByDefault(CommandGroup):
    """`mmthesis eval TASK...` runs tasks: a first argument that is no subcommand goes to `evaluate`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = [EVALUATE, *args]
        return super().parse_args(ctx, args)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [c for c in super().list_commands(ctx) if c != EVALUATE]


app = typer.Typer(
    cls=TasksByDefault,
    no_args_is_help=True,
    help=(
        "Evaluate a model on tasks: `mmthesis eval TASK [TASK...] --model SPEC [--scale smoke]` "
        "(SPEC: a run folder, run:NAME, teacher:NAME[:CKPT], open_clip:ARCH[:CKPT] or pair:IMAGE_SPEC+TEXT_SPEC); "
        "`list` shows the tasks."
        "\n\nExample: mmthesis eval retrieval-coco --model run:s-smke-cdl-mb-smoke --scale smoke"
    ),
)


@app.command("list")
def list_tasks(
    protocol: str = typer.Option(None, "--protocol", help="Show only tasks of this protocol."),
) -> None:
    """List the registered evaluation tasks (versioned YAML files of mmthesis-eval).

    Example: mmthesis eval list --protocol glue
    """
    from mmthesis.eval.task_registry import all_tasks

    table = Table(
        "task",
        "v",
        "protocol",
        "dataset/split",
        "metrics",
        "smoke scale",
        title="Evaluation tasks (`mmthesis eval TASK --model SPEC`)",
    )
    table.columns[0].no_wrap = True
    for name, t in all_tasks().items():
        if protocol and t.protocol != protocol:
            continue
        smoke = t.at_scale("smoke")
        table.add_row(
            name,
            str(t.version),
            t.protocol,
            f"{t.dataset}/{t.split}",
            ", ".join(t.metrics),
            f"{smoke.dataset}/{smoke.split}",
        )
    console.print(table)


@app.command(EVALUATE, hidden=True)
def evaluate(
    tasks: list[str] = typer.Argument(..., help="Task names, see `mmthesis eval list`."),
    model: str = typer.Option(  # help is rich markup: "\[" keeps "[/HASH]" from reading as a closing tag
        ..., "--model", help=r"A run folder, run:NAME\[/HASH], teacher:NAME\[:CKPT], open_clip:ARCH\[:CKPT] or "
        r"pair:IMAGE_SPEC+TEXT_SPEC (images through one model, captions through the other)."
    ),
    scale: str = typer.Option("full", "--scale", help="smoke | small | full: picks each task's data and sizes."),
    per_sample: str = typer.Option(
        None,
        "--per-sample",
        help="Also write per-sample rows (JSON lines) to FILE ('-' = per_sample.jsonl next to result.json).",
        flag_value="-",
    ),
    out: Path = typer.Option(None, "--out", help="Also copy result.json here."),
    workers: int = typer.Option(
        0, "--workers", min=0, help="DataLoader workers decoding images of classification sets (ImageNet-1k)."
    ),
) -> None:
    """Evaluate one model on tasks; writes result.json (provenance + per-task metrics).

    Example: mmthesis eval retrieval-coco zero-shot-imagenet1k --model run:s-smke-cdl-mb-smoke --scale smoke
    """
    from mmthesis.core.io import atomic_write_json
    from mmthesis.core.results import run_dir
    from mmthesis.eval.harness import evaluate as run_tasks

    sample_path = (
        None if per_sample is None else (Path(per_sample) if per_sample != "-" else Path(".per-sample.pending"))
    )
    result = run_tasks(tasks, model, scale=scale, per_sample=sample_path, num_workers=workers)
    folder = run_dir(result.name, result.config_hash)
    if sample_path is not None and per_sample == "-":
        final = folder / "per_sample.jsonl"
        sample_path.replace(final)
        sample_path = final
    if out is not None:
        atomic_write_json(out, result.to_json())
    for name, metrics in result.metrics.items():
        table = Table("metric", "value", title=f"{name} ({scale})")
        for key, value in metrics.items():
            shown = (
                f"{value:.2f}"
                if isinstance(value, float)
                else (json.dumps(value)[:80] if isinstance(value, (dict, list)) else str(value))
            )
            table.add_row(key, shown)
        console.print(table)
    console.print(f"result: {folder / 'result.json'}" + (f"\nper-sample: {sample_path}" if sample_path else ""))
