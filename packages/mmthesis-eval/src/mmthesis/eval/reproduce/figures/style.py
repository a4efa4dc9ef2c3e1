"""One plotting style for every thesis figure, and byte-reproducible PNG/PDF output.

Every figure uses the Agg backend, the Okabe-Ito colour-blind-safe palette and
the same fonts and sizes. ``save_figure`` strips what would change between two
renders of the same data (creation dates, software versions, random ids), so a
changed file means changed data.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)  # headless; no display is ever needed

from matplotlib.figure import Figure  # noqa: E402

from mmthesis.core.io import atomic_write_bytes  # noqa: E402

# Okabe & Ito (2008), "Color Universal Design": distinguishable with every common colour-vision deficiency.
OKABE_ITO = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#D55E00",  # vermillion
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
    "#000000",  # black
)

DPI = 200
# PNG: no "Software" chunk; PDF: no dates or producer string (matplotlib writes its version there otherwise).
PNG_METADATA: dict[str, Any] = {"Software": None}
PDF_METADATA: dict[str, Any] = {"Creator": None, "Producer": None, "CreationDate": None, "ModDate": None}

RC: dict[str, Any] = {
    "figure.dpi": 100,
    "savefig.dpi": DPI,
    "savefig.bbox": "standard",  # "tight" would make the canvas size depend on text extents across versions
    "font.family": "DejaVu Sans",  # bundled with matplotlib: the same glyphs on every machine
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.prop_cycle": matplotlib.cycler(color=list(OKABE_ITO)),
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "lines.linewidth": 1.5,
    "pdf.fonttype": 42,  # TrueType: text stays text in the PDF
    "svg.hashsalt": "mmthesis",  # fixed ids if anyone saves SVG
    "path.simplify": False,
}


@contextmanager
def figure_style() -> Iterator[None]:
    """The thesis style for the figures drawn inside the block; the caller's rcParams are restored after."""
    with matplotlib.rc_context(RC):
        yield


def new_figure(width: float = 6.0, height: float = 3.6, **subplots: Any) -> tuple[Figure, Any]:
    """A figure and its axes in the thesis style (sizes in inches); not registered with pyplot's global state."""
    with figure_style():
        fig = Figure(figsize=(width, height), layout="constrained")
        axes = fig.subplots(**subplots)
    return fig, axes


def figure_bytes(fig: Figure, fmt: str) -> bytes:
    """``fig`` rendered as ``png`` or ``pdf``, without anything that differs between two renders."""
    if fmt not in ("png", "pdf"):
        raise ValueError(f"figure format must be png or pdf, got {fmt!r}")
    buf = io.BytesIO()
    with figure_style():
        fig.savefig(buf, format=fmt, dpi=DPI, metadata=PNG_METADATA if fmt == "png" else PDF_METADATA)
    return buf.getvalue()


def save_figure(fig: Figure, out_base: Path) -> list[Path]:
    """Write ``out_base.png`` and ``out_base.pdf`` atomically; returns the two paths."""
    out_base = Path(out_base)
    paths = []
    for fmt in ("png", "pdf"):
        path = out_base.with_name(out_base.name + "." + fmt)
        atomic_write_bytes(path, figure_bytes(fig, fmt))
        paths.append(path)
    return paths


__all__ = ["OKABE_ITO", "DPI", "figure_style", "new_figure", "figure_bytes", "save_figure"]
