"""An informative stand-in teacher at smoke scale: fit the tiny random teacher on the training images' labels.

Why: at smoke scale the teacher is a tiny randomly initialised model of the real
architecture, and a random BEiTv2's CLS barely varies across images (its
LayerScale 0.1 branches leave the CLS close to the CLS token; mean cosine about
0.9998 on ``shapes``), so distillation would have nothing to teach. The thesis's
teachers are *pretrained* on ImageNet before distillation; ``teacher.prefit_steps``
stands in for that pretraining with a few hundred steps of supervised
classification of the smoke data's image labels (a linear probe head on the
teacher's final CLS, discarded afterwards). The teacher is then frozen again and
distilled exactly as a real one. Smoke scale only: real runs load real checkpoints.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmthesis.core.console import console
from mmthesis.core.errors import ConfigError
from mmthesis.data.image_text import ImageTextPairs
from mmthesis.data.transforms import eval_transform
from mmthesis.teachers import TeacherModule


def prefit_teacher(
    teacher: TeacherModule,
    datasets: list[ImageTextPairs],
    steps: int,
    img_size: int,
    *,
    batch_size: int = 32,
    max_images: int = 1024,
    lr: float = 1e-3,
    seed: int = 0,
) -> list[float]:
    """Train ``teacher`` (+ a throw-away linear head on its CLS) to classify the images; returns the loss per step.

    Up to ``max_images`` images (a seeded choice) are resized once; batches add random
    horizontal flips. Runs under a forked RNG, so the training run's random stream is untouched.
    """
    sources, labels = [], []  # (dataset, image row) and class of every image, classes offset per dataset
    offset = 0
    for ds in datasets:
        ds_labels = ds.image_labels
        if any(label is None for label in ds_labels):
            raise ConfigError(
                f"teacher.prefit_steps needs image labels, and {ds.name!r} has none",
                "set teacher.prefit_steps=0 or train on a labelled smoke set (shapes, emoji)",
            )
        sources += [(ds, row) for row in range(ds.num_images)]
        labels += [label + offset for label in ds_labels]
        offset += max(ds_labels) + 1
    g = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(sources), generator=g)[:max_images].tolist()
    transform = eval_transform(img_size)
    x_all = torch.stack([transform(sources[i][0].read_image(sources[i][1])[1]) for i in chosen])
    y_all = torch.tensor([labels[i] for i in chosen])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # a supervised teacher with enough classes (BEiTv2 FT) fits its own classifier, as its ImageNet
        # finetuning did; any other teacher gets a throw-away linear head on its CLS
        own_head = int(teacher.config.get("num_classes") or 0) >= offset
        head = nn.Identity() if own_head else nn.Linear(teacher.embed_dim, offset)
        teacher.unfreeze().train()
        opt = torch.optim.AdamW([*teacher.parameters(), *head.parameters()], lr=lr, weight_decay=0.01)
        history = []
        for _ in range(steps):
            idx = torch.randint(len(chosen), (batch_size,), generator=g)
            x = x_all[idx]
            flip = torch.rand(batch_size, generator=g) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            out = teacher(x)
            loss = F.cross_entropy(out.logits if own_head else head(out.cls), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            history.append(loss.item())
    teacher.freeze()
    n = max(1, steps // 10)
    console.print(
        f"smoke teacher pre-fitted on {offset} image classes for {steps} steps: "
        f"loss {sum(history[:n]) / n:.3f} -> {sum(history[-n:]) / n:.3f}"
    )
    return history
