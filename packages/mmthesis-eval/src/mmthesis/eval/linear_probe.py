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
objective is minimised with full-batch L-BFGS until the largest gradient
entry is below ``tol`` (float64); the iterations taken and whether that
tolerance was reached (not the ``max_iter`` safety cap) are part of the
result, so a probe stopped short of its optimum is visible. The objective
is mean cross-entropy + (l2 / 2) * ||W||^2 (bias not penalised), which is
scikit-learn's ``LogisticRegression(C = 1 / (l2 * n))``; the default
l2 = 1e-3 is a smoke-scale choice, not a thesis value (sweep it on a
validation split at larger scales, as CLIP's probes do).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mmthesis.eval.retrieval import _rank
from mmthesis.eval.threads import single_thread_if_small

DEFAULT_L2 = 1e-3
DEFAULT_TOL = 1e-6  # max |gradient| of the mean objective at which the probe counts as converged
MAX_ITER = 10_000  # safety cap only
LN_EPS = 1e-6
SINGLE_THREAD_BELOW = 50_000_000  # N * D * C


@dataclass
class LinearProbe:
    weight: torch.Tensor  # (C, D)
    bias: torch.Tensor  # (C,)
    layer_norm: bool
    converged_loss: float  # the objective at the returned weights
    iterations: int = 0  # L-BFGS iterations taken
    converged: bool = False  # max |gradient| <= tol at the returned weights
    grad_max: float = float("nan")  # max |gradient| there

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
    tol: float = DEFAULT_TOL,
    max_iter: int = MAX_ITER,
) -> LinearProbe:
    """Minimise mean CE + l2/2 ||W||^2 with full-batch L-BFGS (float64, deterministic) until max |grad| <= ``tol``.

    ``max_iter`` is a safety cap, not the stopping rule: a probe that hits it is returned with
    ``converged=False``. L-BFGS also stops when a step no longer changes the weights or the objective
    (float64 round-off); the gradient check then reports whether ``tol`` was reached.
    """
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
    if tol <= 0 or max_iter < 1:
        raise ValueError(f"tol must be > 0 and max_iter >= 1, got {tol} and {max_iter}")
    w = torch.zeros(num_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b],
        lr=1.0,
        max_iter=max_iter,
        max_eval=4 * max_iter,  # the line search's evaluations must not be the hidden cap
        tolerance_grad=tol,
        tolerance_change=1e-15,
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
    with single_thread_if_small(x.numel() * num_classes, SINGLE_THREAD_BELOW):
        with torch.enable_grad():
            opt.step(closure)
            final = closure()
        grad_max = float(torch.cat([w.grad.abs().flatten(), b.grad.abs()]).max())
    iterations = int(opt.state[w].get("n_iter", 0))
    return LinearProbe(w.detach(), b.detach(), layer_norm, float(final.detach()), iterations, grad_max <= tol, grad_max)


def top1_accuracy(probe: LinearProbe, features: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent."""
    return 100.0 * float((probe.predict(features) == labels.long()).double().mean()) if len(labels) else 0.0


def topk_accuracy(probe: LinearProbe, features: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Top-k accuracy in percent; ties rank the lower class index first (as zero-shot and retrieval)."""
    if not len(labels):
        return 0.0
    rank = _rank(probe.logits(features), labels.long())
    return 100.0 * float((rank < k).double().mean())
