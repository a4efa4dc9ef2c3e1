"""Tables 31-36 kind (``hyperparameters``): the appendix's hyperparameter tables, read from the configurations in force.

Each column is a recipe (``mmthesis.students.recipes.load_recipe``) or an eval task (``get_task(name).at_scale``,
its params typed by the protocol); each row reads a dotted config key (``optim.lr``, ``params.epochs``) or a
formatter of ``FORMATTERS`` (one name -> function table below) that reads what the code builds: the encoder
(on the meta device, no weights), the optimiser and schedule (``optimizer_and_schedule`` of training and of the
protocols), the train transforms, and total / warmup steps counted as the training code counts them from the
prepared data. At full scale every cell that differs from the published one is marked ``≠`` and explained: by
the REFERENCE.md §10 reading (``students.config.READINGS``) whose thesis-text value, set as an override, gives
the published cell, or by the spec's note for that row; a difference with neither is listed as unexplained.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from mmthesis.core.errors import ConfigError, DataMissingError, MMThesisError
from mmthesis.eval.reproduce.engine import Built, Context, title
from mmthesis.eval.reproduce.render import RenderedTable
from mmthesis.eval.reproduce.specs import Kind, SpecHeader, register_kind

NOT_APPLICABLE = "—"


@dataclass
class Column:
    name: str
    recipe: str | None = None  # a training recipe ...
    task: str | None = None  # ... or an eval task
    gpu: str = ""  # the thesis's GPU model for the Hardware row (REFERENCE.md §9); the count comes from the config


@dataclass
class Row:
    type: str
    name: str
    # a dotted config key or a FORMATTERS name; a mapping gives one per source kind ("recipe" or a task's
    # protocol), null where the code has no such setting (cell "—", explained by the row's note)
    value: str | dict[str, str | None]
    published: Any  # one value for every column, or a list with one per column
    # why a cell differs where no §10 reading explains it: column name (or "*" for every column) -> text
    notes: dict[str, str] = field(default_factory=dict)


@dataclass
class HyperparameterSpec(SpecHeader):
    columns: list[Column] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Cell:
    display: str
    keys: tuple[str, ...] = ()  # config keys the value depends on (to find the §10 reading that changes it)
    also: tuple[str, ...] = ()  # other texts that count as the same as the published one
    missing: str = ""  # why the value cannot be computed here (then it is not compared)


# -- sources: what one column reads -----------------------------------------------------------------------
class Source:
    """One column's configuration at a scale: a recipe's config or an eval task's typed params."""

    def __init__(self, spec: HyperparameterSpec, column: Column, scale: str, overrides: list[str] | None = None):
        self.spec, self.column, self.scale, self.overrides = spec, column, scale, overrides or []
        if (column.recipe is None) == (column.task is None):
            raise ConfigError(f"spec {Path(spec.path).name}: column {column.name!r} needs one of recipe or task")
        if column.recipe is not None:
            from mmthesis.students.recipes import load_recipe

            self.kind = "recipe"
            self.config: Any = load_recipe(column.recipe, scale, self.overrides)
            self.task = None
        else:
            from mmthesis.eval.task_registry import get_task

            self.task = get_task(column.task).at_scale(scale)
            self.kind = self.task.protocol
            self.config = _TaskView(self.task, _typed_params(self.task))

    @property
    def label(self) -> str:
        return f"recipe {self.column.recipe}" if self.kind == "recipe" else f"eval task {self.column.task}"

    def key(self, key: str) -> Any:
        obj = self.config
        for part in key.split("."):
            if not dataclasses.is_dataclass(obj) or part not in {f.name for f in dataclasses.fields(obj)}:
                raise ConfigError(
                    f"spec {Path(self.spec.path).name}: unknown config key {key!r} for {self.label}",
                    "use a field of its config (`mmthesis train show RECIPE` / the task's protocol params)",
                )
            obj = getattr(obj, part)
        return obj

    @cached_property
    def examples(self) -> int:
        """Training examples per epoch, counted as the training code counts them (DataMissingError if unprepared)."""
        if self.kind == "recipe":
            from mmthesis.students.train import training_examples

            return training_examples(self.config, self.scale)
        if self.kind == "glue":
            from mmthesis.core.paths import data_root
            from mmthesis.data.datasets.glue import read_rows
            from mmthesis.eval.data_access import resolve_dataset

            data = resolve_dataset(self.task.dataset, self.scale)
            return len(read_rows(data_root() / data.folder, self.config.params.task, self.task.train_split or "train"))
        return len(self._labelled(self.task.train_split or "train"))

    def _labelled(self, split: str):
        from mmthesis.eval.data_access import load_labelled_images, resolve_dataset

        return load_labelled_images(resolve_dataset(self.task.dataset, self.scale), split)

    @cached_property
    def classes(self) -> int:
        from mmthesis.eval.finetune import num_classes

        return num_classes(self._labelled(self.task.train_split or "train"), self._labelled(self.task.split))

    @cached_property
    def encoders(self) -> dict[str, Any]:
        """The student's encoders as the code builds them, on the meta device (shapes only, no weights)."""
        import logging

        import torch

        c = self.config
        quiet = logging.getLogger("mmthesis.teachers")  # no "random weights" warning: only shapes are read
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            with torch.device("meta"):
                return self._build_encoders(c)
        finally:
            quiet.setLevel(level)

    @staticmethod
    def _build_encoders(c: Any) -> dict[str, Any]:
        if c.task == "vl":
            from mmthesis.students.model import SSMKE

            student = SSMKE(c.model, c.data.tokenizer_vocab_size, 1, load_pretrained=False)
            return {"image": student.image_encoder, "text": student.text_encoder, "shared": student.shared}
        from mmthesis.students.lightning_module import build_teacher
        from mmthesis.teachers import crop

        side = "image" if c.task == "image_kd" else "text"
        teacher = build_teacher(dataclasses.replace(c, teacher=dataclasses.replace(c.teacher, checkpoint=None)))
        return {side: crop(teacher, getattr(c.model, side).blocks)}

    @cached_property
    def steps(self) -> tuple[int, int]:
        """(total, warmup) optimiser steps with the code's own functions."""
        if self.kind == "recipe":
            from mmthesis.students.lightning_module import warmup_steps
            from mmthesis.students.schedules import planned_steps

            c = self.config
            total = max(
                1, planned_steps(self.examples, c.data.batch_size, c.train.epochs, c.train.max_steps, c.train.devices)
            )
            return total, warmup_steps(c, total)
        return _protocol_module(self).schedule_steps(self.config.params, self.examples)

    def optimizer_and_schedule(self, total: int = 1000):
        """The optimiser and LR schedule the code builds for this column, over one dummy parameter."""
        import torch

        param = torch.nn.Parameter(torch.zeros(2, 2))
        if self.kind == "recipe":
            from mmthesis.students.lightning_module import optimizer_and_schedule, warmup_steps

            c = self.config
            return (*optimizer_and_schedule(c, [("w", param)], c.train.devices, total), warmup_steps(c, total))
        module = _protocol_module(self)
        p = self.config.params
        warmup = int(p.warmup_fraction * total)
        params = (
            [{"params": [param], "lr": p.lr, "weight_decay": p.weight_decay}] if self.kind == "finetune" else [param]
        )
        return (*module.optimizer_and_schedule(params, p, total, warmup), warmup)


@dataclass
class _TaskView:
    task: Any
    params: Any


def _typed_params(task: Any) -> Any:
    from mmthesis.eval.protocols import params_of, runner

    runner(task.protocol)  # registers every protocol's module
    types = _param_types()
    if task.protocol not in types:
        raise ConfigError(
            f"the hyperparameter tables do not read {task.protocol} tasks ({task.name})",
            "use a finetune, linear-probe or glue task",
        )
    return params_of(types[task.protocol], task)


def _param_types() -> dict[str, type]:
    from mmthesis.eval.finetune import FinetuneParams
    from mmthesis.eval.glue_finetune import GlueParams
    from mmthesis.eval.protocols import LinearProbeParams

    return {"finetune": FinetuneParams, "glue": GlueParams, "linear-probe": LinearProbeParams}


def _protocol_module(src: Source):
    from mmthesis.eval import finetune, glue_finetune

    modules = {"finetune": finetune, "glue": glue_finetune}
    if src.kind not in modules:
        raise _not_for(src, "optimiser steps")
    return modules[src.kind]


def _not_for(src: Source, what: str) -> ConfigError:
    return ConfigError(
        f"spec {Path(src.spec.path).name}: {what} cannot be read from {src.label}",
        "give that column `null` in the row's value mapping",
    )


# -- formatting -----------------------------------------------------------------------------------------
def num(v: Any) -> str:
    """Thesis style: 1e-4, 5e-4, 0.01, 0.9, 256."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float) and v != 0 and abs(v) <= 1e-3:
        mantissa, exp = f"{v:e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exp)}"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(num(x) for x in v) + "]"
    return str(v)


def _recipe(src: Source, what: str):
    if src.kind != "recipe":
        raise _not_for(src, what)
    return src.config


def _layers(src: Source) -> Cell:
    c = _recipe(src, "encoder layers")
    side = "image" if c.task == "image_kd" else "text"
    return Cell(str(src.encoders[side].num_blocks), keys=(f"model.{side}.blocks",))


def _image_text_layers(src: Source) -> Cell:
    _recipe(src, "encoder layers")
    i, t = src.encoders["image"].num_blocks, src.encoders["text"].num_blocks
    return Cell(
        f"{i} (Transformer)" if i == t else f"{i} / {t} (Transformer)", keys=("model.image.blocks", "model.text.blocks")
    )


def _shared_layers(src: Source) -> Cell:
    import torch

    _recipe(src, "shared layers")
    shared = src.encoders["shared"]
    from mmthesis.students.model import SharedMLP

    if isinstance(shared, SharedMLP):
        return Cell(f"{sum(isinstance(m, torch.nn.Linear) for m in shared.modules())} (MLP)", keys=("model.shared",))
    return Cell("1 (Transformer)", keys=("model.shared",))


def _encoder_field(what: str, read: Callable[[dict[str, Any]], Any]) -> Callable[[Source], Cell]:
    def fmt(src: Source) -> Cell:
        _recipe(src, what)
        values = {str(read(e.config)) for name, e in src.encoders.items() if name != "shared"}
        return Cell(" / ".join(sorted(values)), keys=("model.size",))

    return fmt


def _image_field(key: str) -> Callable[[Source], Cell]:
    def fmt(src: Source) -> Cell:
        _recipe(src, key)
        v = src.encoders["image"].config[key]
        return Cell(f"{v}×{v}", keys=(f"model.{'img_size' if key == 'img_size' else key}",))

    return fmt


def _total_steps(src: Source) -> Cell:
    keys = ("train.epochs", "train.max_steps", "data.batch_size", "train.devices", "data.train")
    try:
        return Cell(str(src.steps[0]), keys=keys)
    except DataMissingError as e:
        cap = src.config.train.max_steps if src.kind == "recipe" else src.config.params.max_steps
        bound = f"≤ {cap} (max_steps); " if cap > 0 else ""
        return Cell(f"{bound}needs data", keys=keys, missing=_fix(e))


def _warmup_steps(src: Source) -> Cell:
    frac = src.config.optim.warmup_fraction if src.kind == "recipe" else src.config.params.warmup_fraction
    pct = f"{num(100 * frac)}% of total steps"
    keys = ("optim.warmup_fraction", "train.epochs", "train.max_steps", "data.batch_size", "train.devices")
    try:
        return Cell(f"{src.steps[1]} ({pct})", keys=keys, also=(pct,))
    except DataMissingError as e:
        return Cell(f"{pct}", keys=keys, missing=_fix(e))


def _fix(e: MMThesisError) -> str:
    from mmthesis.eval.reproduce.engine import home_relative

    text = f"{e.message}: {e.fix}" if e.fix else e.message
    return " ".join(home_relative(w) for w in text.split(" "))  # no machine paths in the table


def _optimizer(src: Source) -> Cell:
    opt, _, _ = src.optimizer_and_schedule()
    return Cell(type(opt).__name__)


def _base_lr(src: Source) -> Cell:
    if src.kind != "recipe":
        return Cell(num(src.config.params.lr))
    _, sched, _ = src.optimizer_and_schedule()
    base, applied = src.config.optim.lr, sched.base_lrs[0]  # the LR before the schedule's multiplier
    keys = ("optim.lr", "optim.scale_lr_with_devices", "train.devices")
    if math.isclose(applied, base):
        return Cell(num(base), keys=keys)
    return Cell(
        f"{num(base)} (applied: {num(applied)} on {src.config.train.devices} GPUs)", keys=keys, also=(num(base),)
    )


# LR multiplier after warmup as a function of the fraction p of the decay done: the shapes the code's schedules have
SCHEDULE_SHAPES: dict[str, Callable[[float], float]] = {
    "Cosine": lambda p: 0.5 * (1.0 + math.cos(math.pi * p)),
    "Polynomial decay": lambda p: 1.0 - p,  # linear = polynomial of power 1 (transformers' schedule)
}


def _schedule(src: Source) -> Cell:
    """Which shape the built scheduler's LR multiplier has (probed at a quarter, half, three quarters of the decay)."""
    total = 1000
    _, sched, warmup = src.optimizer_and_schedule(total)
    lam = sched.lr_lambdas[0]
    probes = [0.25, 0.5, 0.75]
    for name, shape in SCHEDULE_SHAPES.items():
        if all(abs(lam(round(warmup + p * (total - warmup))) - shape(p)) < 1e-2 for p in probes):
            return Cell(name)
    return Cell("unknown schedule")


def _betas(src: Source) -> Cell:
    b = src.config.optim.betas if src.kind == "recipe" else src.config.params.betas
    return Cell(f"({','.join(num(float(x)) for x in b)})", keys=("optim.betas",))


def _crop_range(src: Source) -> Cell:
    lo, hi = _recipe(src, "crop range").data.crop_scale
    return Cell(f"[{float(lo)}, {float(hi)}]", keys=("data.crop_scale",))


def _flip_prob(src: Source) -> Cell:
    """The horizontal-flip probability of the train transform the recipe's training builds."""
    from mmthesis.data.transforms import train_transform

    c = _recipe(src, "flip probability")
    flips = [
        t.p
        for t in train_transform(c.model.img_size, tuple(c.data.crop_scale), c.data.hflip).transforms
        if "Flip" in type(t).__name__
    ]
    return Cell(num(float(flips[0])) if flips else "0")


def _hardware(src: Source) -> Cell:
    devices = src.config.train.devices if src.kind == "recipe" else 1  # an evaluation runs on one device
    gpu = src.column.gpu or "GPU"
    return Cell(f"{devices} × {gpu}", keys=("train.devices",))


def _num_classes(src: Source) -> Cell:
    if src.kind == "glue":
        from mmthesis.data.datasets.glue import TASKS

        names = TASKS[src.config.params.task].label_names
        return Cell(str(len(names)) if names else "-")
    try:
        n = src.classes
    except DataMissingError as e:
        return Cell("needs data", missing=_fix(e))
    return Cell("1k" if n == 1000 else str(n), also=(str(n),))


METRIC_NAMES = {
    "accuracy": "Accuracy",
    "accuracy_m": "Accuracy",
    "accuracy_mm": "Accuracy (mismatched)",
    "f1": "F1",
    "mcc": "Matthews corr.",
    "pearson": "Pearson",
    "spearman": "Spearman",
    "top1": "Top-1 accuracy",
}


def _metric(src: Source) -> Cell:
    """The task's headline metrics; the published one counts as the same if it is among them."""
    if src.task is None:
        raise _not_for(src, "metrics")
    names = [METRIC_NAMES.get(m, m) for m in src.task.metrics]
    return Cell(", ".join(dict.fromkeys(names)), also=tuple(names))


def _train_transform(src: Source):
    """The timm transforms of the finetuning protocol's train pipeline."""
    from mmthesis.eval.finetune import train_transform

    if src.kind != "finetune":
        raise _not_for(src, "finetuning augmentation")
    return list(train_transform(src.config.params, 224).transforms)


def _randaugment(read: Callable[[Any], str]) -> Callable[[Source], Cell]:
    def fmt(src: Source) -> Cell:
        found = [t for t in _train_transform(src) if type(t).__name__ == "RandAugment"]
        return Cell(read(found[0]) if found else "none", keys=("params.auto_augment",))

    return fmt


def _random_erasing(read: Callable[[Any], str]) -> Callable[[Source], Cell]:
    def fmt(src: Source) -> Cell:
        found = [t for t in _train_transform(src) if type(t).__name__ == "RandomErasing"]
        return Cell(read(found[0]) if found else "none", keys=("params.re_prob",))

    return fmt


FORMATTERS: dict[str, Callable[[Source], Cell]] = {
    "layers": _layers,
    "image_text_layers": _image_text_layers,
    "shared_layers": _shared_layers,
    "hidden_size": _encoder_field("hidden size", lambda c: c["embed_dim"]),
    "ffn_size": _encoder_field(
        "FFN size", lambda c: c.get("intermediate_size") or int(c["embed_dim"] * c["mlp_ratio"])
    ),
    "attention_heads": _encoder_field("attention heads", lambda c: c["num_heads"]),
    "vocab_size": _encoder_field("vocabulary size", lambda c: c["vocab_size"]),
    "patch_size": _image_field("patch_size"),
    "input_resolution": _image_field("img_size"),
    "total_steps": _total_steps,
    "warmup_steps": _warmup_steps,
    "optimizer": _optimizer,
    "base_lr": _base_lr,
    "schedule": _schedule,
    "betas": _betas,
    "crop_range": _crop_range,
    "flip_prob": _flip_prob,
    "hardware": _hardware,
    "num_classes": _num_classes,
    "metric": _metric,
    "randaug_magnitude": _randaugment(lambda ra: num(ra.ops[0].magnitude)),
    "randaug_magnitude_std": _randaugment(lambda ra: num(ra.ops[0].magnitude_std)),
    "randaug_increasing": _randaugment(lambda ra: "1" if any("Increasing" in op.name for op in ra.ops) else "0"),
    "randaug_ops": _randaugment(lambda ra: str(ra.num_layers)),
    "erase_prob": _random_erasing(lambda re_: num(re_.probability)),
    "erase_mode": _random_erasing(lambda re_: "pixel" if re_.per_pixel else "rand" if re_.rand_color else "const"),
    "erase_count": _random_erasing(lambda re_: str(re_.max_count)),
}


def read_cell(row: Row, src: Source) -> Cell | None:
    """The row's value for one column; None where the row says the code has no such setting."""
    how = row.value
    if isinstance(how, dict):
        if src.kind not in how:
            raise ConfigError(
                f"spec {Path(src.spec.path).name}: row {row.name!r} has no value for {src.kind} columns ({src.label})",
                f"add `{src.kind}: KEY` (or null) to its value mapping",
            )
        how = how[src.kind]
    if how is None:
        return None
    if how in FORMATTERS:
        return FORMATTERS[how](src)
    if "." not in how:
        raise ConfigError(
            f"spec {Path(src.spec.path).name}: row {row.name!r} names {how!r}, neither a dotted config key nor a formatter",
            f"use a config key such as optim.lr or one of: {', '.join(FORMATTERS)}",
        )
    v = src.key(how)
    return Cell(num(v), keys=(how,))


# -- comparison -----------------------------------------------------------------------------------------
_NUMBER = re.compile(r"(\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)([kKM](?![A-Za-z]))?")
_SUFFIX = {"k": 1e3, "K": 1e3, "M": 1e6}


def _tokens(text: str) -> list[Any]:
    out: list[Any] = []
    pos = 0
    for m in _NUMBER.finditer(text):
        if m.start() > pos:
            out.append(re.sub(r"\s+", "", text[pos : m.start()]).lower())
        out.append(float(m.group(1)) * _SUFFIX.get(m.group(2) or "", 1.0))
        pos = m.end()
    out.append(re.sub(r"\s+", "", text[pos:]).lower())
    return [t for t in out if t != ""]


def same(published: str, reproduced: str) -> bool:
    """Equal up to whitespace, case and number spelling (1e-06 = 1e-6, 1k = 1000, 1.0 = 1)."""
    a, b = _tokens(published), _tokens(reproduced)
    return len(a) == len(b) and all(
        math.isclose(x, y, rel_tol=1e-9) if isinstance(x, float) and isinstance(y, float) else x == y
        for x, y in zip(a, b, strict=True)
    )


def matches(published: str, cell: Cell) -> bool:
    return any(same(published, text) for text in (cell.display, *cell.also))


def _published(row: Row, i: int, n: int, spec: HyperparameterSpec) -> str:
    if isinstance(row.published, list):
        if len(row.published) != n:
            raise ConfigError(
                f"spec {Path(spec.path).name}: row {row.name!r} has {len(row.published)} published values for {n} columns",
                "give one value, or one per column",
            )
        return str(row.published[i])
    return str(row.published)


# -- explanations -------------------------------------------------------------------------------------
def reading_explanation(row: Row, src: Source, cell: Cell, published: str) -> str | None:
    """The §10 reading whose thesis-text value, set as an override, turns this cell into the published one."""
    if src.kind != "recipe":
        return None
    from mmthesis.students.config import NOT_STATED, READINGS, fmt_value, get_key

    for r in READINGS:
        if r.key not in cell.keys or not r.applies(src.config):
            continue
        _, text = r.values(src.config)
        if text is NOT_STATED or get_key(src.config, r.key) == text:
            continue
        override = f"{r.key}={fmt_value(text)}"
        changed = read_cell(row, Source(src.spec, src.column, src.scale, [*src.overrides, override]))
        if changed is not None and matches(published, changed):
            item = f"REFERENCE.md §10 item {r.item}" if r.item is not None else "thesis code vs text (not in §10)"
            return f"{item}: {r.what}. The thesis-text value: `{override}`."
    return None


# -- build ----------------------------------------------------------------------------------------------
class _Notes:
    def __init__(self) -> None:
        self.texts: list[str] = []

    def ref(self, text: str) -> str:
        if text not in self.texts:
            self.texts.append(text)
        return f"[{self.texts.index(text) + 1}]"


def build(spec: HyperparameterSpec, ctx: Context) -> Built:
    from mmthesis.students.recipes import recipe_names

    scale = ctx.scale
    compare = scale == "full"
    known = set(recipe_names())
    notes = _Notes()
    sources: list[Source | None] = []
    missing_recipes = []
    for col in spec.columns:
        if col.recipe is not None and col.recipe not in known:
            missing_recipes.append(col)
            sources.append(None)
        else:
            sources.append(Source(spec, col, scale))
    n = len(spec.columns)
    single = n == 1
    header = ["Type", "Hyperparameter"] + (
        ["Published", f"Reproduced ({scale})"] if single else [c.name for c in spec.columns]
    )
    body, values, unexplained = [], {}, []
    for row in spec.rows:
        cells, values[row.name] = [], {}
        for i, (col, src) in enumerate(zip(spec.columns, sources, strict=True)):
            published = _published(row, i, n, spec)
            record: dict[str, Any] = {"published": published}
            if src is None:
                ref = notes.ref(
                    f"Recipe `{col.recipe}` is not in this checkout (`mmthesis train list`), so the {col.name} column"
                    " shows no reproduced values; it appears once that recipe is added."
                )
                text = f"{NOT_APPLICABLE} {ref}"
                record |= {"reproduced": None, "missing": f"recipe {col.recipe} not found"}
            else:
                cell = read_cell(row, src)
                if cell is None:
                    note = row.notes.get(col.name) or row.notes.get("*")
                    text = NOT_APPLICABLE + (f" {notes.ref(note)}" if note else "")
                    record |= {"reproduced": None, "same": same(published, "-") if compare else None}
                    if compare and not same(published, "-") and not note:
                        unexplained.append(f"{row.name} / {col.name}")
                else:
                    text = cell.display
                    record["reproduced"] = cell.display
                    if cell.missing:
                        text += f" {notes.ref(cell.missing)}"
                        record["missing"] = cell.missing
                    elif compare:
                        ok = matches(published, cell)
                        record["same"] = ok
                        if not ok:
                            why = reading_explanation(row, src, cell, published)
                            spec_note = row.notes.get(col.name) or row.notes.get("*")
                            why = " ".join(w for w in (why, spec_note) if w) or None
                            if why is None:
                                unexplained.append(f"{row.name} / {col.name}")
                                why = "Unexplained difference from the published value."
                            record["note"] = why
                            text = f"{cell.display} ≠" + ("" if single else f" {published}") + f" {notes.ref(why)}"
            values[row.name][col.name] = record
            cells.append(text)
        published_cell = [_published(row, 0, n, spec)] if single else []
        body.append([row.type, row.name, *published_cell, *cells])
    table_notes = [
        f"Configuration: scale {scale}, as the code resolves it (recipes: `mmthesis train show RECIPE --scale {scale}`;"
        " eval tasks: their task file with the protocol's defaults). Models are built on the meta device (shapes"
        " only); optimiser and schedule are the ones training builds; steps are counted from the prepared data as"
        " the training code counts them."
    ]
    if compare:
        table_notes.append(
            "A reproduced value that differs from the published one is marked ≠"
            + ("" if single else " followed by the published value")
            + " and a note: the REFERENCE.md §10 reading and the override that gives the thesis-text value, or why"
            " the code differs."
        )
    else:
        table_notes.append(
            f"At scale {scale} the configuration is a smaller one than the thesis's, so it is not compared with the"
            " published values (use --scale full)."
        )
    if unexplained:
        table_notes.append("Unexplained differences: " + "; ".join(unexplained) + ".")
    table_notes += spec.notes
    table_notes += [f"[{i + 1}] {t}" for i, t in enumerate(notes.texts)]
    status = "partial" if missing_recipes else "derived"
    values["_unexplained"] = unexplained
    return Built(RenderedTable(title(spec, scale), header, body, table_notes), values, status=status)


register_kind(Kind("hyperparameters", "derived", HyperparameterSpec, build, scale_independent=True))
