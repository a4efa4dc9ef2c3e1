"""Examples kind (``examples``, Table 37): one record per task of a prepared dataset, shown as the model reads it.

GLUE (the only dataset so far): the first training record of each task, from
the prepared JSON lines (``mmthesis.data.datasets.glue``), written
``[CLS] sentence1 [SEP]`` or ``[CLS] sentence1 [SEP] sentence2 [SEP]`` with its
label (HF ``glue`` label index, STS-B's score). The thesis took the first train
example of each task from the Hugging Face dataset card, which is the first
row of the official files too, so at full scale on the real GLUE the
reproduced row equals the published one; at smoke scale the rows come from
the generated stand-in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from mmthesis.core.errors import ConfigError, DataMissingError
from mmthesis.eval.reproduce.engine import Built, Context, missing_data, title
from mmthesis.eval.reproduce.render import RenderedTable
from mmthesis.eval.reproduce.specs import Kind, SpecHeader, register_kind


@dataclass
class PublishedExample:
    example: str
    label: str


@dataclass
class ExampleRow:
    name: str  # as the thesis names it (SST-2, STS-B)
    task: str  # the prepared dataset's task folder (GLUE: CoLA, SST-2, ...)
    published: PublishedExample


@dataclass
class ExamplesSpec(SpecHeader):
    dataset: str = "glue"
    split: str = "train"
    rows: list[ExampleRow] = field(default_factory=list)


@dataclass(frozen=True)
class Example:
    text: str  # as the table shows it, special tokens included
    label: str
    record: str  # where it came from (file and record number)


def render_pair(sentence1: str, sentence2: str | None) -> str:
    """``[CLS] s1 [SEP]`` (+ `` s2 [SEP]``); ends stripped (SST-2's sentences end in a space) as the tokenizer does."""
    text = f"[CLS] {sentence1.strip()} [SEP]"
    return text if sentence2 is None else f"{text} {sentence2.strip()} [SEP]"


@dataclass(frozen=True)
class Source:
    prepared: str  # the prepared folder under the data root
    stand_in: str | None  # the stand-in's description, None for the real data


def _glue_examples(scale: str, split: str, tasks: list[str]) -> tuple[dict[str, Example], Source]:
    """The first ``split`` record of each GLUE task, by task, and where they came from."""
    from mmthesis.data.datasets.glue import TASKS, read_rows
    from mmthesis.data.manifest import dataset_dir, read_manifest
    from mmthesis.data.registry import prepare_command, prepared_name

    name = prepared_name("glue", scale)
    manifest = read_manifest(name, prepare_hint=prepare_command("glue", scale))
    folder = dataset_dir(name)
    out = {}
    for task in tasks:
        if task not in TASKS:
            raise ConfigError(f"GLUE has no task {task!r}", f"use one of: {', '.join(TASKS)}")
        rows = read_rows(folder, task, split, limit=1)
        if not rows:
            raise DataMissingError(
                f"{name}/{task}/{split}.jsonl has no records", f"re-run `{prepare_command('glue', scale)}`"
            )
        row = rows[0]
        out[task] = Example(
            text=render_pair(row["sentence1"], row["sentence2"]),
            label=str(row["label"]),
            record=f"{name}/{task}/{split}.jsonl record 1 (source row {row['idx']})",
        )
    return out, Source(name, manifest.stats.get("stand_in"))


def _glue_label_name(task: str, label: str) -> str:
    """What a GLUE label index means (HF ``glue`` label names); STS-B's label is a score."""
    from mmthesis.data.datasets.glue import TASKS

    names = TASKS[task].label_names
    if not names:
        return "similarity score (0-5)"
    return names[int(label)] if label.isdigit() and int(label) < len(names) else "?"


@dataclass(frozen=True)
class Reader:
    examples: Callable[[str, str, list[str]], tuple[dict[str, Example], Source]]  # (scale, split, tasks)
    label_name: Callable[[str, str], str]  # (task, label)


READERS: dict[str, Reader] = {"glue": Reader(_glue_examples, _glue_label_name)}


def build(spec: ExamplesSpec, ctx: Context) -> Built:
    if spec.dataset not in READERS:
        raise ConfigError(
            f"{spec.name}: no example reader for dataset {spec.dataset!r}", f"use one of: {', '.join(READERS)}"
        )
    try:
        reader = READERS[spec.dataset]
        examples, source = reader.examples(ctx.scale, spec.split, [r.task for r in spec.rows])
    except DataMissingError as e:
        raise missing_data(spec, ctx.scale, [e]) from e
    header = ["Dataset", "Values", "Example", "Label", "Label name"]
    body, values, differing = [], {}, []
    for row in spec.rows:
        ex = examples[row.task]
        same = ex.text == row.published.example and ex.label == row.published.label
        if not same:
            differing.append(row.name)
        label_name = reader.label_name(row.task, ex.label)
        body.append(
            [
                row.name,
                "published",
                row.published.example,
                row.published.label,
                reader.label_name(row.task, row.published.label),
            ]
        )
        mark = "" if same else " ≠"
        body.append([row.name, f"reproduced ({ctx.scale})", ex.text + mark, ex.label, label_name])
        values[row.name] = {
            "published": {"example": row.published.example, "label": row.published.label},
            "reproduced": {"example": ex.text, "label": ex.label, "label_name": label_name, "record": ex.record},
            "same": same,
        }
    notes = [
        f"Scale: {ctx.scale}. Reproduced rows: the first {spec.split} record of each task as prepared by "
        f"`mmthesis data prepare {spec.dataset}` ({source.prepared}/<task>/{spec.split}.jsonl), written with BERT's "
        "special tokens as the thesis shows them (GLUE finetuning feeds the same sequence, lower-cased and "
        "WordPiece-tokenised). Labels are the Hugging Face glue label indices (STS-B: the similarity score); the "
        "label name is the index's meaning.",
    ]
    if source.stand_in:
        notes.append(
            f"Stand-in, not GLUE: {source.stand_in}. Its records cannot equal the published ones (≠ on every row); "
            "on the real GLUE (full scale) the same code reads the records the thesis shows."
        )
    elif differing:
        notes.append(
            f"≠ ({', '.join(differing)}): the prepared record differs from the one the thesis took (the first train "
            "example of nyu-mll/glue); the prepared files are not the official GLUE release."
        )
    else:
        notes.append("Every reproduced record equals the published one (the first train example of nyu-mll/glue).")
    return Built(RenderedTable(title(spec, ctx.scale), header, body, notes), values, status="derived")


register_kind(Kind("examples", "derived", ExamplesSpec, build))
