"""Learning-rate schedules shared by training (``TrainingModule``) and evaluation finetuning (no Lightning import)."""

from __future__ import annotations

import math


def cosine_with_warmup(step: int, warmup: int, total: int) -> float:
    """LR multiplier: linear warmup from 0 to 1 over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def planned_steps(examples: int, batch_size: int, epochs: int, max_steps: int = -1, world_size: int = 1) -> int:
    """Optimiser steps of a recipe run, as Lightning's ``estimated_stepping_batches`` gives them for train.py's loader.

    Each of ``world_size`` ranks gets ``examples // world_size`` samples (``ResumableSampler``) in full batches
    (``drop_last``), so an epoch is ``(examples // world_size) // batch_size`` steps; ``max_steps > 0`` caps the
    total (§10 item 10: more GPUs, fewer steps).
    """
    per_epoch = (examples // world_size) // batch_size
    total = per_epoch * max(epochs, 1)
    return min(total, max_steps) if max_steps != -1 else total
