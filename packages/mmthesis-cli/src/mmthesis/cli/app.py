"""The `mmthesis` command: one Typer app mounting one sub-app per command group."""

from __future__ import annotations

import typer

from mmthesis.cli import bench_cmd, doctor_cmd, eval_cmd, reproduce_cmd, train_cmd
from mmthesis.cli.errors import ErrorHandlingGroup

app = typer.Typer(
    cls=ErrorHandlingGroup,
    name="mmthesis",
    help=(
        "Reproduce and reuse the thesis 'Leveraging Pretrained Unimodal Models for Efficient "
        "Vision-Language Pretraining'.\n\nExample: mmthesis reproduce table-3 --scale smoke"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


@app.callback()
def _model_kinds(ctx: typer.Context) -> None:
    # packages above eval add --model kinds when imported (mmthesis.vae: vae:RUN); only where models are loaded
    if ctx.invoked_subcommand in ("eval", "reproduce"):
        import mmthesis.vae  # noqa: F401


def _mount() -> None:
    from mmthesis.cli import data_cmd, teachers_cmd, vae_cmd

    app.add_typer(data_cmd.app, name="data", help="Prepare, inspect and verify datasets.\n\nExample: mmthesis data prepare shapes")
    app.add_typer(teachers_cmd.app, name="teachers", help="List, inspect and convert teacher checkpoints.\n\nExample: mmthesis teachers list")
    app.add_typer(train_cmd.app, name="train", help="Train a thesis recipe.\n\nExample: mmthesis train run s-smke-cdl-mb --scale smoke")
    app.add_typer(eval_cmd.app, name="eval", help="Evaluate models on tasks (`mmthesis eval TASK... --model SPEC...`); `build` tabulates the results.\n\nExample: mmthesis eval retrieval-coco --model run:s-smke-cdl-mb-smoke --scale smoke")
    app.add_typer(vae_cmd.app, name="vae", help="Train the multimodal VAE and generate across modalities.\n\nExample: mmthesis vae train vae-mopoe --scale smoke")
    app.command("reproduce")(reproduce_cmd.reproduce)
    app.add_typer(bench_cmd.app, name="bench", help="Throughput / latency / memory benchmarks.\n\nExample: mmthesis bench list")
    app.command("doctor", help="Show torch/CUDA, package versions, data root and what is prepared.\n\nExample: mmthesis doctor")(doctor_cmd.doctor)


_mount()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
