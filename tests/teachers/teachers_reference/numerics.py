"""Numerical helpers of the teacher tests: random weights and the relative-error metric.

A module of the ``teachers_reference`` package rather than ``conftest.py``: several test
folders have a ``conftest``, and ``from conftest import ...`` gets whichever loaded last.
"""

from __future__ import annotations

import torch


def randomize_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter non-trivial random values (LayerNorm weights too), except fixed positions."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "positions" in name or p.is_meta:
                continue
            std = 0.2 if p.dim() > 1 else 0.5
            p.copy_(torch.randn(p.shape, generator=gen) * std + (1.0 if name.endswith("norm.weight") else 0.0))
    return module


def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """max |ours - ref| / max |ref|."""
    return ((ours.double() - ref.double()).abs().max() / ref.double().abs().max().clamp_min(1e-12)).item()
