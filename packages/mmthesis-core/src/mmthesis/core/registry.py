"""A tiny name -> object registry whose lookup errors list the valid names.

``unknown_name`` is the one error every name lookup raises (recipes, eval
tasks, protocols, reproduction specs, datasets, teachers, YAML values that
select a function): it lists the known names and suggests the closest one.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Generic, TypeVar

from mmthesis.core.errors import UnknownNameError

T = TypeVar("T")


def unknown_name(
    kind: str, name: object, known: Iterable[str], list_command: str | None = None, also: str | None = None
) -> UnknownNameError:
    """The ``UnknownNameError`` for ``name`` not among ``known``: lists them and suggests the closest.

    e.g. ``unknown recipe 's-smke-cdl-mv', did you mean s-smke-cdl-mb? (fix: use one of: ... (see `mmthesis
    train list`))``. ``also`` is appended to the fix (another way to get what was wanted).
    """
    names = sorted(known)
    message = f"unknown {kind} {name!r}"
    close = difflib.get_close_matches(str(name), names, n=2, cutoff=0.6)
    if close:
        message += f", did you mean {' or '.join(close)}?"
    fix = f"use one of: {', '.join(names) or 'none'}"
    if list_command:
        fix += f" (see `{list_command}`)"
    if also:
        fix += f" {also}"
    return UnknownNameError(message, fix)


def lookup(table: Mapping[str, T], kind: str, name: str, list_command: str | None = None) -> T:
    """``table[name]``, or ``unknown_name`` (for the module-level name -> function tables)."""
    try:
        return table[name]
    except (KeyError, TypeError):
        raise unknown_name(kind, name, table, list_command) from None


class Registry(Generic[T]):
    def __init__(self, kind: str, list_command: str | None = None) -> None:
        self.kind = kind
        self.list_command = list_command
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = item
        return item

    def decorator(self, name: str) -> Callable[[T], T]:
        def wrap(item: T) -> T:
            return self.register(name, item)

        return wrap

    def get(self, name: str) -> T:
        return lookup(self._items, self.kind, name, self.list_command)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
