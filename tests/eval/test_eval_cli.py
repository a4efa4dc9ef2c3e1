import pytest
from typer.testing import CliRunner

from mmthesis.cli.app import app


def invoke(*args):
    return CliRunner().invoke(app, list(args))


def test_eval_list_and_unknown_task(in_eval_home):
    out = invoke("eval", "list")
    assert out.exit_code == 0 and "retrieval-coco" in out.output and "glue-cola" in out.output
    bad = invoke("eval", "retrieval-cocoa", "--model", str(in_eval_home[1]))
    assert bad.exit_code == 2 and "unknown eval task 'retrieval-cocoa'" in bad.output


def test_eval_tasks_writes_result_and_per_sample(in_eval_home, tmp_path):
    rows = tmp_path / "rows.jsonl"
    out = invoke(
        "eval",
        "retrieval-shapes",
        "analysis-shapes",
        "--model",
        str(in_eval_home[1]),
        "--scale",
        "smoke",
        "--per-sample",
        str(rows),
        "--out",
        str(tmp_path / "r.json"),
    )
    assert out.exit_code == 0, out.output
    assert (tmp_path / "r.json").is_file() and rows.read_text().count('"task": "retrieval-shapes"') > 0
    missing = invoke("eval", "retrieval-coco", "--model", str(in_eval_home[1]))
    assert missing.exit_code == 2 and "mmthesis data prepare coco" in missing.output


def test_eval_help_shows_the_main_form_and_subcommands():
    out = invoke("eval", "--help")
    assert out.exit_code == 0, out.output
    for needle in ("TASK...", "--model", "--recall-k", "--precision", "--batch-size", "--classnames", "build", "list"):
        assert needle in out.output, needle


def test_models_x_tasks_options_in_the_key_and_build(in_eval_home, save_random_run, tmp_path):
    import csv
    import io
    import json

    _, run = in_eval_home
    other = save_random_run(["train.seed=1"])  # a second run folder (other spec, same random weights)
    rows = tmp_path / "rows.jsonl"
    args = ["eval", "retrieval-shapes", "zero-shot-shapes", "--model", str(run), "--model", str(other)]
    out = invoke(*args, "--scale", "smoke", "--per-sample", str(rows), "--out", str(tmp_path / "all.json"))
    assert out.exit_code == 0, out.output
    records = json.loads((tmp_path / "all.json").read_text())
    assert len(records) == 4 and {r["config"]["model"] for r in records} == {str(run), str(other)}
    assert "Summary (model x task)" in out.output
    retrieval = records[0]["metrics"]["retrieval-shapes"]
    assert retrieval["ties"] == "index" and "i2t_r1_expected" in retrieval
    assert retrieval["i2t_r1_pessimistic"] <= retrieval["i2t_r1_expected"] <= retrieval["i2t_r1_optimistic"]
    assert "mean_per_class_recall" in records[1]["metrics"]["zero-shot-shapes"]
    lines = [json.loads(line) for line in rows.read_text().splitlines()]
    assert {(r["model"], r["task"]) for r in lines} == {
        (m, t) for m in (str(run), str(other)) for t in ("retrieval-shapes", "zero-shot-shapes")
    }
    # --recall-k replaces the task's K and is part of the key: a new evaluation, not the cached one
    k = invoke(
        "eval",
        "retrieval-shapes",
        "--model",
        str(run),
        "--scale",
        "smoke",
        "--recall-k",
        "1,2",
        "--out",
        str(tmp_path / "k.json"),
    )
    assert k.exit_code == 0, k.output
    rk = json.loads((tmp_path / "k.json").read_text())
    assert rk["config"]["tasks"][0]["params"]["ks"] == [1, 2] and "i2t_r2" in rk["metrics"]["retrieval-shapes"]
    assert rk["config_hash"] != records[0]["config_hash"]
    assert rk["metrics"]["retrieval-shapes"]["i2t_r1"] == retrieval["i2t_r1"]
    bad = invoke("eval", "zero-shot-shapes", "--model", str(run), "--scale", "smoke", "--recall-k", "1")
    assert bad.exit_code == 2 and "--recall-k applies to retrieval tasks" in bad.output
    # a custom class-name file: its sha256 is in the config; a wrong count is one line
    names = records[1]["metrics"]["zero-shot-shapes"]["classes"]
    good = tmp_path / "names.json"
    good.write_text(json.dumps({"shapes": [f"class {i}" for i in range(names)]}))
    z = invoke(
        "eval",
        "zero-shot-shapes",
        "--model",
        str(run),
        "--scale",
        "smoke",
        "--classnames",
        str(good),
        "--out",
        str(tmp_path / "z.json"),
    )
    assert z.exit_code == 0, z.output
    zr = json.loads((tmp_path / "z.json").read_text())
    assert list(zr["config"]["files"]) == [str(good.resolve())]
    short = tmp_path / "short.json"
    short.write_text(json.dumps(["a", "b"]))
    s = invoke("eval", "zero-shot-shapes", "--model", str(run), "--scale", "smoke", "--classnames", str(short))
    assert s.exit_code == 2 and f"gives 2 names, shapes has {names} classes" in s.output
    # build: one row per model x task x metric with provenance, filters, csv and md
    table = invoke("eval", "build", "--task", "retrieval-shapes", "--metric", "i2t_r1")
    assert table.exit_code == 0, table.output
    got = list(csv.DictReader(io.StringIO(table.output)))
    assert {r["model"] for r in got} == {str(run), str(other)} and all(r["metric"] == "i2t_r1" for r in got)
    assert len(got) == 3  # two models at K 1,5,10 and one at K 1,2
    assert all(r["git_commit"] is not None and r["result"].endswith("result.json") for r in got)
    assert float(got[0]["value"]) == pytest.approx(retrieval["i2t_r1"])
    md = invoke("eval", "build", "--format", "md", "--model", str(other), "--headline")
    assert md.exit_code == 0 and md.output.startswith("| model | model_fingerprint |")
    assert "mean_per_class_recall" in md.output and "i2t_r1_expected" not in md.output
