"""Lazy package exports (PEP 562): ``from mmthesis.data import get_dataset`` without importing
torch (or anything else) when only ``import mmthesis.data`` runs."""

from __future__ import annotations

import importlib  # no typing / collections.abc: this runs at every ``import mmthesis.<package>``


def lazy_exports(package: str, exports: dict[str, str]) -> tuple:
    """``__getattr__`` and ``__dir__`` for ``package`` resolving ``name`` from module ``exports[name]``."""
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        namespace[name] = value  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
