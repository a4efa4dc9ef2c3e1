"""Shared by the students tests: a prepared smoke home and a small random batch for a recipe's model."""

from __future__ import annotations

import pytest
import torch

from mmthesis.core.paths import data_root
from mmthesis.data.batch import Batch
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


def _random_batch(config, vocab: int = 50, b: int = 4, length: int = 7) -> Batch:
    """``b`` seeded random images at the recipe's size and captions of ``length`` ids (the first one padded)."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (b, length), generator=g)
    mask = torch.zeros(b, length, dtype=torch.bool)
    mask[0, 4:] = True
    size = config.model.img_size
    return Batch(
        id=[str(i) for i in range(b)],
        image=torch.randn(b, 3, size, size, generator=g),
        text_ids=ids,
        text_padding_mask=mask,
    )


@pytest.fixture(scope="session")
def random_batch():
    """The batch builder (a fixture, not an import: several test folders have a ``conftest``)."""
    return _random_batch
