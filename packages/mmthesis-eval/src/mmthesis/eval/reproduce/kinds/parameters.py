"""Parameter-count kind (``parameter-counts``, Table 9): the recipe's model built as training builds it, counted.

The training module of a recipe (``mmthesis.students.train.build_module``) is
built at the recipe's configuration with random weights on the ``meta``
device: no checkpoint is read and no memory is allocated, and the counts
depend only on the architecture. A spec row names parts of the student by
module path (``image_encoder``, ``text_encoder``, ``shared``, ...); the table
shows one column per *reading* (a list of config overrides, e.g. the two
readings of the image-encoder depth, REFERENCE.md §10 item 1), a breakdown of
each row into its submodules, and every parameter that belongs to no row.

``count_parameters`` is the same count for other tables (Table 39's
Parameters column).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mmthesis.core.errors import ConfigError
from mmthesis.eval.reproduce.engine import Built, Context, PlannedStep, title
from mmthesis.eval.reproduce.render import RenderedTable, fmt_count
from mmthesis.eval.reproduce.specs import Kind, SpecHeader, register_kind

if TYPE_CHECKING:
    from torch import nn

STUDENT = "student"
# checkpoint fields set to null so that nothing is read: weights do not change a count
_CHECKPOINT_KEYS = (("model", "image", "checkpoint"), ("model", "text", "checkpoint"), ("teacher", "checkpoint"))


# -- building and counting --------------------------------------------------------------------
def build_training_module(recipe: str, overrides: list[str] | tuple[str, ...] = (), scale: str = "full") -> nn.Module:
    """The recipe's training module (student, teacher, temperatures) with random weights on the meta device."""
    import torch

    from mmthesis.core.config import from_dict
    from mmthesis.students.config import VLRecipeConfig
    from mmthesis.students.recipes import recipe_dict
    from mmthesis.students.train import build_module, build_tokenizer

    raw = recipe_dict(recipe, scale, list(overrides))
    for path in _CHECKPOINT_KEYS:
        node = raw
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and path[-1] in node:
            node[path[-1]] = None
    raw.get("teacher", {})["precomputed_targets"] = None  # the teacher is counted, not replaced by a target file
    config = from_dict(VLRecipeConfig, raw)
    tokenizer = build_tokenizer(config, scale)  # the vocabulary sizes BERT's word embeddings
    with torch.device("meta"):
        return build_module(config, tokenizer.vocab_size if tokenizer is not None else None)


def _parts(module: nn.Module, prefix: str = "") -> dict[str, nn.Module | nn.Parameter]:
    """Direct children and direct parameters of ``module`` by dotted name."""
    out: dict[str, nn.Module | nn.Parameter] = {f"{prefix}{n}": p for n, p in module.named_parameters(recurse=False)}
    out.update({f"{prefix}{n}": m for n, m in module.named_children()})
    return out


def _is_param(part: nn.Module | nn.Parameter) -> bool:
    from torch import nn

    return isinstance(part, nn.Parameter)


def _params(part: nn.Module | nn.Parameter) -> list[nn.Parameter]:
    return [part] if _is_param(part) else list(part.parameters())


def _numel(part: nn.Module | nn.Parameter) -> int:
    return sum(p.numel() for p in _params(part))


def count_parameters(recipe: str, overrides: list[str] | tuple[str, ...] = (), scale: str = "full") -> dict[str, int]:
    """Parameters of the recipe's training module per component, by dotted module path.

    The student's parts are ``student.<child>`` (e.g. ``student.image_encoder``); the
    rest are the module's own parts: learnable temperatures (``log_scale*``), the frozen
    ``teacher``, a frozen ``momentum_student`` copy. Components without parameters are
    left out. ``student_total`` sums the student's parts (what a run records as
    ``parameters_student``). Buffers (fixed positions, memory banks) are not parameters.
    """
    module = build_training_module(recipe, overrides, scale)
    counts: dict[str, int] = {}
    for name, part in _parts(module).items():
        if name == STUDENT:
            counts.update({k: _numel(v) for k, v in _parts(module.student, f"{STUDENT}.").items()})
        else:
            counts[name] = _numel(part)
    return {k: v for k, v in counts.items() if v}


def student_total(counts: dict[str, int]) -> int:
    """The student's parameters in ``count_parameters``' result."""
    return sum(v for k, v in counts.items() if k.startswith(f"{STUDENT}."))


# -- the spec ---------------------------------------------------------------------------------
@dataclass
class Published:
    value: float
    display: str


@dataclass
class Reading:
    name: str  # column header, e.g. "thesis text: 6 image blocks"
    overrides: list[str] = field(default_factory=list)
    note: str = ""


@dataclass
class ParameterRow:
    name: str
    published: Published
    modules: list[str] = field(default_factory=list)  # module paths under the student
    sum_of: list[str] = field(default_factory=list)  # a total row: the rows it adds up
    note: str = ""  # why the reproduced value differs from the published one, where it does


@dataclass
class ParameterSpec(SpecHeader):
    recipe: str = ""
    readings: list[Reading] = field(default_factory=list)
    rows: list[ParameterRow] = field(default_factory=list)
    # pairs of rows whose difference the notes state (e.g. a claim of the text about two rows)
    differences: list[list[str]] = field(default_factory=list)


# -- build ------------------------------------------------------------------------------------
def _cell(value: int, published: Published) -> tuple[str, bool]:
    """``43.1M (43,120,128)``; the flag says whether it differs from the published value at the published precision."""
    shown = _at_precision(value, published.display)
    return f"{shown} ({value:,})", shown != published.display


def _at_precision(value: int, display: str) -> str:
    """``value`` written with the unit and decimals of ``display`` (``42.3M`` -> one decimal, millions)."""
    text = display.strip()
    units = {"K": 1e3, "M": 1e6, "B": 1e9}
    if text and text[-1] in units:
        number = text[:-1]
        decimals = len(number.split(".")[1]) if "." in number else 0
        return f"{value / units[text[-1]]:.{decimals}f}{text[-1]}"
    return fmt_count(value)


def _submodule(student: nn.Module, path: str) -> nn.Module | nn.Parameter:
    try:
        return student.get_submodule(path)
    except AttributeError:
        try:
            return student.get_parameter(path)
        except AttributeError:
            names = ", ".join(_parts(student))
            raise ConfigError(f"the student has no module {path!r}", f"name one of: {names}") from None


def _breakdown(part: nn.Module | nn.Parameter) -> str:
    """``patch_embed.proj 590,592 + cls_token 768 + blocks 6 × 7,087,872``: every leaf of a row by dotted path."""
    if _is_param(part):
        return f"{part.numel():,}"
    return " + ".join(f"{name} {size}" for name, size in _leaves(part, ""))


def _leaves(module: nn.Module, prefix: str) -> list[tuple[str, str]]:
    """(path, size) of direct parameters and parameter-holding leaf modules; equal blocks of a list as ``n × size``."""
    from torch import nn

    out = [(f"{prefix}{n}", f"{p.numel():,}") for n, p in module.named_parameters(recurse=False)]
    for name, child in module.named_children():
        n = _numel(child)
        if not n:
            continue
        if isinstance(child, nn.ModuleList) and len(child) > 1 and len({_numel(c) for c in child}) == 1:
            out.append((f"{prefix}{name}", f"{len(child)} × {n // len(child):,}"))
        elif not any(True for _ in child.children()):
            out.append((f"{prefix}{name}", f"{n:,}"))
        else:
            out += _leaves(child, f"{prefix}{name}.")
    return out


def build(spec: ParameterSpec, ctx: Context) -> Built:
    if not spec.readings:
        raise ConfigError(f"{spec.name} has no readings", "add at least one `readings:` entry (overrides may be empty)")
    row_names = {r.name for r in spec.rows}
    for pair in spec.differences:
        if len(pair) != 2 or not set(pair) <= row_names:
            raise ConfigError(
                f"{spec.name}: differences entry {pair} must name two rows", f"rows: {', '.join(sorted(row_names))}"
            )
    for row in spec.rows:
        unknown = [n for n in row.sum_of if n not in row_names]
        if unknown or bool(row.modules) == bool(row.sum_of):
            raise ConfigError(
                f"{spec.name} row {row.name!r} needs either modules or sum_of (of other rows)",
                f"rows: {', '.join(sorted(row_names))}",
            )
    if ctx.progress is not None:
        ctx.progress.expect(len(spec.readings))
    values: dict[str, Any] = {}
    columns: list[dict[str, int]] = []
    # (note label, separator) -> reading -> text; a text shared by every reading is stated once
    breakdowns: dict[tuple[str, str], dict[str, str]] = {}
    for reading in spec.readings:
        if ctx.progress is not None:
            ctx.progress.step("build", f"{spec.recipe} {' '.join(reading.overrides) or '(recipe defaults)'}")
        module = build_training_module(spec.recipe, reading.overrides, "full")
        student = module.student
        counts: dict[str, int] = {}
        covered: set[str] = set()
        for row in spec.rows:
            if row.modules:
                parts = {path: _submodule(student, path) for path in row.modules}
                for path, part in parts.items():
                    names = [path] if _is_param(part) else [f"{path}.{n}" for n, _ in part.named_parameters()]
                    overlap = covered.intersection(names)
                    if overlap:
                        raise ConfigError(
                            f"{spec.name}: parameter {sorted(overlap)[0]} is counted in two rows",
                            "make the rows disjoint",
                        )
                    covered.update(names)
                counts[row.name] = sum(_numel(p) for p in parts.values())
                text = "; ".join(f"student.{path}: {_breakdown(part)}" for path, part in parts.items())
                breakdowns.setdefault((row.name, " ="), {})[reading.name] = text
        for row in spec.rows:
            if row.sum_of:
                counts[row.name] = sum(counts[n] for n in row.sum_of)
        columns.append(counts)
        # what no row counts: the rest of the student, the module's own parameters, the teacher
        rest: dict[str, int] = {}
        for n, p in student.named_parameters():
            if n not in covered:  # grouped by the student's child (its uncovered parameters)
                key = f"{STUDENT}.{n.split('.')[0]}"
                rest[key] = rest.get(key, 0) + p.numel()
        rest.update({k: v for k, v in ((n, _numel(p)) for n, p in _parts(module).items() if n != STUDENT) if v})
        frozen = {n for n, p in _parts(module).items() if n != STUDENT and not any(q.requires_grad for q in _params(p))}
        values[reading.name] = {"overrides": reading.overrides, "rows": counts, "not_in_any_row": rest}
        listed = ", ".join(f"{n} {v:,}" + (" (frozen, not trained)" if n in frozen else "") for n, v in rest.items())
        breakdowns.setdefault(("Not in any row", ":"), {})[reading.name] = f"{listed or 'nothing'}."

    header = ["Component", "Published", *(f"Reproduced: {r.name}" for r in spec.readings)]
    body, differing = [], []
    for row in spec.rows:
        cells = []
        for reading, counts in zip(spec.readings, columns, strict=True):
            text, differs = _cell(counts[row.name], row.published)
            cells.append(text + (" ≠" if differs else ""))
            if differs:
                differing.append((row, reading))
        name = f"**{row.name}**" if row.sum_of else row.name
        body.append([name, row.published.display, *cells])
        values.setdefault("published", {})[row.name] = row.published.value
    notes = [
        f"Built from recipe `{spec.recipe}` at full configuration, random weights on the meta device "
        "(`mmthesis.students.train.build_module`, as training builds it): no checkpoint is read, counts depend "
        "only on the architecture. The same at every scale.",
    ]
    notes += [
        f"Reading {r.name}: overrides `{' '.join(r.overrides) or '(none)'}`. {r.note}".strip() for r in spec.readings
    ]
    if len(spec.readings) > 1:
        base = spec.readings[0]
        for reading, counts in zip(spec.readings[1:], columns[1:], strict=True):
            diffs = [
                f"{row.name} {counts[row.name] - columns[0][row.name]:+,}"
                for row in spec.rows
                if counts[row.name] != columns[0][row.name]
            ]
            notes.append(f"{reading.name} vs {base.name}: {', '.join(diffs) or 'no difference'}.")
    for a, b in spec.differences:
        per_reading = [f"{columns[k][a] - columns[k][b]:,} [{r.name}]" for k, r in enumerate(spec.readings)]
        notes.append(f"{a} - {b}: {'; '.join(per_reading)}.")
    for (label, sep), texts in breakdowns.items():
        if len(set(texts.values())) == 1:
            notes.append(f"{label}{sep} {next(iter(texts.values()))}")
        else:
            notes += [f"{label} [{reading}]{sep} {text}" for reading, text in texts.items()]
    if differing:
        notes.append("≠: differs from the published value at the published precision; why, per row:")
        for row in spec.rows:
            readings = [r.name for rr, r in differing if rr is row]
            if readings:
                notes.append(f"{row.name} ({', '.join(readings)}): {row.note or 'no explanation in the spec'}")
    return Built(RenderedTable(title(spec, None), header, body, notes), values, status="derived")


def plan(spec: ParameterSpec, ctx: Context) -> list[PlannedStep]:
    """One model build (meta device, seconds) per reading."""
    return [
        PlannedStep("count", f"parameters of {spec.recipe} {' '.join(r.overrides) or '(recipe defaults)'}", False, 5.0)
        for r in spec.readings
    ]


register_kind(Kind("parameter-counts", "derived", ParameterSpec, build, plan=plan, scale_independent=True))
