"""Image-text retrieval R@K with the thesis protocol (REFERENCE.md §5.1).

All images are scored against all captions; an image may have several
captions. I->T (text retrieval) R@K: share of images with at least one of
their own captions among the top K captions. T->I (image retrieval) R@K:
share of captions whose image is among the top K images.

Ties are broken deterministically: among equal scores the candidate with the
lower index ranks first. The rank of a candidate p for query q is
#{c : s(q,c) > s(q,p)} + #{c < p : s(q,c) = s(q,p)}, so results never depend
on sort stability. Scores are computed in blocks of queries so memory stays
bounded (block x candidates) at any dataset size.
"""

from __future__ import annotations

import torch

KS = (1, 5, 10)


def _rank(scores: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Rank (0 = best) of candidate ``positive[q]`` in row q of ``scores``, ties to the lower index."""
    pos_scores = scores.gather(1, positive[:, None])
    cand = torch.arange(scores.shape[1], device=scores.device)
    higher = (scores > pos_scores).sum(1)
    tied_before = ((scores == pos_scores) & (cand[None, :] < positive[:, None])).sum(1)
    return higher + tied_before


def _best_positive(scores: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Among each row's positives (-1 padded), the one ranked first: highest score, then lowest index.

    The best rank over several positives is the rank of this one, so I->T needs one
    rank computation per image however many captions it has.
    """
    valid = positives >= 0
    pos = positives.clamp(min=0)
    pos_scores = scores.gather(1, pos).masked_fill(~valid, float("-inf"))
    best_score = pos_scores.max(dim=1, keepdim=True).values
    # among positives tied at the best score, the lowest candidate index
    index_if_best = torch.where((pos_scores == best_score) & valid, pos, torch.iinfo(pos.dtype).max)
    return index_if_best.min(dim=1).values


def _captions_per_image(caption_image_index: torch.Tensor, num_images: int) -> torch.Tensor:
    """(N, P_max) caption indices of each image, -1 padded."""
    counts = torch.bincount(caption_image_index, minlength=num_images)
    if (counts == 0).any():
        missing = int((counts == 0).nonzero()[0])
        raise ValueError(f"image {missing} has no caption; every image needs at least one")
    order = torch.argsort(caption_image_index, stable=True)
    slot = torch.arange(len(order), device=order.device) - torch.repeat_interleave(
        torch.cumsum(counts, 0) - counts, counts
    )
    table = torch.full((num_images, int(counts.max())), -1, dtype=torch.long, device=order.device)
    table[caption_image_index[order], slot] = order
    return table


@torch.no_grad()
def retrieval_ranks(
    image_emb: torch.Tensor, text_emb: torch.Tensor, caption_image_index: torch.Tensor, block_size: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """0-based ranks: (N,) of each image's best-ranked own caption (I->T), (M,) of each caption's image (T->I).

    ``image_emb`` (N, D) and ``text_emb`` (M, D) should be L2-normalised (cosine scores);
    ``caption_image_index`` (M,) gives each caption's image row. These are the per-sample
    results behind R@K (R@K = share of ranks < K).
    """
    n, m = image_emb.shape[0], text_emb.shape[0]
    caption_image_index = caption_image_index.to(image_emb.device).long()
    if caption_image_index.shape != (m,):
        raise ValueError(f"caption_image_index must have shape ({m},), got {tuple(caption_image_index.shape)}")
    if m and (caption_image_index.min() < 0 or caption_image_index.max() >= n):
        raise ValueError("caption_image_index points outside the image rows")
    table = _captions_per_image(caption_image_index, n)
    i2t_best = torch.empty(n, dtype=torch.long, device=image_emb.device)
    for start in range(0, n, block_size):
        stop = min(n, start + block_size)
        scores = image_emb[start:stop] @ text_emb.t()
        i2t_best[start:stop] = _rank(scores, _best_positive(scores, table[start:stop]))
    t2i_rank = torch.empty(m, dtype=torch.long, device=image_emb.device)
    for start in range(0, m, block_size):
        stop = min(m, start + block_size)
        scores = text_emb[start:stop] @ image_emb.t()
        t2i_rank[start:stop] = _rank(scores, caption_image_index[start:stop])
    return i2t_best, t2i_rank


def recall_from_ranks(i2t_rank: torch.Tensor, t2i_rank: torch.Tensor, ks: tuple[int, ...] = KS) -> dict[str, float]:
    """R@K in percent for both directions plus ``mean`` (mean of all 2*len(ks) values, §5.1)."""
    out: dict[str, float] = {}
    for k in ks:
        out[f"i2t_r{k}"] = 100.0 * int((i2t_rank < k).sum()) / len(i2t_rank)
    for k in ks:
        out[f"t2i_r{k}"] = 100.0 * int((t2i_rank < k).sum()) / len(t2i_rank)
    out["mean"] = sum(out.values()) / len(out)
    return out


@torch.no_grad()
def retrieval_recall(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    caption_image_index: torch.Tensor,
    ks: tuple[int, ...] = KS,
    block_size: int = 1024,
) -> dict[str, float]:
    """R@K in percent for both directions plus ``mean`` (mean of all 2*len(ks) values, §5.1).

    ``image_emb`` (N, D) and ``text_emb`` (M, D) should be L2-normalised (cosine scores);
    ``caption_image_index`` (M,) gives each caption's image row.
    """
    return recall_from_ranks(*retrieval_ranks(image_emb, text_emb, caption_image_index, block_size), ks)


def chance_recall_at_1(caption_image_index: torch.Tensor, num_images: int) -> dict[str, float]:
    """Expected R@1 (percent) of a random ranking: i2t = mean captions per image / M, t2i = 1 / N."""
    m = caption_image_index.numel()
    per_image = torch.bincount(caption_image_index, minlength=num_images).double()
    return {"chance_i2t_r1": 100.0 * float(per_image.mean()) / m, "chance_t2i_r1": 100.0 / num_images}
