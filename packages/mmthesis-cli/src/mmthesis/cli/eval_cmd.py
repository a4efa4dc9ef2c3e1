"""`mmthesis eval`: evaluation tasks on trained runs."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from mmthesis.core.console import console
from mmthesis.core.errors import UnknownNameError

app = typer.Typer(no_args_is_help=True)

TASKS = {
    "retrieval": "image-text retrieval R@1/5/10 both directions, all images x all captions (REFERENCE.md §5.1)",
    "zero-shot": "CLIP-style zero-shot top-1/top-5: prompt-averaged class prototypes, logits 100 * cos (REFERENCE.md §5.4)",
    "linear-probe": "logistic regression (L-BFGS, L2) on frozen, cached image features; train split -> test top-1 (REFERENCE.md §5.3)",
    "analysis": "paired vs unpaired cosine, modality gap, linear CKA, swapped-query retrieval (exposé question, REFERENCE.md §8)",
}
PLANNED = ("finetune", "glue", "robustness")


@app.command("list")
def list_tasks() -> None:
    """List evaluation tasks (and those not there yet).

    Example: mmthesis eval list
    """
    table = Table("task", "status", "protocol", title="Evaluation tasks")
    for name, what in TASKS.items():
        table.add_row(name, "[green]available[/]", what)
    for name in PLANNED:
        table.add_row(name, "[yellow]not there yet[/]", "planned (evaluation-harness issue)")
    console.print(table)


@app.command("run")
def run(
    task: str = typer.Argument(..., help="Task name, see `mmthesis eval list`."),
    run_dir: Path = typer.Option(..., "--run", help="A finished training run folder (holds result.json)."),
    dataset: str = typer.Option(..., "--dataset", help="Prepared image-text dataset, e.g. shapes."),
    split: str = typer.Option("test", "--split"),
) -> None:
    """Evaluate a trained run on a task; results are cached as result.json.

    Example: mmthesis eval run retrieval --run .mmthesis/runs/s-smke-cdl-mb-smoke/<hash> --dataset shapes

    zero-shot, linear-probe and analysis need a labelled or captioned split the same way
    (linear-probe fits on the train split and scores --split).
    """
    if task not in TASKS:
        hint = "it is not there yet" if task in PLANNED else f"use one of: {', '.join(TASKS)}"
        raise UnknownNameError(f"unknown or unavailable eval task {task!r}", hint)
    result = _evaluate(task, run_dir, dataset, split)
    table = Table("metric", "value", title=f"{task} on {dataset}/{split}")
    for key, value in result.metrics.items():
        table.add_row(key, f"{value:.2f}" if isinstance(value, float) else str(value))
    console.print(table)


def _evaluate(task: str, run_dir: Path, dataset: str, split: str):
    if task == "zero-shot":
        from mmthesis.eval.zeroshot import evaluate_zero_shot

        return evaluate_zero_shot(run_dir, dataset, split)
    if task == "linear-probe":
        from mmthesis.eval.linear_probe import evaluate_linear_probe

        return evaluate_linear_probe(run_dir, dataset, split)
    if task == "analysis":
        from mmthesis.eval.analysis import evaluate_analysis

        return evaluate_analysis(run_dir, dataset, split)
    from mmthesis.eval.tasks import evaluate_retrieval

    return evaluate_retrieval(run_dir, dataset, split)
