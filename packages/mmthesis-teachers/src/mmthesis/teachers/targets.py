"""The thesis's distillation targets, computed from a ``TeacherOutput``.

* ``cls_target``: the last layer's CLS (S-SMKE, contrastive KD; REFERENCE.md
  3.6/3.10/3.11). ``pre_norm=True`` takes it before the final LayerNorm, as
  the CDL_MB run did (BEiTv2's final norm replaced by identity, section 10 item 8).
* ``data2vec_target``: the data2vec-style "contextualized" target: each layer's
  token sequence instance-normalised per channel over the time axis
  (``F.instance_norm``, eps 1e-5), the top-K layers averaged, optionally a
  parameter-free LayerNorm on the average (images yes, text no).
* ``image_kd_layers`` / ``text_kd_layers`` pick the layers the thesis code
  averaged (section 3.1/3.2 and 10 item 4): Data2Vec2's ``layer_results`` of
  the shared blocks only (FFN outputs, prenet excluded); BERT's HF
  ``hidden_states`` including the embedding output (code) or only layers 1..L
  (thesis formula).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from mmthesis.teachers.base import TeacherModule
from mmthesis.teachers.output import TeacherOutput


def cls_target(out: TeacherOutput, pre_norm: bool = False) -> torch.Tensor:
    """(B, D) last-layer CLS; after the final norm unless ``pre_norm``."""
    return out.hidden_states[-1][:, 0] if pre_norm else out.cls


def instance_norm_tokens(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Normalise each channel over the token axis: (B, T, D) -> (B, T, D), in float32."""
    return F.instance_norm(x.float().transpose(1, 2), eps=eps).transpose(1, 2)


def data2vec_target(layers: Sequence[torch.Tensor], top_k: int | None = None, final_layer_norm: bool = False,
                    eps: float = 1e-5) -> torch.Tensor:
    """Average of the last ``top_k`` (default: all) instance-normalised layers, optionally layer-normed."""
    if not layers:
        raise ValueError("data2vec_target needs at least one layer")
    chosen = list(layers)[-top_k:] if top_k else list(layers)
    y = torch.stack([instance_norm_tokens(t, eps) for t in chosen]).mean(0)
    if final_layer_norm:
        y = F.layer_norm(y, y.shape[-1:])
    return y


def image_kd_layers(model: TeacherModule, out: TeacherOutput) -> list[torch.Tensor]:
    """Data2Vec2 ``layer_results`` of the shared blocks (the original code's targets; prenet excluded)."""
    if out.layer_results is None:
        raise ValueError(f"{model.teacher_name} has no layer_results (only Data2Vec2 models do)")
    return list(out.layer_results[getattr(model, "prenet_depth", 0):])


def text_kd_layers(out: TeacherOutput, include_embeddings: bool = True) -> list[torch.Tensor]:
    """BERT layers for text KD: embeddings + every layer (code) or the layers only (thesis formula)."""
    layers = list(out.hidden_states)
    if include_embeddings:
        if out.embeddings is None:
            raise ValueError("this output has no embedding-layer output")
        layers = [out.embeddings] + layers
    return layers
