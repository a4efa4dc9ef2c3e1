"""Hugging Face / original BERT checkpoints -> our ``BERT`` (transformers ``BertModel``, no pooler).

Accepted: a HF model folder (``config.json`` + ``model.safetensors`` or
``pytorch_model.bin``), or the weights file alone. Keys may carry the
``bert.`` prefix of ``BertForPreTraining``/``BertForMaskedLM`` (the hub's
``bert-base-uncased`` does) and the TF-era LayerNorm names ``gamma``/``beta``
(its ``pytorch_model.bin`` does); both are normalised. Each remaining key
maps to ``model.<key>`` by an explicit pattern. Dropped (listed): the
pooler (``pooler.*``, the thesis removes it), the pretraining heads
(``cls.*``) and the ``embeddings.position_ids`` / ``token_type_ids`` buffers.

The pooler (``pooler.dense``: Linear D->D, followed by tanh) is dropped from
the model but kept in ``Converted.extras`` (``pooler.dense.weight`` /
``.bias``): GLUE finetuning re-attaches ``bert-base-uncased``'s pretrained
pooler (REFERENCE.md 3.12, 5.3); ``loading.load_pooler`` reads it from a file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mmthesis.core.errors import CheckpointError
from mmthesis.teachers.converters.common import Converted, block_ids, map_keys, shape

FMT = "hf_bert"
LAYER = r"(attention\.self\.(?:query|key|value)\.(?:weight|bias)|attention\.output\.dense\.(?:weight|bias)" \
        r"|attention\.output\.LayerNorm\.(?:weight|bias)|intermediate\.dense\.(?:weight|bias)" \
        r"|output\.dense\.(?:weight|bias)|output\.LayerNorm\.(?:weight|bias))"
RULES = [
    (r"embeddings\.(word_embeddings|position_embeddings|token_type_embeddings)\.weight", r"model.embeddings.\1.weight"),
    (r"embeddings\.LayerNorm\.(weight|bias)", r"model.embeddings.LayerNorm.\1"),
    (rf"encoder\.layer\.(\d+)\.{LAYER}", r"model.encoder.layer.\1.\2"),
]
DROPS = ("pooler.", "cls.", "embeddings.position_ids", "embeddings.token_type_ids")
POOLER = ("pooler.dense.weight", "pooler.dense.bias")


def normalise(sd: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in sd.items():
        if k.startswith("bert."):
            k = k[len("bert."):]
        k = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", k)
        k = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", k)
        out[k] = v
    return out


def convert(sd: Mapping[str, Any], hf_config: Mapping[str, Any] | None = None) -> Converted:
    sd = normalise(sd)
    out = map_keys(FMT, sd, RULES, DROPS)
    words = shape(sd, "embeddings.word_embeddings.weight", FMT)
    d = words[1]
    conf: dict[str, Any] = {
        "embed_dim": d,
        "vocab_size": words[0],
        "depth": len(block_ids(sd, "encoder.layer.")),
        "intermediate_size": shape(sd, "encoder.layer.0.intermediate.dense.weight", FMT)[0],
        "max_position_embeddings": shape(sd, "embeddings.position_embeddings.weight", FMT)[0],
        "type_vocab_size": shape(sd, "embeddings.token_type_embeddings.weight", FMT)[0],
    }
    if hf_config:
        for ours, theirs in (("num_heads", "num_attention_heads"), ("layer_norm_eps", "layer_norm_eps"),
                             ("pad_token_id", "pad_token_id"), ("hidden_dropout_prob", "hidden_dropout_prob"),
                             ("attention_probs_dropout_prob", "attention_probs_dropout_prob")):
            if hf_config.get(theirs) is not None:
                conf[ours] = hf_config[theirs]
        if hf_config.get("hidden_act", "gelu") != "gelu":
            out.notes.append(f"hidden_act {hf_config['hidden_act']!r} in config.json; BERT uses 'gelu'")
    out.config = conf
    if all(k in sd for k in POOLER):
        w, b = sd[POOLER[0]], sd[POOLER[1]]
        if tuple(w.shape) != (d, d) or tuple(b.shape) != (d,):
            raise CheckpointError(f"{FMT} pooler.dense has shape {tuple(w.shape)}, not ({d}, {d})",
                                  "check that the file is a single BERT model")
        out.extras = {POOLER[0]: w, POOLER[1]: b}
    return out
