"""Compute a table at a scale and write ``thesis/tables/table-N.{md,tex,json}``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmthesis.core.console import console
from mmthesis.core.errors import ConfigError, DataMissingError
from mmthesis.core.io import atomic_write_json, atomic_write_text
from mmthesis.core.paths import repo_root
from mmthesis.core.results import run_dir
from mmthesis.eval.reproduce.render import RenderedTable, fmt_count
from mmthesis.eval.reproduce.specs import TableSpec, load_spec

DIRECTIONS = {"i2t": "I→T", "t2i": "T→I"}


def default_out_dir() -> Path:
    root = repo_root()
    return (root if root is not None else Path.cwd()) / "thesis" / "tables"


def reproduce(
    name: str,
    scale: str,
    out_dir: Path | None = None,
    *,
    runs_root: Path | None = None,
    caption_unit: str = "words",
) -> RenderedTable:
    """``caption_unit`` (``words`` | ``bert-tokens``) is the unit of Table 4's reproduced caption length."""
    spec = load_spec(name)
    if scale not in spec.scales:
        raise ConfigError(f"{name} cannot be reproduced at scale {scale!r}", f"use --scale {' or '.join(spec.scales)}")
    if caption_unit != "words" and spec.kind != "vl-dataset-summary":
        raise ConfigError(f"{name} has no caption lengths, so --caption-unit does not apply", "leave it out")
    if spec.kind == "dataset-inventory":
        table, data = _inventory(spec, scale)
    elif spec.kind == "vl-dataset-summary":
        table, data = _vl_summary(spec, scale, caption_unit)
    else:
        table, data = _retrieval(spec, scale, runs_root)
    out = out_dir or default_out_dir()
    atomic_write_text(out / f"{name}.md", table.markdown())
    atomic_write_text(out / f"{name}.tex", table.latex())
    atomic_write_json(
        out / f"{name}.json", {"table": spec.table, "scale": scale, "spec": spec_location(spec), "values": data}
    )
    return table


# -- Table 3 style: counts of prepared training examples ----------------------------------------
def _inventory(spec: TableSpec, scale: str) -> tuple[RenderedTable, dict[str, Any]]:
    from mmthesis.data.counts import count_training_examples

    rows = spec.inventory_rows()
    counts, missing = {}, []
    for row in rows:
        if row.dataset is None:
            continue
        try:
            counts[row.name] = count_training_examples(row.dataset, scale)
        except DataMissingError as e:
            missing.append(e)
    if missing:
        raise _missing_data(spec, scale, missing)
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
    return RenderedTable(f"Table {spec.table}: {spec.title} (scale: {scale})", header, body, notes), data


# -- Table 4 style: columns of prepared image-text training data --------------------------------
VL_COLUMNS = {
    "avg_caption_length": "Avg. Caption Length",
    "captions_per_image": "Avg. Captions per Image",
    "images": "Images",
    "pairs": "Image-Text Pairs",
}


CAPTION_UNIT_SHORT = {"words": "words", "bert-tokens": "BERT tokens"}


def _vl_summary(spec: TableSpec, scale: str, caption_unit: str = "words") -> tuple[RenderedTable, dict[str, Any]]:
    from mmthesis.data.counts import check_caption_unit, summarize_image_text

    check_caption_unit(caption_unit)
    rows = spec.vl_summary_rows()
    summaries, missing = {}, []
    for row in rows:
        if row.dataset is not None:
            try:
                summaries[row.name] = summarize_image_text(row.dataset, scale, caption_unit=caption_unit)
            except DataMissingError as e:
                missing.append(e)
    if missing:
        raise _missing_data(spec, scale, missing)
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
    return RenderedTable(f"Table {spec.table}: {spec.title} (scale: {scale})", header, body, notes), data


def _vl_cell(column: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{int(value):,}" if column in ("images", "pairs") else f"{value:.1f}"


def _missing_data(spec: TableSpec, scale: str, missing: list[DataMissingError]) -> DataMissingError:
    """One error listing the prepare command of every dataset the table still needs."""
    fixes = " && ".join(f"`{e.fix.removeprefix('run ').strip('`')}`" if e.fix else e.message for e in missing)
    return DataMissingError(
        f"{spec_label(spec)} at scale {scale} needs {len(missing)} unprepared dataset(s)", f"run {fixes}"
    )


# -- Table 25 style: retrieval of trained recipes -------------------------------------------------
def _retrieval(spec: TableSpec, scale: str, runs_root: Path | None) -> tuple[RenderedTable, dict[str, Any]]:
    """Train each row's recipe (or reuse its finished run), then evaluate it through the eval harness."""
    from mmthesis.data.registry import check_data
    from mmthesis.eval.data_access import resolve_dataset
    from mmthesis.eval.harness import evaluate, resolve_tasks
    from mmthesis.students.recipes import load_recipe
    from mmthesis.students.train import train_recipe

    rows = spec.retrieval_rows()
    tasks = {t.name: t for t in resolve_tasks([d.task for d in spec.datasets], scale)}
    configs = {r.name: load_recipe(r.recipe, scale) for r in rows if r.recipe}
    # fail up front, with the prepare commands, before the first training starts
    check_data([n for c in configs.values() for n in c.data.train], scale)
    for t in tasks.values():
        resolve_dataset(t.dataset, scale)
    measured: dict[str, dict[str, dict[str, float]]] = {}
    result_paths = []
    for row in rows:
        if not row.recipe:
            continue
        console.rule(f"{row.name} ({row.recipe}, {scale})")
        trained = train_recipe(configs[row.name], scale, root=runs_root)
        folder = run_dir(trained.name, trained.config_hash, runs_root)
        result = evaluate(list(tasks), str(folder), scale=scale, root=runs_root)
        result_paths += [str(folder / "result.json"), str(run_dir(result.name, result.config_hash, runs_root) / "result.json")]
        measured[row.name] = {d.key: result.metrics[d.task] for d in spec.datasets}
    header = ["Model", "Values"]
    for d in spec.datasets:
        actual = tasks[d.task].dataset
        shown = d.name if scale == "full" or actual == d.key else f"{d.name} [{scale}: {actual}]"
        for metric in spec.metrics:
            direction, k = metric.split("_")
            header.append(f"{shown} {DIRECTIONS[direction]} R@{k[1:]}")
    body = []
    data: dict[str, Any] = {}
    for row in rows:
        pub = ["published"] + [
            _num(v) for d in spec.datasets for v in row.published.get(d.key, [None] * len(spec.metrics))
        ]
        body.append([row.name, *pub])
        data[row.name] = {"published": row.published}
        if row.recipe:
            rep = [f"reproduced ({scale})"] + [
                _num(measured[row.name].get(d.key, {}).get(m)) for d in spec.datasets for m in spec.metrics
            ]
            body.append([row.name, *rep])
            data[row.name]["reproduced"] = measured[row.name]
        else:
            body.append([row.name, "reproduced", *(["quoted, not trained here"] + [""] * (len(header) - 3))])
    notes = [
        f"Scale: {scale}. Published values from the thesis (spec {Path(spec.path).name}); '-' = not reported. "
        f"Reproduced values from the eval tasks {', '.join(tasks)} (`mmthesis eval TASK --model RUN`)."
    ]
    if scale == "smoke":
        mapping = ", ".join(f"{tasks[d.task].dataset} stands in for {d.name}" for d in spec.datasets)
        notes.append(
            f"Smoke scale: {mapping}; tiny random-initialised models of the real architectures, trained for seconds on CPU. Numbers show the pipeline works; they are not comparable to the published ones."
        )
        first = next(iter(measured.values()), {})
        for d in spec.datasets:
            metrics = first.get(d.key, {})
            if "chance_t2i_r1" in metrics:
                notes.append(
                    f"{tasks[d.task].dataset} test split: {metrics['images']} images x {metrics['captions']} captions; "
                    f"chance R@1 is I→T {metrics['chance_i2t_r1']:.2f}, T→I {metrics['chance_t2i_r1']:.2f}."
                )
    for row in rows:
        if row.quoted:
            notes.append(f"{row.name}: {row.quoted}.")
    notes += [f"run record: {_home_relative(p)}" for p in result_paths]
    return RenderedTable(f"Table {spec.table}: {spec.title} (scale: {scale})", header, body, notes), data


def spec_location(spec: TableSpec) -> str:
    """The spec's path relative to the checkout (``reproductions/table-N.yaml``): no machine path in outputs."""
    root = repo_root()
    path = Path(spec.path).resolve()
    if root is not None and path.is_relative_to(root.resolve()):
        return path.relative_to(root.resolve()).as_posix()
    return path.name


def _home_relative(path: str) -> str:
    """Show run records as $MMTHESIS_HOME/... so rendered tables do not depend on the machine."""
    from mmthesis.core.paths import mmthesis_home

    home = str(mmthesis_home())
    return "$MMTHESIS_HOME" + path[len(home) :] if path.startswith(home) else path


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def spec_label(spec: TableSpec) -> str:
    return f"table-{spec.table}"


__all__ = ["reproduce", "default_out_dir", "fmt_count"]
