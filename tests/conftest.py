"""Shared test setup: every test gets its own MMTHESIS_HOME so nothing touches the user's data."""

from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    if "MMTHESIS_TEST_KEEP_HOME" not in os.environ:
        home = tmp_path_factory.mktemp("mmthesis_home")
        monkeypatch.setenv("MMTHESIS_HOME", str(home))
        monkeypatch.delenv("MMTHESIS_DATA_ROOT", raising=False)
        monkeypatch.delenv("MMTHESIS_RUNS_ROOT", raising=False)


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    skip_net = pytest.mark.skip(reason="MMTHESIS_OFFLINE=1")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        if "network" in item.keywords and os.environ.get("MMTHESIS_OFFLINE") == "1":
            item.add_marker(skip_net)
