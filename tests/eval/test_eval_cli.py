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
