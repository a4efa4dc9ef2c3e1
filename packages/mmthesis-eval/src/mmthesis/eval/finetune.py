"""Full finetuning of an image encoder for classification (REFERENCE.md §5.3, Table 32).

Model: the encoder's output tokens -> pooling (``mean`` of the patch tokens
without CLS, the thesis's choice, or ``cls``) -> LayerNorm (eps 1e-6) ->
Linear (trunc-normal std 0.02, zero bias). Every weight is trained with
layer-wise learning-rate decay as in BEiT: with L blocks, the embeddings are
layer 0, block i is layer i + 1, and the new norm + head are layer L + 1;
layer l gets ``lr * layer_decay ** (L + 1 - l)``. As in BEiT, biases, norms
and the CLS token get no weight decay. AdamW, linear warmup then cosine
(``students.schedules.cosine_with_warmup``), timm's RandAugment +
RandomErasing train transform and Mixup/CutMix with label smoothing;
evaluation resizes the shorter side and centre-crops (crop_pct 1.0).

Images are read from the shards per access and decoded in ``ctx.num_workers``
DataLoader workers (``mmthesis eval --workers``), so full ImageNet-1k fits.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from mmthesis.eval.adapters import eval_mode
from mmthesis.eval.context import EvalContext
from mmthesis.eval.data_access import TransformedImages
from mmthesis.eval.protocols import TaskOutput, params_of, register
from mmthesis.eval.task_registry import ResolvedTask
from mmthesis.eval.threads import single_thread_if_small
from mmthesis.students.schedules import cosine_with_warmup
from mmthesis.teachers.base import TeacherModule

_BLOCK = re.compile(r"(?:^|\.)(?:blocks|layer)\.(\d+)\.")
_NO_DECAY_NAMES = ("cls_token", "pos_embed", "position_embeddings", "token_type_embeddings")


@dataclass
class FinetuneParams:
    epochs: int = 15
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 256
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.01
    layer_decay: float = 0.81
    warmup_fraction: float = 0.1
    pooling: str = "mean"
    label_smoothing: float = 0.1
    mixup_alpha: float = 0.8
    cutmix_alpha: float = 1.0
    mixup_prob: float = 0.9
    mixup_switch_prob: float = 0.5
    auto_augment: str = "rand-m9-mstd0.5-inc1"  # "" = none
    re_prob: float = 0.25
    seed: int = 0

    def __post_init__(self) -> None:
        if self.pooling not in ("mean", "cls"):
            raise ValueError("pooling must be mean or cls")
        if not 0 < self.layer_decay <= 1:
            raise ValueError("layer_decay must lie in (0, 1]")


class ImageClassifier(nn.Module):
    """Encoder tokens -> pooled -> LayerNorm -> Linear (REFERENCE.md §5.3, Code 1)."""

    def __init__(self, backbone: nn.Module, num_classes: int, pooling: str = "mean") -> None:
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        dim = int(backbone.embed_dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.backbone(images).last_hidden_state
        pooled = tokens[:, 1:].mean(dim=1) if self.pooling == "mean" else tokens[:, 0]
        return self.head(self.norm(pooled))


def layer_id(name: str, num_blocks: int) -> int:
    """BEiT layer index of a parameter of ``ImageClassifier``-like models (0 = embeddings, L + 1 = head)."""
    if not name.startswith("backbone."):
        return num_blocks + 1
    match = _BLOCK.search(name)
    return int(match.group(1)) + 1 if match else 0


def layer_learning_rates(lr: float, layer_decay: float, num_blocks: int) -> list[float]:
    """Learning rate of each layer 0..num_blocks + 1: ``lr * layer_decay ** (num_blocks + 1 - layer)``.

    The one formula of layer-wise decay (REFERENCE.md Table 5: lr 1e-3, decay 0.81, 6 blocks -> layers 0..7);
    ``layer_decay_param_groups`` takes its rates from here, so Table 5 shows what finetuning uses.
    """
    if num_blocks < 0:
        raise ValueError(f"num_blocks must be >= 0, got {num_blocks}")
    return [lr * layer_decay ** (num_blocks + 1 - layer) for layer in range(num_blocks + 2)]


def layer_decay_param_groups(
    model: nn.Module, num_blocks: int, lr: float, weight_decay: float, layer_decay: float
) -> list[dict]:
    """AdamW parameter groups with the rates of ``layer_learning_rates`` and BEiT's no-decay set."""
    rates = layer_learning_rates(lr, layer_decay, num_blocks)
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        layer = layer_id(name, num_blocks)
        no_decay = param.ndim <= 1 or any(n in name for n in _NO_DECAY_NAMES)
        key = (layer, no_decay)
        if key not in groups:
            groups[key] = {
                "params": [],
                "names": [],
                "layer": layer,
                "lr": rates[layer],
                "weight_decay": 0.0 if no_decay else weight_decay,
            }
        groups[key]["params"].append(param)
        groups[key]["names"].append(name)
    return [groups[k] for k in sorted(groups)]


def _num_blocks(backbone: nn.Module) -> int:
    return int(getattr(backbone, "num_blocks", None) or len(backbone.blocks))


def _transform_common(size: int) -> dict:
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    return {"input_size": size, "interpolation": "bicubic", "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD}


def train_transform(p: FinetuneParams, size: int):
    """timm's train transform: RandomResizedCrop + flip, RandAugment ``p.auto_augment``, RandomErasing (pixel, 1)."""
    from timm.data import create_transform

    return create_transform(
        is_training=True,
        auto_augment=p.auto_augment or None,
        re_prob=p.re_prob,
        re_mode="pixel",
        re_count=1,
        **_transform_common(size),
    )


def num_classes(train, test) -> int:
    """Classes of the head: the train split's label names, or more if a label of either split lies beyond them."""
    return max(len(train.label_names), int(train.labels.max()) + 1, int(test.labels.max()) + 1)


def schedule_steps(p: FinetuneParams, train_images: int) -> tuple[int, int]:
    """(total, warmup) optimiser steps: ``epochs`` x the loader's batches (last partial batch dropped when there is
    at least one full batch), or ``max_steps``; warmup = ``warmup_fraction`` of the total."""
    b = p.batch_size
    per_epoch = train_images // b if train_images >= b else -(-train_images // b)
    total = p.max_steps if p.max_steps > 0 else p.epochs * per_epoch
    return total, int(p.warmup_fraction * total)


def optimizer_and_schedule(
    groups: list[dict], p: FinetuneParams, total: int, warmup: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the (layer-decayed) parameter groups, linear warmup then cosine decay to 0 at ``total``."""
    opt = torch.optim.AdamW(groups, betas=tuple(p.betas), eps=p.eps, fused=True)  # fused: faster on CPU, same updates
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_with_warmup(s, warmup, total))


def _train(model, loader, opt, sched, mixup, soft_ce, total: int, label_smoothing: float) -> tuple[list[float], int]:
    """``total`` optimiser steps over the loader (epochs as needed); the loss of each step."""
    losses: list[float] = []
    model.train()
    step = 0
    while step < total:
        for x, y in loader:
            if step >= total:
                break
            if mixup is not None and len(x) % 2 == 0:
                x, target = mixup(x, y)
                loss = soft_ce(model(x), target)
            else:
                loss = F.cross_entropy(model(x), y, label_smoothing=label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            step += 1
    return losses, step


@register("finetune", needs=("image_backbone",))
def run_finetune(ctx: EvalContext, task: ResolvedTask) -> TaskOutput:
    from timm.data import Mixup, create_transform
    from timm.loss import SoftTargetCrossEntropy

    p = params_of(FinetuneParams, task)
    ctx.loaded.require("image_backbone")
    train, test = (
        ctx.labelled_images(task.dataset, task.train_split or "train"),
        ctx.labelled_images(task.dataset, task.split),
    )
    classes = num_classes(train, test)
    size = int(ctx.loaded.image_transform(train.pil(0)).shape[-1])
    train_tf = train_transform(p, size)
    test_tf = create_transform(is_training=False, crop_pct=1.0, **_transform_common(size))

    torch.manual_seed(p.seed)
    backbone = copy.deepcopy(ctx.loaded.image_backbone)
    if isinstance(backbone, TeacherModule):
        backbone.unfreeze()  # a teacher copy is finetuned, not distilled from
    backbone.requires_grad_(True)
    model = ImageClassifier(backbone, classes, p.pooling)
    groups = layer_decay_param_groups(model, _num_blocks(backbone), p.lr, p.weight_decay, p.layer_decay)
    loader = torch.utils.data.DataLoader(
        TransformedImages(train, train_tf),
        batch_size=p.batch_size,
        shuffle=True,
        drop_last=len(train) >= p.batch_size,
        generator=torch.Generator().manual_seed(p.seed),
        num_workers=ctx.num_workers,
        persistent_workers=ctx.num_workers > 0,
    )
    total, warmup = schedule_steps(p, len(train))
    opt, sched = optimizer_and_schedule([{k: v for k, v in g.items() if k != "names"} for g in groups], p, total, warmup)
    use_mixup = p.mixup_prob > 0 and (p.mixup_alpha > 0 or p.cutmix_alpha > 0)
    mixup = (
        Mixup(
            mixup_alpha=p.mixup_alpha,
            cutmix_alpha=p.cutmix_alpha,
            prob=p.mixup_prob,
            switch_prob=p.mixup_switch_prob,
            mode="batch",
            label_smoothing=p.label_smoothing,
            num_classes=classes,
        )
        if use_mixup
        else None
    )
    soft_ce = SoftTargetCrossEntropy()
    with torch.no_grad(), eval_mode(backbone):  # one step's work decides the thread count (threads.py)
        probe = test_tf(train.pil(0)).unsqueeze(0)
        work = p.batch_size * backbone(probe).last_hidden_state.shape[1] * int(backbone.embed_dim) ** 2
    with single_thread_if_small(work):
        losses, step = _train(model, loader, opt, sched, mixup, soft_ce, total, p.label_smoothing)
        model.eval()
        logits = ctx.embed_images(
            model, TransformedImages(test, test_tf), what=f"finetuned {task.dataset}/{task.split}"
        )
    preds = logits.argmax(1)
    k = max(1, math.ceil(len(losses) / 10))
    metrics = {
        "top1": 100.0 * float((preds == test.labels).double().mean()),
        "chance_top1": 100.0 / classes,
        "train_loss_first": sum(losses[:k]) / k,
        "train_loss_last": sum(losses[-k:]) / k,
        "steps": step,
        "train_images": len(train),
        "test_images": len(test),
        "classes": classes,
        "param_groups": len(groups),
    }
    rows = [
        {"id": i, "label": int(y), "prediction": int(q)}
        for i, y, q in zip(test.ids, test.labels.tolist(), preds.tolist(), strict=True)
    ]
    return TaskOutput(metrics, rows)
