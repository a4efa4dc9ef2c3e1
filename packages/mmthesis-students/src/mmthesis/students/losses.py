"""Loss functions of the thesis, as pure functions (REFERENCE.md §3.3-§3.10).

Notation: B = batch, D = embedding width, ``delta`` = L2 normalisation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MAX_LOGIT_SCALE = math.log(100.0)  # the thesis code clamps log-scale to [0, ln 100]


def clip_contrastive_loss(image: torch.Tensor, text: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """CLIP image-text contrastive loss (ITC), L_CL = 1/2 L^i2t + 1/2 L^t2i.

    S = exp(s) * delta(image) delta(text)^T (B x B); L^i2t = CE over rows with
    targets i, L^t2i = CE over columns. ``log_scale`` s is clamped to
    [0, ln 100] as in the thesis code (temperature init 0.07 -> s = ln(1/0.07)).
    """
    scale = log_scale.clamp(0.0, MAX_LOGIT_SCALE).exp()
    logits = scale * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).t()
    targets = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets))


def contrastive_distillation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    scale: torch.Tensor | float,
    bank: torch.Tensor | None = None,
) -> torch.Tensor:
    """One direction of contrastive distillation (CDL), REFERENCE.md §3.10.

    L = (1/B) sum_i -log softmax_row(scale * delta(S) delta([T; V])^T)_{i,i}:
    each student vector must find its own teacher target among the batch's
    targets T (B x D) and the memory-bank entries V (G x D, may be None).
    Only the row direction (student queries against teacher keys) is used.
    """
    keys = F.normalize(teacher, dim=-1)
    if bank is not None and bank.numel():
        keys = torch.cat([keys, F.normalize(bank, dim=-1).to(keys.dtype)], dim=0)
    logits = scale * F.normalize(student, dim=-1) @ keys.t()
    targets = torch.arange(student.shape[0], device=student.device)
    return F.cross_entropy(logits, targets)


def mse_distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """S-SMKE's feature KD (§3.6): ||h^s - h^t||^2 averaged over the D dims and the batch (F.mse_loss)."""
    return F.mse_loss(student, teacher)


def kl_distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """SHRe's KD (§3.3): KL(pi(p) || pi(h)), softmax without temperature, batch mean."""
    return F.kl_div(
        F.log_softmax(student_logits, dim=-1), F.log_softmax(teacher_logits, dim=-1), log_target=True, reduction="batchmean"
    )
