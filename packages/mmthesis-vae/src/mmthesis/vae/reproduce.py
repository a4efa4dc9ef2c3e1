"""``vae-arithmetic`` reproduction kind: multimodal VAEs and a student's embedding space on the same shapes tasks.

Not a thesis table: the exposé's open question (does latent arithmetic work across modalities?). Each row is a
VAE recipe (trained through the VAE run cache, ``train_vae``) or a student recipe (``train_recipe``); each column
one metric of an eval task, evaluated through the harness (cached evaluations), as the ``results`` kind does.
Registered into ``mmthesis.eval.reproduce.specs`` by name when ``mmthesis.vae`` is imported (eval cannot import vae).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmthesis.core.errors import ConfigError, MMThesisError
from mmthesis.core.paths import mmthesis_home
from mmthesis.eval.reproduce.engine import Built, Context, PlannedStep, title
from mmthesis.eval.reproduce.render import RenderedTable
from mmthesis.eval.reproduce.specs import Kind, SpecHeader, register_kind

KIND = "vae-arithmetic"


@dataclass
class ModelRow:
    """One model: ``vae`` (a VAE recipe) or ``recipe`` (a student recipe), with key=value overrides."""

    label: str
    vae: str | None = None
    recipe: str | None = None
    overrides: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if (self.vae is None) == (self.recipe is None):
            raise ConfigError(f"row {self.label!r} must name exactly one of vae: or recipe:", "e.g. vae: vae-mopoe")

    @property
    def generative(self) -> bool:
        """A VAE decodes; a student only embeds, so decoded and coherence cells do not apply (n/a, not failures)."""
        return self.vae is not None


@dataclass
class MetricColumn:
    """``task``'s ``metric`` in percent; ``chance`` is the task's own chance key, shown in the Chance row."""

    header: str
    task: str
    metric: str
    chance: str | None = None
    generative_only: bool = False  # a decoded-output metric: n/a for a row that only embeds


@dataclass
class VAEArithmeticSpec(SpecHeader):
    rows: list[ModelRow] = field(default_factory=list)
    columns: list[MetricColumn] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.rows or not self.columns:
            raise ConfigError(f"spec {self.label}: needs rows and columns", "see reproductions/vae-arithmetic.yaml")


def _config(row: ModelRow, scale: str) -> tuple[Any, str]:
    """The row's typed recipe config and its run name."""
    if row.vae is not None:
        from mmthesis.vae.artifact import run_name
        from mmthesis.vae.recipes import load_vae_recipe

        config = load_vae_recipe(row.vae, scale, row.overrides)
    else:
        from mmthesis.students.artifact import run_name  # type: ignore[assignment]
        from mmthesis.students.recipes import load_recipe

        config = load_recipe(str(row.recipe), scale, row.overrides)
    return config, run_name(config, scale)


def _train(row: ModelRow, config: Any, scale: str, root: Path | None) -> Path:
    from mmthesis.core.results import run_dir

    if row.vae is not None:
        from mmthesis.vae.train import train_vae

        result = train_vae(config, scale, root=root)
    else:
        from mmthesis.students.train import train_recipe

        result = train_recipe(config, scale, root=root)
    return run_dir(result.name, result.config_hash, root)


def _model_spec(row: ModelRow, folder: Path) -> str:
    return f"vae:{folder}" if row.vae is not None else str(folder)


def _tasks(spec: VAEArithmeticSpec, row: ModelRow | None = None) -> list[str]:
    """The tasks the columns need (for ``row``: only those with a column that applies to it)."""
    return list(dict.fromkeys(c.task for c in spec.columns if row is None or row.generative or not c.generative_only))


def plan(spec: VAEArithmeticSpec, ctx: Context) -> list[PlannedStep]:
    from mmthesis.core.results import find_finished_run

    steps = []
    for row in spec.rows:
        config, name = _config(row, ctx.scale)
        done = find_finished_run(name, config, ctx.runs_root) is not None
        steps.append(PlannedStep("train", f"{row.label} ({name})", done, None if done else 150.0))
        steps += [PlannedStep("evaluate", f"{t} on {row.label}", False, 60.0) for t in _tasks(spec, row)]
    return steps


def build(spec: VAEArithmeticSpec, ctx: Context) -> Built:
    from mmthesis.core.results import run_dir
    from mmthesis.eval.adapters import load_model
    from mmthesis.eval.harness import evaluate

    scale = ctx.scale
    if ctx.progress is not None:
        ctx.progress.expect(sum(1 + len(_tasks(spec, row)) for row in spec.rows))
    metrics: dict[str, dict[str, dict[str, Any]]] = {}  # row label -> task -> metrics or {"error": ...}
    records: list[str] = []
    for row in spec.rows:
        config, name = _config(row, scale)
        if ctx.progress is not None:
            ctx.progress.step("train", f"{row.label} ({name})")
        try:
            folder = _train(row, config, scale, ctx.runs_root)
            loaded = load_model(_model_spec(row, folder), scale)
        except MMThesisError as e:
            metrics[row.label] = {t: {"error": e.one_line()} for t in _tasks(spec, row)}
            continue
        records.append(str(folder / "result.json"))
        metrics[row.label] = {}
        for task in _tasks(spec, row):
            if ctx.progress is not None:
                ctx.progress.step("evaluate", f"{task} on {row.label}")
            try:
                result = evaluate([task], loaded, scale=scale, root=ctx.runs_root)
            except MMThesisError as e:
                metrics[row.label][task] = {"error": e.one_line()}
                continue
            records.append(str(run_dir(result.name, result.config_hash, ctx.runs_root) / "result.json"))
            metrics[row.label][task] = result.metrics[task]
    return render(spec, scale, metrics, records)


def render(spec: VAEArithmeticSpec, scale: str, metrics: dict[str, dict[str, dict[str, Any]]], records: list[str]) -> Built:
    """The table from the evaluated metrics: one row per model, a Chance row, a note per failed or missing cell."""
    header = ["Model", *[c.header for c in spec.columns]]
    rows, notes, values = [], list(spec.notes), {}
    reasons: dict[str, str] = {}
    for row in spec.rows:
        cells, values[row.label] = [row.label], {}
        for c in spec.columns:
            if c.generative_only and not row.generative:
                cells.append("n/a")
                continue
            m = metrics.get(row.label, {}).get(c.task, {})
            v = m.get(c.metric)
            if isinstance(v, int | float):
                cells.append(f"{v:.1f}")
                values[row.label][c.header] = float(v)
                continue
            cells.append("–")
            why = str(m.get("error") or f"{c.task} reports no {c.metric}").replace(str(mmthesis_home()), "$MMTHESIS_HOME")
            reasons.setdefault(f"{row.label}: {why}", "")
        rows.append(cells)
    chance = ["Chance"]
    for c in spec.columns:
        found = [m[c.task][c.chance] for m in metrics.values() if c.chance and isinstance(m.get(c.task, {}).get(c.chance), int | float)]
        chance.append(f"{found[0]:.1f}" if found else "–")
        if found:
            values.setdefault("Chance", {})[c.header] = float(found[0])
    rows.append(chance)
    notes += [f"– {r}" for r in reasons]
    status = "reproduced" if not reasons else "partial"
    return Built(RenderedTable(title(spec, scale).replace("Table 0: ", ""), header, rows, notes), values, status, records)


register_kind(Kind(KIND, "results", VAEArithmeticSpec, build, plan))

# the figure-vae-* builders register with the figure machinery when this module is imported (get_kind / get_builder)
import mmthesis.vae.figures  # noqa: E402, F401
