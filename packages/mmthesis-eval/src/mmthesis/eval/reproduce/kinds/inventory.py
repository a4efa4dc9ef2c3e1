"""Table 3 kind (``dataset-inventory``): counts of prepared training examples next to the published sizes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmthesis.core.errors import DataMissingError
from mmthesis.eval.reproduce.engine import Built, Context, missing_data, title
from mmthesis.eval.reproduce.render import RenderedTable
from mmthesis.eval.reproduce.specs import Kind, SpecHeader, register_kind


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
class InventorySpec(SpecHeader):
    rows: list[InventoryRow] = field(default_factory=list)
    value_header: str = "Value"


def build(spec: InventorySpec, ctx: Context) -> Built:
    table, data = _inventory(spec, ctx.scale)
    return Built(table, data, status="derived")


def _inventory(spec: InventorySpec, scale: str) -> tuple[RenderedTable, dict[str, Any]]:
    from mmthesis.data.counts import count_training_examples

    rows = spec.rows
    counts, missing = {}, []
    for row in rows:
        if row.dataset is None:
            continue
        try:
            counts[row.name] = count_training_examples(row.dataset, scale)
        except DataMissingError as e:
            missing.append(e)
    if missing:
        raise missing_data(spec, scale, missing)
    header = ["Dataset", f"{spec.value_header} (published)", f"{spec.value_header} (reproduced, {scale})", "Note"]
    body, data = [], {}
    for row in rows:
        if row.dataset is not None:
            c = counts[row.name]
            value = c.examples
            cell = f"{value:,} {c.unit}" if c.unit else f"{value:,}"
            note = f"stand-in: {c.stand_in}" if c.stand_in else row.note
        else:
            value = sum(counts[n].examples for n in row.sum_of)
            cell = f"{value:,}"
            note = "sum of the rows above" + (
                " (stand-ins: not comparable to the published total)" if scale != "full" else ""
            )
        data[row.name] = {"published": row.published.value, "reproduced": value}
        body.append([row.name, row.published.display, cell, note])
    notes = [
        f"Scale: {scale}. Published values from the thesis (spec {Path(spec.path).name}); reproduced values counted from the prepared data by `mmthesis.data.counts`."
    ]
    if scale != "full":
        notes.append(
            "At this scale every dataset is a small stand-in in the real raw layout, counted by the same code as the real data."
        )
    notes += [f"{r.name}: {r.note}" for r in rows if r.note and (scale == "full" or r.dataset is None)]
    return RenderedTable(title(spec, scale), header, body, notes), data




register_kind(Kind("dataset-inventory", "data", InventorySpec, build))
