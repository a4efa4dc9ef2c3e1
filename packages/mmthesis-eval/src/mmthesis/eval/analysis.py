"""Do the representations of an image and its caption coincide? (the exposé's question, REFERENCE.md §8)

The thesis dropped this study (§5.5 lists only indirect evidence); these are
the quantitative measures it lacked, all on normalised embeddings:

- paired vs unpaired cosine: mean cosine of each caption with its own image,
  and with all other images. Contrastive training separates the two, but a
  high paired cosine (not just a positive margin) is what "coincide" means.
- modality gap (Liang et al., 2022): ||mean(image) - mean(text)|| of the
  normalised embeddings; 0 when both modalities share one region of the sphere.
- linear CKA (Kornblith et al., 2019) between the image and text embeddings of
  pairs: similarity of the two representations' geometry, invariant to
  rotations and isotropic scaling, so it is high even when a rotation separates
  the modalities.
- swapped-query retrieval: retrieval with a caption playing the image's role.
  For each image with >= 2 captions its first caption is the anchor; the
  gallery is the other captions. ``retrieval_recall`` is computed once with the
  image as the query/candidate and once with the anchor caption in the image's
  place. If image and caption embeddings coincide the two results agree; the
  difference measures how much a modality switch costs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmthesis.eval.retrieval import KS, retrieval_recall


def _check_pairs(image_emb: torch.Tensor, text_emb: torch.Tensor, caption_image_index: torch.Tensor) -> torch.Tensor:
    index = caption_image_index.long()
    if image_emb.ndim != 2 or text_emb.ndim != 2 or image_emb.shape[1] != text_emb.shape[1]:
        raise ValueError(
            f"need (N, D) image and (M, D) text embeddings, got {tuple(image_emb.shape)} and {tuple(text_emb.shape)}"
        )
    if index.shape != (text_emb.shape[0],) or (len(index) and (index.min() < 0 or index.max() >= image_emb.shape[0])):
        raise ValueError("caption_image_index must give each caption's image row")
    return index


@torch.no_grad()
def paired_cosine(
    image_emb: torch.Tensor, text_emb: torch.Tensor, caption_image_index: torch.Tensor
) -> dict[str, float]:
    """Mean cosine of (caption, own image) pairs and of (caption, other image) pairs.

    The unpaired mean uses sums, sum_{i,c} <x_i, t_c> = <sum x, sum t>, so no N x M matrix is built.
    """
    index = _check_pairs(image_emb, text_emb, caption_image_index)
    x, t = F.normalize(image_emb.double(), dim=-1), F.normalize(text_emb.double(), dim=-1)
    n, m = x.shape[0], t.shape[0]
    paired_sum = float((x[index] * t).sum())
    total = float(x.sum(0) @ t.sum(0))
    unpaired_count = n * m - m
    out = {
        "paired_cos": paired_sum / m,
        "unpaired_cos": (total - paired_sum) / unpaired_count if unpaired_count else float("nan"),
    }
    out["paired_minus_unpaired"] = out["paired_cos"] - out["unpaired_cos"]
    return out


@torch.no_grad()
def modality_gap(image_emb: torch.Tensor, text_emb: torch.Tensor) -> float:
    """||mean(normalised image) - mean(normalised text)||_2."""
    return float(
        torch.linalg.vector_norm(
            F.normalize(image_emb.double(), dim=-1).mean(0) - F.normalize(text_emb.double(), dim=-1).mean(0)
        )
    )


@torch.no_grad()
def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of paired rows (n, p) and (n, q): ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F), columns centred."""
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA needs two (n, .) matrices with the same rows, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[0] < 2:
        raise ValueError("CKA needs at least 2 examples")
    xc, yc = x.double() - x.double().mean(0), y.double() - y.double().mean(0)
    num = torch.linalg.matrix_norm(yc.t() @ xc) ** 2
    den = torch.linalg.matrix_norm(xc.t() @ xc) * torch.linalg.matrix_norm(yc.t() @ yc)
    if den == 0:
        raise ValueError("CKA is undefined for a constant representation")
    return float(num / den)


@torch.no_grad()
def swapped_query_retrieval(
    image_emb: torch.Tensor, text_emb: torch.Tensor, caption_image_index: torch.Tensor, ks: tuple[int, ...] = KS
) -> dict[str, float]:
    """Retrieval R@K with the image (``image_*``) and with its anchor caption in the image's role (``swapped_*``).

    Uses the images with >= 2 captions; their first caption is the anchor, the rest is the gallery.
    """
    index = _check_pairs(image_emb, text_emb, caption_image_index)
    counts = torch.bincount(index, minlength=image_emb.shape[0])
    kept = (counts >= 2).nonzero().flatten()
    if len(kept) < 2:
        raise ValueError("swapped-query retrieval needs at least 2 images with 2 or more captions")
    caption = torch.arange(len(index))
    first = torch.full((image_emb.shape[0],), len(index), dtype=torch.long).scatter_reduce(0, index, caption, "amin")
    row_of = torch.full((image_emb.shape[0],), -1, dtype=torch.long)
    row_of[kept] = torch.arange(len(kept))
    gallery = ((row_of[index] >= 0) & (caption != first[index])).nonzero().flatten()
    gallery_index = row_of[index[gallery]]
    cross = retrieval_recall(image_emb[kept], text_emb[gallery], gallery_index, ks)
    swapped = retrieval_recall(text_emb[first[kept]], text_emb[gallery], gallery_index, ks)
    out = {f"image_{k}": v for k, v in cross.items()} | {f"swapped_{k}": v for k, v in swapped.items()}
    out["swapped_minus_image_mean"] = swapped["mean"] - cross["mean"]
    out["swap_images"] = len(kept)
    return out


@torch.no_grad()
def representation_analysis(
    image_emb: torch.Tensor, text_emb: torch.Tensor, caption_image_index: torch.Tensor
) -> dict[str, float]:
    """All measures above for one split (CKA over every (caption, own image) pair)."""
    index = _check_pairs(image_emb, text_emb, caption_image_index)
    out = paired_cosine(image_emb, text_emb, index)
    out["modality_gap"] = modality_gap(image_emb, text_emb)
    out["cka_paired"] = linear_cka(image_emb[index], text_emb)
    out.update(swapped_query_retrieval(image_emb, text_emb, index))
    return out
