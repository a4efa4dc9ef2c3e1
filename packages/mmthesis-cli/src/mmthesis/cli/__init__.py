"""mmthesis.cli: the Typer application behind the `mmthesis` command."""
