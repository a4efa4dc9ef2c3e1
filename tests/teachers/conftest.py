"""Teacher tests: every test starts from the same torch seed (helpers live in teachers_reference.numerics)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
