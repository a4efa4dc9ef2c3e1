"""The ``results`` kind end to end: a table spec trains its rows' recipes (3 steps), evaluates them through the eval
harness, and renders published next to reproduced; plus dry-run, per-table failures and the index of ``reproduce all``."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from mmthesis.core.errors import ConfigError
from mmthesis.core.paths import data_root
from mmthesis.core.results import read_result
from mmthesis.data.datasets.shapes import ShapesConfig, prepare_shapes

QUICK = "[\"train.max_steps=3\", \"teacher.prefit_steps=2\", \"data.train=[shapes]\", \"data.retrieval_eval=[shapes]\"]"

SPEC = f"""
table: 901
label: test_results
title: A results table of the test suite.
section: "0 Test"
kind: results
scales: [smoke]
columns:
  - {{name: R@1 I→T, task: retrieval-shapes, metric: i2t_r1}}
  - {{name: I2T mean, task: retrieval-shapes, metric: [i2t_r1, i2t_r5, i2t_r10]}}
  - {{name: Both, record: columns, mean_of: [R@1 I→T, I2T mean]}}
  - {{name: Hours, record: train, metric: wall_hours, decimals: 4}}
  - {{name: Cost, record: train, metric: cost, price_per_device_hour: 2.0, decimals: 4}}
rows:
  - {{name: Quoted model, quoted: "a paper", published: [1.0, 2.0, null, null, null]}}
  - {{name: S-SMKE, recipe: s-smke, overrides: {QUICK}, published: [51.66, 60.0, 55.83, 6.9, 4.8]}}
  - {{name: Image teacher, model: "teacher:beitv2_base_pt", published: [null, null, null, null, null]}}
"""

FULL_ONLY = """
table: 902
label: test_full_only
title: A table that needs data this machine does not have.
section: "0 Test"
kind: results
scales: [smoke, full]
columns:
  - {name: R@1, task: retrieval-coco, metric: i2t_r1}
rows:
  - {name: S-SMKE, recipe: s-smke, published: [51.66]}
"""


@pytest.fixture
def specs(tmp_path, monkeypatch):
    folder = tmp_path / "reproductions"
    folder.mkdir()
    (folder / "table-901.yaml").write_text(textwrap.dedent(SPEC))
    (folder / "table-902.yaml").write_text(textwrap.dedent(FULL_ONLY))
    monkeypatch.setenv("MMTHESIS_REPRODUCTIONS", str(folder))
    prepare_shapes(data_root(), ShapesConfig(train=240, val=12, test=48, samples_per_shard=200))
    return folder


@pytest.mark.slow
def test_results_table_trains_evaluates_and_renders(specs, tmp_path):
    from mmthesis.eval.reproduce.engine import plan, reproduce, reproduce_all

    before = plan("table-901", "smoke")
    assert [(s.action, s.cached) for s in before] == [("train", False), ("evaluate", False), ("evaluate", False)]
    assert "teacher:beitv2_base_pt" in before[-1].what

    built = reproduce("table-901", "smoke", tmp_path / "tables")
    row = built.values["S-SMKE"]["reproduced"]
    train_record = read_result(next(p for p in map(Path, built.records) if "s-smke-smoke" in str(p)))
    eval_record = read_result(next(p for p in map(Path, built.records) if "eval-" in str(p)))
    metrics = eval_record.metrics["retrieval-shapes"]
    assert row[0] == metrics["i2t_r1"]
    assert row[1] == pytest.approx((metrics["i2t_r1"] + metrics["i2t_r5"] + metrics["i2t_r10"]) / 3)
    assert row[2] == pytest.approx((row[0] + row[1]) / 2)
    assert row[3] == pytest.approx(train_record.wall_time_s / 3600)
    assert row[4] == pytest.approx(train_record.device_hours * 2.0)
    assert train_record.metrics["steps"] == 3
    # an image-only teacher cannot do retrieval: the cells say why, the table still renders, status partial
    assert built.status == "partial"
    assert "has no text" in built.values["Image teacher"]["reproduced"][0]
    md = (tmp_path / "tables" / "table-901.md").read_text()
    assert "| Quoted model | reproduced | quoted (a paper); not trained here |" in md
    assert f"| {metrics['i2t_r1']:.2f} |" in md and "| 51.66 |" in md
    assert "chance level" in md and "$MMTHESIS_HOME" in md
    record = json.loads((tmp_path / "tables" / "table-901.json").read_text())
    assert record["status"] == "partial" and all(r.startswith("$MMTHESIS_HOME") for r in record["records"])

    after = plan("table-901", "smoke")
    assert [s.cached for s in after[:2]] == [True, True]  # the run and its evaluation are reused
    assert after[0].estimate_s == pytest.approx(train_record.wall_time_s)

    # reproduce all: the table that cannot be built is reported with its fix, the other is still built
    outcomes = reproduce_all("smoke", tmp_path / "all" / "tables")
    status = {o.name: o for o in outcomes}
    assert status["table-901"].status == "partial"
    assert status["table-902"].status == "failed" and "mmthesis data prepare" in status["table-902"].error
    index = (tmp_path / "all" / "index.md").read_text()
    assert "[table-901](tables/table-901.md)" in index and "failed: " in index
    assert (tmp_path / "all" / "tables" / "table-901.md").is_file()
    assert not (tmp_path / "all" / "tables" / "table-902.md").exists()


def test_spec_errors_are_one_line(specs):
    from mmthesis.eval.reproduce.engine import reproduce
    from mmthesis.eval.reproduce.specs import load_spec

    (specs / "table-903.yaml").write_text(textwrap.dedent(SPEC).replace("table: 901", "table: 903").replace("[1.0, 2.0, null, null, null]", "[1.0]"))
    with pytest.raises(ConfigError, match="row 'Quoted model' has 1 published values for 5 columns"):
        load_spec("table-903")
    (specs / "table-904.yaml").write_text(textwrap.dedent(SPEC).replace("table: 901", "table: 904").replace("mean_of: [R@1 I→T, I2T mean]", "mean_of: [R@1]"))
    with pytest.raises(ConfigError, match=r"averages unknown column\(s\) \['R@1'\]"):
        load_spec("table-904")
    with pytest.raises(ConfigError, match="table-901 cannot be reproduced at scale 'full'"):
        reproduce("table-901", "full")
