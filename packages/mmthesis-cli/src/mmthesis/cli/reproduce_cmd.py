"""`mmthesis reproduce`: regenerate thesis tables and figures from their specs in reproductions/.

`reproduce list` shows every table and figure; `reproduce table-N` / `figure-N` builds one; `reproduce all` builds
every table, then every figure, and writes thesis/index.md and the report; `reproduce report` writes thesis/report.html
(+ .md) from what was built so far; `--dry-run` lists the runs and evaluations one needs, which are cached, and their
time.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markdown import Markdown
from rich.table import Table

from mmthesis.core.console import console
from mmthesis.core.errors import MMThesisError

PRICE_HELP = (
    "Price per device-hour for the reproduced cost columns (Table 39), in USD; default 0.69, the thesis's runpod "
    "RTX 4090 on-demand rate (September 2024)."
)


def list_specs() -> None:
    from mmthesis.eval.reproduce.engine import is_figure
    from mmthesis.eval.reproduce.specs import extra_names, figure_names, get_kind, load_spec, spec_names

    table = Table("spec", "title", "section", "category", "scales", title="Thesis tables and figures (reproductions/)")
    names, figures, extras = spec_names(), figure_names(), extra_names()
    for name in names + figures + extras:
        spec = load_spec(name)
        kind = get_kind(spec.kind)
        scales = "any (no training)" if kind.scale_independent else ", ".join(spec.scales)
        category = f"figure: {spec.category}" if is_figure(name) else kind.category
        table.add_row(name, spec.title, spec.section, category + (" (not in `all`)" if name in extras else ""), scales)
    console.print(table)
    console.print(
        f"{len(names)} tables, {len(figures)} figures, {len(extras)} outside the thesis. Build one with "
        "`mmthesis reproduce table-N --scale smoke` (or figure-N, or a name), all thesis ones with `mmthesis reproduce all`."
    )


def show_plan(names: list[str], scale: str) -> None:
    """The steps of ``names`` (shared runs and evaluations once), which are cached, and the time left."""
    from mmthesis.eval.reproduce.engine import plan

    steps, seen = [], set()
    for name in names:
        for s in plan(name, scale):
            if (s.action, s.what) not in seen:
                seen.add((s.action, s.what))
                steps.append(s)
    label = names[0] if len(names) == 1 else f"{len(names)} tables and figures"
    table = Table("step", "what", "cached", "estimate", title=f"{label} at scale {scale}: what `reproduce` would do")
    todo = 0.0
    unknown = False
    for s in steps:
        est = "-" if s.estimate_s is None else f"{s.estimate_s:.0f} s"
        table.add_row(s.action, s.what, "yes" if s.cached else "no", "cached" if s.cached else est)
        if not s.cached:
            unknown = unknown or s.estimate_s is None
            todo += s.estimate_s or 0.0
    console.print(table)
    left = sum(not s.cached for s in steps)
    console.print(
        f"{left} of {len(steps)} step(s) to run, about {todo / 60:.1f} min{' + steps with no estimate' if unknown else ''} "
        "(estimates: the last finished run of the same recipe/task here, else a per-scale default)."
    )


def show_report(thesis_dir: Path) -> None:
    from mmthesis.eval.reproduce.report import write_report

    report = write_report(thesis_dir)
    if not report.entries:
        raise MMThesisError(f"nothing reproduced yet in {thesis_dir}", "run `mmthesis reproduce all --scale smoke` first")
    console.print(f"wrote {report.html} and {report.markdown} ({len(report.entries)} tables and figures)")


def reproduce(
    table: str = typer.Argument(
        ...,
        help="A table such as table-3 or a figure such as figure-19, `all` to build every one, `list`, or `report` "
        "(thesis/report.html).",
    ),
    scale: str | None = typer.Option(
        None,
        "--scale",
        help="smoke | small | full (see `mmthesis reproduce list`); default smoke, or full for the tables of the "
        "thesis's configuration (Tables 31-36)",
    ),
    out: Path = typer.Option(
        None,
        "--out",
        help="Output folder of one table (default thesis/tables) or figure (thesis/figures); for `all` and `report` "
        "the thesis folder that holds tables/, figures/, index.md and report.html (default thesis/, in the checkout).",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the runs and evaluations it would do; run nothing."),
    caption_unit: str = typer.Option(
        "words",
        "--caption-unit",
        help="Table 4's caption length in `words` (whitespace) or `bert-tokens` (BERT-uncased WordPiece, "
        "no [CLS]/[SEP]; reads every train caption).",
    ),
    price: float = typer.Option(0.69, "--price-per-device-hour", help=PRICE_HELP),
) -> None:
    """Regenerate thesis tables (published vs reproduced) as Markdown, LaTeX and JSON, and figures as PNG, PDF and JSON.

    Finished training runs and evaluations with the same config are reused, so a second run is fast.

    Examples: mmthesis reproduce list; mmthesis reproduce table-3 --scale smoke;
    mmthesis reproduce table-25 --scale smoke --dry-run; mmthesis reproduce figure-19 --scale smoke;
    mmthesis reproduce all --scale smoke; mmthesis reproduce report (open thesis/report.html; it works offline)
    """
    from mmthesis.eval.reproduce.engine import (
        default_figures_dir,
        default_out_dir,
        is_figure,
        reproduce_all,
        reproduce_figure,
    )
    from mmthesis.eval.reproduce.engine import reproduce as run
    from mmthesis.eval.reproduce.specs import all_names

    if table == "list":
        list_specs()
        return
    if table == "report":
        show_report(out or default_out_dir().parent)
        return
    if scale is None:
        from mmthesis.eval.reproduce.engine import default_scale

        scale = "smoke" if table == "all" else default_scale(table)
    folder = out or default_out_dir()
    if table == "all":
        folder = (out / "tables") if out is not None else default_out_dir()
        if dry_run:
            show_plan(all_names(), scale)
            return
        outcomes = reproduce_all(scale, folder, price_per_device_hour=price)
        failed = [o for o in outcomes if o.status == "failed"]
        summary = Table("spec", "status", "time (s)", title=f"mmthesis reproduce all --scale {scale}")
        for o in outcomes:
            summary.add_row(o.name, o.status if o.status != "failed" else f"[red]failed[/]: {o.error}", f"{o.seconds:.0f}")
        console.print(summary)
        figures = sum(is_figure(o.name) and o.status != "failed" for o in outcomes)
        console.print(
            f"wrote {folder.parent / 'index.md'}, {len(outcomes) - len(failed) - figures} table(s) in {folder} and "
            f"{figures} figure(s) in {folder.parent / 'figures'}"
        )
        show_report(folder.parent)
        if failed:
            raise MMThesisError(f"{len(failed)} of {len(outcomes)} specs failed: {', '.join(o.name for o in failed)}",
                                "see each table's reason above and in thesis/index.md")
        return
    if dry_run:
        show_plan([table], scale)
        return
    if is_figure(table):
        figures = out or default_figures_dir()
        drawn = reproduce_figure(table, scale, figures)
        console.print(f"[bold]{table}[/] ({drawn.status}): {drawn.caption}")
        console.print(f"wrote {figures / (table + '.png')}, {figures / (table + '.pdf')} and {figures / (table + '.json')}")
        return
    built = run(table, scale, out, caption_unit=caption_unit, price_per_device_hour=price)
    console.print(Markdown(built.table.markdown()))
    console.print(f"wrote {folder / (table + '.md')}, {folder / (table + '.tex')} and {folder / (table + '.json')}")
