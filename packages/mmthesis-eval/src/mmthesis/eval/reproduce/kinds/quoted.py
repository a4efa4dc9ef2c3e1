"""Quoted tables (kind ``quoted``): literature numbers and the author's bills, not reproducible by nature.

Tables 1, 2, 15, 38 and 40 print what other papers report, a description of loss terms or what the author
paid; no run of this package can recompute them. The spec holds the cells as the thesis prints them and the
source; the rendered table says so plainly. What *can* be checked is checked at render time: the spec's
arithmetic checks on the table's own cells (Table 40 adds up, or says where it does not), and the recipe
config keys and code names that implement a described part (Table 15) still resolve.
"""

from __future__ import annotations

import importlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mmthesis.core.errors import ConfigError
from mmthesis.eval.reproduce.engine import Built, Context, title
from mmthesis.eval.reproduce.render import RenderedTable
from mmthesis.eval.reproduce.specs import Kind, SpecHeader, register_kind

MARKER = "quoted, not reproducible by nature"


@dataclass
class QuotedRow:
    cells: list[str] = field(default_factory=list)
    source: str = ""  # where this row's numbers come from, when it differs per row (a paper, a pricing basis)


@dataclass
class Implementation:
    """Where this package implements a part the table describes, checked against the code at render time."""

    what: str = ""
    recipe: str = ""
    keys: dict[str, Any] = field(default_factory=dict)  # config key -> the value the recipe resolves to at full scale
    code: list[str] = field(default_factory=list)  # dotted names (module.attr...) that must exist


@dataclass
class ArithmeticCheck:
    """``equals`` should be the sum (or the product, times ``factor``) of ``terms``; cells are ``Row|Column``."""

    what: str = ""
    terms: list[str] = field(default_factory=list)
    equals: str = ""
    op: Literal["sum", "product"] = "sum"
    factor: float = 1.0
    factor_label: str = ""  # the unit of ``factor``, e.g. "$/GPU-hour (runpod RTX 4090, §9)"


@dataclass
class QuotedSpec(SpecHeader):
    header: list[str] = field(default_factory=list)
    rows: list[QuotedRow] = field(default_factory=list)
    source: str = ""
    notes: list[str] = field(default_factory=list)  # e.g. which part is reproduced elsewhere, by which command
    implemented_by: list[Implementation] = field(default_factory=list)
    checks: list[ArithmeticCheck] = field(default_factory=list)


def build(spec: QuotedSpec, ctx: Context) -> Built:
    _check_shape(spec)
    implementations = [_check_implementation(spec, impl) for impl in spec.implemented_by]
    checks = [_run_check(spec, c) for c in spec.checks]
    notes = [f"{MARKER[0].upper()}{MARKER[1:]}: the cells are copied from the thesis. Source: {spec.source}"]
    notes += [f"{r.cells[0]}: {r.source}" for r in spec.rows if r.source]
    notes += spec.notes
    notes += [i["note"] for i in implementations]
    notes += [c["note"] for c in checks]
    notes.append(f"Published cells live in the spec {Path(spec.path).name}; the same table is built at every scale.")
    table = RenderedTable(
        f"{title(spec, None).rstrip('.')} ({MARKER})", list(spec.header), [list(r.cells) for r in spec.rows], notes
    )
    values = {
        "marker": MARKER,
        "source": spec.source,
        "header": list(spec.header),
        "rows": [{"cells": list(r.cells), **({"source": r.source} if r.source else {})} for r in spec.rows],
        "implemented_by": implementations,
        "checks": checks,
    }
    return Built(table, values, status="quoted")


def _check_shape(spec: QuotedSpec) -> None:
    name = Path(spec.path).name
    if not spec.header:
        raise ConfigError(f"spec {name} has no `header:`", "list the column names as the thesis prints them")
    if not spec.source:
        raise ConfigError(
            f"spec {name} has no `source:`", "name the paper, thesis section or bill the cells are quoted from"
        )
    for i, row in enumerate(spec.rows, 1):
        if len(row.cells) != len(spec.header):
            first = f" ({row.cells[0]})" if row.cells else ""
            raise ConfigError(
                f"spec {name} row {i}{first} has {len(row.cells)} cells, the header has {len(spec.header)}",
                "give every row one cell per column (use - where the thesis prints none)",
            )


# -- Table 15: the implementation named in the spec must still be what the code does --------------------------
def _check_implementation(spec: QuotedSpec, impl: Implementation) -> dict[str, Any]:
    name = Path(spec.path).name
    found: dict[str, Any] = {}
    if impl.recipe:
        from mmthesis.students.config import fmt_value, get_key
        from mmthesis.students.recipes import load_recipe

        config = load_recipe(impl.recipe, "full")
        for key, expected in impl.keys.items():
            try:
                value = get_key(config, key)
            except AttributeError:
                raise ConfigError(
                    f"spec {name}: recipe {impl.recipe} has no config key {key}", "fix implemented_by"
                ) from None
            if value != expected:
                raise ConfigError(
                    f"spec {name}: recipe {impl.recipe} resolves {key}={fmt_value(value)}, the spec says {fmt_value(expected)}",
                    f"update implemented_by to what `mmthesis train show {impl.recipe}` prints",
                )
            found[key] = value
    for dotted in impl.code:
        _resolve(dotted, name)
    keys = ", ".join(f"{k}={_fmt(v)}" for k, v in found.items())
    where = f"recipe `{impl.recipe}` ({keys})" if impl.recipe else ""
    code = ", ".join(f"`{c}`" for c in impl.code)
    note = f"{impl.what}: {where}{'; ' if where and code else ''}{code} (checked against the code)"
    return {"what": impl.what, "recipe": impl.recipe, "keys": found, "code": list(impl.code), "note": note}


def _fmt(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _resolve(dotted: str, spec_name: str) -> Any:
    """Import the longest module prefix of ``dotted`` and walk the remaining attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                raise ConfigError(f"spec {spec_name} names {dotted}, which does not exist", "fix implemented_by.code")
            obj = getattr(obj, attr)
        return obj
    raise ConfigError(f"spec {spec_name} names {dotted}, whose module does not exist", "fix implemented_by.code")


# -- Table 40: does the table add up from its own cells? --------------------------------------------------------
_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")


@dataclass
class _Cell:
    text: str
    value: float
    half_unit: float  # half a unit of the last printed digit: the rounding the printed value may carry


def _cell(spec: QuotedSpec, ref: str) -> _Cell:
    name = Path(spec.path).name
    row_name, sep, column = ref.partition("|")
    if not sep:
        raise ConfigError(f"spec {name}: check cell {ref!r} is not `Row|Column`", "write e.g. `Total|Total Cost ($)`")
    rows = [r for r in spec.rows if r.cells and r.cells[0] == row_name]
    if not rows or column not in spec.header:
        raise ConfigError(
            f"spec {name}: check cell {ref!r} names no row/column of the table", "use a first cell and a header name"
        )
    text = rows[0].cells[spec.header.index(column)]
    match = _NUMBER.search(text)
    if match is None:
        raise ConfigError(f"spec {name}: check cell {ref!r} is {text!r}, not a number", "check only numeric cells")
    number = match.group().replace(",", "")
    decimals = len(number.partition(".")[2])
    return _Cell(text, float(number), 0.5 * 10.0**-decimals)


def _num(x: float) -> str:
    if x == round(x):
        return f"{x:,.0f}"
    return f"{x:,.2f}" if abs(x) >= 1 else f"{x:.3g}"


def _run_check(spec: QuotedSpec, check: ArithmeticCheck) -> dict[str, Any]:
    terms = [_cell(spec, t) for t in check.terms]
    target = _cell(spec, check.equals)
    factor = f" × {_num(check.factor)} {check.factor_label}".rstrip() if check.factor != 1.0 else ""
    if check.op == "sum":
        computed = check.factor * sum(t.value for t in terms)
        tolerance = target.half_unit + abs(check.factor) * sum(t.half_unit for t in terms)
        expr = " + ".join(t.text for t in terms)
        expr = f"({expr}){factor}" if factor else expr
    else:
        computed = check.factor * math.prod(t.value for t in terms)
        tolerance = target.half_unit + abs(computed) * sum(t.half_unit / t.value for t in terms if t.value)
        expr = " × ".join(t.text for t in terms) + factor
    ok = abs(computed - target.value) <= tolerance
    if ok:
        note = f"Check, {check.what}: {expr} = {_num(computed)}, printed {target.text}: adds up."
    else:
        note = f"Check, {check.what}: {expr} = {_num(computed)}, but the table prints {target.text}: does not add up"
        base = computed / check.factor if check.factor else 0.0
        if check.op == "product" and base:
            implied = target.value / base
            note += f" (implied {_num(implied)} {check.factor_label or 'factor'}, {target.value / computed:.2f}× the stated one)."
        else:
            note += f" (off by {_num(target.value - computed)})."
    return {
        "what": check.what,
        "terms": list(check.terms),
        "equals": check.equals,
        "computed": computed,
        "printed": target.value,
        "adds_up": ok,
        "note": note,
    }


register_kind(Kind("quoted", "quoted", QuotedSpec, build, scale_independent=True))
