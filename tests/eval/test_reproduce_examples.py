"""Table 37 (``examples``): the first prepared GLUE training record of each task, rendered as BERT reads it."""

from __future__ import annotations

import csv
import json

import pytest

from mmthesis.core.errors import DataMissingError
from mmthesis.core.paths import data_root
from mmthesis.data.datasets.glue import TASKS, prepare_from_raw
from mmthesis.data.datasets.glue_standin import write_standin_tsvs
from mmthesis.data.registry import PrepareRequest, get_dataset
from mmthesis.eval.reproduce.engine import reproduce
from mmthesis.eval.reproduce.kinds.examples import render_pair
from mmthesis.eval.reproduce.specs import load_spec


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MMTHESIS_HOME", str(tmp_path / "home"))
    return tmp_path


def first_train_record(folder, task):
    with open(folder / task / "train.jsonl", encoding="utf-8") as f:
        return json.loads(f.readline())


def test_smoke_rows_are_the_first_prepared_records(home):
    get_dataset("glue").prepare(PrepareRequest(out_root=data_root(), raw=None, scale="smoke"))
    built = reproduce("table-37", "smoke", home / "out")
    spec = load_spec("table-37")
    assert [r.name for r in spec.rows] == list(built.values)
    for row in spec.rows:
        record = first_train_record(data_root() / "glue-smoke", row.task)
        got = built.values[row.name]["reproduced"]
        pair = f" {record['sentence2'].strip()} [SEP]" if record["sentence2"] is not None else ""
        assert got["example"] == f"[CLS] {record['sentence1'].strip()} [SEP]{pair}"
        assert got["label"] == str(record["label"])
        names = TASKS[row.task].label_names
        assert got["label_name"] == (names[record["label"]] if names else "similarity score (0-5)")
        assert built.values[row.name]["same"] is False  # a stand-in is not GLUE
    md = (home / "out" / "table-37.md").read_text()
    assert "Stand-in, not GLUE" in md
    marked = [line for line in md.splitlines() if line.startswith("| ") and "≠" in line]
    assert len(marked) == len(spec.rows) and all("| reproduced (smoke) |" in line for line in marked)
    assert "| CoLA | published | [CLS] " in md


def test_render_pair():
    assert render_pair("hide new secretions from the parental units ", None) == (
        "[CLS] hide new secretions from the parental units [SEP]"
    )
    assert render_pair("A.", "B.") == "[CLS] A. [SEP] B. [SEP]"


def _raw_with_first_rows(raw, firsts):
    """Official-format TSVs (the stand-in's) whose first training row of each task is ``firsts[task]``."""
    write_standin_tsvs(raw)
    for name, (texts, label) in firsts.items():
        task = TASKS[name]
        path = raw / name / "train.tsv"
        with open(path, encoding="utf-8", newline="") as f:
            lines = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        header = lines[0] if task.header else [str(i) for i in range(task.columns)]
        row = lines[1 if task.header else 0]
        for column, text in zip(task.text, texts, strict=True):
            row[header.index(column)] = text
        row[header.index(task.label)] = task.raw_labels[int(label)] if task.raw_labels else f"{float(label):.3f}"
        with open(path, "w", encoding="utf-8", newline="") as f:
            csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, quotechar=None, lineterminator="\n").writerows(lines)


def test_full_scale_matches_when_the_first_rows_are_the_published_ones(home):
    """Official TSVs whose first rows hold the published sentences -> prepared -> the table reports no difference."""
    spec = load_spec("table-37")
    firsts = {}
    for row in spec.rows:
        parts = row.published.example.removeprefix("[CLS] ").removesuffix(" [SEP]").split(" [SEP] ")
        firsts[row.task] = (parts, row.published.label)
    firsts["SST-2"] = ([firsts["SST-2"][0][0] + " "], firsts["SST-2"][1])  # the official SST-2 rows end in a space
    _raw_with_first_rows(home / "raw", firsts)
    prepare_from_raw(home / "raw", data_root() / "glue")
    built = reproduce("table-37", "full", home / "out")
    assert all(v["same"] for v in built.values.values())
    md = (home / "out" / "table-37.md").read_text()
    assert (
        not [line for line in md.splitlines() if "≠" in line]
        and "Every reproduced record equals the published one" in md
    )

    # a different first record is marked
    firsts["RTE"] = (["Something else.", "Another."], "0")
    _raw_with_first_rows(home / "raw2", firsts)
    prepare_from_raw(home / "raw2", data_root() / "glue")
    built = reproduce("table-37", "full", home / "out")
    assert [k for k, v in built.values.items() if not v["same"]] == ["RTE"]
    assert "≠ (RTE)" in (home / "out" / "table-37.md").read_text()


def test_missing_data_names_the_prepare_command(home):
    with pytest.raises(DataMissingError) as e:
        reproduce("table-37", "smoke", home / "out")
    assert "mmthesis data prepare glue --scale smoke" in e.value.one_line()
    assert not (home / "out").exists()
