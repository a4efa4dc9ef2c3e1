"""Tiny VAE configs and a tokenizer learnt from a handful of shapes-like captions (no prepared data needed)."""

from __future__ import annotations

import pytest

from mmthesis.data.tokenizers import train_wordpiece
from mmthesis.vae.config import VAEModelConfig

# the vocabulary's words; test_model's captions use them
CAPTIONS = ["a red circle on the left", "a blue square at the top", "a green triangle", "a yellow cross on the right"]


@pytest.fixture(scope="session")
def tokenizer():
    return train_wordpiece(CAPTIONS, 80)


@pytest.fixture(scope="session")
def tiny_config():
    def make(aggregation: str = "mopoe", **kw) -> VAEModelConfig:
        sizes = {"latent_dim": 4, "img_size": 8, "image_channels": 4, "text_dim": 8, **kw}
        return VAEModelConfig(aggregation=aggregation, **sizes)  # type: ignore[arg-type]

    return make
