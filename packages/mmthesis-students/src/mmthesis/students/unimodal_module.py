"""Unimodal distillation (REFERENCE.md §3.1 DistilData2Vec2, §3.2 F-DistilBERT).

The student is the teacher cut to its first blocks (``crop``: everything in front
of the blocks copied), the teacher stays whole, frozen and in eval mode. Both
sides turn their per-layer outputs into data2vec-style "contextualised"
representations (``mmthesis.teachers.data2vec_target``): each layer instance-
normalised over the tokens, the layers averaged, and for images a parameter-free
LayerNorm on top; the loss is the MSE between the two (over all tokens for
images, over the non-padding tokens for text).

Which layers (§10 items 1 and 4): the image teacher averages Data2Vec2's
``layer_results`` of its main blocks (prenet excluded, as the code); the student
averages its last ``loss.student_kd_layers`` blocks (0 = all of them: the thesis
formula's L_s = 6 for a 6-block student). The text sides average BERT's
``hidden_states`` with the embedding output (code, default) or without it
(``loss.text_kd_include_embeddings=false``, the thesis formula).
"""

from __future__ import annotations

import torch

from mmthesis.core.errors import ConfigError
from mmthesis.data.batch import Batch
from mmthesis.students.config import VLRecipeConfig
from mmthesis.students.lightning_module import TrainingModule, build_teacher
from mmthesis.students.losses import masked_regression_loss
from mmthesis.teachers import TeacherOutput, crop, data2vec_target, image_kd_layers, text_kd_layers

IMAGE_TEACHERS = ("data2vec2_image",)
TEXT_TEACHERS = ("bert_base_uncased",)


class UnimodalDistillationModule(TrainingModule):
    def __init__(self, config: VLRecipeConfig, vocab_size: int | None = None) -> None:
        super().__init__()
        self.config = config
        image = config.task == "image_kd"
        allowed = IMAGE_TEACHERS if image else TEXT_TEACHERS
        if config.teacher.name not in allowed:
            raise ConfigError(
                f"task {config.task} distils {' or '.join(allowed)}, not {config.teacher.name!r}",
                f"set teacher.name={allowed[0]}",
            )
        extra = {}
        if not image and vocab_size is not None and config.teacher.checkpoint is None:
            extra["vocab_size"] = vocab_size  # a random text teacher gets the tokenizer's vocabulary
        self.teacher = build_teacher(config, **extra)
        if not image and vocab_size is not None and vocab_size > self.teacher.config["vocab_size"]:
            raise ConfigError(
                f"the tokenizer has {vocab_size} ids but the teacher's vocabulary {self.teacher.config['vocab_size']}",
                "use the teacher's own vocab.txt as data.tokenizer",
            )
        blocks = (config.model.image if image else config.model.text).blocks
        self.student = crop(self.teacher, blocks)  # a trainable copy of the teacher's first blocks

    # -- targets --------------------------------------------------------------------------------
    def _student_layers(self, out: TeacherOutput) -> list[torch.Tensor]:
        layers = list(out.layer_results) if self.config.task == "image_kd" else self._text_layers(out)
        k = self.config.loss.student_kd_layers
        return layers[-k:] if k else layers

    def _text_layers(self, out: TeacherOutput) -> list[torch.Tensor]:
        return text_kd_layers(out, include_embeddings=self.config.loss.text_kd_include_embeddings)

    @torch.no_grad()
    def teacher_target(self, batch: Batch) -> torch.Tensor:
        if self.config.task == "image_kd":
            out = self.teacher(batch.image)
            return data2vec_target(image_kd_layers(self.teacher, out), final_layer_norm=True)
        out = self.teacher(batch.text_ids, batch.text_padding_mask)
        return data2vec_target(self._text_layers(out), final_layer_norm=False)

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        target = self.teacher_target(batch)
        if self.config.task == "image_kd":
            out = self.student(batch.image)
            pred = data2vec_target(self._student_layers(out), final_layer_norm=True)
            kd = masked_regression_loss(pred, target)
        else:
            out = self.student(batch.text_ids, batch.text_padding_mask)
            pred = data2vec_target(self._student_layers(out), final_layer_norm=False)
            kd = masked_regression_loss(pred, target, batch.text_padding_mask)
        return {"kd": kd, "loss": kd}

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        out = self.losses(batch)
        self.check_finite(out["loss"])
        bs = len(batch)
        self.log("train/loss", out["loss"], prog_bar=True, batch_size=bs)
        self.log("train/kd", out["kd"], prog_bar=True, batch_size=bs)
        return out["loss"]
