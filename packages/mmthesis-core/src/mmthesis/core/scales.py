"""The three scales every recipe and task runs at (DESIGN.md "Scales"): one definition for all packages."""

from __future__ import annotations

from typing import Literal, get_args

from mmthesis.core.errors import ConfigError

Scale = Literal["smoke", "small", "full"]
SCALES: tuple[Scale, ...] = get_args(Scale)


def check_scale(scale: str) -> Scale:
    """``scale`` if it is one of ``SCALES``, else the one-line ``ConfigError``."""
    if scale not in SCALES:
        raise ConfigError(f"unknown scale {scale!r}", f"use one of: {', '.join(SCALES)}")
    return scale  # type: ignore[return-value]
