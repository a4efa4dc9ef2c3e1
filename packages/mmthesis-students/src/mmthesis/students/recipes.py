"""Recipe files: one YAML per thesis experiment with ``full`` settings and ``small``/``smoke`` overrides.

The header comment of each file gives the command, the thesis section and the
reading it follows of each code-vs-text disagreement (REFERENCE.md §10);
``load_recipe`` merges ``full`` <- scale overrides <- command-line ``key=value``.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from mmthesis.core.config import apply_overrides, deep_merge, from_dict, read_yaml
from mmthesis.core.errors import ConfigError, UnknownNameError
from mmthesis.students.config import VLRecipeConfig

SCALES = ("smoke", "small", "full")


def recipe_dir() -> Path:
    return Path(str(files("mmthesis.students") / "recipes"))


def recipe_names() -> list[str]:
    """The recipes; files named ``_*.yaml`` are shared bases for ``include:``, not recipes."""
    return sorted(p.stem for p in recipe_dir().glob("*.yaml") if not p.name.startswith("_"))


def recipe_file(name: str) -> Path:
    path = recipe_dir() / f"{name}.yaml"
    if name.startswith("_") or not path.is_file():
        raise UnknownNameError(
            f"unknown recipe {name!r}", f"use one of: {', '.join(recipe_names())} (see `mmthesis train list`)"
        )
    return path


def recipe_header(name: str) -> str:
    """The recipe file's leading comment block (what it is, the command, the §10 readings)."""
    lines = []
    for line in recipe_file(name).read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    return "\n".join(lines)


def recipe_dict(name: str, scale: str, overrides: list[str] | None = None) -> dict[str, Any]:
    if scale not in SCALES:
        raise ConfigError(f"unknown scale {scale!r}", f"use one of: {', '.join(SCALES)}")
    raw = read_yaml(recipe_file(name))  # applies the file's ``include:`` bases
    base = {"recipe": raw["recipe"], "thesis_name": raw["thesis_name"], **raw.get("full", {})}
    if "task" in raw:
        base["task"] = raw["task"]
    if scale != "full":
        base = deep_merge(base, raw.get(scale) or {})
    return apply_overrides(base, overrides or [])


def load_recipe(name: str, scale: str, overrides: list[str] | None = None) -> VLRecipeConfig:
    return from_dict(VLRecipeConfig, recipe_dict(name, scale, overrides))
