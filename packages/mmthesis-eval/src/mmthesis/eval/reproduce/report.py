"""The reproduction report: one static page (``thesis/report.html``, plus ``report.md``) of everything reproduced.

It reads what ``mmthesis reproduce`` wrote: ``thesis/tables/*.json`` and ``thesis/figures/*.json`` (each with the
rendered table or the figure's caption, its status, scale and the run records used) and ``thesis/index.json``
(tables and figures that failed, with the reason). For every table it shows published next to reproduced and their
difference; for every figure the image and its caption; and the provenance of the runs behind them (git commit,
package versions, hardware, device-hours) read from their ``result.json``.

The page is self-contained for offline use from the file system: inline CSS, no script, images referenced by
relative paths next to it. It is written with the standard library's ``html.escape`` (a page of tables and images
needs no template engine).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmthesis.core.io import atomic_write_text
from mmthesis.core.paths import mmthesis_home
from mmthesis.core.provenance import git_commit, package_versions
from mmthesis.core.results import read_result

REPORT_HTML = "report.html"
REPORT_MD = "report.md"
INDEX_JSON = "index.json"
_KEY_PACKAGES = ("torch", "lightning", "timm", "transformers", "mmthesis-core")
_NUMBER = re.compile(r"^\s*([-+]?\d[\d,]*(?:\.\d+)?)\s*([KMB%]?)(?=$|\s)")
_SUFFIX = {"": 1.0, "%": 1.0, "K": 1e3, "M": 1e6, "B": 1e9}


@dataclass
class Entry:
    """One table or figure as the report shows it."""

    kind: str  # "table" | "figure"
    name: str  # table-N / figure-N
    number: int
    title: str
    status: str
    scale: str
    records: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    caption: str = ""
    standins: list[str] = field(default_factory=list)
    image: str = ""  # path of the PNG relative to the report
    pdf: str = ""
    error: str = ""  # why it failed (from index.json)


@dataclass
class Provenance:
    """What the runs behind an entry were made with, summarised over their result.json files."""

    runs: int = 0
    commits: set[str] = field(default_factory=set)
    hardware: set[str] = field(default_factory=set)
    packages: dict[str, set[str]] = field(default_factory=dict)
    device_hours: float = 0.0
    wall_s: float = 0.0
    missing: int = 0

    def add(self, record: str, home: Path) -> None:
        path = Path(record.replace("$MMTHESIS_HOME", str(home), 1))
        result = read_result(path)
        if result is None:
            self.missing += 1
            return
        self.runs += 1
        commit = str(result.git.get("commit") or "unknown")[:10]
        self.commits.add(commit + ("+dirty" if result.git.get("dirty") else ""))
        self.hardware.add(_hardware(result.hardware))
        for name in _KEY_PACKAGES:
            if version := result.packages.get(name):
                self.packages.setdefault(name, set()).add(version)
        self.device_hours += result.device_hours or 0.0
        self.wall_s += result.wall_time_s or 0.0

    def lines(self) -> list[str]:
        if not self.runs and not self.missing:
            return []
        out = [f"{self.runs} run/evaluation record(s), {self.device_hours:.4g} device-hours, {self.wall_s:.0f} s wall"]
        if self.commits:
            out.append("git: " + ", ".join(sorted(self.commits)))
        if self.hardware:
            out.append("hardware: " + "; ".join(sorted(self.hardware)))
        if self.packages:
            out.append("versions: " + ", ".join(f"{k} {'/'.join(sorted(v))}" for k, v in sorted(self.packages.items())))
        if self.missing:
            out.append(f"{self.missing} record(s) no longer on disk")
        return out


def _hardware(hw: dict[str, Any]) -> str:
    gpus = [str(g) for g in hw.get("gpus") or []]
    if gpus:
        return f"{len(gpus)}x {', '.join(sorted(set(gpus)))}"
    return f"CPU ({hw.get('cpu_count', '?')} cores)" if hw else "unknown"


# -- differences ----------------------------------------------------------------------------------------------
def parse_number(cell: str) -> float | None:
    """The value of a cell such as ``37``, ``43.1M (43,120,128) ≠``, ``1,865 images`` or ``12.5%``; None for text
    (``16×16``, ``-``, ``needs data``)."""
    m = _NUMBER.match(cell)
    if m is None:
        return None
    return float(m.group(1).replace(",", "")) * _SUFFIX[m.group(2)]


def format_difference(value: float) -> str:
    if abs(value) >= 1e6:
        return f"{value / 1e6:+.2f}M"
    if abs(value) >= 1e4:
        return f"{value / 1e3:+.1f}K"
    return f"{value:+.2f}"


def with_differences(header: list[str], rows: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    """The table with the difference reproduced − published added where both are numbers.

    Two layouts occur: a ``Values`` column with a *published* row followed by *reproduced* rows of the same key
    (a Δ row follows each reproduced row), and *Published* / *Reproduced ...* columns (a Δ column follows each
    reproduced column). Other tables (quoted, inventories) come back unchanged.
    """
    lower = [h.lower() for h in header]
    if "values" in lower:
        return header, _difference_rows(lower.index("values"), rows)
    published = [i for i, h in enumerate(lower) if "published" in h]
    reproduced = [i for i, h in enumerate(lower) if "reproduced" in h]
    if len(published) != 1 or not reproduced:
        return header, rows
    return _difference_columns(header, rows, published[0], reproduced)


def _difference_rows(col: int, rows: list[list[str]]) -> list[list[str]]:
    out: list[list[str]] = []
    published: dict[str, list[str]] = {}
    for row in rows:
        out.append(row)
        key, label = row[0], row[col].lower()
        if label.startswith("published"):
            published[key] = row
        elif label.startswith("reproduced") and key in published:
            cells = []
            for i, (rep, pub) in enumerate(zip(row, published[key], strict=True)):
                if i == 0:
                    cells.append(key)
                elif i == col:
                    cells.append("Δ reproduced − published")
                else:
                    a, b = parse_number(rep), parse_number(pub)
                    cells.append(format_difference(a - b) if a is not None and b is not None else "")
            if any(c for i, c in enumerate(cells) if i not in (0, col)):
                out.append(cells)
    return out


def _difference_columns(
    header: list[str], rows: list[list[str]], pub: int, reproduced: list[int]
) -> tuple[list[str], list[list[str]]]:
    new_header: list[str] = []
    for i, h in enumerate(header):
        new_header.append(h)
        if i in reproduced:
            new_header.append("Δ")
    new_rows = []
    for row in rows:
        new = []
        for i, cell in enumerate(row):
            new.append(cell)
            if i in reproduced:
                a, b = parse_number(cell), parse_number(row[pub])
                new.append(format_difference(a - b) if a is not None and b is not None else "")
        new_rows.append(new)
    return new_header, new_rows


# -- reading what reproduce wrote -----------------------------------------------------------------------------
def _number(name: str) -> int:
    m = re.search(r"(\d+)$", name)
    return int(m.group(1)) if m else 10**6


def load_entries(thesis_dir: Path) -> list[Entry]:
    """Every table and figure written under ``thesis_dir``, plus those that failed (from index.json)."""
    entries: dict[str, Entry] = {}
    for path in sorted((thesis_dir / "tables").glob("*.json")):  # table-N and named ones (vae-arithmetic)
        data = json.loads(path.read_text(encoding="utf-8"))
        rendered = data.get("rendered") or {}
        entries[path.stem] = Entry(
            "table",
            path.stem,
            _number(path.stem),
            data.get("title", path.stem),
            data.get("status", "?"),
            data.get("scale", "?"),
            records=list(data.get("records", [])),
            header=list(rendered.get("header", [])),
            rows=[list(r) for r in rendered.get("rows", [])],
            notes=list(rendered.get("notes", [])),
        )
    for path in sorted((thesis_dir / "figures").glob("figure-*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        png, pdf = path.with_suffix(".png"), path.with_suffix(".pdf")
        entries[path.stem] = Entry(
            "figure",
            path.stem,
            _number(path.stem),
            data.get("title", path.stem),
            data.get("status", "?"),
            data.get("scale", "?"),
            records=list(data.get("records", [])),
            caption=data.get("caption", ""),
            standins=list(data.get("standins", [])),
            image=png.relative_to(thesis_dir).as_posix() if png.is_file() else "",
            pdf=pdf.relative_to(thesis_dir).as_posix() if pdf.is_file() else "",
        )
    index = thesis_dir / INDEX_JSON
    if index.is_file():
        for item in json.loads(index.read_text(encoding="utf-8")).get("outcomes", []):
            if item.get("status") == "failed":
                name = item["name"]
                kind = "figure" if name.startswith("figure-") else "table"
                entries[name] = Entry(
                    kind, name, _number(name), item.get("title", name), "failed", item.get("scale", "?"),
                    error=item.get("error", ""),
                )
    return sorted(entries.values(), key=lambda e: (e.kind != "table", e.number))


# -- writing --------------------------------------------------------------------------------------------------
@dataclass
class Report:
    html: Path
    markdown: Path
    entries: list[Entry]


def write_report(thesis_dir: Path, home: Path | None = None) -> Report:
    """Write ``report.html`` and ``report.md`` into ``thesis_dir`` from what reproduce wrote there."""
    home = home or mmthesis_home()
    entries = load_entries(thesis_dir)
    provenance = {e.name: _provenance(e.records, home) for e in entries}
    page = render_html(entries, provenance)
    text = render_markdown(entries, provenance)
    atomic_write_text(thesis_dir / REPORT_HTML, page)
    atomic_write_text(thesis_dir / REPORT_MD, text)
    return Report(thesis_dir / REPORT_HTML, thesis_dir / REPORT_MD, entries)


def _provenance(records: Iterable[str], home: Path) -> Provenance:
    p = Provenance()
    for r in records:
        p.add(r, home)
    return p


def _counts(entries: list[Entry]) -> str:
    counts: dict[str, int] = {}
    for e in entries:
        counts[f"{e.kind}s {e.status}"] = counts.get(f"{e.kind}s {e.status}", 0) + 1
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))


def _this_checkout() -> list[str]:
    git = git_commit()
    versions = package_versions()
    commit = str(git.get("commit") or "unknown")[:10] + ("+dirty" if git.get("dirty") else "")
    pkgs = ", ".join(f"{k} {versions[k]}" for k in _KEY_PACKAGES if versions.get(k))
    return [f"report written from git {commit}", f"versions: {pkgs}"]


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1100px;padding:1.5em;
color:#1b1b1b;line-height:1.45}
h1{margin-bottom:.2em}h2{border-top:1px solid #ddd;padding-top:.8em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
.wide{overflow-x:auto}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right}th{background:#f2f2f2}
td:first-child,th:first-child{text-align:left}
tr.diff td{color:#555;font-style:italic;background:#fafafa}
.status{display:inline-block;padding:.05em .5em;border-radius:.6em;font-size:.85em;color:#fff}
.reproduced{background:#0072B2}.derived{background:#009E73}.quoted{background:#999}.partial{background:#E69F00}
.failed{background:#D55E00}.illustration{background:#CC79A7}
figure{margin:.8em 0}figure img{max-width:100%;border:1px solid #eee}
.prov,.notes{font-size:.85em;color:#444}nav a{margin-right:.4em}
"""


def render_html(entries: list[Entry], provenance: dict[str, Provenance]) -> str:
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>mmthesis reproduction report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Reproduction report</h1>",
        "<p>Every thesis table and figure reproduced so far by <code>mmthesis reproduce</code>: published values next "
        "to reproduced ones and their difference (Δ = reproduced − published), each figure with what stood in for "
        "what, and the provenance of the runs used. At smoke scale the data are stand-ins and the models tiny: the "
        "numbers show the pipeline works and are not comparable to the published ones.</p>",
        f"<p><b>Summary:</b> {esc(_counts(entries)) or 'nothing reproduced yet'}</p>",
        '<ul class="prov">' + "".join(f"<li>{esc(line)}</li>" for line in _this_checkout()) + "</ul>",
        "<nav>" + " ".join(f'<a href="#{e.name}">{esc(e.name)}</a>' for e in entries) + "</nav>",
    ]
    for e in entries:
        parts.append(f'<section id="{e.name}">')
        label = f"{e.kind.capitalize()} {e.number}"
        parts.append(
            f'<h2>{esc(label)}: {esc(e.title)} <span class="status {esc(e.status)}">{esc(e.status)}</span></h2>'
        )
        parts.append(f"<p>Scale: {esc(e.scale)}</p>")
        if e.status == "failed":
            parts.append(f"<p>Not built: {esc(e.error)}</p>")
        if e.kind == "table" and e.header:
            header, rows = with_differences(e.header, e.rows)
            parts.append(_html_table(header, rows))
        elif e.kind == "table" and e.status != "failed":
            parts.append("<p>No rendered table in its JSON: rebuild it with <code>mmthesis reproduce "
                         f"{esc(e.name)}</code>.</p>")
        if e.kind == "figure" and e.image:
            pdf = f' (<a href="{esc(e.pdf)}">PDF</a>)' if e.pdf else ""
            parts.append(
                f'<figure><img src="{esc(e.image)}" alt="{esc(label)}: {esc(e.title)}">'
                f"<figcaption>{esc(e.caption)}{pdf}</figcaption></figure>"
            )
        notes = [n for n in e.notes if not n.startswith("run record:")] + [f"stand-in: {s}" for s in e.standins]
        if notes:
            parts.append('<ul class="notes">' + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
        prov = provenance[e.name].lines()
        if prov:
            parts.append('<ul class="prov">' + "".join(f"<li>{esc(line)}</li>" for line in prov) + "</ul>")
        if e.records:  # the records themselves, folded: long lists of hashes are for the curious
            parts.append(
                f'<details class="prov"><summary>{len(e.records)} run and evaluation record(s)</summary><ul>'
                + "".join(f"<li><code>{esc(r)}</code></li>" for r in e.records)
                + "</ul></details>"
            )
        parts.append("</section>")
    not_repro = [e for e in entries if e.status in ("quoted", "failed", "partial")]
    parts.append('<section id="not-reproduced"><h2>Quoted, partial or not built</h2><ul>')
    for e in not_repro:
        why = {"quoted": "quoted from the literature or the author's records, not reproducible by nature",
               "partial": "some cells could not be computed at this scale (each says why)"}.get(e.status, e.error)
        parts.append(f'<li><a href="#{e.name}">{esc(e.name)}</a>: {esc(why)}</li>')
    parts.append("</ul></section></body></html>")
    return "\n".join(parts) + "\n"


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    esc = html.escape
    out = ['<div class="wide"><table><thead><tr>' + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead><tbody>"]
    for row in rows:
        cls = ' class="diff"' if any(c.startswith("Δ") for c in row) else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>")
    out.append("</tbody></table></div>")  # a table wider than the page scrolls in its box
    return "".join(out)


def render_markdown(entries: list[Entry], provenance: dict[str, Provenance]) -> str:
    lines = ["# Reproduction report", "", f"Summary: {_counts(entries) or 'nothing reproduced yet'}", ""]
    lines += [f"- {line}" for line in _this_checkout()] + [""]
    for e in entries:
        lines += [f"## {e.kind.capitalize()} {e.number}: {e.title} ({e.status}, scale {e.scale})", ""]
        if e.status == "failed":
            lines += [f"Not built: {e.error}", ""]
        if e.kind == "table" and e.header:
            header, rows = with_differences(e.header, e.rows)
            lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows] + [""]
        if e.kind == "figure" and e.image:
            lines += [f"![{e.name}]({e.image})", "", e.caption, ""]
        lines += [f"- {n}" for n in e.notes + [f"stand-in: {s}" for s in e.standins]]
        lines += [f"- {line}" for line in provenance[e.name].lines()] + [""]
    return "\n".join(lines)


__all__ = ["Entry", "Report", "load_entries", "parse_number", "with_differences", "write_report"]
