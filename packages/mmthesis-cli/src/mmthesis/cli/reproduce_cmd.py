"""`mmthesis reproduce TABLE`: regenerate a thesis table from its spec in reproductions/."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markdown import Markdown
from rich.table import Table

from mmthesis.core.console import console


def list_specs() -> None:
    from mmthesis.eval.reproduce.specs import load_spec, spec_names

    table = Table("table", "title", "section", "kind", "scales", title="Reproduction specs (reproductions/)")
    for name in spec_names():
        spec = load_spec(name)
        table.add_row(name, spec.title, spec.section, spec.kind, ", ".join(spec.scales))
    console.print(table)


def reproduce(
    table: str = typer.Argument(..., help="A table such as table-3, or `list` to show every spec."),
    scale: str = typer.Option("smoke", "--scale", help="smoke | small | full (see `mmthesis reproduce list`)"),
    out: Path = typer.Option(None, "--out", help="Output folder (default: thesis/tables in the checkout)."),
    caption_unit: str = typer.Option(
        "words",
        "--caption-unit",
        help="Table 4's caption length in `words` (whitespace) or `bert-tokens` (BERT-uncased WordPiece, "
        "no [CLS]/[SEP]; reads every train caption).",
    ),
) -> None:
    """Regenerate a thesis table (published vs reproduced) as Markdown, LaTeX and JSON.

    Finished training/eval runs with the same config are reused, so a second run is fast.

    Examples: mmthesis reproduce list; mmthesis reproduce table-3 --scale smoke;
    mmthesis reproduce table-4 --scale smoke --caption-unit bert-tokens
    """
    if table == "list":
        list_specs()
        return
    from mmthesis.eval.reproduce.run import default_out_dir
    from mmthesis.eval.reproduce.run import reproduce as run

    rendered = run(table, scale, out, caption_unit=caption_unit)
    console.print(Markdown(rendered.markdown()))
    folder = out or default_out_dir()
    console.print(f"wrote {folder / (table + '.md')}, {folder / (table + '.tex')} and {folder / (table + '.json')}")
