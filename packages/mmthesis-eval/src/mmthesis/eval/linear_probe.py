"""Linear probe: multinomial logistic regression on frozen, cached image features.

Thesis settings (REFERENCE.md §5.3, linear-probe columns): encoder frozen;
input = the image encoder's output tokens without CLS, mean-pooled ->
LayerNorm (eps 1e-6) -> Linear(768, C); 15 epochs, batch 256, AdamW lr 1e-3,
wd 0.01, cosine schedule with 10% warmup, Mixup/CutMix and label smoothing
0.1; top-1 on ImageNet val / CIFAR test.

What applies here: the frozen encoder, the pooled patch-token input
(``features.py``, kind ``patch-mean``) and the LayerNorm + Linear function
class. A LayerNorm's affine part followed by a Linear layer is itself a
linear map, so the head is fitted as a non-affine LayerNorm (eps 1e-6) of the
features followed by logistic regression. What does not apply: features are
extracted once and cached, so there is no per-epoch augmentation
(Mixup/CutMix) and no label smoothing; instead of 15 AdamW epochs the convex
objective is minimised to convergence with full-batch L-BFGS. The objective
is mean cross-entropy + (l2 / 2) * ||W||^2 (bias not penalised), which is
scikit-learn's ``LogisticRegression(C = 1 / (l2 * n))``; the default
l2 = 1e-3 is a smoke-scale choice, not a thesis value (sweep it on a
validation split at larger scales, as CLIP's probes do).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from mmthesis.core.errors import DataMissingError

DEFAULT_L2 = 1e-3
LN_EPS = 1e-6
SINGLE_THREAD_BELOW = 50_000_000  # N * D * C


@dataclass
class LinearProbe:
    weight: torch.Tensor  # (C, D)
    bias: torch.Tensor  # (C,)
    layer_norm: bool
    converged_loss: float

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x = _prepare(x, self.layer_norm).to(self.weight.dtype)
        return x @ self.weight.t() + self.bias

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x).argmax(dim=1)


def _prepare(x: torch.Tensor, layer_norm: bool) -> torch.Tensor:
    x = x.double()
    return F.layer_norm(x, x.shape[-1:], eps=LN_EPS) if layer_norm else x


def fit_linear_probe(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    l2: float = DEFAULT_L2,
    layer_norm: bool = True,
    max_iter: int = 500,
) -> LinearProbe:
    """Minimise mean CE + l2/2 ||W||^2 with full-batch L-BFGS (float64, deterministic)."""
    x = _prepare(features, layer_norm)
    y = labels.long()
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"need features (N, D) and labels (N,), got {tuple(features.shape)} and {tuple(labels.shape)}")
    if x.shape[0] == 0:
        raise ValueError("a linear probe needs at least one training example")
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes})")
    if l2 < 0:
        raise ValueError(f"l2 must be >= 0, got {l2}")
    w = torch.zeros(num_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-10,
        tolerance_change=1e-14,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def objective() -> torch.Tensor:
        return F.cross_entropy(x @ w.t() + b, y) + 0.5 * l2 * (w * w).sum()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    # small problems: intra-op thread sync costs far more than the tiny matmuls (25x on 2 cores)
    threads = torch.get_num_threads()
    if x.numel() * num_classes < SINGLE_THREAD_BELOW:
        torch.set_num_threads(1)
    try:
        with torch.enable_grad():
            opt.step(closure)
        with torch.no_grad():
            final = float(objective())
    finally:
        torch.set_num_threads(threads)
    return LinearProbe(w.detach(), b.detach(), layer_norm, final)


def top1_accuracy(probe: LinearProbe, features: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent."""
    return 100.0 * float((probe.predict(features) == labels.long()).double().mean()) if len(labels) else 0.0


# ------------------------------------------------------------------------------ task on a trained run
@dataclass
class LinearProbeTaskConfig:
    train_run: str
    recipe_run: str
    dataset: str
    train_split: str = "train"
    test_split: str = "test"
    feature: str = "patch-mean"
    l2: float = DEFAULT_L2
    batch_size: int = 256
    dataset_fingerprint: str = ""


def evaluate_linear_probe(
    run: Path,
    dataset: str,
    test_split: str = "test",
    *,
    train_split: str = "train",
    feature: str = "patch-mean",
    l2: float = DEFAULT_L2,
    root: Path | None = None,
):
    """Top-1 of a logistic-regression probe fitted on ``train_split`` features, scored on ``test_split``."""
    from mmthesis.core.console import console
    from mmthesis.core.results import RunRecorder, find_finished_run
    from mmthesis.data.image_text import load_retrieval_split
    from mmthesis.data.registry import check_data
    from mmthesis.data.transforms import eval_transform
    from mmthesis.eval.features import cached_features, extract_image_features, feature_key
    from mmthesis.students.artifact import load_trained_tuple as load_trained

    fingerprint = check_data([dataset])[dataset]
    task = LinearProbeTaskConfig(
        run.name, run.parent.name, dataset, train_split, test_split, feature, l2, dataset_fingerprint=fingerprint
    )
    name = f"eval-linear-probe-{dataset}"
    if (done := find_finished_run(name, task, root)) is not None:
        return done
    config, tokenizer, model = load_trained(run)
    transform = eval_transform(config.model.img_size)

    def split_features(split: str) -> dict[str, torch.Tensor]:
        def compute() -> dict[str, torch.Tensor]:
            data = load_retrieval_split(dataset, split, transform, tokenizer, max_length=config.data.max_text_length)
            if data.labels is None:
                raise DataMissingError(
                    f"dataset {dataset!r} split {split!r} has no class labels",
                    "a linear probe needs a labelled dataset such as shapes or emoji",
                )
            return {
                "features": extract_image_features(model, data.images, feature, task.batch_size),
                "labels": data.labels,
            }

        key = feature_key(f"{run.parent.name}/{run.name}", fingerprint, split, repr(transform), feature)
        return cached_features(key, compute)

    train, test = split_features(train_split), split_features(test_split)
    with RunRecorder(
        name, scale=run.parent.name.rsplit("-", 1)[-1], config=task, root=root, datasets={dataset: fingerprint}
    ) as rec:
        num_classes = int(max(train["labels"].max(), test["labels"].max())) + 1
        console.print(
            f"linear probe on {dataset}: {len(train['labels'])} train / {len(test['labels'])} test images, {num_classes} classes"
        )
        probe = fit_linear_probe(train["features"], train["labels"], num_classes, l2)
        rec.result.metrics = {
            "top1": top1_accuracy(probe, test["features"], test["labels"]),
            "train_top1": top1_accuracy(probe, train["features"], train["labels"]),
            "train_loss": probe.converged_loss,
            "train_images": len(train["labels"]),
            "test_images": len(test["labels"]),
            "classes": num_classes,
            "majority_top1": 100.0
            * float(torch.bincount(test["labels"], minlength=num_classes).max())
            / max(len(test["labels"]), 1),
        }
    return rec.result
