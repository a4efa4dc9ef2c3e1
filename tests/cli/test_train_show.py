"""`mmthesis train show`: the resolved config and which reading of each §10 disagreement is in force."""

from __future__ import annotations

from typer.testing import CliRunner

from mmthesis.cli.app import app

runner = CliRunner()


def test_train_show_prints_config_and_readings():
    result = runner.invoke(app, ["train", "show", "s-smke-cdl-mb", "--scale", "full"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "memory_bank_size: 65536" in out and "readings" in out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 5}
    assert "code" in rows["model.image.blocks"] and "item 1" in rows["model.image.blocks"]
    assert "item 8" in rows["loss.kd_keys"] and "local" in rows["loss.kd_keys"]
    assert "other" in rows["train.precision"]


def test_train_show_reports_an_override_as_the_thesis_reading():
    result = runner.invoke(
        app, ["train", "show", "s-smke-cdl-mb", "--scale", "full", "model.image.blocks=6"], env={"COLUMNS": "250"}
    )
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "│ model.image.blocks" in line)
    assert "thesis text" in row and "│ 6 " in row


def test_train_show_unknown_key_is_an_error():
    result = runner.invoke(app, ["train", "show", "s-smke-cdl-mb", "model.bogus=1"])
    assert result.exit_code == 2
