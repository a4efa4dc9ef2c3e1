"""Retrieval examples with correct / wrong results marked (Figures 39, 40, 43), from the eval harness's per-sample rows.

The rows are what ``evaluate([task], model, per_sample=PATH)`` writes for a
``retrieval`` task: ``{"task", "id", "direction", "rank", "top"}`` with ``top`` the
ids of the best-ranked candidates (caption ids ``<image id>_<k>`` for i2t, image
ids for t2i). A candidate is correct when it belongs to the query's pair: the
caption's image id equals the query image (i2t), or the image equals the
caption's image (t2i). Green = correct, red = wrong, as in the thesis.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from mmthesis.core.errors import ConfigError, DataMissingError
from mmthesis.eval.reproduce.figures.run_parts import image_axes

CORRECT, WRONG = "#009E73", "#D55E00"  # Okabe-Ito bluish green / vermillion: the thesis's green and red


def caption_image_id(caption_id: str) -> str:
    """``<image id>_<k>`` -> ``<image id>`` (how ImageTextPairs and RetrievalSplit name captions)."""
    return caption_id.rsplit("_", 1)[0]


def read_rows(path: Path, task: str | None = None) -> list[dict[str, Any]]:
    if not Path(path).is_file():
        raise DataMissingError(f"per-sample rows {path} do not exist", "run `mmthesis eval TASK --model RUN --per-sample -`")
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return [r for r in rows if task is None or r.get("task") == task]


@dataclass
class Example:
    query: str  # image id (i2t) or caption id (t2i)
    rank: int  # 0-based rank of the query's first correct candidate
    retrieved: list[str]  # candidate ids, best first
    correct: list[bool]


def examples(rows: list[dict[str, Any]], direction: str, n: int, k: int, seed: int = 0) -> list[Example]:
    """``n`` queries of ``direction`` (a seeded choice, in row order) with their top-``k`` candidates marked."""
    if direction not in ("i2t", "t2i"):
        raise ConfigError(f"direction must be i2t or t2i, got {direction!r}", "use i2t (text retrieval) or t2i")
    chosen = [r for r in rows if r.get("direction") == direction]
    if not chosen:
        raise DataMissingError(f"the per-sample rows have no {direction} queries", "evaluate a retrieval task")
    if any("top" not in r for r in chosen):
        raise DataMissingError("the per-sample rows have no retrieved ids (`top`)",
                               "re-run the evaluation with this version's retrieval protocol")
    picks = sorted(np.random.default_rng(seed).choice(len(chosen), size=min(n, len(chosen)), replace=False).tolist())
    out = []
    for i in picks:
        r = chosen[i]
        top = [str(c) for c in r["top"][:k]]
        query_image = str(r["id"]) if direction == "i2t" else caption_image_id(str(r["id"]))
        cand_image = [caption_image_id(c) for c in top] if direction == "i2t" else top
        out.append(Example(str(r["id"]), int(r["rank"]), top, [c == query_image for c in cand_image]))
    return out


def draw_image_retrieval(exs: list[Example], captions: dict[str, str], images: dict[str, np.ndarray]) -> Figure:
    """t2i: one row per caption query, its top-k images framed green (correct) or red (wrong)."""
    from mmthesis.eval.reproduce.figures.style import new_figure

    k = max(len(e.retrieved) for e in exs)
    fig, axes = new_figure(1.3 * k + 2.2, 1.35 * len(exs), nrows=len(exs), ncols=k + 1, squeeze=False)
    for row, e in zip(axes, exs, strict=True):
        row[0].text(0.0, 0.5, "\n".join(textwrap.wrap(captions[e.query], 28)[:5]), fontsize=7, va="center")
        row[0].axis("off")
        for j, ax in enumerate(row[1:]):
            if j >= len(e.retrieved):
                ax.axis("off")
                continue
            ax.imshow(images[e.retrieved[j]])
            _frame(ax, e.correct[j])
            ax.set_title(f"#{j + 1}", fontsize=7)
    return fig


def draw_text_retrieval(exs: list[Example], captions: dict[str, str], images: dict[str, np.ndarray]) -> Figure:
    """i2t: one row per image query, its top-k captions written in green (correct) or red (wrong)."""
    from mmthesis.eval.reproduce.figures.style import new_figure

    k = max(len(e.retrieved) for e in exs)
    fig, axes = new_figure(6.4, 0.35 * k * len(exs) + 0.3, nrows=len(exs), ncols=2, squeeze=False,
                           gridspec_kw={"width_ratios": [1, 4]})
    for (left, right), e in zip(axes, exs, strict=True):
        left.imshow(images[e.query])
        image_axes(left)
        right.axis("off")
        for j, (cid, ok) in enumerate(zip(e.retrieved, e.correct, strict=True)):
            mark = "✓" if ok else "✗"
            text = textwrap.shorten(captions[cid], 70, placeholder="…")
            right.text(0.0, 1 - (j + 0.5) / k, f"{j + 1}. {mark} {text}", color=CORRECT if ok else WRONG, fontsize=7,
                       va="center", transform=right.transAxes)
    return fig


def _frame(ax, ok: bool) -> None:
    image_axes(ax, CORRECT if ok else WRONG, 3.0)
