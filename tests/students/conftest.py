"""Shared by the students tests: one MMTHESIS_HOME with the smoke shapes and OpenWebText prepared."""

from __future__ import annotations

import pytest

from mmthesis.core.paths import data_root
from mmthesis.data.registry import PrepareRequest, get_dataset


@pytest.fixture(scope="session")
def smoke_home(tmp_path_factory):
    """Prepared once per session; tests point MMTHESIS_HOME here and only add runs and caches."""
    home = tmp_path_factory.mktemp("students_smoke_home")
    mp = pytest.MonkeyPatch()
    mp.setenv("MMTHESIS_HOME", str(home))
    for name in ("shapes", "openwebtext"):
        get_dataset(name).prepare(PrepareRequest(out_root=data_root(), raw=None, workers=1, scale="smoke"))
    mp.undo()
    return home
