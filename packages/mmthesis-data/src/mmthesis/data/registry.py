"""The dataset registry: every preparable dataset, its raw layout and its scales.

Dataset modules (``mmthesis.data.datasets.<name>``) register a ``DatasetSpec``
when imported; ``datasets()`` imports the built-in ones on first use.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mmthesis.core.config import config_hash
from mmthesis.core.errors import MMThesisError
from mmthesis.core.registry import Registry
from mmthesis.core.scales import Scale
from mmthesis.data.manifest import Manifest, read_manifest
from mmthesis.data.raw_files import DEFAULT_MAX_PIXELS

Kind = Literal["image-text", "image-classification", "text", "glue"]

_BUILTIN_MODULES = (
    "mmthesis.data.datasets.shapes",
    "mmthesis.data.datasets.emoji",
    "mmthesis.data.datasets.imagenet",
    "mmthesis.data.datasets.openwebtext",
    "mmthesis.data.datasets.glue",
    "mmthesis.data.datasets.karpathy",  # coco, flickr30k
    "mmthesis.data.datasets.cc",
    "mmthesis.data.datasets.cifar",
)


@dataclass(frozen=True)
class PrepareRequest:
    """What `mmthesis data prepare NAME` passes to a dataset's ``prepare`` function."""

    out_root: Path  # prepared datasets root; the dataset goes to out_root / prepared_name(name, scale)
    raw: Path | None  # user's raw download (None: generated / fetched / stand-in)
    workers: int = 1
    scale: Scale = "full"
    max_pixels: int = DEFAULT_MAX_PIXELS  # images with more pixels are skipped (decompression bombs)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    kind: Kind
    summary: str
    prepare: Callable[[PrepareRequest], Manifest]
    raw_hint: str  # what --raw must point to, in the publisher's layout
    scales: tuple[Scale, ...] = ("full",)
    # scales at which the dataset is a stand-in built without user data (e.g. smoke ImageNet from emoji)
    stand_in: dict[str, str] = field(default_factory=dict)
    # prepare() fetches the raw files itself when --raw is absent (e.g. emoji via npm); --raw stays optional
    fetches_raw: bool = False

    def needs_raw(self, scale: str) -> bool:
        """Whether `mmthesis data prepare` must be given --raw at this scale."""
        return bool(self.raw_hint) and scale not in self.stand_in and not self.fetches_raw


_REGISTRY: Registry[DatasetSpec] = Registry("dataset", "mmthesis data list")
_loaded = False


def register(spec: DatasetSpec) -> DatasetSpec:
    return _REGISTRY.register(spec.name, spec)


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _BUILTIN_MODULES:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)


def get_dataset(name: str) -> DatasetSpec:
    _load_builtins()
    return _REGISTRY.get(name)


def dataset_names() -> list[str]:
    _load_builtins()
    return _REGISTRY.names()


def prepared_name(name: str, scale: str) -> str:
    """Folder name of a prepared dataset: stand-ins get a ``-smoke`` suffix so they never shadow real data."""
    spec = get_dataset(name)
    return f"{name}-{scale}" if scale in spec.stand_in else name


def prepare_command(name: str, scale: str = "full") -> str:
    spec = get_dataset(name)
    if not spec.needs_raw(scale):
        return f"mmthesis data prepare {name}" + (f" --scale {scale}" if scale in spec.stand_in else "")
    # a runnable command once the placeholder is the user's download; the layout is in `mmthesis data list`
    return f"mmthesis data prepare {name} --raw /path/to/{spec.raw_hint.split()[0]}"


def prepared(name: str, scale: str) -> str:
    """The prepared folder a recipe's dataset name means at ``scale`` (stand-ins: ``imagenet-smoke``).

    A name that is not registered is taken as a prepared folder named directly.
    """
    try:
        return prepared_name(name, scale)
    except MMThesisError:
        return name


def check_data(names: list[str], scale: str = "full") -> dict[str, str]:
    """Fail up front, with the fixing command, if a dataset is not prepared; returns ``{folder: fingerprint}``.

    The fingerprint hashes the shards' sha256 from the manifest: it changes iff the prepared data does.
    """
    fingerprints = {}
    for name in dict.fromkeys(names):
        folder = prepared(name, scale)
        try:
            hint = prepare_command(name, scale)
        except MMThesisError:
            hint = "mmthesis data list"
        manifest = read_manifest(folder, prepare_hint=hint)
        digest = [s["sha256"] for split in manifest.splits.values() for s in split.get("shards", [])]
        fingerprints[folder] = config_hash({"shards": digest})
    return fingerprints
