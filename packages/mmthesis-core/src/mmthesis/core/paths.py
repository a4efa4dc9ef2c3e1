"""Where mmthesis keeps prepared data, runs and caches.

One root, ``$MMTHESIS_HOME`` (default ``~/.cache/mmthesis``), holds
``data/`` (prepared datasets), ``raw/`` (downloaded or generated raw files)
and ``runs/`` (one folder per training/eval run). ``$MMTHESIS_DATA_ROOT``
moves only the prepared data, e.g. to a fast shared disk.
"""

from __future__ import annotations

import os
from pathlib import Path


def mmthesis_home() -> Path:
    return Path(os.environ.get("MMTHESIS_HOME", Path.home() / ".cache" / "mmthesis")).expanduser()


def data_root() -> Path:
    env = os.environ.get("MMTHESIS_DATA_ROOT")
    return Path(env).expanduser() if env else mmthesis_home() / "data"


def raw_root() -> Path:
    return mmthesis_home() / "raw"


def runs_root() -> Path:
    env = os.environ.get("MMTHESIS_RUNS_ROOT")
    return Path(env).expanduser() if env else mmthesis_home() / "runs"


def repo_root() -> Path | None:
    """The mmthesis source checkout this code runs from, if any (for thesis/ and reproductions/)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "reproductions").is_dir() and (parent / "packages").is_dir():
            return parent
    return None
