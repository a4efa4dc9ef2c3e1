"""Read any supported checkpoint file or folder into a raw state dict, safely, and tell its format.

Safetensors and HF folders need no unpickling. ``.pt``/``.pth`` files are
first tried with ``torch.load(weights_only=True)``; if they pickle more than
tensors (fairseq's config, unilm's ``argparse.Namespace``) they are read with
the restricted unpickler of ``safe_unpickle``; an object outside its
allow-list is refused with one line naming it. ``trust=True`` (CLI
``--trust-checkpoint``) unpickles without restriction, meant for a one-time
``mmthesis teachers convert`` to safetensors.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from mmthesis.core.checkpoint import load_weights
from mmthesis.core.errors import CheckpointError
from mmthesis.teachers.safe_unpickle import DisallowedGlobal, restricted_torch_load, to_plain

CONTAINER_KEYS = ("model", "state_dict", "module", "teacher", "model_state", "student")
TRUST_FIX = "if you trust its source, convert it once with `mmthesis teachers convert SRC DST --trust-checkpoint`"


@dataclass
class RawCheckpoint:
    path: Path
    container: str  # how it was read
    state: dict[str, Any]  # raw entries (tensors, plus e.g. fairseq's nested `_ema` dict)
    cfg: dict[str, Any] | None = None  # fairseq `cfg` / unilm `args` / HF config.json
    metadata: dict[str, str] = field(default_factory=dict)  # safetensors header metadata


def read_checkpoint(path: str | Path, trust: bool = False) -> RawCheckpoint:
    path = Path(path)
    if path.is_dir():
        return _read_hf_folder(path, trust)
    if not path.exists():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist", "check the path (see `mmthesis teachers list`)")
    obj, container, metadata = _load_file(path, trust)
    if container == "safetensors":
        return RawCheckpoint(path, container, dict(obj), None, metadata)
    return RawCheckpoint(path, container, find_state(obj, path), _cfg_of(obj), metadata)


def _load_file(path: Path, trust: bool) -> tuple[Any, str, dict[str, str]]:
    if path.suffix == ".safetensors" or _is_safetensors(path):
        obj = load_weights(path)
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
        return obj, "safetensors", metadata
    if trust:
        return load_weights(path, trust=True), "torch pickle (trusted, unrestricted)", {}
    try:
        return load_weights(path), "torch pickle (weights_only)", {}
    except CheckpointError as e:
        if not isinstance(e.__cause__, pickle.UnpicklingError) or "not plain tensors" not in e.message:
            raise
    try:
        return restricted_torch_load(path), "torch pickle (restricted unpickler)", {}
    except DisallowedGlobal as e:
        raise CheckpointError(
            f"checkpoint {str(path)!r} contains a pickled object of type `{e.qualname}` that is not on the allow-list",
            TRUST_FIX,
        ) from e
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, AttributeError, TypeError) as e:
        raise CheckpointError(f"checkpoint {str(path)!r} could not be read ({str(e).splitlines()[0][:160]})",
                              "re-download or re-create it") from e


def _is_safetensors(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (1 << 30)


def find_state(obj: Any, path: Path) -> dict[str, Any]:
    """The weights mapping inside a loaded object (fairseq/unilm ``model``, DINO ``teacher``, Lightning ...)."""
    if isinstance(obj, Mapping):
        for key in CONTAINER_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                return find_state(obj[key], path)
        if any(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
    raise CheckpointError(f"checkpoint {str(path)!r} holds no state dict",
                          f"expected tensors at the top level or under one of {', '.join(CONTAINER_KEYS)}")


def _cfg_of(obj: Any) -> dict[str, Any] | None:
    if not isinstance(obj, Mapping):
        return None
    for key in ("cfg", "args", "config"):
        value = to_plain(obj.get(key))
        if isinstance(value, Mapping):
            return dict(value)
    return None


def _read_hf_folder(path: Path, trust: bool) -> RawCheckpoint:
    config_file = path / "config.json"
    for name in ("model.safetensors", "pytorch_model.bin"):
        weights = path / name
        if weights.exists():
            break
    else:
        raise CheckpointError(f"folder {str(path)!r} has no model.safetensors or pytorch_model.bin",
                              "pass a Hugging Face model folder or a weights file")
    cfg = json.loads(config_file.read_text()) if config_file.exists() else None
    inner = read_checkpoint(weights, trust)
    return RawCheckpoint(path, f"hf folder ({name})", inner.state, cfg, inner.metadata)
