"""`mmthesis teachers`: list the teachers, inspect a checkpoint, convert one to safetensors.

User errors raise ``MMThesisError`` subclasses; the main app prints them as one
line and exits 2. Mounted by the main CLI as ``mmthesis teachers``.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from mmthesis.cli.errors import CommandGroup
from mmthesis.core.console import console

app = typer.Typer(cls=CommandGroup, help="Teacher models: list them, inspect and convert checkpoints.", no_args_is_help=True)


def _millions(n: int) -> str:
    return f"{n / 1e6:.1f}M"


@app.command("list")
def list_cmd() -> None:
    """Every teacher: name, checkpoint format, parameters, where its file is expected."""
    from mmthesis.teachers import list_teachers

    table = Table(title="teachers")
    for col in ("name", "format", "modality", "params"):
        table.add_column(col, no_wrap=True)
    for col in ("expected file", "description"):
        table.add_column(col, overflow="fold")
    for row in list_teachers():
        table.add_row(row["name"], row["format"], row["modality"], _millions(row["params"]), row["expected_path"],
                      row["description"])
    console.print(table)


@app.command("inspect")
def inspect_cmd(
    path: Path = typer.Argument(..., help="checkpoint file or Hugging Face folder"),
    teacher: str = typer.Option(None, "--teacher", help="teacher name (default: from the detected format)"),
    trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint", help="allow unrestricted unpickling"),
    show_keys: bool = typer.Option(False, "--keys", help="list every missing/unexpected/dropped key"),
) -> None:
    """Detected format, architecture, parameter count, missing and unexpected keys."""
    from mmthesis.core.errors import CheckpointError
    from mmthesis.teachers import inspect_checkpoint

    info = inspect_checkpoint(path, name=teacher, trust=trust_checkpoint)
    rep = info.report
    table = Table(title=f"{path}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("read as", info.container)
    table.add_row("format", info.format)
    table.add_row("teacher", info.teacher)
    arch = ", ".join(f"{k}={v}" for k, v in sorted(info.config.items()))
    table.add_row("architecture", arch)
    table.add_row("parameters", f"{info.params:,} ({_millions(info.params)})")
    table.add_row("missing keys", str(len(rep.missing)))
    table.add_row("unexpected keys", str(len(rep.unexpected)))
    table.add_row("shape mismatches", str(len(rep.mismatched)))
    table.add_row("dropped (training-only)", str(len(info.dropped)))
    for note in info.notes:
        table.add_row("note", note)
    console.print(table)
    limit = None if show_keys else 10
    for title, keys in (("missing", rep.missing), ("unexpected", rep.unexpected), ("shape mismatch", rep.mismatched),
                        ("dropped", info.dropped if show_keys else [])):
        for key in keys[:limit]:
            console.print(f"  {title}: {key}")
        if limit is not None and len(keys) > limit:
            console.print(f"  ... {len(keys) - limit} more {title} (use --keys)")
    if not rep.ok:
        raise CheckpointError(f"{path} does not load as {info.teacher}: {len(rep.missing)} missing, "
                              f"{len(rep.unexpected)} unexpected, {len(rep.mismatched)} mis-shaped keys",
                              "use the checkpoint the teacher expects (see `mmthesis teachers list`)")


@app.command("convert")
def convert_cmd(
    src: Path = typer.Argument(..., help="foreign checkpoint (fairseq .pt, unilm .pth, HF folder, ...)"),
    dst: Path = typer.Argument(..., help="output .safetensors file"),
    teacher: str = typer.Option(None, "--teacher", help="teacher name (default: from the detected format)"),
    trust_checkpoint: bool = typer.Option(
        False, "--trust-checkpoint", help="unpickle SRC without restrictions (only for files you trust)"),
) -> None:
    """Convert SRC once into a safetensors file that loads without any unpickling."""
    from mmthesis.core.errors import MMThesisError
    from mmthesis.teachers import convert_checkpoint

    if dst.suffix != ".safetensors":
        raise MMThesisError(f"output {str(dst)!r} must end in .safetensors", f"use {dst.with_suffix('.safetensors')}")
    info = convert_checkpoint(src, dst, name=teacher, trust=trust_checkpoint)
    console.print(f"wrote {dst}: {info.teacher} from {info.format}, {_millions(info.params)} parameters, "
                  f"{len(info.dropped)} training-only keys dropped")
