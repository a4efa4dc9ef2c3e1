"""``--model KIND:...`` kinds added by packages above eval (mmthesis.vae: ``vae:RUN``).

Registered by name ("module:function"), so registering imports nothing heavy (no torch at ``import mmthesis.vae``);
``mmthesis.eval.adapters.load_model`` imports the loader when a spec of that kind is loaded.
"""

from __future__ import annotations

import importlib
from typing import Any

PLUGIN_KINDS: dict[str, str] = {}


def register_model_kind(kind: str, target: str) -> None:
    """Add ``KIND:...`` specs, loaded by ``target`` = ``"package.module:function"`` taking ``(spec, scale)``."""
    if not kind.replace("_", "").isalnum() or ":" not in target:
        raise ValueError(f"model spec kind {kind!r} must be alphanumeric and target {target!r} 'module:function'")
    PLUGIN_KINDS[kind] = target


def plugin_loader(kind: str) -> Any:
    """The loader function registered for ``kind``, imported now."""
    module, _, name = PLUGIN_KINDS[kind].partition(":")
    return getattr(importlib.import_module(module), name)
