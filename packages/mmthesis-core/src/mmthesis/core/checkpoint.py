"""Safe checkpoint I/O.

Weights are stored as safetensors (no code execution on load). Foreign
``.pt``/``.pth``/``.ckpt`` files are read with ``torch.load(weights_only=True)``,
which only rebuilds tensors and plain containers; anything else needs the
caller to pass ``trust=True`` explicitly (CLI: ``--trust-checkpoint``).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import warnings
import zipfile
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from mmthesis.core.errors import CheckpointError
from mmthesis.core.io import checked_atomic_write

SAFETENSORS_SUFFIX = ".safetensors"


def save_weights(path: str | os.PathLike[str], state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> Path:
    """Write a state dict as safetensors, atomically and byte-deterministically. Shared/non-contiguous tensors are cloned.

    The header is rewritten with sorted keys: safetensors keeps the metadata in a hash map whose order differs
    between processes, so the same weights would otherwise give different bytes (and file hashes).
    A full disk is a one-line ``StorageError`` naming the file and the free space.
    """
    path = Path(path)
    # safetensors refuses tensors that share memory (tied weights) or are non-contiguous: copy those
    storage_uses = Counter(v.untyped_storage().data_ptr() for v in state_dict.values())
    tensors = {
        k: v.detach().contiguous().clone() if storage_uses[v.untyped_storage().data_ptr()] > 1 or not v.is_contiguous() else v.detach()
        for k, v in state_dict.items()
    }
    data = canonical_safetensors(safetensors_bytes(tensors, metadata=dict(sorted((metadata or {}).items()))))
    checked_atomic_write(path, data)
    return path


def _header_bytes(header: Mapping[str, Any]) -> bytes:
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return text + b" " * (-len(text) % 8)  # safetensors pads the header to 8 bytes with spaces


def canonical_safetensors(data: bytes) -> bytes:
    """safetensors bytes with the JSON header in sorted-key order (the tensor bytes are unchanged)."""
    n = int.from_bytes(data[:8], "little")
    header = _header_bytes(json.loads(data[8 : 8 + n]))
    return len(header).to_bytes(8, "little") + header + data[8 + n :]


def weights_digest(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """sha256 of a safetensors file in canonical form (sorted header + tensor bytes), whatever its header order.

    Equal for equal tensors and metadata (the model fingerprint of an evaluation); for a file written by
    ``save_weights`` it is the file's sha256.
    """
    path = Path(path)
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = _header_bytes(json.loads(f.read(n)))
            digest.update(len(header).to_bytes(8, "little") + header)
            while chunk := f.read(chunk_size):
                digest.update(chunk)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{str(path)!r} is not a readable safetensors file ({_short(e)})", "re-create it") from e
    return digest.hexdigest()


def load_weights(path: str | os.PathLike[str], *, trust: bool = False, map_location: str = "cpu") -> dict[str, Any]:
    """Load a checkpoint's contents without executing code unless ``trust`` is set.

    Returns the safetensors state dict, or the object stored in a torch file
    (often a dict with a ``model``/``state_dict`` entry; see ``extract_state_dict``).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist", "check the path")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {str(path)!r} is a folder, not a file", "pass the weights file inside it")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {str(path)!r} is empty (0 bytes)", "re-download or re-create it")
    if path.suffix == SAFETENSORS_SUFFIX or _looks_like_safetensors(path):
        try:
            return dict(load_file(str(path), device=map_location))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(
                f"checkpoint {str(path)!r} is not a readable safetensors file ({_short(e)})", "re-create or re-download it"
            ) from e
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": noise around a refusal or a load
            warnings.simplefilter("ignore")
            return torch.load(str(path), map_location=map_location, weights_only=not trust)
    except pickle.UnpicklingError as e:
        if not trust and "weights_only" in str(e):
            raise CheckpointError(
                f"checkpoint {str(path)!r} contains pickled objects that are not plain tensors ({_unsafe_global(e)})",
                "if you trust its source, convert it once with `mmthesis teachers convert SRC DST --trust-checkpoint`",
            ) from e
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt ({_short(e)})", "re-download or re-create it") from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt or truncated ({_short(e)})", "re-download or re-create it") from e


def extract_state_dict(obj: Any, keys: tuple[str, ...] = ("model", "state_dict", "module", "model_state")) -> dict[str, torch.Tensor]:
    """Find the tensor mapping inside a loaded checkpoint (fairseq ``model``, Lightning ``state_dict``...)."""
    if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return dict(obj)
    if isinstance(obj, Mapping):
        for key in keys:
            if key in obj and isinstance(obj[key], Mapping):
                return extract_state_dict(obj[key], keys)
    raise CheckpointError("checkpoint holds no tensor state dict", f"expected a mapping of tensors or one under {', '.join(keys)}")


def _looks_like_safetensors(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (1 << 30)


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    # the first sentence: torch's messages go on with advice (file an issue, load unsafely) that does not apply
    return (text[0].split(". ")[0] if text else type(e).__name__)[:160]


def _unsafe_global(e: BaseException) -> str:
    for line in str(e).splitlines():
        if "Unsupported global" in line or "GLOBAL" in line:
            return line.strip().split(". ")[0][:160]
    return "not allowed by tensor-only loading"
