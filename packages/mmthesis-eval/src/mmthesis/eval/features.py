"""Frozen image features, extracted once and cached on disk as safetensors.

A linear probe trains many heads (L2 weights, seeds) on the same frozen
features, so features are computed once per (trained run, dataset
fingerprint, split, transform, feature kind) and stored under
``mmthesis_home()/cache/features/<key>.safetensors``. The key is a hash of
exactly those values, so a retrained model, a re-prepared dataset or a
changed transform never reuses stale features. Writes are atomic.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from mmthesis.core.errors import ConfigError
from mmthesis.core.io import atomic_path, sha256_json
from mmthesis.core.paths import mmthesis_home
from mmthesis.core.registry import lookup
from mmthesis.eval.models import embed_in_batches


def feature_key(run_id: str, dataset_fingerprint: str, split: str, transform: str, kind: str = "embedding") -> str:
    """Stable hash naming one cached feature file."""
    return sha256_json(
        {"run": run_id, "dataset": dataset_fingerprint, "split": split, "transform": transform, "kind": kind}
    )[:24]


def feature_cache_dir() -> Path:
    return mmthesis_home() / "cache" / "features"


def cached_features(
    key: str, compute: Callable[[], dict[str, torch.Tensor]], cache_dir: Path | None = None
) -> dict[str, torch.Tensor]:
    """Load the tensors stored under ``key``, or ``compute()`` them and store them (atomically)."""
    from safetensors.torch import load_file, save_file

    path = (cache_dir or feature_cache_dir()) / f"{key}.safetensors"
    if path.is_file():
        return load_file(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in compute().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
    return tensors


FeatureFn = Callable[[torch.Tensor], torch.Tensor]


def embedding_features(model: torch.nn.Module, backbone: torch.nn.Module | None = None) -> FeatureFn:
    """``embedding``: the model's normalised image embedding (any ``ImageTextModel``)."""
    return model.encode_image


def patch_mean_features(model: torch.nn.Module, backbone: torch.nn.Module | None = None) -> FeatureFn:
    """``patch-mean``: the thesis's probe input (REFERENCE.md §5.3): the image backbone's output
    tokens without CLS, averaged; needs ``backbone`` or a model with an ``image_encoder``."""
    encoder = backbone if backbone is not None else getattr(model, "image_encoder", None)
    if encoder is None:
        raise ConfigError(
            "feature kind 'patch-mean' needs a model with an image backbone (an mmthesis run or a teacher)",
            "set params.feature=embedding",
        )
    return lambda images: encoder(images).last_hidden_state[:, 1:].mean(dim=1)


# the linear-probe task YAML's ``params.feature`` -> the function building the feature extractor
FEATURE_KINDS: dict[str, Callable[..., FeatureFn]] = {"embedding": embedding_features, "patch-mean": patch_mean_features}


def image_feature_fn(model: torch.nn.Module, kind: str, backbone: torch.nn.Module | None = None) -> FeatureFn:
    """The function mapping an image batch to (B, D) probe features (see ``FEATURE_KINDS``)."""
    return lookup(FEATURE_KINDS, "linear-probe feature kind", kind)(model, backbone)


@torch.no_grad()
def extract_image_features(
    model: torch.nn.Module, images: torch.Tensor, kind: str = "embedding", batch_size: int = 256
) -> torch.Tensor:
    """(N, D) float32 features of ``images`` with the encoder frozen (no grad)."""
    return embed_in_batches(image_feature_fn(model, kind), images, batch_size=batch_size)
