"""Turn user errors into one line on stderr and a non-zero exit, for every command."""

from __future__ import annotations

import click
from typer.core import TyperGroup

from mmthesis.core.console import err_console
from mmthesis.core.errors import MMThesisError


def report(error: MMThesisError) -> None:
    err_console.print(f"[bold red]error:[/] {error.one_line()}", soft_wrap=True, markup=True, highlight=False)


class ErrorHandlingGroup(TyperGroup):
    """Root command group: an ``MMThesisError`` anywhere below becomes ``error: ... (fix: ...)`` + exit 2."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except MMThesisError as e:
            report(e)
            ctx.exit(e.exit_code)
