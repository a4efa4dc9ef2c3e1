"""Exact resume: a run killed with SIGKILL and restarted reproduces the uninterrupted loss curve.

That needs the data order (ResumableSampler/ResumableDataLoader), the augmentation
(SeededSamples), optimizer/scheduler/global step (Lightning), the memory bank
(a module buffer), the global RNG (RNGState) and the loss history (LossHistory
state) to survive the restart. Also: a non-finite loss stops the run and keeps
the last good checkpoint.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mmthesis.core.paths import data_root
from mmthesis.data.registry import PrepareRequest, get_dataset
from mmthesis.students.artifact import LOSSES, read_logged_metrics
from mmthesis.students.distributed import ResumableDataLoader, ResumableSampler, SeededSamples
from mmthesis.students.lightning_module import NonFiniteLossError, VLDistillationModule
from mmthesis.students.recipes import load_recipe
from mmthesis.students.train import train_recipe

OVERRIDES = [
    "data.train=[shapes]",
    "data.retrieval_eval=[shapes]",
    "data.batch_size=8",
    "train.max_steps=60",
    "train.checkpoint_every_n_steps=20",
    "teacher.prefit_steps=0",  # resume is about the training loop; a resumed run restores the teacher from its checkpoint
]
SCRIPT = """
import sys
from pathlib import Path
import torch
torch.set_num_threads(1)
from mmthesis.students.recipes import load_recipe
from mmthesis.students.train import train_recipe
print(train_recipe(load_recipe("s-smke-cdl-mb", "smoke", sys.argv[2:]), "smoke", root=Path(sys.argv[1])).status)
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("resume_home")
    mp = pytest.MonkeyPatch()
    mp.setenv("MMTHESIS_HOME", str(home))
    get_dataset("shapes").prepare(PrepareRequest(out_root=data_root(), raw=None, workers=1, scale="smoke"))
    yield home
    mp.undo()


def _start(root: Path, home: Path) -> subprocess.Popen:
    env = {**os.environ, "MMTHESIS_HOME": str(home)}
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(root), *OVERRIDES],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _losses(root: Path) -> list[dict[str, float]]:
    (path,) = root.glob(f"*/*/{LOSSES}")
    return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(path.open())]


def _wait(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-3000:]


@pytest.mark.slow
def test_killed_and_resumed_run_reproduces_the_loss_curve(home, tmp_path):
    reference = _start(tmp_path / "reference", home)
    killed = _start(tmp_path / "killed", home)
    deadline = time.monotonic() + 120
    rows: list[dict[str, float]] = []
    while time.monotonic() < deadline and killed.poll() is None:
        try:
            rows = _losses(tmp_path / "killed")
        except ValueError:  # no csv yet
            rows = []
        if len(rows) >= 25:  # checkpoint at step 20 written, the one at 40 not yet
            break
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    (ckpt,) = (tmp_path / "killed").glob("*/*/checkpoints/last.ckpt")
    step = torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"]
    assert 20 <= step < 60 and len(_losses(tmp_path / "killed")) > step  # rows past the checkpoint get dropped

    _wait(_start(tmp_path / "killed", home))
    _wait(reference)
    want, got = _losses(tmp_path / "reference"), _losses(tmp_path / "killed")
    assert [r["step"] for r in got] == [r["step"] for r in want] == [float(s) for s in range(1, 61)]
    assert want[0].keys() == got[0].keys() >= {"loss", "itc", "kd"}
    diff = max(abs(a[k] - b[k]) for a, b in zip(want, got, strict=True) for k in a)
    assert diff <= 1e-6, diff

    # logs/metrics.csv: the rows up to the checkpoint kept, none twice, the validation at step 50 logged once
    (want_run,) = (tmp_path / "reference").glob("*/*/")
    (got_run,) = (tmp_path / "killed").glob("*/*/")
    want_log, got_log = read_logged_metrics(want_run), read_logged_metrics(got_run)
    assert got_log.keys() == want_log.keys() >= {"train/loss", "val/loss", "val/retrieval_r1"}
    assert [s for s, _ in got_log["train/loss"]] == [9, 19, 29, 39, 49, 59]
    assert [s for s, _ in got_log["val/loss"]] == [49]
    for key in want_log:
        assert [s for s, _ in got_log[key]] == [s for s, _ in want_log[key]], key
        if key != "train/samples_per_s":  # a timing
            assert [v for _, v in got_log[key]] == pytest.approx([v for _, v in want_log[key]], abs=1e-5), key


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(home, tmp_path, monkeypatch):
    monkeypatch.setenv("MMTHESIS_HOME", str(home))
    losses = VLDistillationModule.losses

    def poisoned(self, batch):
        out = losses(self, batch)
        if self.global_step >= 15:  # test-only: a divergence after the step-10 checkpoint
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(VLDistillationModule, "losses", poisoned)
    config = load_recipe(
        "s-smke-cdl-mb", "smoke", [*OVERRIDES[:3], "train.max_steps=30", "train.checkpoint_every_n_steps=10"]
    )
    with pytest.raises(NonFiniteLossError, match="step 15"):
        train_recipe(config, "smoke", root=tmp_path)
    (ckpt,) = tmp_path.glob("*/*/checkpoints/last.ckpt")
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert state["global_step"] == 10
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point())


def _loader(n: int, batch: int, seed: int) -> ResumableDataLoader:
    return ResumableDataLoader(
        SeededSamples(list(range(n))), batch_size=batch, sampler=ResumableSampler(n, seed), drop_last=True
    )


def test_loader_resumes_mid_epoch_and_orders_by_seed_and_epoch():
    full = _loader(20, 3, seed=7)
    full.sampler.set_epoch(1)
    epoch1 = [b.tolist() for b in full]
    assert len(epoch1) == 6 and sorted(sum(epoch1, [])) != sum(epoch1, [])  # shuffled, drop_last
    it = iter(full)
    next(it), next(it)
    state = full.state_dict()
    assert state == {"epoch": 1, "batches": 2}
    resumed = _loader(20, 3, seed=7)
    resumed.load_state_dict(state)
    assert [b.tolist() for b in resumed] == epoch1[2:]
    assert resumed.state_dict()["batches"] == 6
    resumed.sampler.set_epoch(2)
    epoch2 = [b.tolist() for b in resumed]
    assert len(epoch2) == 6 and epoch2 != epoch1  # a new permutation and no skip in the next epoch
    full.sampler.set_epoch(2)
    assert [b.tolist() for b in full] == epoch2


def test_seeded_samples_fix_augmentation_without_touching_the_global_rng():
    data = SeededSamples([None] * 4)
    data.base = _RandomView()
    before = torch.get_rng_state()
    a, b, c = data[(1, 5)], data[(1, 5)], data[(1, 6)]
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.get_rng_state(), before)


class _RandomView:
    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.rand(3) + index
