"""Turn user errors into one line on stderr and a non-zero exit, for every command."""

from __future__ import annotations

import click
from typer.core import TyperGroup

from mmthesis.core.console import err_console
from mmthesis.core.errors import MMThesisError, storage_error
from mmthesis.core.registry import unknown_name


def report(error: MMThesisError) -> None:
    err_console.print(f"[bold red]error:[/] {error.one_line()}", soft_wrap=True, markup=True, highlight=False)


class CommandGroup(TyperGroup):
    """A command group whose unknown subcommand is the one ``UnknownNameError`` (known names, "did you mean")."""

    def resolve_command(self, ctx: click.Context, args: list[str]):  # type: ignore[override]
        name = args[0] if args else None
        if name is not None and not name.startswith("-") and self.get_command(ctx, name) is None:
            raise unknown_name("command", name, self.list_commands(ctx), f"{ctx.command_path} --help")
        return super().resolve_command(ctx, args)


class ErrorHandlingGroup(CommandGroup):
    """Root command group: an ``MMThesisError`` anywhere below becomes ``error: ... (fix: ...)`` + exit 2;
    so does an ``OSError`` of a full, read-only or unwritable disk (the user's environment, not a bug)."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except MMThesisError as e:
            report(e)
            ctx.exit(e.exit_code)
        except OSError as e:
            error = storage_error(e)
            if error is None:
                raise
            report(error)
            ctx.exit(error.exit_code)
