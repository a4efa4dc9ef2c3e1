"""``mmthesis eval build``: every finished evaluation as one table, one row per model x task x metric.

As CLIP_benchmark's ``build`` turns its result files into one CSV, this reads
every ``result.json`` under ``runs_root()/eval-*/`` (the harness's records)
and flattens it, with the provenance columns a user filters and cites on:
model spec and weight fingerprint, task and its version, scale, dataset and
split, precision and device type, git commit, date and the record's path.
Nested metrics become dotted names; lists (robustness curves) are left out.
Several records of one (model, task) -- other task versions or options --
are all listed; ``config_hash`` tells them apart.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmthesis.core.paths import runs_root
from mmthesis.core.results import RESULT_FILE, RunResult, read_result

COLUMNS = (
    "model",
    "model_fingerprint",
    "task",
    "task_version",
    "protocol",
    "scale",
    "dataset",
    "split",
    "metric",
    "value",
    "headline",
    "precision",
    "device",
    "config_hash",
    "git_commit",
    "git_dirty",
    "date",
    "result",
)


def finished_evaluations(root: Path | None = None) -> Iterator[tuple[Path, RunResult]]:
    """(path, record) of every finished evaluation under ``root`` (default ``runs_root()``), in path order."""
    for path in sorted((root or runs_root()).glob(f"eval-*/*/{RESULT_FILE}")):
        record = read_result(path)
        if record is not None and record.status == "finished":
            yield path, record


def flatten(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Scalar metrics by (dotted) name; lists are left out."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= flatten(value, f"{name}.")
        elif value is None or isinstance(value, (bool, int, float, str)):
            out[name] = value
    return out


def build_rows(
    root: Path | None = None,
    *,
    tasks: list[str] | None = None,
    models: list[str] | None = None,
    scales: list[str] | None = None,
    metrics: list[str] | None = None,
    headline_only: bool = False,
) -> list[dict[str, Any]]:
    """The table's rows; ``models`` match as substrings of the spec or prefixes of the fingerprint."""
    rows = []
    for path, record in finished_evaluations(root):
        config = record.config
        spec, fingerprint = str(config.get("model", "")), str(config.get("model_fingerprint", ""))
        if models and not any(m in spec or fingerprint.startswith(m) for m in models):
            continue
        if scales and record.scale not in scales:
            continue
        for task in config.get("tasks", []):
            name = task.get("name")
            if name not in record.metrics or (tasks and name not in tasks):
                continue
            headline = set(task.get("metrics", []))
            for metric, value in flatten(record.metrics[name]).items():
                if (metrics and metric not in metrics) or (headline_only and metric not in headline):
                    continue
                rows.append(
                    {
                        "model": spec,
                        "model_fingerprint": fingerprint,
                        "task": name,
                        "task_version": task.get("version"),
                        "protocol": task.get("protocol"),
                        "scale": record.scale,
                        "dataset": task.get("dataset"),
                        "split": task.get("split"),
                        "metric": metric,
                        "value": value,
                        "headline": metric in headline,
                        "precision": config.get("precision", "fp32"),
                        "device": config.get("device", "cpu"),
                        "config_hash": record.config_hash,
                        "git_commit": (record.git or {}).get("commit"),
                        "git_dirty": (record.git or {}).get("dirty"),
                        "date": record.started_at,
                        "result": str(path),
                    }
                )
    return rows


def to_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _md_cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value).replace("|", "\\|")


def to_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_md_cell(row[c]) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines) + "\n"


FORMATS = {"csv": to_csv, "md": to_markdown}
