"""``mmthesis eval TASK... --model SPEC``: run tasks on one model, write one result.json.

The result lives in ``runs_root()/eval-<model kind>/<config hash>/result.json``;
its config is the model spec and fingerprint, the scale and every resolved task
(name, version, dataset, split, params) with its dataset fingerprint, so a
finished evaluation with identical inputs is reused instead of re-run, and a
changed task version, model or dataset never is. ``metrics`` maps each task to
its metrics. Per-sample rows (ranks, predictions) go to an optional JSON-lines
file, written atomically; asking for it re-runs the tasks (embeddings still
come from the cache).

``EvalOptions`` carries what a user sets per call (``mmthesis eval`` options):
options that change results -- ``precision``, the device type, ``recall_k``
(it replaces a retrieval task's ``params.ks``) and custom zero-shot class-name
or template files (their paths go into the task's params, their sha256 into
``files``) -- are part of the config and so of the cache key; the batch size
and the worker count only change speed.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mmthesis.core.console import console
from mmthesis.core.errors import ConfigError, MMThesisError
from mmthesis.core.io import atomic_write_text, sha256_file
from mmthesis.core.paths import runs_root
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
    precision: str = "fp32"
    device: str = "cpu"  # the device type (cpu, cuda, mps): what changes the numbers, not the index
    files: dict[str, str] = field(default_factory=dict)  # user files a task reads (path -> sha256)


@dataclass
class EvalOptions:
    """Per-call settings of ``mmthesis eval`` (see the module docstring for which enter the cache key)."""

    batch_size: int = 256
    precision: str = "fp32"
    device: str = "cpu"
    num_workers: int = 0
    recall_k: list[int] | None = None  # replaces every retrieval task's params.ks
    classnames_file: Path | None = None  # zero-shot class names (CLIP_benchmark format)
    templates_file: Path | None = None  # zero-shot templates / per-class prompts (CLIP_benchmark format)


def resolve_tasks(names: list[str], scale: str) -> list[ResolvedTask]:
    if not names:
        raise MMThesisError("no task given", "name one or more tasks, see `mmthesis eval list`")
    return [get_task(n).at_scale(scale) for n in dict.fromkeys(names)]


def _needs_protocol(tasks: list[ResolvedTask], protocol: str, option: str) -> list[ResolvedTask]:
    hits = [t for t in tasks if t.protocol == protocol]
    if not hits:
        raise ConfigError(
            f"{option} applies to {protocol} tasks, and none of {', '.join(t.name for t in tasks)} is one",
            f"drop {option} or add a {protocol} task (`mmthesis eval list --protocol {protocol}`)",
        )
    return hits


def apply_options(tasks: list[ResolvedTask], options: EvalOptions) -> list[ResolvedTask]:
    """The tasks with the options that change their parameters applied (they enter each task's record)."""
    out = {t.name: t for t in tasks}
    if options.recall_k is not None:
        ks = list(dict.fromkeys(options.recall_k))
        if not ks or any(k < 1 for k in ks):
            raise ConfigError(f"--recall-k needs positive integers, got {options.recall_k}", "write e.g. 1,5,10")
        for t in _needs_protocol(tasks, "retrieval", "--recall-k"):
            metrics = [f"i2t_r{k}" for k in ks] + [f"t2i_r{k}" for k in ks] + ["mean"]
            out[t.name] = dataclasses.replace(t, params={**t.params, "ks": ks}, metrics=metrics)
    for option, key, path in (
        ("--classnames", "classnames_file", options.classnames_file),
        ("--templates", "templates_file", options.templates_file),
    ):
        if path is not None:
            if not Path(path).is_file():
                raise ConfigError(f"{option} file {path} does not exist", f"give an existing JSON file to {option}")
            for t in _needs_protocol(tasks, "zero-shot", option):
                t = out[t.name]
                out[t.name] = dataclasses.replace(t, params={**t.params, key: str(Path(path).resolve())})
    return [out[t.name] for t in tasks]


def _user_files(tasks: list[ResolvedTask]) -> dict[str, str]:
    files = (t.params.get(k) for t in tasks for k in ("classnames_file", "templates_file"))
    return {f: sha256_file(Path(f)) for f in sorted({f for f in files if f})}


def evaluate(
    task_names: list[str] | list[ResolvedTask],
    model: str | LoadedModel,
    *,
    scale: str = "full",
    per_sample: Path | None = None,
    root: Path | None = None,
    show_progress: bool = True,
    num_workers: int = 0,
    options: EvalOptions | None = None,
) -> RunResult:
    """Run every task on the model; all data and the model are checked before any task runs.

    Tasks are names or already resolved tasks (``resolve_tasks`` with the options applied).
    ``num_workers`` (or ``options.num_workers``) only changes speed (image decoding), never results, so it is
    not part of the config.
    """
    from mmthesis.eval.protocols import model_needs, runner

    options = options or EvalOptions(num_workers=num_workers)
    tasks = (
        [t for t in task_names if isinstance(t, ResolvedTask)]
        if task_names and all(isinstance(t, ResolvedTask) for t in task_names)
        else apply_options(resolve_tasks([str(t) for t in task_names], scale), options)
    )
    loaded = model if isinstance(model, LoadedModel) else load_model(model, scale)
    ctx = EvalContext(
        loaded,
        scale=scale,
        show_progress=show_progress,
        batch_size=options.batch_size,
        num_workers=options.num_workers,
        device=options.device,
        precision=options.precision,
    )
    if ctx.numerics:
        trains = [t.name for t in tasks if t.protocol in ("finetune", "glue")]
        if trains:
            raise ConfigError(
                f"{', '.join(trains)} train on the CPU in fp32; --device/--precision apply to frozen-encoder tasks",
                "run finetune and GLUE tasks without --device/--precision",
            )
    for t in tasks:  # a task the model cannot serve fails here, before anything is written
        for what in model_needs(t):
            loaded.require(what)
    datasets = {}
    for t in tasks:  # fail up front (with the prepare command) before spending time on the first task
        for name in (t.dataset,):
            datasets[ctx.dataset(name).folder] = ctx.dataset(name).fingerprint
    config = HarnessConfig(
        loaded.spec,
        loaded.fingerprint,
        loaded.info,
        scale,
        [t.to_json() for t in tasks],
        datasets,
        precision=options.precision,
        device=torch.device(options.device).type,
        files=_user_files(tasks),
    )
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


@dataclass
class GridCell:
    """One (model, task) evaluation of ``evaluate_grid``: its result and where it and its rows live."""

    model: str
    task: str
    result: RunResult
    path: Path
    per_sample: Path | None = None


def evaluate_grid(
    task_names: list[str],
    models: list[str],
    *,
    scale: str = "full",
    options: EvalOptions | None = None,
    per_sample: bool = False,
    root: Path | None = None,
    show_progress: bool = True,
) -> list[GridCell]:
    """Every model on every task, one cached evaluation per (model, task) -- the unit ``reproduce`` reuses too.

    Tasks, options and data are checked before the first model loads; each model is loaded once. With
    ``per_sample`` each evaluation's rows go to ``per_sample.jsonl`` next to its result.json.
    """
    from mmthesis.core.results import run_dir
    from mmthesis.eval.data_access import resolve_dataset

    if not models:
        raise ConfigError("no model given", "pass --model SPEC (repeat it for several models)")
    options = options or EvalOptions()
    tasks = apply_options(resolve_tasks(task_names, scale), options)
    for t in tasks:
        resolve_dataset(t.dataset, scale)
    cells = []
    for spec in dict.fromkeys(models):
        if len(models) > 1:
            console.print(f"[bold]model {spec}[/]")
        loaded = load_model(spec, scale)
        for t in tasks:
            pending = (root or runs_root()) / f".per-sample-{os.getpid()}.pending" if per_sample else None
            if pending is not None:
                pending.parent.mkdir(parents=True, exist_ok=True)
            result = evaluate(
                [t], loaded, scale=scale, per_sample=pending, root=root, show_progress=show_progress, options=options
            )
            folder = run_dir(result.name, result.config_hash, root)
            rows = None
            if pending is not None:
                rows = folder / "per_sample.jsonl"
                pending.replace(rows)
            cells.append(GridCell(spec, t.name, result, folder / "result.json", rows))
    return cells
