"""Typed configs of the vision-language recipes (S-SMKE family, REFERENCE.md §3.6-§3.11).

Defaults are the thesis's ``full`` settings; each recipe YAML overrides them
per scale. Where the thesis text and its code disagree (REFERENCE.md §10),
the default follows what the reported numbers imply (the code that produced
them) and the other reading is a documented option.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

Size = Literal["tiny", "base"]


@dataclass
class EncoderConfig:
    name: str  # a mmthesis.teachers model name
    checkpoint: str | None = None  # None: random init (smoke scale only)
    blocks: int = 6  # first blocks kept, flattened numbering (§10 item 1 for Data2Vec2)


@dataclass
class ModelConfig:
    size: Size = "base"
    img_size: int = 224
    patch_size: int = 16
    image: EncoderConfig = field(default_factory=lambda: EncoderConfig("data2vec2_image"))
    text: EncoderConfig = field(default_factory=lambda: EncoderConfig("bert_base_uncased"))
    # §3.7: "after" = type embedding added to the encoders' outputs, scaled by a LayerScale (kept variant B)
    token_type_embeddings: Literal["none", "after"] = "after"
    tte_layer_scale_init: float = 1e-5
    shared_layer_scale_init: float = 0.2  # §10 item 9 (code); the thesis text has no LayerScale
    # §10 item 6: the thesis applies ITC to the final shared-block CLS only; the code also to the fc1 CLS
    itc_on_fc1: bool = False
    itc_init_temperature: float = 0.07


@dataclass
class TeacherConfig:
    name: str = "beitv2_base_pt"
    checkpoint: str | None = None  # None: random init (smoke scale only)
    # §10 item 8: the CDL_MB run replaced BEiTv2's final LayerNorm by identity (target = pre-norm CLS)
    final_norm: bool = False


@dataclass
class LossConfig:
    kd: Literal["contrastive", "mse", "none"] = "contrastive"
    memory_bank_size: int = 65536  # 0 = S-SMKE_CDL (no bank)
    # §10 item 7: the KD logit scale is a parameter the code never optimises -> fixed 1/0.07
    kd_logit_scale: float = 1.0 / 0.07
    kd_learnable_scale: bool = False


@dataclass
class DataConfig:
    train: list[str] = field(default_factory=lambda: ["coco", "cc3m", "cc12m"])
    retrieval_eval: list[str] = field(default_factory=lambda: ["coco", "flickr30k"])
    max_text_length: int = 64
    crop_scale: tuple[float, float] = (0.9, 1.0)
    batch_size: int = 256  # per device
    num_workers: int = 4
    tokenizer: str = "bert-base-uncased"  # a vocab.txt path, or "train-wordpiece" (smoke: learnt from the captions)
    tokenizer_vocab_size: int = 30522


@dataclass
class OptimConfig:
    lr: float = 1e-4  # base LR; scaled linearly by the number of devices (§10 item 10)
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    scale_lr_with_devices: bool = True


@dataclass
class TrainConfig:
    epochs: int = 7
    max_steps: int = -1  # > 0 overrides epochs
    seed: int = 42
    precision: str = "16-mixed"  # CPU runs fall back to 32-true
    devices: int = 1
    accelerator: str = "auto"
    log_every_n_steps: int = 10
    checkpoint_every_n_steps: int = 1000
    gradient_checkpointing: bool = False
    compile: bool = False


@dataclass
class VLRecipeConfig:
    recipe: str
    thesis_name: str
    model: ModelConfig = field(default_factory=ModelConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.loss.memory_bank_size and self.loss.kd != "contrastive":
            raise ValueError("a memory bank needs loss.kd=contrastive")
        if not 0.0 <= self.optim.warmup_fraction < 1.0:
            raise ValueError("optim.warmup_fraction must be in [0, 1)")


INIT_LOG_SCALE = math.log(1.0 / 0.07)
