"""open_clip models behind the mmthesis model interface (optional: ``pip install mmthesis-eval[open_clip]``).

``open_clip:ARCH[:CKPT]``: ARCH is any open_clip model config name (also one
registered with ``open_clip.add_model_config``); CKPT is a *local* weights file.
Pretrained tags (``openai``, ``laion2b_...``) are refused on purpose: they
download from a hub, and an evaluation must name exactly the weights it scored.
Without CKPT the weights are random (seed 0), which is only useful for tests.

Embeddings are open_clip's own ``encode_image`` / ``encode_text`` with
``normalize=True``; images get open_clip's validation preprocessing and texts
its tokenizer (fixed context length, padding id 0), so scores match what
open_clip reports for the same model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from mmthesis.core.checkpoint import extract_state_dict, load_weights
from mmthesis.core.errors import CheckpointError, ConfigError
from mmthesis.core.io import sha256_file, sha256_json
from mmthesis.eval.adapters import LoadedModel


def _open_clip():
    try:
        import open_clip
    except ImportError as e:
        raise ConfigError(
            "open_clip is not installed", "pip install 'mmthesis-eval[open_clip]' (open_clip_torch)"
        ) from e
    return open_clip


class OpenClipTokenizer:
    """open_clip's tokenizer with the ``encode_batch(texts, max_length) -> (ids, padding_mask)`` API of mmthesis."""

    def __init__(self, tokenizer, context_length: int) -> None:
        self.tokenizer = tokenizer
        self.context_length = context_length

    def encode_batch(self, texts: Sequence[str], max_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        # open_clip models have a fixed context length; ``max_length`` of the task does not apply
        ids = self.tokenizer(list(texts), context_length=self.context_length)
        return ids, ids.eq(0)


class OpenClipModel(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.clip = model

    @torch.no_grad()
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_image(images, normalize=True).float()

    @torch.no_grad()
    def encode_text(self, text_ids: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_text(text_ids, normalize=True).float()


def load_open_clip(spec: str) -> LoadedModel:
    open_clip = _open_clip()
    _, _, rest = spec.partition(":")
    arch, _, ckpt = rest.partition(":")
    if not arch:
        raise ConfigError(
            f"model spec {spec!r} names no open_clip architecture", "write open_clip:ARCH[:/path/to/weights]"
        )
    if ckpt and not Path(ckpt).is_file():
        raise CheckpointError(
            f"open_clip weights {ckpt!r} are not a local file",
            "download the weights yourself and pass their path (hub tags are not fetched)",
        )
    if arch not in open_clip.list_models():
        raise ConfigError(
            f"unknown open_clip architecture {arch!r}",
            "see open_clip.list_models() or register a config with open_clip.add_model_config",
        )
    if ckpt:
        # read safely first: a pickle with code, a truncated or foreign file is one line here, not open_clip's
        # traceback (whose torch.load message advises unsafe loading)
        extract_state_dict(load_weights(ckpt))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=ckpt or None)
        except (RuntimeError, KeyError, ValueError) as e:  # keys or shapes of another architecture
            first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
            raise CheckpointError(
                f"open_clip weights {ckpt!r} do not fit architecture {arch!r} ({first})",
                "pass the weights of that architecture",
            ) from e
    model.eval()
    tokenizer = open_clip.get_tokenizer(arch)
    context_length = int(getattr(model, "context_length", 77))
    weights = sha256_file(ckpt) if ckpt else "random-seed-0"
    return LoadedModel(
        spec=spec,
        fingerprint=sha256_json(
            {"kind": "open_clip", "arch": arch, "weights": weights, "config": open_clip.get_model_config(arch)}
        )[:16],
        model=OpenClipModel(model).eval(),
        image_transform=preprocess,
        tokenizer=OpenClipTokenizer(tokenizer, context_length),
        max_text_length=context_length,
        info={
            "kind": "open_clip",
            "arch": arch,
            "checkpoint": ckpt or None,
            "open_clip": open_clip.__version__,
            "has_text": True,
        },
    )
