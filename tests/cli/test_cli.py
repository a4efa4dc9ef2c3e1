"""The `mmthesis` CLI: help for every group, and one-line errors with a non-zero exit for bad input."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mmthesis.cli.app import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def assert_one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("group", ["data", "teachers", "train", "eval", "vae", "reproduce", "bench", "doctor"])
def test_every_group_has_help_with_an_example(group):
    result = invoke(group, "--help")
    assert result.exit_code == 0, result.output
    assert "Example" in result.output


def test_unknown_table(tmp_path):
    result = invoke("reproduce", "table-99", "--out", str(tmp_path))
    assert_one_line_error(result, "table-99", "mmthesis reproduce list")
    assert not any(tmp_path.iterdir())


def test_caption_unit_errors(tmp_path):
    result = invoke("reproduce", "table-3", "--caption-unit", "bert-tokens", "--out", str(tmp_path))
    assert_one_line_error(result, "table-3 has no caption lengths")
    result = invoke("reproduce", "table-4", "--caption-unit", "chars", "--out", str(tmp_path))
    assert_one_line_error(result, "unknown caption length unit 'chars'", "bert-tokens, words")
    assert not any(tmp_path.iterdir())
    result = invoke("data", "stats", "shapes", "--caption-unit", "chars")
    assert_one_line_error(result, "unknown caption length unit 'chars'")


def test_reproduce_list_shows_specs_and_scales():
    result = invoke("reproduce", "list")
    assert result.exit_code == 0, result.output
    assert "table-3" in result.output and "table-25" in result.output and "smoke" in result.output
    assert "40 tables" in result.output  # every table of the thesis (REFERENCE.md §1) has a spec
    for category in ("results", "derived", "time-cost", "quoted", "data"):
        assert category in result.output


def test_unknown_config_key():
    result = invoke("train", "run", "s-smke-cdl-mb", "--scale", "smoke", "train.bogus=1")
    assert_one_line_error(result, "unknown config key 'train.bogus'", "max_steps")


def test_wrong_config_type():
    result = invoke("train", "run", "s-smke-cdl-mb", "--scale", "smoke", "train.max_steps=many")
    assert_one_line_error(result, "'train.max_steps' must be an integer")


def test_missing_data_root_names_the_fix(tmp_path):
    result = invoke("reproduce", "table-3", "--scale", "smoke", "--out", str(tmp_path))
    assert_one_line_error(
        result, "mmthesis data prepare imagenet --scale smoke", "mmthesis data prepare glue --scale smoke"
    )
    assert not any(tmp_path.iterdir())


def test_missing_training_data_names_the_fix(tmp_path):
    result = invoke("reproduce", "table-25", "--scale", "smoke", "--out", str(tmp_path))
    assert_one_line_error(result, "mmthesis data prepare shapes")
    assert not any(tmp_path.iterdir())


def test_corrupt_checkpoint(tmp_path):
    from mmthesis.core.paths import data_root
    from mmthesis.data.registry import PrepareRequest, get_dataset

    get_dataset("shapes").prepare(PrepareRequest(out_root=data_root(), raw=None, scale="smoke"))
    run = tmp_path / "run"
    run.mkdir()
    (run / "result.json").write_text(
        json.dumps({"name": "x", "scale": "smoke", "config": {}, "config_hash": "0", "status": "finished"})
    )
    (run / "config.json").write_text(json.dumps({"recipe": "s-smke-cdl-mb", "thesis_name": "S-SMKE_CDL_MB"}))
    from mmthesis.data.tokenizers import train_wordpiece

    train_wordpiece(["a red circle", "a blue square"], 50).save(run / "tokenizer.json")
    (run / "student.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header")
    result = invoke("eval", "retrieval-shapes", "--model", str(run), "--scale", "smoke")
    assert_one_line_error(result, "student.safetensors", "fix:")


def test_older_eval_path_is_gone():
    # one evaluation path: `mmthesis eval TASK --model SPEC` (the harness); `eval run` was removed
    result = invoke("eval", "run", "retrieval", "--run", "x", "--dataset", "shapes")
    assert result.exit_code != 0
    assert "eval run" not in invoke("--help").output and "eval run" not in invoke("eval", "--help").output


def test_doctor_reports_versions_and_missing_data():
    result = invoke("doctor")
    assert result.exit_code == 0, result.output
    for needle in ("torch", "mmthesis-core", "shapes", "missing", "mmthesis data prepare shapes"):
        assert needle in result.output


def test_bench_list_and_unknown():
    assert "retrieval_metrics" in invoke("bench", "list").output
    assert_one_line_error(invoke("bench", "run", "nope"), "unknown benchmark 'nope'")


def _command_paths(command, path=()):
    """Every command of the CLI tree, as the argument path that reaches it."""
    children = getattr(command, "commands", {})
    if not children:
        return [path]
    return [p for name, child in children.items() for p in _command_paths(child, (*path, name))]


def test_every_command_renders_its_help():
    import typer.main

    paths = _command_paths(typer.main.get_command(app))
    assert len(paths) > 10
    for path in [*paths, ("eval", "retrieval-coco")]:  # a task name routes to the evaluate command
        result = invoke(*path, "--help")
        assert result.exit_code == 0, (path, result.output, result.exception)
        assert "Usage" in result.output, path


@pytest.mark.parametrize("args, suggestion", [(["trian"], "did you mean train?"), (["data", "prepar"], "prepare?")])
def test_an_unknown_command_is_one_line_with_did_you_mean(args, suggestion):
    assert_one_line_error(invoke(*args), "unknown command", suggestion, "use one of:")
