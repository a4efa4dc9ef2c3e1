"""Stand-in raw folders for the smoke scale, built once and atomically.

Why: a smoke-scale dataset must go through *the same* preparation code as
the user's real download, so the stand-in is written to disk in the
publisher's raw layout (``raw_root()/<name>-smoke/``) and then handed to the
ordinary ``prepare`` as if the user had passed ``--raw``. The folder is built
in a temporary sibling and renamed into place, with a ``STAND-IN.txt`` marker
that says what it is; a half-built folder is never mistaken for a finished one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from mmthesis.core.paths import raw_root

MARKER = "STAND-IN.txt"


def standin_dir(prepared: str) -> Path:
    """Where the stand-in raw files of prepared dataset ``prepared`` (e.g. ``imagenet-smoke``) live."""
    return raw_root() / prepared


def _marker_text(description: str, version: dict) -> str:
    return (
        "GENERATED STAND-IN, NOT THE REAL DATASET.\n"
        f"{description}\n"
        "Written by mmthesis for the smoke scale; delete this folder to rebuild it.\n"
        f"version: {json.dumps(version, sort_keys=True)}\n"
    )


def build_once(dest: Path, description: str, version: dict, build: Callable[[Path], None]) -> Path:
    """Return ``dest`` if it holds a finished stand-in of this ``version``; else build it with ``build(tmp)``.

    ``version`` (JSON) identifies the generator and its inputs; a folder with a
    different version is replaced, so a changed generator never reuses stale files.
    """
    marker = dest / MARKER
    text = _marker_text(description, version)
    if marker.is_file() and marker.read_text(encoding="utf-8") == text:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        build(tmp)
        (tmp / MARKER).write_text(text, encoding="utf-8")
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old.", dir=dest.parent))
            os.replace(dest, old / dest.name)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest
