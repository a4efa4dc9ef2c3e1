"""Hugging Face ``datasets`` for local HF-format inputs, with the network off.

Users often hold a dataset in one of HF's on-disk forms (the hub's parquet
files, a hub-cache snapshot, a ``save_to_disk`` folder or ``datasets``' own
cache). ``datasets`` reads all of them; this module only makes sure it never
goes online while doing so (``prepare`` must not download behind the user's
back) and that a missing install or an unreadable file is one clear line.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmthesis.core.errors import DataMissingError

INSTALL = "`pip install 'packages/mmthesis-data[hf]'` (or `pip install datasets`)"
_OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def require(what: str, fix: str = "") -> None:
    """Fail in one line when ``datasets`` is not installed; ``what`` says which input needed it."""
    try:
        import datasets  # noqa: F401
    except ImportError as e:
        raise DataMissingError(f"{what}, and reading it needs Hugging Face datasets", INSTALL + fix) from e


@contextlib.contextmanager
def offline() -> Iterator[Any]:
    """The ``datasets`` module with hub access switched off and its progress bars quiet (restored after).

    ``datasets`` reads the offline switch from the environment at import, so the variables are set first
    and its (and huggingface_hub's) module-level flags are patched too, for when it was imported earlier.
    """
    saved_env = {k: os.environ.get(k) for k in _OFFLINE_ENV}
    os.environ.update(dict.fromkeys(_OFFLINE_ENV, "1"))
    import datasets
    import huggingface_hub.constants as hub_constants

    flags = [
        (datasets.config, "HF_HUB_OFFLINE"),
        (datasets.config, "HF_DATASETS_OFFLINE"),
        (hub_constants, "HF_HUB_OFFLINE"),
    ]
    saved_flags = [(obj, name, getattr(obj, name)) for obj, name in flags if hasattr(obj, name)]
    bars = datasets.is_progress_bar_enabled()
    verbosity = datasets.logging.get_verbosity()
    try:
        for obj, name, _ in saved_flags:
            setattr(obj, name, True)
        datasets.disable_progress_bars()
        datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # its read errors come back as our one line
        yield datasets
    finally:
        for obj, name, value in saved_flags:
            setattr(obj, name, value)
        datasets.logging.set_verbosity(verbosity)
        if bars:
            datasets.enable_progress_bars()
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _unreadable(what: str, e: Exception, fix: str) -> DataMissingError:
    cause = e.__cause__ or e
    return DataMissingError(f"{what} is not readable by datasets ({type(cause).__name__}: {cause})", fix)


def load_parquet(files: dict[str, list[Path]], fix: str) -> dict[str, Any]:
    """``load_dataset("parquet", data_files=files)``: one ``Dataset`` per key (a split name), in file order.

    The arrow cache ``datasets`` builds from parquet goes to a temporary folder (the tables stay in memory),
    so nothing is left in the user's HF cache.
    """
    with offline() as datasets, tempfile.TemporaryDirectory(prefix="mmthesis-hf-") as cache:
        try:
            loaded = datasets.load_dataset(
                "parquet",
                data_files={k: [str(p) for p in v] for k, v in files.items()},
                cache_dir=cache,
                keep_in_memory=True,
            )
        except Exception as e:  # datasets wraps arrow / OS errors in its own types
            shown = ", ".join(sorted({str(p) for v in files.values() for p in v})[:3])
            raise _unreadable(f"parquet ({shown})", e, fix) from e
        return dict(loaded)


def load_from_disk(folder: Path, fix: str) -> Any:
    """``datasets.load_from_disk``: a ``save_to_disk`` folder (a ``Dataset`` or a ``DatasetDict``)."""
    with offline() as datasets:
        try:
            return datasets.load_from_disk(str(folder), keep_in_memory=True)
        except Exception as e:
            raise _unreadable(f"save_to_disk folder {folder}", e, fix) from e


def load_cached(repo: str, config: str | None, cache_dir: Path, fix: str) -> dict[str, Any]:
    """``load_dataset(repo, config, cache_dir=...)`` offline: a hub dataset from ``datasets``' own cache."""
    with offline() as datasets:
        try:
            return dict(datasets.load_dataset(repo, config, cache_dir=str(cache_dir), keep_in_memory=True))
        except Exception as e:
            raise _unreadable(f"the datasets cache of {repo} ({config}) in {cache_dir}", e, fix) from e
