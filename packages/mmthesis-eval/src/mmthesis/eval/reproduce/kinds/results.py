"""``results`` kind: tables whose reproduced cells come from running the code.

Each row names a recipe (with overrides) or quotes the literature; each column
names an eval task and a metric (a list of metrics = their mean, as the thesis's
"Retrieval" columns are the mean of six R@K), or a field of the training run's
own record (wall time, device-hours, cost, parameters, hardware), or the mean of
other columns (GLUE's Score). A row may also name a model spec (``teacher:NAME``)
that is evaluated as it is, without training. ``reproduce``
trains what is missing (finished runs with the same config hash are reused),
evaluates every (run, task) through the eval harness, one task per evaluation
so every table reuses the same evaluations, and renders published and
reproduced values side by side. A cell that cannot be computed says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mmthesis.core.errors import MMThesisError
from mmthesis.core.results import RunResult, read_result, run_dir
from mmthesis.eval.reproduce.engine import Built, Context, PlannedStep, home_relative, title
from mmthesis.eval.reproduce.render import RenderedTable
from mmthesis.eval.reproduce.specs import Kind, SpecHeader, register_kind

# Fields of a training run's result.json a column can show (``record: train``).
TRAIN_FIELDS = ("wall_hours", "device_hours", "ms_per_step", "steps", "parameters", "hardware", "cost", "train_examples")

# Default seconds per unit of work when no earlier run of it is on disk (dry-run estimates).
DEFAULT_ESTIMATE_S = {"smoke": {"train": 60.0, "evaluate": 10.0}, "small": {"train": 3600.0, "evaluate": 300.0}}


@dataclass
class Column:
    name: str  # the header as the thesis prints it
    metric: str | list[str] = ""  # a metric key; a list = the mean of those metrics
    task: str | None = None  # the eval task (record: eval)
    # eval: an eval task's metric; train: the training run's record; columns: mean of other columns;
    # model: the student's parameters counted from the recipe's model built at full configuration (no training)
    record: Literal["eval", "train", "columns", "model"] = "eval"
    mean_of: list[str] = field(default_factory=list)  # record: columns = the mean of these columns (by name)
    group: str = ""  # rows whose recipe differs per column group (Table 30) pick it by this key
    decimals: int = 2
    price_per_device_hour: float | None = None  # `cost` columns: None = the user's --price-per-device-hour
    scale_by: float = 1.0  # unit conversion of the reproduced value (e.g. 100 for a fraction shown in %)

    def __post_init__(self) -> None:
        if self.record == "eval" and not self.task:
            raise ValueError(f"column {self.name!r} needs a task (or record: train)")
        if self.record == "train" and self.metric not in TRAIN_FIELDS:
            raise ValueError(f"column {self.name!r}: train record fields are {', '.join(TRAIN_FIELDS)}")
        if self.record == "model" and self.metric != "parameters":
            raise ValueError(f"column {self.name!r}: record model has the metric parameters only")
        if self.record == "columns" and not self.mean_of:
            raise ValueError(f"column {self.name!r} needs mean_of: the columns it averages")


@dataclass
class ResultRow:
    name: str
    published: list[float | str | None] = field(default_factory=list)
    recipe: str | dict[str, str] | None = None  # a recipe, or one per column group
    # a model spec evaluated as it is (`mmthesis eval --help`), or one per scale, e.g.
    # {smoke: "teacher:beitv2_base_pt", full: "teacher:beitv2_base_pt:default"}; a scale it lacks is not computed
    model: str | dict[str, str] | None = None

    def model_at(self, scale: str) -> str | None:
        return self.model.get(scale) if isinstance(self.model, dict) else self.model
    overrides: list[str] = field(default_factory=list)
    quoted: str = ""  # where a literature row's numbers come from
    missing: str = ""  # why this row is not computed here (e.g. a model this package does not have)


@dataclass
class ResultsSpec(SpecHeader):
    columns: list[Column] = field(default_factory=list)
    rows: list[ResultRow] = field(default_factory=list)
    row_header: str = "Model"
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        for c in self.columns:
            unknown_cols = [m for m in c.mean_of if m not in names]
            if unknown_cols:
                raise ValueError(f"column {c.name!r} averages unknown column(s) {unknown_cols}")
        for row in self.rows:
            if row.published and len(row.published) != len(self.columns):
                raise ValueError(f"row {row.name!r} has {len(row.published)} published values for {len(self.columns)} columns")
            if isinstance(row.recipe, dict):
                groups = {c.group for c in self.columns}
                unknown = set(row.recipe) - groups
                if unknown:
                    raise ValueError(f"row {row.name!r} names column groups {sorted(unknown)}; columns have {sorted(groups)}")


# -- what a table needs -------------------------------------------------------------------------
@dataclass
class Need:
    """One trained run the table uses: its recipe config, and the tasks evaluated on it."""

    recipe: str  # the recipe, or the model spec of a row that is not trained
    overrides: list[str]
    config: Any  # None for a model spec
    tasks: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.recipe + (f" [{' '.join(self.overrides)}]" if self.overrides else "")

    @property
    def trained(self) -> bool:
        return self.config is not None


def recipe_for(row: ResultRow, column: Column) -> str | None:
    if isinstance(row.recipe, dict):
        return row.recipe.get(column.group)
    return row.recipe


def need_key(row: ResultRow, column: Column, scale: str) -> tuple[tuple[str, str], Any] | None:
    """(run name, config hash) and config of the run behind one cell; ("model", spec) for a model row."""
    from mmthesis.core.config import config_hash
    from mmthesis.students.artifact import run_name
    from mmthesis.students.recipes import load_recipe

    if row.model:
        spec = row.model_at(scale)
        return (("model", spec), None) if spec else None
    recipe = recipe_for(row, column)
    if recipe is None or column.record in ("columns", "model"):
        return None
    config = load_recipe(recipe, scale, list(row.overrides))
    return (run_name(config, scale), config_hash(config)), config


def needs(spec: ResultsSpec, scale: str) -> dict[tuple[str, str], Need]:
    """Distinct (run name, config hash) -> Need; rows sharing a config share a run."""
    out: dict[tuple[str, str], Need] = {}
    for row in spec.rows:
        if (row.recipe is None and row.model is None) or row.missing or row.quoted:
            continue
        for column in spec.columns:
            found = need_key(row, column, scale)
            if found is None:
                continue
            key, config = found
            if config is None and column.record == "train":
                continue
            need = out.setdefault(key, Need(row.model_at(scale) or recipe_for(row, column) or "", list(row.overrides), config))
            if column.record == "eval" and column.task not in need.tasks:
                need.tasks.append(column.task)
    return out


def plan(spec: ResultsSpec, ctx: Context) -> list[PlannedStep]:
    from mmthesis.core.results import find_finished_run
    from mmthesis.eval.harness import resolve_tasks

    resolve_tasks([c.task for c in spec.columns if c.task], ctx.scale)  # unknown tasks fail here, as in build
    steps = []
    for (name, cfg_hash), need in needs(spec, ctx.scale).items():
        if not need.trained:
            steps += [PlannedStep("evaluate", f"{task} on {need.label}", False, _estimate("evaluate", task, ctx)) for task in need.tasks]
            continue
        trained = find_finished_run(name, need.config, ctx.runs_root)
        steps.append(PlannedStep("train", f"{need.label} ({name}/{cfg_hash})", trained is not None, _estimate("train", name, ctx)))
        folder = run_dir(name, cfg_hash, ctx.runs_root)
        for task in need.tasks:
            cached = trained is not None and _finished_eval(folder, task, ctx) is not None
            steps.append(PlannedStep("evaluate", f"{task} on {need.label}", cached, _estimate("evaluate", task, ctx)))
    return steps


def _estimate(action: str, what: str, ctx: Context) -> float | None:
    """Seconds of the last finished run of the same recipe/task at this scale, else a per-scale default."""
    from mmthesis.core.paths import runs_root

    root = ctx.runs_root or runs_root()
    if action == "train":
        for path in sorted((root / what).glob("*/result.json"), key=lambda p: p.stat().st_mtime, reverse=True):
            r = read_result(path)
            if r is not None and r.status == "finished" and r.wall_time_s:
                return r.wall_time_s
    else:
        for path in (root / "eval-mmthesis-run").glob("*/result.json"):
            r = read_result(path)
            if r and r.status == "finished" and r.scale == ctx.scale and _task_names(r) == [what] and r.wall_time_s:
                return r.wall_time_s
    return DEFAULT_ESTIMATE_S.get(ctx.scale, {}).get(action)


def _task_names(result: RunResult) -> list[str]:
    return [t.get("name") for t in result.config.get("tasks", [])]


def _finished_eval(folder: Path, task: str, ctx: Context) -> RunResult | None:
    """A finished one-task evaluation of the run in ``folder`` at this scale, if one is on disk (dry-run only:
    the harness itself decides reuse by the full config hash, including weights and data fingerprints)."""
    from mmthesis.core.io import sha256_file, sha256_json
    from mmthesis.core.paths import runs_root
    from mmthesis.students.artifact import WEIGHTS

    weights = folder / WEIGHTS
    if not weights.is_file():
        return None
    fingerprint = sha256_json({"kind": "mmthesis-run", "weights": sha256_file(weights)})[:16]
    for path in ((ctx.runs_root or runs_root()) / "eval-mmthesis-run").glob("*/result.json"):
        r = read_result(path)
        if (
            r is not None
            and r.status == "finished"
            and r.scale == ctx.scale
            and r.config.get("model_fingerprint") == fingerprint
            and _task_names(r) == [task]
        ):
            return r
    return None


# -- build ----------------------------------------------------------------------------------------
def build(spec: ResultsSpec, ctx: Context) -> Built:
    from mmthesis.data.registry import check_data
    from mmthesis.eval.adapters import load_model
    from mmthesis.eval.data_access import resolve_dataset
    from mmthesis.eval.harness import evaluate, resolve_tasks
    from mmthesis.students.train import train_recipe

    scale = ctx.scale
    task_names = list(dict.fromkeys(c.task for c in spec.columns if c.record == "eval" and c.task))
    tasks = {t.name: t for t in resolve_tasks(task_names, scale)} if task_names else {}
    runs = needs(spec, scale)
    # fail up front, with the prepare commands, before the first training starts
    check_data(list(dict.fromkeys(n for need in runs.values() if need.trained for n in need.config.data.train)), scale)
    for t in tasks.values():
        resolve_dataset(t.dataset, scale)
    if ctx.progress is not None:
        ctx.progress.expect(sum(n.trained for n in runs.values()) + sum(len(n.tasks) for n in runs.values()))
    trained: dict[tuple[str, str], RunResult] = {}
    evaluated: dict[tuple[str, str, str], dict[str, Any]] = {}
    failed: dict[tuple[str, str], str] = {}
    records: list[str] = []
    for key, need in runs.items():
        model = need.recipe
        if need.trained:
            if ctx.progress is not None:
                ctx.progress.step("train", f"{need.label} ({scale})")
            try:
                trained[key] = train_recipe(need.config, scale, root=ctx.runs_root)
            except MMThesisError as e:
                failed[key] = e.one_line()
                continue
            folder = run_dir(*key, ctx.runs_root)
            records.append(str(folder / "result.json"))
            model = str(folder)
        try:  # loaded once for all of this run's tasks; each task is its own (cached) evaluation
            loaded = load_model(model, scale)
        except MMThesisError as e:
            for task in need.tasks:
                evaluated[(*key, task)] = {"error": e.one_line()}
            continue
        for task in need.tasks:
            if ctx.progress is not None:
                ctx.progress.step("evaluate", f"{task} on {need.label}")
            try:
                result = evaluate([task], loaded, scale=scale, root=ctx.runs_root)
            except MMThesisError as e:
                evaluated[(*key, task)] = {"error": e.one_line()}
                continue
            records.append(str(run_dir(result.name, result.config_hash, ctx.runs_root) / "result.json"))
            evaluated[(*key, task)] = result.metrics[task]
    return _render(spec, ctx, runs, trained, evaluated, failed, tasks, records)


def _cell_value(
    row: ResultRow, column: Column, ctx: Context, found, trained, evaluated, failed
) -> tuple[float | str | None, str]:
    """(value, reason): the reproduced value of one cell, or None and why not; ``found`` is its ``need_key``."""
    if column.record == "columns":
        return None, "-"  # filled from the other cells by _render
    if column.record == "model":
        from mmthesis.eval.reproduce.kinds.parameters import count_parameters, student_total

        recipe = recipe_for(row, column)
        if recipe is None:
            return None, "-"
        return float(student_total(count_parameters(recipe, list(row.overrides), "full"))), ""
    if found is None:
        return None, "-"
    key, config = found
    if key in failed:
        return None, f"training failed: {failed[key]}"
    if column.record == "train":
        if config is None:
            return None, "not trained here"
        return train_field(trained[key], column, ctx), ""
    metrics = evaluated.get((*key, column.task), {})
    if "error" in metrics:
        return None, f"not computed: {metrics['error']}"
    keys = [column.metric] if isinstance(column.metric, str) else column.metric
    values = [metrics.get(k) for k in keys]
    if any(v is None for v in values):
        missing = [k for k, v in zip(keys, values, strict=True) if v is None]
        return None, f"task {column.task} has no metric {', '.join(missing)}"
    return sum(values) / len(values) * column.scale_by, ""


def train_field(result: RunResult, column: Column, ctx: Context) -> float | str | None:
    """A field of a training run's record: time, cost, size or hardware."""
    m = result.metrics
    if column.metric == "wall_hours":
        return (result.wall_time_s or 0.0) / 3600
    if column.metric == "device_hours":
        return result.device_hours
    if column.metric == "ms_per_step":
        steps = m.get("steps") or 0
        return 1000 * (result.wall_time_s or 0.0) / steps if steps else None
    if column.metric == "steps":
        return m.get("steps")
    if column.metric == "parameters":
        return m.get("parameters_student")
    if column.metric == "cost":
        price = column.price_per_device_hour or ctx.price_per_device_hour
        return None if result.device_hours is None else result.device_hours * price
    if column.metric == "train_examples":
        return train_examples(result)
    return hardware_label(result)


def train_examples(result: RunResult) -> float | None:
    """The run's training examples as its training code counts them (images, image-caption pairs or text blocks)."""
    from mmthesis.core.config import from_dict
    from mmthesis.students.config import VLRecipeConfig
    from mmthesis.students.train import training_examples

    return float(training_examples(from_dict(VLRecipeConfig, result.config), result.scale))


def hardware_label(result: RunResult) -> str:
    """``1× NVIDIA H200`` / ``1× CPU (2 cores)``: what the run trained on."""
    hw = result.hardware or {}
    gpus = hw.get("gpus") or []
    devices = int(result.config.get("train", {}).get("devices", 1) or 1)
    if gpus:
        name = gpus[0] if isinstance(gpus[0], str) else gpus[0].get("name", "GPU")
        return f"{min(devices, len(gpus))}× {name}"
    return f"1× CPU ({hw.get('cpu_count', '?')} cores)"


def _render(spec, ctx, runs, trained, evaluated, failed, tasks, records) -> Built:
    scale = ctx.scale
    header = [spec.row_header, "Values", *(c.name for c in spec.columns)]
    body: list[list[str]] = []
    values: dict[str, Any] = {}
    partial = bool(failed)
    for row in spec.rows:
        published = row.published or [None] * len(spec.columns)
        body.append([row.name, "published", *(_published(v) for v in published)])
        entry: dict[str, Any] = {"published": published}
        if row.quoted:
            body.append([row.name, "reproduced", f"quoted ({row.quoted}); not trained here", *[""] * (len(spec.columns) - 1)])
            entry["quoted"] = row.quoted
        elif row.missing or (row.recipe is None and row.model_at(scale) is None):
            reason = row.missing or ("no model spec at this scale" if row.model else "no recipe")
            body.append([row.name, "reproduced", f"not computed: {reason}", *[""] * (len(spec.columns) - 1)])
            entry["missing"] = reason
            partial = True
        else:
            cells, reproduced = [], []
            by_name: dict[str, float | str | None] = {}
            keys: dict[str | None, Any] = {}  # one recipe load per (row, recipe), not one per cell
            for column in spec.columns:
                recipe, found = recipe_for(row, column), None
                if column.record in ("eval", "train"):  # the cells backed by a run or model spec
                    if recipe not in keys:
                        keys[recipe] = need_key(row, column, scale)
                    found = keys[recipe]
                value, reason = _cell_value(row, column, ctx, found, trained, evaluated, failed)
                if column.record == "columns":
                    parts = [by_name.get(n) for n in column.mean_of]
                    if all(isinstance(v, float) for v in parts):
                        value, reason = sum(parts) / len(parts), ""  # type: ignore[arg-type]
                    else:
                        reason = "needs every averaged cell"
                by_name[column.name] = value
                reproduced.append(value if value is not None else reason)
                cells.append(_reproduced(value, column) if value is not None else reason)
                partial = partial or (value is None and reason != "-")
            body.append([row.name, f"reproduced ({scale})", *cells])
            entry["reproduced"] = reproduced
        values[row.name] = entry
    notes = [
        f"Scale: {scale}. Published values from the thesis (spec {Path(spec.path).name}); '-' = not reported. "
        + (f"Reproduced values from the eval tasks {', '.join(tasks)} (`mmthesis eval TASK --model RUN`)." if tasks else "")
    ]
    if any(c.record == "train" and c.metric == "cost" for c in spec.columns):
        notes.append(
            f"Reproduced cost = the run's device-hours × ${ctx.price_per_device_hour:g} per device-hour "
            "(--price-per-device-hour; default the thesis's runpod RTX 4090 rate) unless the column states its own price."
        )
    if scale != "full" and tasks:
        stand_ins = [f"{t.dataset} ({t.split}) for {t.name}" for t in tasks.values()]
        notes.append(
            f"At {scale} scale the data are stand-ins: {'; '.join(stand_ins)}; the models are the real architectures at "
            f"{scale} sizes. Numbers show the pipeline works; they are not comparable to the published ones."
        )
        for t in tasks.values():
            metrics = next((m for (_, _, task), m in evaluated.items() if task == t.name and "error" not in m), {})
            chance = {k: v for k, v in metrics.items() if k.startswith("chance_") or k.startswith("majority_")}
            size = f"{metrics['images']} images x {metrics['captions']} captions; " if "captions" in metrics else ""
            if chance:
                notes.append(
                    f"{t.dataset} {t.split} split ({t.name}): {size}chance level "
                    + ", ".join(f"{k} {v:.2f}" for k, v in sorted(chance.items()))
                    + "."
                )
    notes += list(spec.notes)
    notes += [f"{r.name}: {r.quoted}." for r in spec.rows if r.quoted]
    notes += [f"run record: {home_relative(p)}" for p in records]
    status = "partial" if partial else "reproduced"
    return Built(RenderedTable(title(spec, scale), header, body, notes), values, status=status, records=records)


def _published(v: float | str | None) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return f"{v:,.6g}" if abs(v) >= 1e4 else f"{v:.6g}"


def _reproduced(v: float | str, column: Column) -> str:
    if isinstance(v, str):
        return v
    if column.metric == "parameters":  # 43.1M as the thesis prints it (43M in Table 39)
        from mmthesis.eval.reproduce.render import fmt_count

        return fmt_count(v)
    return f"{v:,.{column.decimals}f}"


register_kind(Kind("results", "results", ResultsSpec, build, plan))
# Time and cost tables (14, 18's hours, 39) are results tables whose columns read the training records.
register_kind(Kind("time-cost", "time-cost", ResultsSpec, build, plan))
