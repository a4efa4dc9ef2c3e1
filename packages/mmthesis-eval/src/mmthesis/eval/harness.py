"""``mmthesis eval TASK... --model SPEC``: run tasks on one model, write one result.json.

The result lives in ``runs_root()/eval-<model kind>/<config hash>/result.json``;
its config is the model spec and fingerprint, the scale and every resolved task
(name, version, dataset, split, params) with its dataset fingerprint, so a
finished evaluation with identical inputs is reused instead of re-run, and a
changed task version, model or dataset never is. ``metrics`` maps each task to
its metrics. Per-sample rows (ranks, predictions) go to an optional JSON-lines
file, written atomically; asking for it re-runs the tasks (embeddings still
come from the cache).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmthesis.core.console import console
from mmthesis.core.errors import MMThesisError
from mmthesis.core.io import atomic_write_text
from mmthesis.core.results import RunRecorder, RunResult, find_finished_run
from mmthesis.eval.adapters import LoadedModel, load_model
from mmthesis.eval.context import EvalContext
from mmthesis.eval.task_registry import ResolvedTask, get_task


@dataclass
class HarnessConfig:
    model: str
    model_fingerprint: str
    model_info: dict[str, Any]
    scale: str
    tasks: list[dict[str, Any]]
    datasets: dict[str, str]


def resolve_tasks(names: list[str], scale: str) -> list[ResolvedTask]:
    if not names:
        raise MMThesisError("no task given", "name one or more tasks, see `mmthesis eval list`")
    return [get_task(n).at_scale(scale) for n in dict.fromkeys(names)]


def evaluate(
    task_names: list[str],
    model: str | LoadedModel,
    *,
    scale: str = "full",
    per_sample: Path | None = None,
    root: Path | None = None,
    show_progress: bool = True,
    num_workers: int = 0,
) -> RunResult:
    """Run every task on the model; all data and the model are checked before any task runs.

    ``num_workers`` only changes speed (image decoding), never results, so it is not part of the config.
    """
    from mmthesis.eval.protocols import model_needs, runner

    tasks = resolve_tasks(task_names, scale)
    loaded = model if isinstance(model, LoadedModel) else load_model(model, scale)
    ctx = EvalContext(loaded, scale=scale, show_progress=show_progress, num_workers=num_workers)
    for t in tasks:  # a task the model cannot serve fails here, before anything is written
        for what in model_needs(t):
            loaded.require(what)
    datasets = {}
    for t in tasks:  # fail up front (with the prepare command) before spending time on the first task
        for name in (t.dataset,):
            datasets[ctx.dataset(name).folder] = ctx.dataset(name).fingerprint
    config = HarnessConfig(loaded.spec, loaded.fingerprint, loaded.info, scale, [t.to_json() for t in tasks], datasets)
    name = f"eval-{loaded.info.get('kind', 'model')}"
    if per_sample is None and (done := find_finished_run(name, config, root)) is not None:
        console.print(f"reusing finished evaluation {done.config_hash}")
        return done
    rows: list[dict[str, Any]] = []
    with RunRecorder(name, scale=scale, config=config, root=root, datasets=datasets) as rec:
        for t in tasks:
            console.print(f"[bold]{t.name}[/] (v{t.version}, {t.protocol}) on {t.dataset}/{t.split}")
            out = runner(t.protocol)(ctx, t)
            missing = [m for m in t.metrics if m not in out.metrics]
            if missing:
                raise MMThesisError(
                    f"task {t.name} declares metric(s) {missing} that protocol {t.protocol} does not produce",
                    f"fix metrics in {t.name}.yaml",
                )
            rec.result.metrics[t.name] = out.metrics
            rec.result.notes += [f"{t.name}: {n}" for n in out.notes]
            rows += [{"task": t.name, **r} for r in out.per_sample]
            rec.write()  # finished tasks are visible while later ones run
        if per_sample is not None:
            atomic_write_text(per_sample, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    return rec.result


def headline(result: RunResult, task: ResolvedTask | None = None) -> dict[str, dict[str, Any]]:
    """Each task's declared headline metrics (what `mmthesis eval` prints first)."""
    out = {}
    for t in result.config.get("tasks", []):
        metrics = result.metrics.get(t["name"], {})
        out[t["name"]] = {m: metrics.get(m) for m in t["metrics"]}
    return out
