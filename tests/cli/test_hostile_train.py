"""Refusals through the CLI are one line (issue 15): bad training values, a pickle or a broken file where a
checkpoint, teacher targets or an open_clip checkpoint belong, a corrupt config.json in a run folder; and the
multi-process paths end to end: 2 CPU processes under DDP (gloo), two identical runs at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mmthesis.cli.app import app
from mmthesis.core.config import config_hash
from mmthesis.core.paths import data_root, runs_root
from mmthesis.core.results import read_result, run_dir
from mmthesis.data.registry import PrepareRequest, get_dataset
from mmthesis.students.artifact import CONFIG, LOSSES, RESULT, TOKENIZER, WEIGHTS, run_name
from mmthesis.students.recipes import load_recipe

runner = CliRunner()
FAST = ["data.train=[shapes]", "data.retrieval_eval=[shapes]", "data.batch_size=8", "teacher.prefit_steps=0",
        "data.num_workers=0"]


def one_line_error(result, *needles: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "weights_only=False" not in lines[0]
    return lines[0]


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("hostile_train_home")
    mp = pytest.MonkeyPatch()
    mp.setenv("MMTHESIS_HOME", str(home))
    get_dataset("shapes").prepare(PrepareRequest(out_root=data_root(), raw=None, workers=1, scale="smoke"))
    mp.undo()
    return home


@pytest.fixture
def files(tmp_path):
    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    (tmp_path / "broken.safetensors").write_bytes(b"garbage" * 20)
    torch.save({"state_dict": {"w": torch.zeros(2)}}, tmp_path / "whole.pt")
    (tmp_path / "truncated.pt").write_bytes((tmp_path / "whole.pt").read_bytes()[:60])
    return tmp_path


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("data.batch_size=0", "data.batch_size must be at least 1"),
        ("data.batch_size=-1", "data.batch_size must be at least 1"),
        ("optim.lr=-1", "optim.lr must be a positive number"),
        ("train.max_steps=-5", "train.max_steps must be a positive number of steps or -1"),
    ],
)
def test_training_values_that_cannot_train(override, needle):
    result = runner.invoke(app, ["train", "run", "s-smke-cdl-mb", "--scale", "smoke", override])
    one_line_error(result, needle)
    assert not runs_root().exists()  # no run folder


def test_pickle_as_a_runs_last_ckpt(home, monkeypatch):
    monkeypatch.setenv("MMTHESIS_HOME", str(home))
    config = load_recipe("s-smke-cdl-mb", "smoke", [*FAST, "train.max_steps=2"])
    last = run_dir(run_name(config, "smoke"), config_hash(config)) / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    torch.save({"state_dict": {}, "global_step": 1, "x": Evil()}, last)
    result = runner.invoke(app, ["train", "run", "s-smke-cdl-mb", "--scale", "smoke", *FAST, "train.max_steps=2"])
    one_line_error(result, str(last), "not tensors", f"rm {last}")
    assert not (last.parent.parent / RESULT).exists()


@pytest.mark.parametrize("name", ["evil.pt", "broken.safetensors", "truncated.pt", "missing.safetensors"])
def test_bad_file_as_precomputed_teacher_targets(home, files, monkeypatch, name):
    monkeypatch.setenv("MMTHESIS_HOME", str(home))
    result = runner.invoke(app, [
        "train", "run", "s-smke-cdl-mb", "--scale", "smoke", *FAST, "train.max_steps=2",
        f"teacher.precomputed_targets={files / name}", "teacher.independent_augmentation=false",
    ])
    one_line_error(result, str(files / name))


@pytest.mark.parametrize("name", ["evil.pt", "broken.safetensors", "truncated.pt"])
def test_bad_file_as_open_clip_checkpoint(files, name, home, monkeypatch):
    pytest.importorskip("open_clip")
    monkeypatch.setenv("MMTHESIS_HOME", str(home))  # the task's data is checked before any model loads
    result = runner.invoke(app, ["eval", "retrieval-shapes", "--model", f"open_clip:ViT-B-32:{files / name}",
                                 "--scale", "smoke"])
    one_line_error(result, str(files / name))


@pytest.mark.parametrize("text", ["{\"recipe\": \"s-sm", "[" * 100000 + "]" * 100000, "null", "\udcff"])
def test_corrupt_config_json_in_a_run_folder(tmp_path, text, home, monkeypatch):
    monkeypatch.setenv("MMTHESIS_HOME", str(home))  # the task's data is checked before any model loads
    run = tmp_path / "run"
    run.mkdir()
    (run / RESULT).write_text(json.dumps(
        {"name": "x", "scale": "smoke", "config": {}, "config_hash": "0", "status": "finished"}
    ))
    (run / CONFIG).write_text(text, encoding="utf-8", errors="surrogateescape")
    result = runner.invoke(app, ["eval", "retrieval-shapes", "--model", str(run), "--scale", "smoke"])
    one_line_error(result, str(run / CONFIG), "not a valid recipe config")


# -- several processes ---------------------------------------------------------------------------------------------
def _cli(home: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "MMTHESIS_HOME": str(home), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "mmthesis.cli.app", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-4000:]
    return out


@pytest.mark.slow
def test_two_cpu_processes_ddp_end_to_end(home, monkeypatch):
    monkeypatch.setenv("MMTHESIS_HOME", str(home))
    args = [*FAST, "train.max_steps=3", "train.devices=2", "train.accelerator=cpu"]
    out = _finish(_cli(home, "train", "run", "s-smke-cdl-mb", "--scale", "smoke", *args))
    config = load_recipe("s-smke-cdl-mb", "smoke", args)
    folder = run_dir(run_name(config, "smoke"), config_hash(config))
    log = (folder / "train.log").read_text()  # Lightning's lines go to the run's log, not the terminal
    assert "Starting with 2 processes" in log and "distributed_backend=gloo" in log
    assert "Starting with 2 processes" not in out
    assert read_result(folder).status == "finished" and read_result(folder).metrics["steps"] == 3
    names = {p.name for p in folder.iterdir()}
    assert {RESULT, CONFIG, WEIGHTS, TOKENIZER, LOSSES, "checkpoints"} <= names
    assert [p.name for p in (folder / "checkpoints").iterdir()] == ["last.ckpt"]
    rows = (folder / LOSSES).read_text().splitlines()
    assert len(rows) == 4  # header + one row per step, written once (by rank 0)
    # each rank took half the samples: an epoch is (N // 2) // batch steps
    ckpt = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 3


@pytest.mark.slow
def test_two_identical_runs_at_once_train_once(home, monkeypatch):
    monkeypatch.setenv("MMTHESIS_HOME", str(home))
    args = ["train", "run", "s-smke-cdl-mb", "--scale", "smoke", *FAST, "train.max_steps=3", "train.seed=5"]
    first, second = _cli(home, *args), _cli(home, *args)
    outs = [_finish(first), _finish(second)]
    assert sum("reusing finished run" in o for o in outs) == 1, outs
    config = load_recipe("s-smke-cdl-mb", "smoke", args[5:])
    folder = run_dir(run_name(config, "smoke"), config_hash(config))
    assert [p.name for p in (folder / "checkpoints").iterdir()] == ["last.ckpt"]  # no last-v1.ckpt
    assert len((folder / LOSSES).read_text().splitlines()) == 4
