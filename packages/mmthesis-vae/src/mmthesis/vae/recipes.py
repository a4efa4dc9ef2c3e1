"""VAE recipe files: YAML with ``full`` settings and ``small``/``smoke`` overrides, as the student recipes.

``load_vae_recipe`` merges ``full`` <- scale overrides <- command-line ``key=value`` into a ``VAERecipeConfig``;
files named ``_*.yaml`` are bases for ``include:``.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from mmthesis.core.config import apply_overrides, comment_header, deep_merge, from_dict, read_yaml, yaml_names
from mmthesis.core.registry import unknown_name
from mmthesis.core.scales import check_scale
from mmthesis.vae.config import VAERecipeConfig


def recipe_dir() -> Path:
    return Path(str(files("mmthesis.vae") / "recipes"))


def vae_recipe_names() -> list[str]:
    return yaml_names(recipe_dir())


def vae_recipe_file(name: str) -> Path:
    path = recipe_dir() / f"{name}.yaml"
    if name.startswith("_") or not path.is_file():
        raise unknown_name("VAE recipe", name, vae_recipe_names(), "mmthesis vae list")
    return path


def vae_recipe_header(name: str) -> str:
    """The recipe file's leading comment block (``include:`` lines above it skipped)."""
    return comment_header(vae_recipe_file(name))


def load_vae_recipe(name: str, scale: str, overrides: list[str] | None = None) -> VAERecipeConfig:
    check_scale(scale)
    raw = read_yaml(vae_recipe_file(name))
    data = {"recipe": raw["recipe"], "thesis_name": raw["thesis_name"], **raw.get("full", {})}
    if scale != "full":
        data = deep_merge(data, raw.get(scale) or {})
    return from_dict(VAERecipeConfig, apply_overrides(data, overrides or []))
