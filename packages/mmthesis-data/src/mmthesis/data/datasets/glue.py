"""GLUE (9 tasks) from the official TSVs (or HF parquet) -> one JSON-lines file per task and split.

Raw layout (``--raw`` points at the folder written by GLUE's
``download_glue_data.py``)::

    CoLA/ SST-2/ MRPC/ STS-B/ QQP/ MNLI/ QNLI/ RTE/ WNLI/   each: train.tsv, dev.tsv
                                                            (MNLI: dev_matched.tsv, dev_mismatched.tsv)

Official column layouts (parsed with ``csv`` ``QUOTE_NONE``, tab-separated,
as the GLUE loaders do): CoLA has *no header* and 4 columns (source, label,
original label, sentence); the others have a header row: SST-2
``sentence label``; MRPC ``Quality #1 ID #2 ID #1 String #2 String``; STS-B 10
columns ending in ``sentence1 sentence2 score``; QQP ``id qid1 qid2 question1
question2 is_duplicate``; MNLI 12 (train) / 16 (dev) columns with
``sentence1``, ``sentence2`` and ``gold_label`` last; QNLI ``index question
sentence label``; RTE and WNLI ``index sentence1 sentence2 label``. A row
with the wrong number of columns, a NUL byte, invalid UTF-8, an empty (or
all-whitespace) sentence or a label outside the task's label set is skipped
and counted by reason. Files are split
on ``\\n`` only (a stray ``\\r`` inside a sentence does not end a row).

Alternatively ``--raw`` may hold the Hugging Face ``nyu-mll/glue`` dataset,
read by Hugging Face ``datasets`` with the network off (``mmthesis.data.hf``;
``pip install 'mmthesis-data[hf]'``); the layout is detected, ``datasets``
reads the files:

- the hub's parquet files (``load_dataset("parquet", data_files=...)``): ``cola/train-00000-of-00001.parquet``,
  ``mnli/validation_matched-*.parquet``, ... (also ``<config>/<split>/*.parquet``
  as in the hub's parquet conversion, and a hub cache folder
  ``datasets--nyu-mll--glue`` holding one ``snapshots/<revision>/``, or
  the hub cache folder ``~/.cache/huggingface/hub`` holding it);
- ``datasets``' ``save_to_disk`` folders (``load_from_disk``), one per config:
  ``cola/dataset_dict.json``, ``cola/train/data-00000-of-00001.arrow`` (+ ``state.json``);
- the ``datasets`` cache (``load_dataset("nyu-mll/glue", config, cache_dir=...)``
  offline): ``nyu-mll___glue/cola/0.0.0/<hash>/glue-train.arrow`` (+ ``dataset_info.json``),
  so ``--raw ~/.cache/huggingface/datasets`` (or its ``nyu-mll___glue/``) works.

HF columns are ``sentence`` / ``sentence1``+``sentence2`` / ``question1``+``question2`` /
``premise``+``hypothesis`` / ``question``+``sentence``, an int ``label`` (the
HF label index, which is what the prepared files store; -1 marks unlabelled
rows and is skipped as a bad label) or STS-B's float32 score (read as the
shortest decimal that float32 value prints as, so ``3.8`` stays ``3.8`` as in
the TSV), and ``idx``. Only train and validation splits are read (test splits
are unlabelled). ``idx`` of a prepared row is its position in the split (the
row number HF's ``idx`` also counts), and the same checks apply: NUL bytes,
missing (null) text and labels outside the label set are skipped by reason, so
the same data prepared from TSVs or from HF files gives identical JSON lines.

Prepared format: ``<Task>/<split>.jsonl``, one row per line:
``{"idx": <row number in the source file>, "sentence1": str, "sentence2": str
| null, "label": int | float}`` with labels as indices into the HF ``glue``
label names (stored in the manifest) and STS-B's score as a float. Why JSON
lines and not tar shards or parquet: GLUE is small (~1M rows, ~100 MB), read
whole for fine-tuning, and JSON lines need no extra dependency, stream, diff
and open in any editor. The manifest lists each file with its sha256 and row
count (splits ``<Task>/train``, ``<Task>/dev``, ``MNLI/dev_matched``, ...).

Smoke scale without ``--raw``: toy task files are *generated* in exactly the
official formats (templated sentences, deterministic; ``glue_standin``) and
parsed by the same code; they are a stand-in, not GLUE.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mmthesis.core.console import console
from mmthesis.core.errors import DataMissingError
from mmthesis.core.io import atomic_path, sha256_file
from mmthesis.data import hf
from mmthesis.data.datasets.glue_standin import (  # noqa: F401 (the stand-in's names stay importable from here)
    STAND_IN,
    STANDIN_DEV_ROWS,
    STANDIN_TRAIN_ROWS,
    build_standin_raw,
    write_standin_tsvs,
)
from mmthesis.data.manifest import (
    MANIFEST,
    Manifest,
    Skipped,
    dataset_dir,
    reuse_prepared,
    write_manifest,
)
from mmthesis.data.registry import DatasetSpec, PrepareRequest, prepare_command, prepared_name, register
from mmthesis.data.standins import standin_dir

NAME = "glue"
FORMAT_VERSION = 1
RAW_HINT = "glue_data/ (CoLA/ SST-2/ MRPC/ STS-B/ QQP/ MNLI/ QNLI/ RTE/ WNLI/ with train.tsv, dev*.tsv)"
MAX_LISTED_SKIPS = 100  # per file; the counts by reason are always complete

# row skip reasons (stable: the manifest counts them)
WRONG_COLUMNS = "wrong column count"
NUL = "nul byte"
INVALID_UTF8 = "invalid utf-8"
BAD_LABEL = "bad label"
BLANK = "blank line"
MISSING_TEXT = "missing text"  # HF files: a null sentence
EMPTY_TEXT = "empty text"  # an empty or all-whitespace sentence: nothing to classify


@dataclasses.dataclass(frozen=True)
class Task:
    """One GLUE task's official file layout and label set."""

    name: str  # folder name in the official download
    hf: str  # config name in HF `glue`
    text: tuple[str, ...]  # column names (CoLA: positions) of sentence1 [, sentence2]
    label: str  # label column name (CoLA: position)
    label_names: tuple[str, ...]  # HF label names, index = label id; () = regression (STS-B)
    raw_labels: tuple[str, ...]  # how the TSV writes each label id
    dev: tuple[str, ...] = ("dev",)
    header: bool = True
    columns: int | None = None  # fixed column count of headerless files

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train", *self.dev)

    def parse_label(self, value: str) -> int | float | None:
        value = value.strip()
        if not self.label_names:
            try:
                score = float(value)
            except ValueError:
                return None
            return score if 0.0 <= score <= 5.0 else None
        return self.raw_labels.index(value) if value in self.raw_labels else None


_BIN = ("0", "1")
TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("CoLA", "cola", ("3",), "1", ("unacceptable", "acceptable"), _BIN, header=False, columns=4),
        Task("SST-2", "sst2", ("sentence",), "label", ("negative", "positive"), _BIN),
        Task("MRPC", "mrpc", ("#1 String", "#2 String"), "Quality", ("not_equivalent", "equivalent"), _BIN),
        Task("STS-B", "stsb", ("sentence1", "sentence2"), "score", (), ()),
        Task("QQP", "qqp", ("question1", "question2"), "is_duplicate", ("not_duplicate", "duplicate"), _BIN),
        Task(
            "MNLI",
            "mnli",
            ("sentence1", "sentence2"),
            "gold_label",
            ("entailment", "neutral", "contradiction"),
            ("entailment", "neutral", "contradiction"),
            dev=("dev_matched", "dev_mismatched"),
        ),
        Task(
            "QNLI",
            "qnli",
            ("question", "sentence"),
            "label",
            ("entailment", "not_entailment"),
            ("entailment", "not_entailment"),
        ),
        Task(
            "RTE",
            "rte",
            ("sentence1", "sentence2"),
            "label",
            ("entailment", "not_entailment"),
            ("entailment", "not_entailment"),
        ),
        Task("WNLI", "wnli", ("sentence1", "sentence2"), "label", ("not_entailment", "entailment"), _BIN),
    )
}
HF_TEXT = {
    "cola": ("sentence",),
    "sst2": ("sentence",),
    "mrpc": ("sentence1", "sentence2"),
    "stsb": ("sentence1", "sentence2"),
    "qqp": ("question1", "question2"),
    "mnli": ("premise", "hypothesis"),
    "qnli": ("question", "sentence"),
    "rte": ("sentence1", "sentence2"),
    "wnli": ("sentence1", "sentence2"),
}


@dataclasses.dataclass
class FileResult:
    rows: int
    skipped: list[Skipped]


def _row(idx: int, texts: list[str], label: int | float) -> dict[str, Any]:
    return {"idx": idx, "sentence1": texts[0], "sentence2": texts[1] if len(texts) > 1 else None, "label": label}


def parse_tsv(path: Path, task: Task) -> Iterator[dict[str, Any] | Skipped]:
    """Rows of one official GLUE TSV as prepared dicts, or ``Skipped`` for malformed ones."""
    fix = f"replace {path} with the official file from GLUE's download_glue_data.py"
    with open(path, "rb") as f:
        columns: list[str] | None = None
        if task.header:
            first = f.readline()
            try:
                header_text = first.decode("utf-8-sig").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise DataMissingError(f"{path}: the header row is not UTF-8", fix) from e
            columns = next(csv.reader([header_text], delimiter="\t", quoting=csv.QUOTE_NONE), [])
            missing = [c for c in (*task.text, task.label) if c not in columns]
            if missing:
                raise DataMissingError(f"{path}: header {columns} lacks column(s) {missing} of {task.name}", fix)
            text_at = [columns.index(c) for c in task.text]
            label_at = len(columns) - 1 - columns[::-1].index(task.label)  # MNLI: gold_label is the last column
            width = len(columns)
        else:
            text_at = [int(c) for c in task.text]
            label_at = int(task.label)
            width = task.columns or 0
        first_line = 2 if task.header else 1
        for idx, raw in enumerate(f):
            where = f"{path.parent.name}/{path.name}:{idx + first_line}"
            raw = raw.rstrip(b"\n").rstrip(b"\r")
            if b"\x00" in raw:
                yield Skipped(where, NUL)
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield Skipped(where, INVALID_UTF8)
                continue
            if not line.strip():
                yield Skipped(where, BLANK)
                continue
            fields = next(csv.reader([line], delimiter="\t", quoting=csv.QUOTE_NONE))
            if len(fields) != width:
                yield Skipped(where, WRONG_COLUMNS)
                continue
            texts = [fields[i] for i in text_at]
            if any(not t.strip() for t in texts):
                yield Skipped(where, EMPTY_TEXT)
                continue
            label = task.parse_label(fields[label_at])
            if label is None:
                yield Skipped(where, BAD_LABEL)
                continue
            yield _row(idx, texts, label)


def _hf_label(value: Any, task: Task, float32: bool) -> int | float | None:
    if isinstance(value, bool) or value is None:
        return None
    if not task.label_names:
        if not isinstance(value, (int, float)):
            return None
        score = float(str(np.float32(value))) if float32 else float(value)  # float32 3.8 -> 3.8, as the TSV says
        return score if 0.0 <= score <= 5.0 else None
    return value if isinstance(value, int) and 0 <= value < len(task.label_names) else None


def parse_hf(parts: list[tuple[str, Any]], task: Task) -> Iterator[dict[str, Any] | Skipped]:
    """Rows of an HF ``glue`` split, given as ``(shown name, datasets.Dataset)`` pieces in order; same output and checks as ``parse_tsv``."""
    idx = 0
    text_cols = list(HF_TEXT[task.hf])
    for shown, ds in parts:
        missing = [c for c in (*text_cols, "label") if c not in ds.column_names]
        if missing:
            raise DataMissingError(
                f"{shown}: columns {ds.column_names} lack {missing}",
                "use the files of the Hugging Face nyu-mll/glue dataset, or pass the official GLUE TSV folder",
            )
        float32 = getattr(ds.features["label"], "dtype", None) == "float32"
        i = 0
        for batch in ds.select_columns([*text_cols, "label"]).iter(batch_size=10_000):
            for texts, value in zip(zip(*(batch[c] for c in text_cols), strict=True), batch["label"], strict=True):
                where = f"{shown}:{i}"
                label = _hf_label(value, task, float32)
                if any(not isinstance(t, str) for t in texts):
                    yield Skipped(where, MISSING_TEXT)
                elif any("\x00" in t for t in texts):
                    yield Skipped(where, NUL)
                elif any(not t.strip() for t in texts):
                    yield Skipped(where, EMPTY_TEXT)
                elif label is None:
                    yield Skipped(where, BAD_LABEL)
                else:
                    yield _row(idx, list(texts), label)
                idx += 1
                i += 1


def write_jsonl(rows: Iterator[dict[str, Any] | Skipped], out: Path) -> FileResult:
    """Write the good rows to ``out`` atomically; collect the skipped ones."""
    count = 0
    skipped: list[Skipped] = []
    with atomic_path(out) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                if isinstance(row, Skipped):
                    skipped.append(row)
                    continue
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
    return FileResult(count, skipped)


HF_LAYOUTS = ("parquet", "arrow", "hf-cache")
_SHARD = r"(-\d{5}-of-\d{5})?"


def _hf_split(split: str) -> str:
    return split.replace("dev", "validation")


def _hf_root(raw: Path) -> Path:
    """Descend from an HF cache folder to the dataset's files (hub: one ``snapshots/<rev>/``; datasets: ``nyu-mll___glue/``)."""
    for cached in ("nyu-mll___glue", "datasets--nyu-mll--glue"):  # --raw ~/.cache/huggingface/{datasets,hub}
        if (raw / cached).is_dir():
            raw = raw / cached
    if (raw / "snapshots").is_dir() and not any((raw / t.hf).is_dir() for t in TASKS.values()):
        revisions = sorted(p for p in (raw / "snapshots").iterdir() if p.is_dir())
        if len(revisions) != 1:
            raise DataMissingError(
                f"{raw}/snapshots holds {len(revisions)} revisions of the dataset, not one",
                f"pass --raw {raw}/snapshots/<revision>",
            )
        raw = revisions[0]
    return raw


def _cache_dir(config: Path) -> Path | None:
    """The one ``<version>/<hash>/`` folder of a ``datasets`` cache config folder (None if there is none)."""
    found = sorted({p.parent for p in config.glob("*/*/*.arrow")})
    if len(found) > 1:
        raise DataMissingError(
            f"{config} holds {len(found)} cached versions of the dataset ({', '.join(str(p.relative_to(config)) for p in found)})",
            "delete the stale ones, or save one with `datasets`' save_to_disk and pass that folder",
        )
    return found[0] if found else None


def _hf_sources(root: Path, layout: str, task: Task, split: str) -> list[Path]:
    config, name = root / task.hf, _hf_split(split)
    if not config.is_dir():
        return []
    if layout == "parquet":
        return sorted(config.glob(f"{name}-*.parquet")) or sorted((config / name).glob("*.parquet"))
    if layout == "arrow":
        folder = config / name
        state = folder / "state.json"
        if state.is_file():
            try:
                files = [folder / f["filename"] for f in json.loads(state.read_text(encoding="utf-8"))["_data_files"]]
            except (ValueError, KeyError, TypeError) as e:
                raise DataMissingError(f"{state} is not a `datasets` state file ({e})", f"re-save {folder}") from e
            if all(f.is_file() for f in files):
                return files
        return sorted(folder.glob("*.arrow"))
    cache = _cache_dir(config)
    if cache is None:
        return []
    pattern = re.compile(rf"[^-]+-{re.escape(name)}{_SHARD}\.arrow")
    return sorted(p for p in cache.glob("*.arrow") if pattern.fullmatch(p.name))


def _layout(raw: Path) -> tuple[str, Path]:
    """Which layout ``raw`` holds and the folder its files are under: TSVs, or one of the HF layouts."""
    raw = Path(raw).expanduser()
    if not raw.is_dir():
        raise DataMissingError(f"GLUE raw folder {raw} does not exist", f"pass --raw with {RAW_HINT}")
    if any((raw / t.name).is_dir() for t in TASKS.values()):
        return "tsv", raw
    root = _hf_root(raw)
    configs = [root / t.hf for t in TASKS.values() if (root / t.hf).is_dir()]
    if any(next(c.glob("*.parquet"), None) or next(c.glob("*/*.parquet"), None) for c in configs):
        return "parquet", root
    if any((c / "dataset_dict.json").is_file() or next(c.glob("*/state.json"), None) for c in configs):
        return "arrow", root
    if any(next(c.glob("*/*/*.arrow"), None) for c in configs):
        return "hf-cache", root
    raise DataMissingError(
        f"{raw} holds neither GLUE task folders (CoLA/, SST-2/, ...) nor the HF nyu-mll/glue dataset "
        "(cola/, sst2/, ... with parquet files, save_to_disk folders or a datasets cache)",
        f"pass --raw with {RAW_HINT}, or a folder of the HF dataset's config folders",
    )


def _load_hf(root: Path, layout: str, sources: dict[tuple[str, str], list[Path]]) -> dict[tuple[str, str], list]:
    """Every task and split as ``(shown name, datasets.Dataset)`` pieces, read by ``datasets`` with the network off.

    parquet (hub files or a hub-cache snapshot): ``load_dataset("parquet", data_files=...)`` per file (so a skipped
    row is named by file and row); ``save_to_disk`` folders: ``load_from_disk``; ``datasets``' cache:
    ``load_dataset("nyu-mll/glue", config, cache_dir=...)``.
    """
    fix = "use the files of the Hugging Face nyu-mll/glue dataset, or pass the official GLUE TSV folder"
    out: dict[tuple[str, str], list] = {}
    configs: dict[str, Any] = {}
    for task in TASKS.values():
        config = root / task.hf
        for split in task.splits:
            name = _hf_split(split)
            if layout == "parquet":
                out[(task.name, split)] = [
                    (str(p.relative_to(root)), hf.load_parquet({"train": [p]}, fix)["train"])
                    for p in sources[(task.name, split)]
                ]
                continue
            if task.hf not in configs:
                if layout == "arrow":
                    whole = (config / "dataset_dict.json").is_file()
                    configs[task.hf] = hf.load_from_disk(config, fix) if whole else {}
                else:
                    if "___" not in root.name:
                        raise DataMissingError(
                            f"{root} is not a datasets cache folder of nyu-mll/glue (named nyu-mll___glue)",
                            "pass --raw ~/.cache/huggingface/datasets (the folder holding nyu-mll___glue)",
                        )
                    configs[task.hf] = hf.load_cached(root.name.replace("___", "/"), task.hf, root.parent, fix)
            loaded = configs[task.hf]
            ds = loaded[name] if name in loaded else None
            if ds is None and layout == "arrow":
                ds = hf.load_from_disk(config / name, fix)
            if ds is None:
                raise DataMissingError(f"{config} holds no split {name} ({', '.join(loaded)})", fix)
            out[(task.name, split)] = [(f"{task.hf}/{name}", ds)]
    return out


def _sources(raw: Path, layout: str, task: Task, split: str) -> list[Path]:
    if layout == "tsv":
        path = raw / task.name / f"{split}.tsv"
        return [path] if path.is_file() else []
    return _hf_sources(raw, layout, task, split)


def prepare_from_raw(raw: Path, folder: Path, *, stand_in: str | None = None, name: str = NAME) -> Manifest:
    """Parse all 9 tasks' train and dev files in ``raw`` into ``folder``; returns the written manifest."""
    raw = Path(raw).expanduser()
    layout, root = _layout(raw)
    if layout in HF_LAYOUTS:
        hf.require(f"{raw} holds the HF GLUE dataset ({layout} layout)", ", or pass the official GLUE TSV folder")
    sources = {(t.name, s): _sources(root, layout, t, s) for t in TASKS.values() for s in t.splits}
    missing = [f"{t}/{s}" for (t, s), files in sources.items() if not files]
    if missing:
        raise DataMissingError(
            f"GLUE raw at {raw} lacks {', '.join(missing)}",
            f"download all 9 tasks (GLUE's download_glue_data.py --tasks all) and pass --raw with {RAW_HINT}",
        )
    config = {"format_version": FORMAT_VERSION, "raw": str(raw.resolve()), "layout": layout, "stand_in": stand_in}
    if root != raw:
        config["root"] = str(root.resolve())
    inputs = {f"{t}/{s}": [sha256_file(p) for p in files] for (t, s), files in sources.items()}
    config["inputs_sha256"] = inputs
    if (existing := reuse_prepared(name, folder, config, required=(), verify_files=False)) is not None:
        return existing
    hf_parts = _load_hf(root, layout, sources) if layout in HF_LAYOUTS else {}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).unlink(missing_ok=True)
    splits: dict[str, dict[str, Any]] = {}
    reasons: Counter[str] = Counter()
    for task in TASKS.values():
        for split in task.splits:
            files = sources[(task.name, split)]
            rows = parse_tsv(files[0], task) if layout == "tsv" else parse_hf(hf_parts[(task.name, split)], task)
            rel = f"{task.name}/{split}.jsonl"
            result = write_jsonl(rows, folder / rel)
            reasons.update(s.reason for s in result.skipped)
            listed = [{"id": s.id, "reason": s.reason} for s in result.skipped[:MAX_LISTED_SKIPS]]
            path = folder / rel
            shard = {
                "file": rel,
                "sha256": sha256_file(path),
                "samples": result.rows,
                "bytes": path.stat().st_size,
                "skipped": listed,
            }
            splits[f"{task.name}/{split}"] = {
                "samples": result.rows,
                "skipped": len(result.skipped),
                "task": task.name,
                "shards": [shard],
            }
    train_rows = {t.name: splits[f"{t.name}/train"]["samples"] for t in TASKS.values()}
    stats = {
        "tasks": list(TASKS),
        "train_rows": train_rows,
        "train_total": sum(train_rows.values()),
        "dev_rows": {f"{t.name}/{s}": splits[f"{t.name}/{s}"]["samples"] for t in TASKS.values() for s in t.dev},
        "label_names": {t.name: list(t.label_names) or "regression score 0-5" for t in TASKS.values()},
        "stand_in": stand_in,
    }
    manifest = Manifest(name=name, splits=splits, config=config, stats=stats, skipped=dict(sorted(reasons.items())))
    write_manifest(folder, manifest)
    console.print(
        f"{name}: prepared {stats['train_total']:,} training rows over {len(TASKS)} tasks ({sum(reasons.values())} rows skipped) at {folder}"
    )
    return manifest


def read_rows(folder: Path, task: str, split: str, limit: int | None = None) -> list[dict[str, Any]]:
    """The prepared rows of ``task``/``split`` (e.g. ``("MNLI", "dev_matched")``), the first ``limit`` if given."""
    path = folder / task / f"{split}.jsonl"
    if not path.is_file():
        raise DataMissingError(f"GLUE file {path} is missing", f"run `{prepare_command(NAME)}`")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in itertools.islice(f, limit)]


def prepare(req: PrepareRequest) -> Manifest:
    """``mmthesis data prepare glue --raw glue_data/`` (or ``--scale smoke`` for generated toy files)."""
    folder = dataset_dir(prepared_name(NAME, req.scale), req.out_root)
    if req.scale == "smoke" and req.raw is None:
        raw = build_standin_raw(standin_dir(folder.name))
        return prepare_from_raw(raw, folder, stand_in=STAND_IN, name=folder.name)
    if req.raw is None:
        raise DataMissingError("GLUE needs the official task files", f"run `{prepare_command(NAME, req.scale)}`")
    return prepare_from_raw(req.raw, folder, name=folder.name)


register(
    DatasetSpec(
        name=NAME,
        kind="glue",
        summary="GLUE's 9 tasks (train + dev) from the official TSVs or HF nyu-mll/glue files, as JSON lines per task and split",
        prepare=prepare,
        raw_hint=RAW_HINT,
        scales=("smoke", "full"),
        stand_in={"smoke": STAND_IN},
    )
)
