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
        return f"table-{self.table}"


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
    """Every spec: the tables, then the figures (some figures are drawn from tables)."""
    return spec_names() + figure_names()


def _numbered(prefix: str) -> list[str]:
    names = [p.stem for p in specs_dir().glob(f"{prefix}-*.yaml") if p.stem.split("-", 1)[1].isdigit()]
    return sorted(names, key=lambda s: int(s.split("-")[1]))


def load_spec(name: str) -> Any:
    """The spec ``name`` (``table-N``) as its kind's dataclass; unknown names and kinds fail in one line."""
    path = specs_dir() / f"{name}.yaml"
    if not path.is_file():
        raise unknown_name("reproduction spec", name, all_names(), "mmthesis reproduce list")
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
           "specs_dir"]
