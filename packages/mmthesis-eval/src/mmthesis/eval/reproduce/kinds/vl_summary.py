"""Table 4 kind (``vl-dataset-summary``): columns of the prepared image-text training data."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmthesis.core.errors import DataMissingError
from mmthesis.eval.reproduce.engine import Built, Context, missing_data, title
from mmthesis.eval.reproduce.render import RenderedTable
from mmthesis.eval.reproduce.specs import Kind, SpecHeader, register_kind


@dataclass
class VLSummaryRow:
    """A Table 4 row: published columns (None = not given) of one dataset, or the total of ``sum_of``."""

    name: str
    published: dict[str, float | None]
    dataset: str | None = None
    sum_of: list[str] = field(default_factory=list)


@dataclass
class VLSummarySpec(SpecHeader):
    rows: list[VLSummaryRow] = field(default_factory=list)


def build(spec: VLSummarySpec, ctx: Context) -> Built:
    table, data = _vl_summary(spec, ctx.scale, ctx.caption_unit)
    return Built(table, data, status="derived")


VL_COLUMNS = {
    "avg_caption_length": "Avg. Caption Length",
    "captions_per_image": "Avg. Captions per Image",
    "images": "Images",
    "pairs": "Image-Text Pairs",
}


CAPTION_UNIT_SHORT = {"words": "words", "bert-tokens": "BERT tokens"}


def _vl_summary(spec: VLSummarySpec, scale: str, caption_unit: str = "words") -> tuple[RenderedTable, dict[str, Any]]:
    from mmthesis.data.counts import check_caption_unit, summarize_image_text

    check_caption_unit(caption_unit)
    rows = spec.rows
    summaries, missing = {}, []
    for row in rows:
        if row.dataset is not None:
            try:
                summaries[row.name] = summarize_image_text(row.dataset, scale, caption_unit=caption_unit)
            except DataMissingError as e:
                missing.append(e)
    if missing:
        raise missing_data(spec, scale, missing)
    measured: dict[str, dict[str, float | None]] = {}
    for row in rows:
        if row.dataset is not None:
            s = summaries[row.name]
            measured[row.name] = {
                "avg_caption_length": s.avg_caption_length,
                "captions_per_image": s.captions_per_image,
                "images": s.images,
                "pairs": s.pairs,
                "caption_length_unit": s.caption_length_unit,
            }
        else:
            parts = [measured[n] for n in row.sum_of]
            measured[row.name] = {
                "avg_caption_length": None,
                "captions_per_image": None,
                "images": sum(p["images"] for p in parts),
                "pairs": sum(p["pairs"] for p in parts),
            }
    header = ["Dataset", "Values", *VL_COLUMNS.values()]
    body, data = [], {}
    for row in rows:
        body.append([row.name, "published", *(_vl_cell(k, row.published.get(k)) for k in VL_COLUMNS)])
        cells = [_vl_cell(k, measured[row.name][k]) for k in VL_COLUMNS]
        if measured[row.name]["avg_caption_length"] is not None:  # the unit goes with every reproduced length
            cells[0] += f" {CAPTION_UNIT_SHORT[caption_unit]}"
        body.append([row.name, f"reproduced ({scale})", *cells])
        data[row.name] = {"published": row.published, "reproduced": measured[row.name]}
    units = {s.caption_length_unit for s in summaries.values()}
    notes = [
        f"Scale: {scale}. Published values from the thesis (spec {Path(spec.path).name}); reproduced values are the "
        "prepared train splits' manifest statistics (`mmthesis data stats NAME`).",
        f"Reproduced caption length is in {', '.join(sorted(units))}; the thesis does not state the unit of the "
        "published column and speaks of tokens elsewhere (REFERENCE.md §4.1); `--caption-unit words|bert-tokens` "
        "picks ours.",
        "COCO train = Karpathy train + restval as in the thesis code; the published 82,783 images is the train2014 "
        "folder next to the train+restval pair count (REFERENCE.md §10 item 13).",
    ]
    notes += [f"{name}: stand-in: {s.stand_in}" for name, s in summaries.items() if s.stand_in]
    notes += [
        f"{name}: skipped {', '.join(f'{n} {r}' for r, n in sorted(s.skipped.items()))}"
        for name, s in summaries.items()
        if s.skipped
    ]
    return RenderedTable(title(spec, scale), header, body, notes), data


def _vl_cell(column: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{int(value):,}" if column in ("images", "pairs") else f"{value:.1f}"




register_kind(Kind("vl-dataset-summary", "data", VLSummarySpec, build))
