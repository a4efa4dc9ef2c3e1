"""`mmthesis train run` shows our progress and results; library warnings and Lightning's hints go to train.log.

In a fresh process each (a warning is shown once per process, so an earlier test could hide it).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mmthesis.core.paths import data_root
from mmthesis.data.registry import PrepareRequest, get_dataset

NOISE = ("Tip", "litlogger", "LeafSpec", "DeprecationWarning")
ARGS = [
    "s-smke-no-kd",
    "--scale",
    "smoke",
    "train.max_steps=2",
    "data.train=[shapes]",
    "data.retrieval_eval=[shapes]",
    "data.batch_size=8",
]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("train_output_home")
    mp = pytest.MonkeyPatch()
    mp.setenv("MMTHESIS_HOME", str(home))
    get_dataset("shapes").prepare(PrepareRequest(out_root=data_root(), raw=None, workers=1, scale="smoke"))
    yield home
    mp.undo()


def _train(home, *extra: str) -> str:
    env = {**os.environ, "MMTHESIS_HOME": str(home), "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, "-m", "mmthesis.cli.app", "train", "run", *ARGS, *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.mark.smoke
def test_train_run_output_is_clean_and_the_log_file_has_the_noise(home):
    out = _train(home)
    assert "run folder:" in out and "train_loss_last" in out
    for word in NOISE[:3]:
        assert word not in out, out
    assert "DeprecationWarning" not in out
    (log,) = (home / "runs").glob("s-smke-no-kd-smoke/*/train.log")
    text = log.read_text(encoding="utf-8")
    assert "litlogger" in text and "Tip" in text and "LeafSpec" in text


@pytest.mark.smoke
def test_verbose_brings_the_library_output_back(home):
    out = _train(home, "--verbose", "--force")
    assert "litlogger" in out and "LeafSpec" in out
