"""`mmthesis data ...` commands, run through a root group that handles errors as the main app does."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from mmthesis.cli import data_cmd
from mmthesis.cli.errors import ErrorHandlingGroup
from mmthesis.core.console import console
from mmthesis.core.errors import MMThesisError, UnknownNameError
from mmthesis.core.paths import data_root
from mmthesis.data.registry import DatasetSpec, get_dataset

root_app = typer.Typer(cls=ErrorHandlingGroup, no_args_is_help=True)
root_app.add_typer(data_cmd.app, name="data")
runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console, "_width", 250)  # rich tables unwrapped, so assertions see whole words


def run(*args: str):
    return runner.invoke(root_app, ["data", *args])


def test_help_has_examples() -> None:
    for command in ("list", "prepare", "stats", "verify"):
        result = run(command, "--help")
        assert result.exit_code == 0 and "Example: mmthesis data" in result.output, command


def test_list_shows_datasets_and_prepared_counts() -> None:
    result = run("list")
    assert result.exit_code == 0, result.output
    lines = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") > 3}
    assert {"shapes", "emoji"} <= set(lines)
    assert "emoji-datasource-twitter-16.0.0.tgz" in lines["emoji"] and lines["shapes"].rstrip(" │").endswith("no")
    assert run("prepare", "shapes").exit_code == 0
    lines = {line.split("│")[1].strip(): line for line in run("list").output.splitlines() if line.count("│") > 3}
    assert "smoke: train 2000, val 200, test 200" in lines["shapes"]


def test_prepare_stats_verify_roundtrip() -> None:
    result = run("prepare", "shapes")
    assert result.exit_code == 0, result.output
    assert (data_root() / "shapes" / "manifest.json").is_file()
    assert "already prepared" in run("prepare", "shapes").output
    stats = run("stats", "shapes")
    assert stats.exit_code == 0, stats.output
    for text in ("train", "2000", "pairs", "avg_caption_words", "red circle", "skipped: none"):
        assert text in stats.output
    ok = run("verify", "shapes")
    assert ok.exit_code == 0 and "ok" in ok.output
    shard = data_root() / "shapes" / "val" / "shard-000000.tar"
    shard.write_bytes(shard.read_bytes()[:-512] + b"\0" * 511 + b"x")
    bad = run("verify", "shapes")
    assert bad.exit_code == 1
    assert "val/shard-000000.tar checksum mismatch" in bad.output


def test_prepare_writes_where_out_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mmthesis.data.datasets import shapes

    tiny = shapes.ShapesConfig(train=10, val=2, test=2)
    monkeypatch.setattr(shapes, "ShapesConfig", lambda: tiny)  # what `prepare` builds its config from
    result = run("prepare", "shapes", "--out", str(tmp_path / "elsewhere"), "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "train 10, val 2, test 2" in result.output
    assert (tmp_path / "elsewhere" / "shapes" / "manifest.json").is_file()
    assert not (data_root() / "shapes").exists()
    assert run("stats", "shapes", "--root", str(tmp_path / "elsewhere")).exit_code == 0


def test_skipped_reasons_are_shown(mini_tarball: Path) -> None:
    from mmthesis.data.datasets import emoji

    emoji.prepare_from_tarball(mini_tarball, data_root())
    result = run("stats", "emoji")
    assert result.exit_code == 0, result.output
    for reason in ("corrupt PNG", "no caption", "no image"):
        assert reason in result.output


def test_user_errors_exit_2_with_one_line(mini_tarball: Path) -> None:
    cases = [
        (("prepare", "no-such-dataset"), "unknown dataset 'no-such-dataset'"),
        (("prepare", "shapes", "--scale", "full"), "has no 'full' scale"),
        (("prepare", "shapes", "--scale", "huge"), "unknown scale 'huge'"),
        (("prepare", "shapes", "--raw", str(mini_tarball)), "takes no --raw"),
        (("prepare", "emoji", "--raw", str(mini_tarball)), "sha1"),  # the miniature is not the pinned package
        (("stats", "shapes"), "not prepared"),
        (("verify", "emoji"), "not prepared"),
    ]
    for args, message in cases:
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
        assert "Traceback" not in result.output
    assert not (data_root() / "emoji" / "manifest.json").exists()


def test_exception_types() -> None:
    result = runner.invoke(data_cmd.app, ["prepare", "nope"])
    assert isinstance(result.exception, UnknownNameError)
    result = runner.invoke(data_cmd.app, ["prepare", "shapes", "--scale", "small"])
    assert isinstance(result.exception, MMThesisError)


def test_missing_raw_names_the_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    called = []
    spec = DatasetSpec(
        name="needs-raw",
        kind="image-text",
        summary="test",
        prepare=lambda req: called.append(req),
        raw_hint="coco/ (train2014/, val2014/, dataset_coco.json)",
        scales=("small", "full"),
    )
    monkeypatch.setattr(data_cmd, "get_dataset", lambda name: spec if name == "needs-raw" else get_dataset(name))
    monkeypatch.setattr(
        "mmthesis.data.registry.get_dataset", lambda name: spec if name == "needs-raw" else get_dataset(name)
    )
    result = run("prepare", "needs-raw")
    assert result.exit_code == 2
    assert "coco/ (train2014/, val2014/, dataset_coco.json)" in result.output and "--raw" in result.output
    assert called == []
    result = run("prepare", "needs-raw", "--raw", "/does/not/exist")
    assert result.exit_code == 2 and "does not exist" in result.output
