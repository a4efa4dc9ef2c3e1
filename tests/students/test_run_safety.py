"""Hostile training input (issue 15): full disk while checkpointing, broken last.ckpt, values that cannot train,
runs that take no step, two identical runs at once, and the multi-process / multi-node Trainer set-up."""

from __future__ import annotations

import errno
import json
import re
import threading
import time

import pytest
import torch

from mmthesis.core import io as core_io
from mmthesis.core.config import config_hash
from mmthesis.core.errors import CheckpointError, ConfigError, MMThesisError, StorageError
from mmthesis.core.results import find_finished_run, read_result, run_dir
from mmthesis.students import run_safety
from mmthesis.students.artifact import LOSSES, WEIGHTS, read_losses, run_name
from mmthesis.students.distributed import ResumableSampler
from mmthesis.students.recipes import load_recipe
from mmthesis.students.run_safety import AtomicCheckpointIO, resume_checkpoint, run_lock
from mmthesis.students.train import train_recipe

FAST = ["data.train=[shapes]", "data.retrieval_eval=[shapes]", "data.batch_size=8", "teacher.prefit_steps=0",
        "data.num_workers=0"]


def _no_space(fail_from: int):
    """An ``atomic_write_bytes`` whose checkpoint writes number ``fail_from``.. get half-way and hit a full disk
    (other files, e.g. result.json, are written as usual)."""
    calls = {"n": 0}
    real = core_io.atomic_write_bytes

    def write(path, data):
        if not str(path).endswith(".ckpt"):
            return real(path, data)
        calls["n"] += 1
        if calls["n"] < fail_from:
            return real(path, data)
        with core_io.atomic_path(path) as tmp:
            tmp.write_bytes(bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")

    return write


def _lightning_ckpt(step: int) -> dict:
    return {"state_dict": {"w": torch.full((3,), float(step))}, "global_step": step, "epoch": 0}


# -- checkpoint files ---------------------------------------------------------------------------------------------
def test_checkpoint_io_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(_lightning_ckpt(1), path)
    before = path.read_bytes()
    monkeypatch.setattr(core_io, "atomic_write_bytes", _no_space(1))
    with pytest.raises(StorageError) as err:
        AtomicCheckpointIO().save_checkpoint(_lightning_ckpt(2), path)
    line = err.value.one_line()
    assert str(path) in line and "no space left" in line and " free there, " in line and "needed" in line, line
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_truncated_last_ckpt_is_moved_aside_and_the_last_good_one_used(tmp_path, capsys):
    torch.save(_lightning_ckpt(2), tmp_path / "step=2.ckpt")
    torch.save(_lightning_ckpt(4), tmp_path / "last.ckpt")
    whole = (tmp_path / "last.ckpt").read_bytes()
    (tmp_path / "last.ckpt").write_bytes(whole[: len(whole) // 2])
    assert resume_checkpoint(tmp_path) == tmp_path / "step=2.ckpt"
    aside = [p.name for p in tmp_path.glob("last.ckpt.corrupt-*")]
    assert len(aside) == 1 and not (tmp_path / "last.ckpt").exists()
    warning = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(warning) == 1 and "truncated or corrupt" in warning[0] and "resuming from step=2.ckpt" in warning[0]
    # nothing good left: train from the start
    (tmp_path / "step=2.ckpt").write_bytes(b"\x00" * 10)
    torch.save({"not": "lightning"}, tmp_path / "last.ckpt")
    assert resume_checkpoint(tmp_path) is None
    assert "training from the start" in capsys.readouterr().err


def test_pickle_as_last_ckpt_is_refused_in_one_line(tmp_path):
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"state_dict": {}, "global_step": 1, "x": Evil()}, tmp_path / "last.ckpt")
    with pytest.raises(CheckpointError) as err:
        resume_checkpoint(tmp_path)
    line = err.value.one_line()
    assert "not tensors" in line and f"rm {tmp_path / 'last.ckpt'}" in line and "weights_only=False" not in line
    assert (tmp_path / "last.ckpt").is_file()  # refused, not moved: the user decides


@pytest.mark.slow  # trains twice
def test_full_disk_while_checkpointing_marks_the_run_failed_and_a_rerun_resumes(smoke_home, monkeypatch):
    monkeypatch.setenv("MMTHESIS_HOME", str(smoke_home))
    config = load_recipe("s-smke-cdl-mb", "smoke", [*FAST, "train.max_steps=4", "train.checkpoint_every_n_steps=2"])
    folder = run_dir(run_name(config, "smoke"), config_hash(config))
    with monkeypatch.context() as m:
        m.setattr(core_io, "atomic_write_bytes", _no_space(2))  # the step-2 checkpoint lands, step 4's does not
        with pytest.raises(StorageError, match="cannot write .*last.ckpt: no space left"):
            train_recipe(config, "smoke")
    result = read_result(folder)
    assert result.status == "failed" and "no space left" in result.error
    assert find_finished_run(run_name(config, "smoke"), config) is None
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["last.ckpt"]  # no partial or -v1 file
    assert torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2
    again = train_recipe(config, "smoke")  # resumes from step 2
    assert again.status == "finished" and again.metrics["steps"] == 4
    assert [r["step"] for r in read_losses(folder)] == [1, 2, 3, 4]


# -- values that cannot train --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.batch_size=0", "data.batch_size must be at least 1, got 0"),
        ("data.batch_size=-1", "data.batch_size must be at least 1, got -1"),
        ("optim.lr=-1", "optim.lr must be a positive number, got -1.0"),
        ("optim.lr=0", "optim.lr must be a positive number, got 0.0"),
        ("train.max_steps=-5", "train.max_steps must be a positive number of steps or -1"),
        ("train.max_steps=0", "train.max_steps must be a positive number of steps or -1"),
        ("train.epochs=0", "train.epochs must be at least 1"),
        ("train.devices=0", "train.devices must be at least 1"),
        ("train.num_nodes=0", "train.num_nodes must be at least 1"),
        ("data.num_workers=-2", "data.num_workers must be 0 or more"),
        ("train.checkpoint_every_n_steps=0", "train.checkpoint_every_n_steps must be at least 1"),
        ("data.hflip=1.5", "data.hflip is a probability in [0, 1], got 1.5"),
    ],
)
def test_values_that_cannot_train_are_config_errors(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_recipe("s-smke-cdl-mb", "smoke", [override])


def test_batch_larger_than_the_data_is_refused_before_a_run_folder_exists(smoke_home, monkeypatch):
    monkeypatch.setenv("MMTHESIS_HOME", str(smoke_home))
    config = load_recipe("s-smke-cdl-mb", "smoke", [*FAST, "data.batch_size=100000"])
    with pytest.raises(ConfigError, match=r"data.batch_size=100000 is larger than the \d+ training examples"):
        train_recipe(config, "smoke")
    assert not run_dir(run_name(config, "smoke"), config_hash(config)).exists()


def test_a_run_that_took_no_step_is_failed_not_finished(smoke_home, monkeypatch):
    monkeypatch.setenv("MMTHESIS_HOME", str(smoke_home))
    monkeypatch.setattr("mmthesis.students.train.check_steps", lambda *a: None)  # get past the up-front check
    config = load_recipe("s-smke-cdl-mb", "smoke", [*FAST, "data.batch_size=100000"])
    with pytest.raises(MMThesisError, match="the run did no optimisation step"):
        train_recipe(config, "smoke")
    folder = run_dir(run_name(config, "smoke"), config_hash(config))
    assert read_result(folder).status == "failed" and not (folder / WEIGHTS).exists()
    assert find_finished_run(run_name(config, "smoke"), config) is None  # never reused


# -- one process per run folder ---------------------------------------------------------------------------------
def test_a_second_process_waits_for_the_run_lock(tmp_path, capsys):
    from filelock import FileLock

    folder = tmp_path / "recipe-smoke" / "0123456789abcdef"
    held = FileLock(str(folder.parent / f"{folder.name}.lock"))
    folder.parent.mkdir(parents=True)
    held.acquire()
    entered = threading.Event()

    def second():
        with run_lock(folder):
            entered.set()

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(1.0)
    assert not entered.is_set()  # waits while the first run holds the folder
    held.release()
    thread.join(timeout=30)
    assert entered.is_set()
    assert "another process is training this run" in capsys.readouterr().out
    assert not folder.exists()  # the lock lives beside the run folder


def test_non_zero_ranks_do_not_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert not run_safety.launched_rank_zero()
    with run_lock(tmp_path / "x" / "y"):
        assert not (tmp_path / "x").exists()


# -- multi-process data order and multi-node Trainer ---------------------------------------------------------------
def test_resumable_sampler_shards_by_rank(monkeypatch):
    shards = []
    for rank in range(3):
        monkeypatch.setattr("mmthesis.students.distributed.world_info", lambda r=rank: (r, 3))
        sampler = ResumableSampler(20, seed=7)
        shards.append([i for i, _ in sampler])
        assert len(sampler) == 6 == len(shards[-1])
    flat = [i for s in shards for i in s]
    assert len(set(flat)) == 18 and set(flat) <= set(range(20))  # disjoint, truncated to a multiple of 3
    monkeypatch.setattr("mmthesis.students.distributed.world_info", lambda: (0, 1))
    whole = [i for i, _ in ResumableSampler(20, seed=7)]
    assert shards[1] == whole[1:18:3]  # rank r takes every 3rd entry of the same permutation


class _Built(Exception):
    pass


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (  # what torchrun sets (2 nodes x 2 processes; this is rank 0)
            {"TORCHELASTIC_RUN_ID": "r1", "WORLD_SIZE": "4", "RANK": "0", "LOCAL_RANK": "0", "GROUP_RANK": "0",
             "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29555"},
            "TorchElasticEnvironment",
        ),
        (  # what srun sets for task 0 of 4 on 2 nodes
            {"SLURM_NTASKS": "4", "SLURM_NTASKS_PER_NODE": "2", "SLURM_JOB_NAME": "train", "SLURM_PROCID": "0",
             "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "node[1-2]", "SLURM_JOB_ID": "7"},
            "SLURMEnvironment",
        ),
    ],
)
def test_multi_node_trainer_uses_lightnings_cluster_environment(smoke_home, monkeypatch, env, expected):
    import lightning as L

    monkeypatch.setenv("MMTHESIS_HOME", str(smoke_home))
    for key in ("TORCHELASTIC_RUN_ID", "WORLD_SIZE", "RANK", "LOCAL_RANK", "GROUP_RANK", "NODE_RANK"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    seen = {}
    real = L.Trainer

    def build(**kwargs):
        trainer = real(**kwargs)
        seen.update(kwargs=kwargs, trainer=trainer)
        raise _Built

    monkeypatch.setattr("mmthesis.students.train.L.Trainer", build)
    config = load_recipe(
        "s-smke-cdl-mb", "smoke", [*FAST, "train.accelerator=cpu", "train.devices=2", "train.num_nodes=2"]
    )
    with pytest.raises(_Built):
        train_recipe(config, "smoke")
    trainer = seen["trainer"]
    assert seen["kwargs"]["num_nodes"] == 2 and seen["kwargs"]["devices"] == 2
    assert trainer.num_nodes == 2 and trainer.world_size == 4
    assert type(trainer.strategy).__name__ == "DDPStrategy"
    assert type(trainer.strategy.cluster_environment).__name__ == expected
    # stopped before training: no run record (the folder may hold train.log with Lightning's setup lines)
    assert not (run_dir(run_name(config, "smoke"), config_hash(config)) / "result.json").exists()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (  # torchrun --nnodes 1 --nproc-per-node 3, but the command says 2 devices on 1 node
            {"TORCHELASTIC_RUN_ID": "r1", "WORLD_SIZE": "3", "RANK": "0", "LOCAL_RANK": "0", "GROUP_RANK": "0",
             "LOCAL_WORLD_SIZE": "3", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29555"},
            r"train.devices=2 x train.num_nodes=1 does not match the processes torchrun started \(WORLD_SIZE=3, 3 per node\)",
        ),
        (  # srun --nodes 2 --ntasks-per-node 2
            {"SLURM_NTASKS": "4", "SLURM_NTASKS_PER_NODE": "2", "SLURM_NNODES": "2", "SLURM_JOB_NAME": "train",
             "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "node[1-2]",
             "SLURM_JOB_ID": "7"},
            r"train.devices=2 x train.num_nodes=1 does not match the processes srun started \(--nodes=2 --ntasks-per-node=2\)",
        ),
    ],
)
def test_a_launch_that_does_not_match_devices_times_nodes_is_one_line(smoke_home, monkeypatch, env, message):
    monkeypatch.setenv("MMTHESIS_HOME", str(smoke_home))
    for key in ("TORCHELASTIC_RUN_ID", "WORLD_SIZE", "RANK", "LOCAL_RANK", "GROUP_RANK", "NODE_RANK"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr("mmthesis.students.train.L.Trainer", lambda **kw: pytest.fail("Trainer was built"))
    config = load_recipe("s-smke-cdl-mb", "smoke", [*FAST, "train.accelerator=cpu", "train.devices=2"])
    with pytest.raises(ConfigError, match=message) as caught:
        train_recipe(config, "smoke")
    assert "\n" not in str(caught.value)
    assert not (run_dir(run_name(config, "smoke"), config_hash(config)) / "result.json").exists()


def test_result_json_is_written_by_rank_zero_only(tmp_path, monkeypatch):
    from mmthesis.core.results import RunRecorder

    with RunRecorder("r", "smoke", {"a": 1}, root=tmp_path, enabled=False) as rec:
        pass
    assert rec.result.status == "finished" and not any(tmp_path.iterdir())
    with RunRecorder("r", "smoke", {"a": 1}, root=tmp_path) as rec:
        pass
    assert json.loads(rec.path.read_text())["status"] == "finished"
    assert LOSSES  # the artifact layout names used above
