"""Provenance of a run: git commit, package versions, hardware."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from mmthesis.core.paths import repo_root

MMTHESIS_PACKAGES = (
    "mmthesis-core",
    "mmthesis-data",
    "mmthesis-teachers",
    "mmthesis-students",
    "mmthesis-vae",
    "mmthesis-eval",
    "mmthesis-cli",
)
THIRD_PARTY = ("torch", "torchvision", "lightning", "timm", "transformers", "tokenizers", "safetensors", "numpy")


def package_versions(names: tuple[str, ...] = MMTHESIS_PACKAGES + THIRD_PARTY) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(path: Path | None = None) -> dict[str, Any]:
    """Commit hash and whether the tree has uncommitted changes (None outside a checkout)."""
    root = path or repo_root()
    if root is None:
        return {"commit": None, "dirty": None}
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}
    if commit.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cuda": None,
        "gpus": [],
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["cuda"] = torch.version.cuda
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:  # pragma: no cover - torch is a dependency of every package using this
        pass
    return info
