"""`mmthesis eval`: evaluation tasks on any models.

mmthesis eval TASK [TASK...] --model SPEC [--model SPEC...] [--scale smoke] [options]
mmthesis eval list [--protocol P]
mmthesis eval build [--format csv|md] [--task T] [--model M] [--scale S] [--metric M]

There is one evaluation path: this command and `mmthesis reproduce` both call
``mmthesis.eval.harness``, one cached evaluation per (model, task).
The main form has no subcommand name: a first argument that is no subcommand
is a task. `mmthesis eval --help` shows that form's arguments and options
beside the subcommands (``mmthesis eval evaluate TASK...`` is the same
command under its explicit name).
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import typer
from rich.table import Table

from mmthesis.cli.errors import CommandGroup
from mmthesis.core.console import console
from mmthesis.core.errors import ConfigError

EVALUATE = "evaluate"
MAIN_USAGE = "TASK... --model SPEC [--model SPEC...] [OPTIONS]  |  mmthesis eval COMMAND [ARGS]..."


class TasksByDefault(CommandGroup):
    """`mmthesis eval TASK...` runs tasks: a first argument that is no subcommand goes to `evaluate`.

    Its help is the main form's: the usage, arguments and options of `evaluate`, then the subcommands.
    """

    _for_help = False

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = [EVALUATE, *args]
        return super().parse_args(ctx, args)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [c for c in super().list_commands(ctx) if c != EVALUATE]

    def get_usage(self, ctx: click.Context) -> str:
        return f"Usage: {ctx.command_path} {MAIN_USAGE}"

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)
        if not self._for_help:
            return params
        main = [p for p in self.commands[EVALUATE].get_params(ctx) if p.name != "help"]
        return main + params

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self._for_help = True  # only the help shows the main form's parameters; parsing never sees them
        try:
            super().format_help(ctx, formatter)
        finally:
            self._for_help = False


app = typer.Typer(
    cls=TasksByDefault,
    no_args_is_help=True,
    help=(
        "Evaluate models on tasks: every --model on every TASK (see `mmthesis eval list`), one cached evaluation "
        "(result.json) per model x task; `build` collects them into one table."
        "\n\nExample: mmthesis eval retrieval-coco zero-shot-imagenet1k --model run:s-smke-cdl-mb-smoke "
        "--model teacher:beitv2 --scale smoke"
    ),
)

MODEL_HELP = (  # rich markup: "\[" keeps "[/HASH]" from reading as a closing tag
    r"Model to evaluate (repeat for several): a run folder, run:NAME\[/HASH], teacher:NAME\[:CKPT], "
    r"open_clip:ARCH\[:CKPT] or pair:IMAGE_SPEC+TEXT_SPEC (images through one model, captions through the other)."
)
SPEED, RESULTS, OUTPUT = "Speed (results unchanged)", "Options that change results (part of the cache key)", "Output"


def _ks(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        ks = [int(k) for k in text.replace(" ", "").split(",") if k]
    except ValueError as e:
        raise ConfigError(f"--recall-k {text!r} is not a comma-separated list of integers", "write e.g. 1,5,10") from e
    if not ks or any(k < 1 for k in ks):
        raise ConfigError(f"--recall-k {text!r} needs positive integers", "write e.g. 1,5,10")
    return ks


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


@app.command("build")
def build(
    fmt: str = typer.Option("csv", "--format", help="csv | md"),
    task: list[str] = typer.Option(None, "--task", help="Only these tasks (repeatable)."),
    model: list[str] = typer.Option(
        None, "--model", help="Only models whose spec contains this text or whose fingerprint starts with it."
    ),
    scale: list[str] = typer.Option(None, "--scale", help="Only these scales (repeatable)."),
    metric: list[str] = typer.Option(None, "--metric", help="Only these metrics (repeatable)."),
    headline: bool = typer.Option(False, "--headline", help="Only each task's headline metrics."),
    out: Path = typer.Option(None, "--out", help="Write the table here instead of to the terminal."),
) -> None:
    """Collect every finished evaluation into one table: one row per model x task x metric, with provenance.

    Columns: model, model_fingerprint, task, task_version, protocol, scale, dataset, split, metric, value,
    headline, precision, device, config_hash, git_commit, git_dirty, date, result (the result.json).

    Example: mmthesis eval build --format md --scale smoke --task retrieval-shapes --headline
    """
    from mmthesis.core.io import atomic_write_text
    from mmthesis.core.registry import lookup
    from mmthesis.eval.collect import FORMATS, build_rows

    render = lookup(FORMATS, "table format", fmt)
    rows = build_rows(
        tasks=task or None, models=model or None, scales=scale or None, metrics=metric or None, headline_only=headline
    )
    text = render(rows)
    if out is not None:
        atomic_write_text(out, text)
        console.print(f"{len(rows)} rows -> {out}")
    else:
        typer.echo(text, nl=False)


@app.command(EVALUATE, hidden=True)
def evaluate(
    tasks: list[str] = typer.Argument(..., help="Task names, see `mmthesis eval list`.", metavar="TASK..."),
    model: list[str] = typer.Option(..., "--model", "-m", help=MODEL_HELP),
    scale: str = typer.Option("full", "--scale", help="smoke | small | full: picks each task's data and sizes."),
    precision: str = typer.Option(
        "fp32",
        "--precision",
        help="fp32 | bf16 | fp16: encoders run under autocast below fp32.",
        rich_help_panel=RESULTS,
    ),
    device: str = typer.Option(
        "cpu", "--device", help="cpu, cuda, cuda:N or mps (its type is part of the key).", rich_help_panel=RESULTS
    ),
    recall_k: str = typer.Option(
        None,
        "--recall-k",
        help="Retrieval K values, e.g. 1,5,10 (replace each retrieval task's own).",
        rich_help_panel=RESULTS,
    ),
    classnames: Path = typer.Option(
        None,
        "--classnames",
        help='Zero-shot class names: JSON {"DATASET": \\[names...]} or a list (as '
        "CLIP_benchmark's --custom_classname_file).",
        rich_help_panel=RESULTS,
    ),
    templates: Path = typer.Option(
        None,
        "--templates",
        help='Zero-shot prompts: JSON {"DATASET": ["a photo of a {c}.", ...]} or, per class, '
        '{"DATASET": {"CLASS": \\[prompts...]}} (as CLIP_benchmark\'s --custom_template_file).',
        rich_help_panel=RESULTS,
    ),
    batch_size: int = typer.Option(
        256, "--batch-size", min=1, help="Images / texts per forward pass.", rich_help_panel=SPEED
    ),
    workers: int = typer.Option(
        0,
        "--workers",
        min=0,
        help="DataLoader workers decoding images of classification sets (ImageNet-1k).",
        rich_help_panel=SPEED,
    ),
    per_sample: str = typer.Option(
        None,
        "--per-sample",
        help="Also write per-sample rows (JSON lines, with model and task) to FILE (`--per-sample -` = "
        "per_sample.jsonl next to each result.json).",
        rich_help_panel=OUTPUT,
    ),
    out: Path = typer.Option(
        None,
        "--out",
        help="Also write the result.json here (a JSON list when there are several).",
        rich_help_panel=OUTPUT,
    ),
) -> None:
    """Evaluate every model on every task; one result.json (provenance + metrics) per model x task.

    A finished evaluation with the same model weights, task version, data and result-changing options is
    reused, and embeddings are cached, so adding a task or a model only computes what is new.

    Example: mmthesis eval retrieval-coco zero-shot-imagenet1k --model run:s-smke-cdl-mb-smoke --scale smoke
    """
    from mmthesis.core.io import atomic_write_json, atomic_write_text
    from mmthesis.eval.harness import EvalOptions, evaluate_grid, headline

    options = EvalOptions(
        batch_size=batch_size,
        precision=precision,
        device=device,
        num_workers=workers,
        recall_k=_ks(recall_k),
        classnames_file=classnames,
        templates_file=templates,
    )
    cells = evaluate_grid(tasks, model, scale=scale, options=options, per_sample=per_sample is not None)
    if per_sample is not None and per_sample != "-":
        lines = []
        for cell in cells:
            for line in cell.per_sample.read_text(encoding="utf-8").splitlines():
                lines.append(json.dumps({"model": cell.model, **json.loads(line)}, sort_keys=True) + "\n")
        atomic_write_text(Path(per_sample), "".join(lines))
    if out is not None:
        records = [c.result.to_json() for c in cells]
        atomic_write_json(out, records[0] if len(records) == 1 else records)
    for cell in cells:
        metrics = cell.result.metrics[cell.task]
        title = f"{cell.task} ({scale})" + (f" - {cell.model}" if len(model) > 1 else "")
        table = Table("metric", "value", title=title)
        heads = headline(cell.result)[cell.task]
        for key in [*heads, *(k for k in metrics if k not in heads)]:
            value = metrics.get(key)
            shown = (
                f"{value:.2f}"
                if isinstance(value, float)
                else (json.dumps(value)[:80] if isinstance(value, (dict, list)) else str(value))
            )
            table.add_row(f"[bold]{key}[/]" if key in heads else key, shown)
        console.print(table)
    if len(cells) > 1:
        summary = Table("model", "task", "headline metrics", title="Summary (model x task)")
        for cell in cells:
            heads = headline(cell.result)[cell.task]
            summary.add_row(
                cell.model,
                cell.task,
                ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in heads.items()),
            )
        console.print(summary)
    for cell in cells:
        console.print(f"result: {cell.path}" + (f"\nper-sample: {cell.per_sample}" if cell.per_sample else ""))
    if per_sample not in (None, "-"):
        console.print(f"per-sample (all): {per_sample}")
