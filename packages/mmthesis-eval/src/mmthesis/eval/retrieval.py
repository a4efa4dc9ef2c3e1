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

Why ties matter: captions repeat (in shapes/test 115 of 737 distinct captions
belong to more than one image; COCO has duplicates too), so identical caption
embeddings score exactly equal and R@K depends on the tie-break. Beside the
deterministic value, ``tie_aware_recall`` gives the optimistic R@K (tied
candidates ranked after the positive), the pessimistic R@K (before it) and
the expected R@K under a uniformly random order of the tied candidates.
For one query let s* be the best score of a positive, g the number of
candidates scoring > s* (all negatives), t the number scoring = s* and p of
those the positives. The K slots hold the g better ones first, then
r = K - g (clipped to [0, t]) drawn from the t tied ones in random order, so
P(hit) = 1 - C(t - p, r) / C(t, r) (hypergeometric: no positive among r draws).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

KS = (1, 5, 10)
# how the headline R@K treats ties (task YAML ``params.ties``): the deterministic lower-index rule,
# the best or worst tie order, or the expectation over random tie orders
TIE_RULES = ("index", "optimistic", "pessimistic", "expected")


def _rank(scores: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Rank (0 = best) of candidate ``positive[q]`` in row q of ``scores``, ties to the lower index."""
    pos_scores = scores.gather(1, positive[:, None])
    cand = torch.arange(scores.shape[1], device=scores.device)
    higher = (scores > pos_scores).sum(1)
    tied_before = ((scores == pos_scores) & (cand[None, :] < positive[:, None])).sum(1)
    return higher + tied_before


@dataclass
class RankStats:
    """Per query: deterministic 0-based rank of its best positive and the tie counts behind tie-aware R@K.

    ``better``: candidates scoring above the best positive score s*; ``tied``: candidates scoring exactly s*
    (positives included); ``tied_positives``: positives among them (>= 1).
    """

    rank: torch.Tensor
    better: torch.Tensor
    tied: torch.Tensor
    tied_positives: torch.Tensor

    @staticmethod
    def cat(parts: list[RankStats]) -> RankStats:
        return RankStats(*(torch.cat([getattr(p, f) for p in parts]) for f in ("rank", "better", "tied", "tied_positives")))


def _rank_stats(scores: torch.Tensor, positives: torch.Tensor) -> RankStats:
    """Rank stats of each row's best positive among ``positives`` (B, P), -1 padded.

    The best positive has the highest score, then the lowest index; the best rank over several
    positives is its rank, so I->T needs one rank computation per image however many captions it has.
    """
    valid = positives >= 0
    pos = positives.clamp(min=0)
    pos_scores = scores.gather(1, pos).masked_fill(~valid, float("-inf"))
    best_score = pos_scores.max(dim=1, keepdim=True).values
    at_best = (pos_scores == best_score) & valid
    best = torch.where(at_best, pos, torch.iinfo(pos.dtype).max).min(dim=1).values
    equal = scores == best_score
    cand = torch.arange(scores.shape[1], device=scores.device)
    better = (scores > best_score).sum(1)
    return RankStats(
        rank=better + (equal & (cand[None, :] < best[:, None])).sum(1),
        better=better,
        tied=equal.sum(1),
        tied_positives=at_best.sum(1),
    )


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
def retrieval_rank_stats(
    image_emb: torch.Tensor, text_emb: torch.Tensor, caption_image_index: torch.Tensor, block_size: int = 1024
) -> tuple[RankStats, RankStats]:
    """``RankStats`` for I->T (N images, best-ranked own caption) and T->I (M captions, their image).

    ``image_emb`` (N, D) and ``text_emb`` (M, D) should be L2-normalised (cosine scores);
    ``caption_image_index`` (M,) gives each caption's image row.
    """
    n, m = image_emb.shape[0], text_emb.shape[0]
    caption_image_index = caption_image_index.to(image_emb.device).long()
    if caption_image_index.shape != (m,):
        raise ValueError(f"caption_image_index must have shape ({m},), got {tuple(caption_image_index.shape)}")
    if m and (caption_image_index.min() < 0 or caption_image_index.max() >= n):
        raise ValueError("caption_image_index points outside the image rows")
    table = _captions_per_image(caption_image_index, n)
    i2t = [
        _rank_stats(image_emb[start : start + block_size] @ text_emb.t(), table[start : start + block_size])
        for start in range(0, n, block_size)
    ]
    t2i = [
        _rank_stats(
            text_emb[start : start + block_size] @ image_emb.t(), caption_image_index[start : start + block_size, None]
        )
        for start in range(0, m, block_size)
    ]
    return RankStats.cat(i2t), RankStats.cat(t2i)


def retrieval_ranks(
    image_emb: torch.Tensor, text_emb: torch.Tensor, caption_image_index: torch.Tensor, block_size: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """0-based ranks: (N,) of each image's best-ranked own caption (I->T), (M,) of each caption's image (T->I).

    These are the per-sample results behind R@K (R@K = share of ranks < K); ties to the lower index.
    """
    i2t, t2i = retrieval_rank_stats(image_emb, text_emb, caption_image_index, block_size)
    return i2t.rank, t2i.rank


def _log_comb(n: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return torch.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)


def hit_probabilities(stats: RankStats, k: int) -> dict[str, torch.Tensor]:
    """Per query, the chance its best positive is in the top ``k``: 0/1 for the deterministic rank and the
    optimistic / pessimistic tie orders, and the exact expectation over uniformly random tie orders."""
    better, tied, pos = stats.better.double(), stats.tied.double(), stats.tied_positives.double()
    r = (k - better).clamp(min=0.0).minimum(tied)  # slots left for the tied group
    # P(miss) = C(t - p, r) / C(t, r); zero when more slots than tied negatives
    miss = torch.where(r <= tied - pos, torch.exp(_log_comb(tied - pos, r) - _log_comb(tied, r)), 0.0)
    return {
        "index": (stats.rank < k).double(),
        "optimistic": (better < k).double(),
        "pessimistic": (better + tied - pos < k).double(),
        "expected": 1.0 - miss,
    }


def tie_aware_recall(
    i2t: RankStats, t2i: RankStats, ks: tuple[int, ...] = KS, rule: str = "index"
) -> dict[str, float | int | str]:
    """R@K in percent, both directions, plus ``mean``, under tie ``rule`` (``TIE_RULES``), and beside it every
    rule's value (``i2t_r1_optimistic`` ...), the rule's name and the number of queries whose best positive ties
    with a negative (the queries whose hit depends on the tie-break)."""
    if rule not in TIE_RULES:
        raise ValueError(f"tie rule must be one of {', '.join(TIE_RULES)}, got {rule!r}")
    per_rule: dict[str, dict[str, float]] = {r: {} for r in TIE_RULES}
    for direction, stats in (("i2t", i2t), ("t2i", t2i)):
        for k in ks:
            for name, hits in hit_probabilities(stats, k).items():
                per_rule[name][f"{direction}_r{k}"] = 100.0 * float(hits.sum()) / max(len(hits), 1)
    for values in per_rule.values():
        values["mean"] = sum(values.values()) / len(values)
    out: dict[str, float | int | str] = dict(per_rule[rule])
    for name in TIE_RULES[1:]:
        out |= {f"{key}_{name}": value for key, value in per_rule[name].items()}
    out["ties"] = rule
    out["i2t_tied_queries"] = int((i2t.tied > i2t.tied_positives).sum())
    out["t2i_tied_queries"] = int((t2i.tied > t2i.tied_positives).sum())
    return out


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
