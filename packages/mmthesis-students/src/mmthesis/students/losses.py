"""Loss functions of the thesis, as pure functions (REFERENCE.md §3.1-§3.10).

Notation: B = batch, D = embedding width, ``delta`` = L2 normalisation,
CE(row, i) = -row_i + log sum_j exp(row_j). Nothing here holds state: memory
banks, temperatures and projections are passed in by the caller.
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
    label_offset: int = 0,
) -> torch.Tensor:
    """One direction of contrastive distillation (CDL), REFERENCE.md §3.10.

    L = (1/B) sum_i -log softmax_row(scale * delta(S) delta([T; V])^T)_{i,i+o}:
    each of the B student vectors S must find its own teacher target among the
    targets T (K x D: the local batch, or the targets gathered over ranks, in
    which the local ones start at row o = ``label_offset`` = rank * B) and the
    memory-bank entries V (G x D, may be None). Only the row direction (student
    queries against teacher keys) is used.
    """
    keys = F.normalize(teacher, dim=-1)
    if bank is not None and bank.numel():
        keys = torch.cat([keys, F.normalize(bank, dim=-1).to(keys.dtype)], dim=0)
    logits = scale * F.normalize(student, dim=-1) @ keys.t()
    targets = torch.arange(student.shape[0], device=student.device) + label_offset
    return F.cross_entropy(logits, targets)


def mse_distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """S-SMKE's feature KD (§3.6): ||h^s - h^t||^2 averaged over the D dims and the batch (F.mse_loss)."""
    return F.mse_loss(student, teacher)


def kl_distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """SHRe's KD (§3.3): KL(pi(p) || pi(h)), softmax without temperature, batch mean."""
    return F.kl_div(
        F.log_softmax(student_logits, dim=-1),
        F.log_softmax(teacher_logits, dim=-1),
        log_target=True,
        reduction="batchmean",
    )


def clip_contrastive_loss_with_bank(
    image: torch.Tensor,
    text: torch.Tensor,
    log_scale: torch.Tensor,
    image_keys: torch.Tensor | None = None,
    text_keys: torch.Tensor | None = None,
    image_bank: torch.Tensor | None = None,
    text_bank: torch.Tensor | None = None,
) -> torch.Tensor:
    """ITC with extra negatives from memory banks (REFERENCE.md §3.8), L = 1/2 L^i2t + 1/2 L^t2i.

    L^i2t = (1/B) sum_i CE(s * delta(image_i) [delta(text_keys); delta(text_bank)]^T, i),
    L^t2i likewise with the roles swapped: each query sees its B in-batch keys
    plus the U bank entries (B + U - 1 negatives). ``*_keys`` default to the
    queries' partner batch (plain FIFO bank, Table 21); a momentum encoder passes
    its own embeddings as keys (MoCo/ALBEF, Table 22). Without banks and keys
    this is ``clip_contrastive_loss``.
    """
    scale = log_scale.clamp(0.0, MAX_LOGIT_SCALE).exp()
    img_q, txt_q = F.normalize(image, dim=-1), F.normalize(text, dim=-1)
    img_k = F.normalize(image if image_keys is None else image_keys, dim=-1)
    txt_k = F.normalize(text if text_keys is None else text_keys, dim=-1)
    if text_bank is not None and text_bank.numel():
        txt_k = torch.cat([txt_k, F.normalize(text_bank, dim=-1).to(txt_k.dtype)], dim=0)
    if image_bank is not None and image_bank.numel():
        img_k = torch.cat([img_k, F.normalize(image_bank, dim=-1).to(img_k.dtype)], dim=0)
    targets = torch.arange(image.shape[0], device=image.device)
    i2t = F.cross_entropy(scale * img_q @ txt_k.t(), targets)
    t2i = F.cross_entropy(scale * txt_q @ img_k.t(), targets)
    return 0.5 * (i2t + t2i)


def masked_regression_loss(
    prediction: torch.Tensor, target: torch.Tensor, padding_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Data2Vec-style regression of contextualised targets (REFERENCE.md §3.1, §3.2).

    L = 1/(|T| D) sum_{t in T} ||y_hat_t - y_t||^2 over the (B, N, D) token
    sequences, T = every token (images: 196 patches + CLS) or, with
    ``padding_mask`` (True = padding), the non-padding tokens only (text: CLS
    and SEP included).
    """
    err = (prediction.float() - target.float()).pow(2).mean(dim=-1)  # (B, N)
    if padding_mask is None:
        return err.mean()
    keep = ~padding_mask
    return err[keep].sum() / keep.sum().clamp_min(1)


def tcmli_distillation_loss(
    student_patches: torch.Tensor,
    teacher_patches: torch.Tensor,
    student_text_proj: torch.Tensor,
    teacher_patches_proj: torch.Tensor,
    text_valid: torch.Tensor,
) -> torch.Tensor:
    """T-CMLI, 1/2 (L^i2i + L^t2i) of ``tcmli_distillation_parts``."""
    i2i, t2i = tcmli_distillation_parts(
        student_patches, teacher_patches, student_text_proj, teacher_patches_proj, text_valid
    )
    return 0.5 * (i2i + t2i)


def tcmli_distillation_parts(
    student_patches: torch.Tensor,
    teacher_patches: torch.Tensor,
    student_text_proj: torch.Tensor,
    teacher_patches_proj: torch.Tensor,
    text_valid: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The image and text halves (L^i2i, L^t2i) of Target Cross-Modal Late Interaction KD (T-CMLI, REFERENCE.md §3.9).

    L^i2i: the student's image tokens regress the teacher's patches position by
    position, mean over patches and dims of ||h^s_n - h^t_n||^2 ((B, N, D) each).
    L^t2i: each valid text token z (``text_valid`` (B, Z) True; CLS, SEP and
    padding excluded as in FILIP) is matched to the teacher patch
    m_z = argmax_n cos(g(h^s_z), g(h^t_n)) of its *paired* image, then
    ||g(h^s_z) - g(h^t_{m_z})||^2 is averaged over tokens and the d dims of g
    (``student_text_proj`` (B, Z, d), ``teacher_patches_proj`` (B, N, d) are the
    projections by the shared linear g). The thesis writes sums; means only
    rescale the loss and keep it comparable across sequence lengths.
    """
    i2i = F.mse_loss(student_patches.float(), teacher_patches.float())
    s, t = student_text_proj.float(), teacher_patches_proj.float()
    with torch.no_grad():
        sim = F.normalize(s, dim=-1) @ F.normalize(t, dim=-1).transpose(1, 2)  # (B, Z, N)
        match = sim.argmax(dim=-1)  # (B, Z)
    matched = torch.gather(t, 1, match[..., None].expand(-1, -1, t.shape[-1]))  # (B, Z, d)
    err = (s - matched).pow(2).mean(dim=-1)
    t2i = err[text_valid].sum() / text_valid.sum().clamp_min(1)
    return i2i, t2i
