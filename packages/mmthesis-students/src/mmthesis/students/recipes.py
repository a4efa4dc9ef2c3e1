"""Recipe files: one YAML per thesis experiment with ``full`` settings and ``small``/``smoke`` overrides.

The header comment of each file gives the command, the thesis section and the
reading it follows of each code-vs-text disagreement (REFERENCE.md §10);
``load_recipe`` merges ``full`` <- scale overrides <- command-line ``key=value``; a recipe that starts from
another recipe's run (``init.from_recipe``) also resolves that parent's config, whose hash becomes part of its own.
"""

from __future__ import annotations

from dataclasses import replace
from importlib.resources import files
from pathlib import Path
from typing import Any

from mmthesis.core.config import (
    apply_overrides,
    comment_header,
    config_hash,
    deep_merge,
    from_dict,
    read_yaml,
    to_dict,
    yaml_names,
)
from mmthesis.core.errors import ConfigError
from mmthesis.core.registry import unknown_name
from mmthesis.core.scales import check_scale
from mmthesis.students.config import VLRecipeConfig


def recipe_dir() -> Path:
    return Path(str(files("mmthesis.students") / "recipes"))


def recipe_names() -> list[str]:
    """The recipes; files named ``_*.yaml`` are shared bases for ``include:``, not recipes."""
    return yaml_names(recipe_dir())


def recipe_file(name: str) -> Path:
    path = recipe_dir() / f"{name}.yaml"
    if name.startswith("_") or not path.is_file():
        raise unknown_name("recipe", name, recipe_names(), "mmthesis train list")
    return path


def recipe_header(name: str) -> str:
    """The recipe file's leading comment block (what it is, the command, the §10 readings)."""
    return comment_header(recipe_file(name))


def recipe_dict(name: str, scale: str, overrides: list[str] | None = None) -> dict[str, Any]:
    check_scale(scale)
    raw = read_yaml(recipe_file(name))  # applies the file's ``include:`` bases
    base = {"recipe": raw["recipe"], "thesis_name": raw["thesis_name"], **raw.get("full", {})}
    if "task" in raw:
        base["task"] = raw["task"]
    if scale != "full":
        base = deep_merge(base, raw.get(scale) or {})
    return apply_overrides(base, overrides or [])


def load_recipe(name: str, scale: str, overrides: list[str] | None = None) -> VLRecipeConfig:
    """The recipe's config at ``scale``; with ``init.from_recipe`` the parent's config hash is filled in."""
    return _build(recipe_dict(name, scale, overrides), scale, ())


def parent_config(config: VLRecipeConfig, scale: str) -> VLRecipeConfig:
    """The config of the run ``config`` starts from: ``init.from_recipe`` at ``scale`` with ``init.overrides``."""
    if not config.init.from_recipe:
        raise ConfigError(f"recipe {config.recipe} has no init.from_recipe")
    return _parent(config, scale, (config.recipe,))


def _build(data: dict[str, Any], scale: str, chain: tuple[str, ...]) -> VLRecipeConfig:
    config = from_dict(VLRecipeConfig, data)
    if config.init.from_recipe:
        config.init.parent_hash = config_hash(_parent(config, scale, (*chain, config.recipe)))
    return config


def _parent(config: VLRecipeConfig, scale: str, chain: tuple[str, ...]) -> VLRecipeConfig:
    name = config.init.from_recipe
    if name in chain:
        raise ConfigError(f"init.from_recipe makes a cycle: {' -> '.join((*chain, name))}")
    parent = _build(deep_merge(recipe_dict(name, scale), config.init.overrides), scale, chain)
    check_same_student(config, parent)
    return parent


def check_same_student(config: VLRecipeConfig, parent: VLRecipeConfig) -> None:
    """A run started from ``parent`` keeps its student: every ``model`` key equal except ``itc_on_fc1``, which
    only selects the ITC terms. A difference is an error naming the key and where to change it."""
    if parent.task != "vl":
        raise ConfigError(
            f"init.from_recipe={parent.recipe} is a {parent.task} recipe", "start from a vision-language recipe"
        )
    own = to_dict(replace(config.model, itc_on_fc1=parent.model.itc_on_fc1))
    theirs = to_dict(parent.model)
    diff = _first_difference(own, theirs, "model")
    if diff is not None:
        key, mine, parents = diff
        raise ConfigError(
            f"{key}={mine} differs from the parent {parent.recipe}'s {parents}: a run started from it keeps its model",
            f"change the parent with init.overrides.{key}={mine} (and {key} here), or drop the change",
        )


def _first_difference(a: Any, b: Any, key: str) -> tuple[str, Any, Any] | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            diff = _first_difference(a.get(k), b.get(k), f"{key}.{k}")
            if diff is not None:
                return diff
        return None
    return None if a == b else (key, a, b)
