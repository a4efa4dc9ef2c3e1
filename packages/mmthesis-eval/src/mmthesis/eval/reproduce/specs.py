"""Reproduction specs: typed views of ``reproductions/table-N.yaml``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mmthesis.core.config import from_dict, read_yaml
from mmthesis.core.errors import DataMissingError
from mmthesis.core.paths import repo_root
from mmthesis.core.registry import unknown_name


@dataclass
class Published:
    value: float
    display: str


@dataclass
class InventoryRow:
    name: str
    published: Published
    dataset: str | None = None
    sum_of: list[str] = field(default_factory=list)
    note: str = ""


@dataclass
class VLSummaryRow:
    """A Table 4 row: published columns (None = not given) of one dataset, or the total of ``sum_of``."""

    name: str
    published: dict[str, float | None]
    dataset: str | None = None
    sum_of: list[str] = field(default_factory=list)


@dataclass
class RetrievalDataset:
    """A column group: the thesis's dataset (``name``, ``key`` of the published values) and the eval task
    that measures it; the task's own ``scales`` block picks the data at each scale (a stand-in at smoke)."""

    name: str
    key: str
    task: str


@dataclass
class RetrievalRow:
    name: str
    published: dict[str, list[float | None]]
    recipe: str | None = None
    quoted: str = ""


@dataclass
class TableSpec:
    table: int
    label: str
    title: str
    section: str
    kind: Literal["dataset-inventory", "vl-dataset-summary", "retrieval"]
    scales: list[str]
    rows: list[dict[str, Any]]
    value_header: str = "Value"
    metrics: list[str] = field(default_factory=list)
    datasets: list[RetrievalDataset] = field(default_factory=list)
    path: str = ""

    def inventory_rows(self) -> list[InventoryRow]:
        return [from_dict(InventoryRow, r, prefix=f"rows[{i}].") for i, r in enumerate(self.rows)]

    def vl_summary_rows(self) -> list[VLSummaryRow]:
        return [from_dict(VLSummaryRow, r, prefix=f"rows[{i}].") for i, r in enumerate(self.rows)]

    def retrieval_rows(self) -> list[RetrievalRow]:
        return [from_dict(RetrievalRow, r, prefix=f"rows[{i}].") for i, r in enumerate(self.rows)]


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
    return sorted((p.stem for p in specs_dir().glob("table-*.yaml")), key=lambda s: int(s.split("-")[1]))


def load_spec(name: str) -> TableSpec:
    path = specs_dir() / f"{name}.yaml"
    if not path.is_file():
        raise unknown_name("reproduction spec", name, spec_names(), "mmthesis reproduce list")
    spec = from_dict(TableSpec, read_yaml(path), prefix="")
    spec.path = str(path)
    return spec
