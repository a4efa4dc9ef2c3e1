"""BERT-base uncased: transformers ``BertModel`` without the pooler.

The thesis's text encoder and F-DistilBERT teacher is Hugging Face
``bert-base-uncased`` with the pooler removed (REFERENCE.md 3.2): we use
``BertModel(add_pooling_layer=False)`` unchanged and only translate the
thesis's padding convention (True = pad) into BERT's attention mask (1 = keep).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import BertConfig, BertModel

from mmthesis.teachers.base import TeacherModule, first_blocks_copy
from mmthesis.teachers.output import TeacherOutput

PRESETS: dict[str, dict[str, Any]] = {
    "base": dict(embed_dim=768, num_heads=12, depth=12, intermediate_size=3072, vocab_size=30522,
                 max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=0,
                 hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1),
    "tiny": dict(embed_dim=64, num_heads=4, depth=4, intermediate_size=256, vocab_size=1000,
                 max_position_embeddings=128, type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=0,
                 hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1),
}


def bert_config(c: dict[str, Any]) -> BertConfig:
    return BertConfig(
        vocab_size=c["vocab_size"], hidden_size=c["embed_dim"], num_hidden_layers=c["depth"],
        num_attention_heads=c["num_heads"], intermediate_size=c["intermediate_size"],
        max_position_embeddings=c["max_position_embeddings"], type_vocab_size=c["type_vocab_size"],
        layer_norm_eps=c["layer_norm_eps"], pad_token_id=c["pad_token_id"], hidden_act="gelu",
        hidden_dropout_prob=c["hidden_dropout_prob"], attention_probs_dropout_prob=c["attention_probs_dropout_prob"],
    )


class BERT(TeacherModule):
    teacher_name = "bert_base_uncased"
    modality = "text"

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.model = BertModel(bert_config(self.config), add_pooling_layer=False)

    @property
    def num_blocks(self) -> int:
        return len(self.model.encoder.layer)

    def forward(self, input_ids: torch.Tensor, padding_mask: torch.Tensor | None = None) -> TeacherOutput:
        if padding_mask is None:
            padding_mask = input_ids.eq(self.config["pad_token_id"])
        padding_mask = padding_mask.bool()
        out = self.model(input_ids=input_ids, attention_mask=(~padding_mask).long(), output_hidden_states=True,
                         return_dict=True)
        hs = list(out.hidden_states)
        return TeacherOutput(last_hidden_state=out.last_hidden_state, hidden_states=hs[1:], embeddings=hs[0],
                             padding_mask=padding_mask)

    def cropped(self, first_k_blocks: int) -> BERT:
        """Embeddings (word, position, token type, LayerNorm) and layers ``0..k-1``, as the thesis's student."""
        return first_blocks_copy(self, first_k_blocks, "model.encoder.layer.")
