"""The interface of a generative image-text model (a multimodal VAE) that the coherence and arithmetic tasks use.

Why a protocol here and not in the model's package: the eval harness must not depend on any one model package
(dependency direction core <- ... <- eval), and any model with these members can be evaluated, as with
``ImageTextModel``. Latents are unnormalised (B, Z) vectors that the decoders accept back; images going in are
what the model's ``LoadedModel.image_transform`` produces, token ids what its ``LoadedModel.tokenizer`` produces
(an adapter sets that to the model's ``tokenizer``).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from mmthesis.core.errors import MMThesisError

GENERATOR_MEMBERS = ("latent_image", "latent_text", "decode_image", "decode_text", "image_size", "tokenizer")


@runtime_checkable
class CrossModalGenerator(Protocol):
    image_size: int  # side of the decoded images
    tokenizer: Any  # ``encode_batch(texts, max_length) -> (ids, padding_mask)`` and ``decode``

    def encode_image(self, images: torch.Tensor) -> torch.Tensor: ...

    def encode_text(self, text_ids: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor: ...

    def latent_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, Z) latent of each image (e.g. the posterior mean)."""
        ...

    def latent_text(self, text_ids: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        """(B, Z) latent of each text."""
        ...

    def decode_image(self, z: torch.Tensor) -> torch.Tensor:
        """(B, 3, image_size, image_size) images in [0, 1]."""
        ...

    def decode_text(self, z: torch.Tensor, max_len: int = 32, greedy: bool = True) -> list[str]:
        """One decoded string per latent."""
        ...


class NotGenerativeError(MMThesisError):
    """A task needs a CrossModalGenerator and the model is only an encoder."""


def missing_members(model: Any) -> list[str]:
    return [m for m in GENERATOR_MEMBERS if not hasattr(model, m)]


def is_generator(model: Any) -> bool:
    return not missing_members(model)


def require_generator(model: Any, spec: str, task: str) -> CrossModalGenerator:
    """``model`` as a generator, or a one-line error saying what it lacks."""
    missing = missing_members(model)
    if missing:
        raise NotGenerativeError(
            f"{task} needs a generative model (CrossModalGenerator); {spec} has no {', '.join(missing)}",
            "evaluate a multimodal VAE run, or use latent-arithmetic-shapes / retrieval tasks for encoders",
        )
    return model
