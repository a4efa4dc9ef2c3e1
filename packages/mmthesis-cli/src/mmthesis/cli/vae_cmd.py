"""`mmthesis vae`: train the multimodal VAE recipes and generate across modalities with a trained one."""

from __future__ import annotations

from pathlib import Path

import typer

from mmthesis.cli.errors import CommandGroup
from mmthesis.cli.run_tables import print_recipes, print_run_result
from mmthesis.core.console import console
from mmthesis.core.errors import ConfigError, DataMissingError

app = typer.Typer(cls=CommandGroup, no_args_is_help=True)


@app.command("list")
def list_recipes() -> None:
    """List the VAE recipes.

    Example: mmthesis vae list
    """
    from mmthesis.vae.recipes import vae_recipe_header, vae_recipe_names

    print_recipes("Multimodal VAE recipes", vae_recipe_names(), vae_recipe_header)


@app.command("train")
def train(
    recipe: str = typer.Argument(..., help="Recipe name, see `mmthesis vae list`."),
    overrides: list[str] = typer.Argument(None, help="Config overrides key=value, e.g. loss.k=8"),
    scale: str = typer.Option("smoke", "--scale", help="smoke | small | full"),
    force: bool = typer.Option(False, "--force", help="Train again even if a finished run with this config exists."),
) -> None:
    """Train a VAE recipe; a finished run with the same config is reused.

    Example: mmthesis vae train vae-mopoe --scale smoke train.max_steps=100
    """
    from mmthesis.core.config import config_hash
    from mmthesis.core.results import run_dir
    from mmthesis.vae.artifact import run_name
    from mmthesis.vae.recipes import load_vae_recipe
    from mmthesis.vae.train import train_vae

    config = load_vae_recipe(recipe, scale, overrides or [])
    result = train_vae(config, scale, force=force)
    print_run_result(f"{recipe} ({scale})", result.metrics, run_dir(run_name(config, scale), config_hash(config)))


@app.command("generate")
def generate(
    model: str = typer.Option(..., "--model", help="A VAE run: folder, NAME (e.g. vae-mopoe-smoke) or vae:NAME."),
    text: list[str] = typer.Option(None, "--text", help="Caption(s) to generate images from (PNG per caption)."),
    image: list[Path] = typer.Option(None, "--image", help="Image file(s) to generate captions from."),
    out: Path = typer.Option(None, "--out", help="Folder for the PNGs (and captions.txt); needed with --text."),
    samples: int = typer.Option(1, "--samples", help="Captions per image: 1 = greedy, more = sampled (seeded)."),
    seed: int = typer.Option(0, "--seed", help="Seed of sampled captions."),
) -> None:
    """Generate across modalities: an image per --text caption, a caption per --image file.

    Example: mmthesis vae generate --model vae-mopoe-smoke --text "a red circle" --out gen/
    """
    from mmthesis.vae.generate import caption_images, images_from_captions

    if not text and not image:
        raise ConfigError("nothing to generate", "pass --text CAPTION and/or --image FILE")
    if text and out is None:
        raise ConfigError("--text writes PNG files", "pass --out FOLDER")
    for path in image or []:
        if not path.is_file():
            raise DataMissingError(f"image file {path} does not exist", "pass an existing image file")
    if text:
        for caption, path in images_from_captions(model, list(text), out):
            console.print(f"{caption!r} -> {path}")
    if image:
        lines = caption_images(model, list(image), samples=samples, seed=seed)
        for path, captions in lines:
            for c in captions:
                console.print(f"{path}: {c}")
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            (out / "captions.txt").write_text(
                "".join(f"{p}\t{c}\n" for p, cs in lines for c in cs), encoding="utf-8"
            )
