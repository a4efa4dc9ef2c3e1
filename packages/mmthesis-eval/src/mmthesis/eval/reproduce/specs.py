"""Reproduction specs: ``reproductions/table-N.yaml`` and the kinds that build them.

Every spec has the same header (table number, label, title, section, kind,
scales); the rest is the kind's own schema. A kind is a small module under
``mmthesis.eval.reproduce.kinds`` that registers its spec dataclass, a
``build`` function (compute + render) and optionally a ``plan`` function (what
``--dry-run`` lists). ``KIND_MODULES`` is the one list of them.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from mmthesis.core.config import from_dict, read_yaml
from mmthesis.core.errors import ConfigError, DataMissingError
from mmthesis.core.paths import repo_root
from mmthesis.core.registry import Registry, unknown_name

# What a table is, as `mmthesis reproduce list` and the index show it.
Category = Literal["results", "derived", "time-cost", "quoted", "data", "figure"]

KIND_MODULES = (
    "inventory",
    "vl_summary",
    "results",
    "quoted",
    "layer_decay",
    "parameters",
    "examples",
    "hyperparameters",
    "figure",
)
# Modules of packages above eval (mmthesis.vae) that register kinds and figure builders, by full dotted name:
# ``register_reproduce_module`` adds one without importing anything (import mmthesis.vae stays light); ``get_kind``
# and the figures' ``get_builder`` import them when a spec names a kind or builder not yet registered.
PLUGIN_MODULES: list[str] = []


def register_reproduce_module(module: str) -> None:
    """Let ``get_kind`` / ``get_builder`` import ``module`` to find the kinds and builders it registers."""
    if module not in PLUGIN_MODULES:
        PLUGIN_MODULES.append(module)


@dataclass
class SpecHeader:
    """Fields every spec has; a kind's spec dataclass extends this."""

    table: int
    label: str
    title: str
    section: str
    kind: str
    scales: list[str]
    path: str = ""

    @property
    def name(self) -> str:
        # a spec outside the thesis's numbering (table: 0, e.g. vae-arithmetic) is named by its file
        return Path(self.path).stem if self.table == 0 and self.path else f"table-{self.table}"


@dataclass(frozen=True)
class Kind:
    name: str
    category: Category
    spec_type: type
    build: Callable[..., Any]  # (spec, ctx) -> Built
    plan: Callable[..., Any] | None = None  # (spec, ctx) -> list[PlannedStep]
    # scale-independent kinds (configs, parameter counts, quotes) build the same table at every scale
    scale_independent: bool = False
    # (raw YAML mapping, path) -> spec, for kinds whose spec is not one dataclass (figures: header + builder params)
    parse: Callable[[dict[str, Any], Path], Any] | None = None


KINDS: Registry[Kind] = Registry("table kind")


def register_kind(kind: Kind) -> Kind:
    return KINDS.register(kind.name, kind)


def get_kind(name: str) -> Kind:
    # not "if the registry is empty": a kind module imported directly (a test) must not hide the others
    if name not in KINDS:
        for module in KIND_MODULES:
            importlib.import_module(f"mmthesis.eval.reproduce.kinds.{module}")
        for module in PLUGIN_MODULES:
            importlib.import_module(module)
    return KINDS.get(name)


def specs_dir() -> Path:
    env = os.environ.get("MMTHESIS_REPRODUCTIONS")
    if env:
        return Path(env)
    root = repo_root()
    if root is None:
        raise DataMissingError(
            "cannot find the reproductions/ specs folder",
            "set MMTHESIS_REPRODUCTIONS to the checkout's reproductions/ folder",
        )
    return root / "reproductions"


def spec_names() -> list[str]:
    """The table specs, table-1 first."""
    return _numbered("table")


def figure_names() -> list[str]:
    """The figure specs, figure-1 first."""
    return _numbered("figure")


def all_names() -> list[str]:
    """Every thesis spec: the tables, then the figures (some figures are drawn from tables)."""
    return spec_names() + figure_names()


def extra_names() -> list[str]:
    """Specs outside the thesis's numbering (``vae-arithmetic``, ``figure-vae-traversal``): listed and built by
    name, but not part of ``reproduce all`` (they answer the exposé's open question, not a thesis table)."""
    numbered = re.compile(r"(table|figure)-\d+")
    return sorted(p.stem for p in specs_dir().glob("*.yaml") if not p.stem.startswith("_") and not numbered.fullmatch(p.stem))


def _numbered(prefix: str) -> list[str]:
    names = [p.stem for p in specs_dir().glob(f"{prefix}-*.yaml") if p.stem.split("-", 1)[1].isdigit()]
    return sorted(names, key=lambda s: int(s.split("-")[1]))


def load_spec(name: str) -> Any:
    """The spec ``name`` (``table-N``) as its kind's dataclass; unknown names and kinds fail in one line."""
    path = specs_dir() / f"{name}.yaml"
    if not path.is_file():
        raise unknown_name("reproduction spec", name, all_names() + extra_names(), "mmthesis reproduce list")
    raw = read_yaml(path)
    if not isinstance(raw, dict) or "kind" not in raw:
        raise ConfigError(f"spec {path.name} has no `kind:`", "add one, see `mmthesis reproduce list`")
    kind = get_kind(str(raw["kind"]))
    if kind.parse is not None:
        return kind.parse(raw, path)
    spec = from_dict(kind.spec_type, raw, prefix="")
    spec.path = str(path)
    return spec


def header_fields() -> set[str]:
    return {f.name for f in fields(SpecHeader)}


__all__ = ["SpecHeader", "Kind", "KINDS", "register_kind", "get_kind", "load_spec", "spec_names", "figure_names", "all_names",
           "extra_names", "register_reproduce_module", "PLUGIN_MODULES",
           "specs_dir"]
