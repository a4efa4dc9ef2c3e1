"""Image-text retrieval R@K with the thesis protocol (REFERENCE.md §5.1), and SHRe's average median rank (§5.2).

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

from collections.abc import Sequence

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


@torch.no_grad()
def top_candidates(query_emb: torch.Tensor, cand_emb: torch.Tensor, k: int, block_size: int = 1024) -> torch.Tensor:
    """(Q, k) indices of each query's ``k`` best candidates, best first, ties to the lower index as ``_rank``.

    What the per-sample rows list as retrieved, so ``top[rank]`` is the query's positive whenever ``rank < k``.
    """
    k = min(k, cand_emb.shape[0])
    out = torch.empty(query_emb.shape[0], k, dtype=torch.long, device=query_emb.device)
    for start in range(0, query_emb.shape[0], block_size):
        stop = min(query_emb.shape[0], start + block_size)
        scores = query_emb[start:stop] @ cand_emb.t()
        out[start:stop] = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
    return out


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


# ------------------------------------------------------------------------------ average median rank (§5.2)
def image_order_by_id(image_ids: Sequence[str]) -> torch.Tensor:
    """Rows sorted by image id: numerically when every id is an integer (COCO ``cocoid``), else as strings.

    The thesis code sorts the COCO test images by their integer id before chunking them.
    """
    key = (lambda i: int(image_ids[i])) if all(str(i).isdecimal() for i in image_ids) else (lambda i: image_ids[i])
    return torch.tensor(sorted(range(len(image_ids)), key=key), dtype=torch.long)


def _interpolated_median(values: torch.Tensor) -> float:
    # torch.quantile(0.5) as in the thesis code: the mean of the two middle values for an even count
    return float(values.double().quantile(0.5))


@torch.no_grad()
def median_ranks(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    caption_image_index: torch.Tensor,
    chunk_size: int = 1000,
    chunks: int = 5,
    captions_per_image: int = 5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(chunks, captions_per_image) median ranks (1 = best) for I->T and T->I, as SHRe reports them.

    The first ``chunks * chunk_size`` image rows (in the given order) form ``chunks`` consecutive
    chunks; in a chunk, caption choice k pairs each image with its k-th caption (in caption order),
    giving ``chunk_size`` pairs, and each image (caption) is ranked against the chunk's captions
    (images). Ties rank the lower candidate index first, as in ``retrieval_ranks``.
    """
    for name, value in (("chunk_size", chunk_size), ("chunks", chunks), ("captions_per_image", captions_per_image)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    n, m = image_emb.shape[0], text_emb.shape[0]
    caption_image_index = caption_image_index.to(image_emb.device).long()
    if caption_image_index.shape != (m,):
        raise ValueError(f"caption_image_index must have shape ({m},), got {tuple(caption_image_index.shape)}")
    if m and (caption_image_index.min() < 0 or caption_image_index.max() >= n):
        raise ValueError("caption_image_index points outside the image rows")
    used = chunks * chunk_size
    if n < used:
        raise ValueError(
            f"median rank needs chunks x chunk_size = {chunks} x {chunk_size} = {used} images, the split has {n}"
        )
    counts = torch.bincount(caption_image_index, minlength=n)[:used]
    if (short := (counts < captions_per_image).nonzero()).numel():
        row = int(short[0])
        raise ValueError(
            f"image row {row} has {int(counts[row])} captions, median rank needs captions_per_image="
            f"{captions_per_image} for each of the first {used} images"
        )
    keep = (caption_image_index < used).nonzero().squeeze(1)  # captions of unused images play no part
    table = keep[_captions_per_image(caption_image_index[keep], used)[:, :captions_per_image]]  # (used, P)
    diagonal = torch.arange(chunk_size, device=image_emb.device)
    i2t = torch.empty(chunks, captions_per_image, dtype=torch.float64)
    t2i = torch.empty(chunks, captions_per_image, dtype=torch.float64)
    for c in range(chunks):
        rows = slice(c * chunk_size, (c + 1) * chunk_size)
        for k in range(captions_per_image):
            scores = image_emb[rows] @ text_emb[table[rows, k]].t()  # (chunk, chunk): pair j on the diagonal
            i2t[c, k] = _interpolated_median(_rank(scores, diagonal) + 1)
            t2i[c, k] = _interpolated_median(_rank(scores.t(), diagonal) + 1)
    return i2t, t2i


def amr_from_median_ranks(i2t: torch.Tensor, t2i: torch.Tensor, chunk_size: int) -> dict[str, float]:
    """Average median ranks from ``median_ranks``' (chunks, captions_per_image) tables: over captions, then chunks.

    ``chance_amr`` = (chunk_size + 1) / 2, the median rank of a random ranking (the tables' "Random" row).
    """
    return {
        "i2t_amr": float(i2t.mean(1).mean()),
        "t2i_amr": float(t2i.mean(1).mean()),
        "chance_amr": (chunk_size + 1) / 2,
        "chunk_size": chunk_size,
        "chunks": i2t.shape[0],
        "captions_per_image": i2t.shape[1],
    }


def average_median_rank(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    caption_image_index: torch.Tensor,
    chunk_size: int = 1000,
    chunks: int = 5,
    captions_per_image: int = 5,
) -> dict[str, float]:
    """SHRe's average median rank (REFERENCE.md §5.2; 1 = best) for I->T and T->I, and a random ranking's value.

    Images are taken in the given order (sort them with ``image_order_by_id`` first, as the thesis does).
    """
    i2t, t2i = median_ranks(image_emb, text_emb, caption_image_index, chunk_size, chunks, captions_per_image)
    return amr_from_median_ranks(i2t, t2i, chunk_size)
