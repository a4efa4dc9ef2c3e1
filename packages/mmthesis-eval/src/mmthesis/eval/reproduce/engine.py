"""Build tables and figures from specs: one, a dry-run plan, or all of them with an index.

``reproduce(name, scale)`` loads the spec, lets its kind compute and render it,
and writes ``thesis/tables/table-N.{md,tex,json}`` or
``thesis/figures/figure-N.{png,pdf,json}`` atomically (nothing is written when
the build fails). ``reproduce_all`` builds every table, then every figure (some
are drawn from the tables), reports one that fails with its fix and goes on, and
writes ``thesis/index.md``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from mmthesis.core.console import console
from mmthesis.core.errors import ConfigError, DataMissingError, MMThesisError
from mmthesis.core.io import atomic_write_json, atomic_write_text
from mmthesis.core.paths import mmthesis_home, repo_root
from mmthesis.core.scales import check_scale
from mmthesis.eval.reproduce.render import RenderedTable
from mmthesis.eval.reproduce.specs import SpecHeader, all_names, get_kind, load_spec

Status = Literal["reproduced", "derived", "quoted", "partial"]

# Table 39's basis: runpod RTX 4090 on-demand, September 2024 (REFERENCE.md §9); `--price-per-device-hour` changes it.
DEFAULT_PRICE_PER_DEVICE_HOUR = 0.69


@dataclass
class Context:
    """What a build may use besides its spec: the scale and the user's options."""

    scale: str
    runs_root: Path | None = None
    caption_unit: str = "words"
    price_per_device_hour: float = DEFAULT_PRICE_PER_DEVICE_HOUR
    dry_run: bool = False
    progress: Any = None  # a ReproduceProgress while building, else None
    tables_dir: Path | None = None  # where figures drawn from tables read (and build) them; None = thesis/tables


@dataclass
class Built:
    table: RenderedTable
    values: dict[str, Any]
    status: Status = "reproduced"
    records: list[str] = field(default_factory=list)  # result.json of the runs and evaluations used


@dataclass
class PlannedStep:
    """One unit of work a table needs: a training run, an evaluation, a count, ..."""

    action: str  # "train" | "evaluate" | "count" | "build"
    what: str
    cached: bool
    estimate_s: float | None = None


@dataclass
class Outcome:
    name: str
    title: str
    category: str
    scale: str
    status: Status | Literal["illustration", "failed"]
    error: str = ""
    records: list[str] = field(default_factory=list)
    seconds: float = 0.0


def default_out_dir() -> Path:
    root = repo_root()
    return (root if root is not None else Path.cwd()) / "thesis" / "tables"


def default_figures_dir() -> Path:
    return default_out_dir().parent / "figures"


def is_figure(name: str) -> bool:
    return name.startswith("figure-")


def reproduce(
    name: str,
    scale: str,
    out_dir: Path | None = None,
    *,
    runs_root: Path | None = None,
    caption_unit: str = "words",
    price_per_device_hour: float = DEFAULT_PRICE_PER_DEVICE_HOUR,
) -> Built:
    """Compute ``name`` at ``scale`` and write its Markdown, LaTeX and JSON; returns what was built.

    A figure (``figure-N``) goes to ``reproduce_figure`` with ``out_dir`` as its folder."""
    if is_figure(name):
        return reproduce_figure(name, scale, out_dir, runs_root=runs_root)  # type: ignore[return-value]
    spec = load_spec(name)
    kind = get_kind(spec.kind)
    check_scale(scale)
    if scale not in spec.scales and not kind.scale_independent:
        raise ConfigError(f"{name} cannot be reproduced at scale {scale!r}", f"use --scale {' or '.join(spec.scales)}")
    if caption_unit != "words" and spec.kind != "vl-dataset-summary":
        raise ConfigError(f"{name} has no caption lengths, so --caption-unit does not apply", "leave it out")
    if price_per_device_hour <= 0:
        raise ConfigError(f"price per device-hour must be positive, got {price_per_device_hour}", "pass e.g. 0.69")
    ctx = Context(scale, runs_root, caption_unit, price_per_device_hour)
    with reproduce_progress(name) as progress:
        ctx.progress = progress
        built = kind.build(spec, ctx)
    out = out_dir or default_out_dir()
    atomic_write_text(out / f"{name}.md", built.table.markdown())
    atomic_write_text(out / f"{name}.tex", built.table.latex())
    atomic_write_json(
        out / f"{name}.json",
        {
            "table": spec.table,
            "title": spec.title,
            "kind": spec.kind,
            "scale": scale,
            "status": built.status,
            "spec": spec_location(spec),
            "records": [home_relative(r) for r in built.records],
            "values": built.values,
            # the table as rendered, for the HTML report (published vs reproduced and their difference)
            "rendered": {"header": built.table.header, "rows": built.table.rows, "notes": built.table.notes},
        },
    )
    return built


def reproduce_figure(
    name: str,
    scale: str,
    out_dir: Path | None = None,
    *,
    runs_root: Path | None = None,
    tables_dir: Path | None = None,
) -> Any:
    """Draw figure ``name`` at ``scale``; writes ``figure-N.png``, ``.pdf`` and the ``.json`` sidecar; returns its
    ``FigureOutput``. ``tables_dir`` is where a figure drawn from tables finds them (default thesis/tables)."""
    from mmthesis.eval.reproduce.figures.style import save_figure

    spec = load_spec(name)
    kind = get_kind(spec.kind)
    check_scale(scale)
    if scale not in spec.scales and not kind.scale_independent:
        raise ConfigError(f"{name} cannot be reproduced at scale {scale!r}", f"use --scale {' or '.join(spec.scales)}")
    ctx = Context(scale, runs_root, tables_dir=tables_dir)
    with reproduce_progress(name) as progress:
        ctx.progress = progress
        built = kind.build(spec, ctx)
    out = out_dir or default_figures_dir()
    save_figure(built.figure, out / name)
    atomic_write_json(
        out / f"{name}.json",
        {
            "figure": spec.number,
            "label": spec.label,
            "title": spec.title,
            "section": spec.section,
            "kind": spec.kind,
            "builder": spec.figure,
            "category": spec.category,
            "scale": scale,
            "status": built.status,
            "caption": built.caption,
            "spec": spec_location(spec),
            "files": [f"{name}.png", f"{name}.pdf"],
            "records": [home_relative(r) for r in built.records],
            "standins": built.standins,
            "values": built.values,
        },
    )
    return built


def default_scale(name: str) -> str:
    """The scale ``mmthesis reproduce NAME`` uses without --scale: smoke, or full for a scale-independent table
    whose spec lists full only (a table of the thesis's configuration, e.g. the hyperparameters of Tables 31-36)."""
    spec = load_spec(name)
    return "full" if get_kind(spec.kind).scale_independent and spec.scales == ["full"] else "smoke"


def plan(name: str, scale: str, *, runs_root: Path | None = None) -> list[PlannedStep]:
    """What ``reproduce(name, scale)`` would do, which parts are cached, and estimated seconds."""
    spec = load_spec(name)
    kind = get_kind(spec.kind)
    check_scale(scale)
    if scale not in spec.scales and not kind.scale_independent:
        raise ConfigError(f"{name} cannot be reproduced at scale {scale!r}", f"use --scale {' or '.join(spec.scales)}")
    if kind.plan is None:
        return [PlannedStep("build", f"{name} from its spec ({kind.category})", cached=False, estimate_s=1.0)]
    return kind.plan(spec, Context(scale, runs_root, dry_run=True))


def reproduce_all(
    scale: str,
    out_dir: Path | None = None,
    *,
    runs_root: Path | None = None,
    price_per_device_hour: float = DEFAULT_PRICE_PER_DEVICE_HOUR,
    names: list[str] | None = None,
) -> list[Outcome]:
    """Build every table, then every figure (or ``names``, tables first); one that fails is reported with its fix
    and the rest still build. Figures go to ``out_dir``'s sibling ``figures/`` and read tables from ``out_dir``."""
    check_scale(scale)
    out = out_dir or default_out_dir()
    figures_out = out.parent / "figures"
    outcomes = []
    # tables first: figures 32 and 33 are drawn from the reproduced tables
    for name in sorted(names or all_names(), key=is_figure):
        spec = load_spec(name)
        kind = get_kind(spec.kind)
        category = getattr(spec, "category", kind.category) if is_figure(name) else kind.category
        console.rule(f"[bold]{name}[/]: {spec.title}")
        started = time.monotonic()
        if scale not in spec.scales and not kind.scale_independent:
            outcome = Outcome(
                name, spec.title, category, scale, "failed", f"not defined at scale {scale}; scales: {', '.join(spec.scales)}"
            )
        else:
            try:
                if is_figure(name):
                    built = reproduce_figure(name, scale, figures_out, runs_root=runs_root, tables_dir=out)
                else:
                    built = reproduce(name, scale, out, runs_root=runs_root, price_per_device_hour=price_per_device_hour)
                outcome = Outcome(name, spec.title, category, scale, built.status, records=built.records)
            except MMThesisError as e:
                outcome = Outcome(name, spec.title, category, scale, "failed", e.one_line())
                console.print(f"[red]{name} failed:[/] {e.one_line()}")
            except Exception as e:  # a bug in one table's build must not cost the others; the traceback is shown
                console.print_exception()
                outcome = Outcome(name, spec.title, category, scale, "failed", f"internal error: {type(e).__name__}: {e}")
        outcome.seconds = time.monotonic() - started
        outcomes.append(outcome)
    write_index(outcomes, out.parent / "index.md", out, figures_out)
    write_outcomes(outcomes, out.parent / "index.json")
    return outcomes


def write_outcomes(outcomes: list[Outcome], path: Path) -> None:
    """``thesis/index.json``: the outcome of each build, so the report can list what failed and why."""
    atomic_write_json(path, {"outcomes": [asdict(o) for o in outcomes]})


def write_index(outcomes: list[Outcome], path: Path, tables_dir: Path, figures_dir: Path | None = None) -> None:
    """``thesis/index.md``: every table and figure with its status, scale, build time and run records."""
    rel = tables_dir.relative_to(path.parent) if tables_dir.is_relative_to(path.parent) else tables_dir
    figures_dir = figures_dir or tables_dir.parent / "figures"
    frel = figures_dir.relative_to(path.parent) if figures_dir.is_relative_to(path.parent) else figures_dir
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    tables = [o for o in outcomes if not is_figure(o.name)]
    figures = [o for o in outcomes if is_figure(o.name)]
    lines = [
        "# Thesis tables and figures",
        "",
        "Generated by `mmthesis reproduce all`; each table shows the published values next to the reproduced ones.",
        "Status: *reproduced* = computed by running the code at this scale; *derived* = computed from configs, "
        "models or prepared data; *quoted* = literature or the author's bills, not reproducible by nature; "
        "*failed* = could not be built (the reason and its fix are given).",
        "",
        "Summary: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())),
        "",
        "| Table | Title | Kind | Status | Scale | Time (s) | Run records |",
        "|---|---|---|---|---|---|---|",
    ]
    for o in tables:
        link = f"[{o.name}]({rel}/{o.name}.md)" if o.status != "failed" else o.name
        status = o.status if o.status != "failed" else f"failed: {o.error}"
        # the table's JSON lists every run and evaluation record it used
        records = f"[{len(o.records)}]({rel}/{o.name}.json)" if o.records else "-"
        lines.append(
            f"| {link} | {o.title.replace('|', '/')} | {o.category} | {status.replace('|', '/')} | {o.scale} | "
            f"{o.seconds:.0f} | {records} |"
        )
    if figures:
        lines += [
            "",
            "## Figures",
            "",
            "Category: *data* = drawn from training logs or measurements; *model* = from running a model; *synthetic* "
            "= seeded illustration; *chart* = drawn from the reproduced tables (and quoted literature points). "
            "Status *illustration* = not a result (synthetic); each figure's JSON has its caption, the runs used and "
            "what stood in for what.",
            "",
            "| Figure | Title | Category | Status | Scale | Time (s) | Sidecar |",
            "|---|---|---|---|---|---|---|",
        ]
        for o in figures:
            link = f"[{o.name}]({frel}/{o.name}.png)" if o.status != "failed" else o.name
            status = o.status if o.status != "failed" else f"failed: {o.error}"
            sidecar = f"[json]({frel}/{o.name}.json)" if o.status != "failed" else "-"
            lines.append(
                f"| {link} | {o.title.replace('|', '/')} | {o.category} | {status.replace('|', '/')} | {o.scale} | "
                f"{o.seconds:.0f} | {sidecar} |"
            )
    atomic_write_text(path, "\n".join(lines) + "\n")


# -- progress ---------------------------------------------------------------------------------------
class ReproduceProgress:
    """Which run or evaluation a table is on, as ``[i/n] action what``; kinds call ``step`` per unit of work."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.total = 0
        self.done = 0

    def expect(self, total: int) -> None:
        self.total = total
        self.done = 0

    def step(self, action: str, what: str) -> None:
        self.done += 1
        bar = _bar(self.done, self.total)
        console.rule(f"{self.name} {bar} [{self.done}/{self.total or '?'}] {action} {what}", align="left")


def _bar(done: int, total: int, width: int = 20) -> str:
    if not total:
        return ""
    filled = round(width * min(done, total) / total)
    return "━" * filled + "╺" + "─" * (width - filled)


@contextmanager
def reproduce_progress(name: str) -> Iterator[ReproduceProgress]:
    yield ReproduceProgress(name)


# -- shared helpers for kinds ---------------------------------------------------------------------
def spec_location(spec: SpecHeader) -> str:
    """The spec's path relative to the checkout (``reproductions/table-N.yaml``): no machine path in outputs."""
    root = repo_root()
    path = Path(spec.path).resolve()
    if root is not None and path.is_relative_to(root.resolve()):
        return path.relative_to(root.resolve()).as_posix()
    return path.name


def home_relative(path: str) -> str:
    """Show run records as $MMTHESIS_HOME/... so rendered tables do not depend on the machine."""
    home = str(mmthesis_home())
    return "$MMTHESIS_HOME" + path[len(home) :] if path.startswith(home) else path


def missing_data(spec: SpecHeader, scale: str, missing: list[DataMissingError]) -> DataMissingError:
    """One error listing the prepare command of every dataset the table still needs."""
    fixes = " && ".join(f"`{e.fix.removeprefix('run ').strip('`')}`" if e.fix else e.message for e in missing)
    return DataMissingError(f"{spec.name} at scale {scale} needs {len(missing)} unprepared dataset(s)", f"run {fixes}")


def title(spec: SpecHeader, scale: str | None) -> str:
    return f"Table {spec.table}: {spec.title}" + (f" (scale: {scale})" if scale else "")


__all__ = [
    "Context",
    "Built",
    "PlannedStep",
    "Outcome",
    "reproduce",
    "reproduce_figure",
    "plan",
    "reproduce_all",
    "default_out_dir",
    "default_figures_dir",
    "default_scale",
    "is_figure",
]
