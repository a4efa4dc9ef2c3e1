"""Tie-aware R@K: a hand-computed case with ties, and the closed form against enumeration of every tie order."""

from fractions import Fraction
from itertools import permutations

import pytest
import torch

from mmthesis.eval.retrieval import hit_probabilities, retrieval_rank_stats, retrieval_recall, tie_aware_recall

# scores S (3 images x 4 captions) realised as embeddings: image_emb = I, text_emb = S^T, so image @ text^T = S
S = torch.tensor(
    [
        [0.5, 0.2, 0.5, 0.5],  # image 0 (captions 0, 1): best own 0.5, tied with captions 2 and 3
        [0.9, 0.2, 0.4, 0.4],  # image 1 (caption 2): one better (0.9), tied with caption 3
        [0.3, 0.3, 0.3, 0.3],  # image 2 (caption 3): all four tied
    ],
    dtype=torch.float64,
)
CAPTION_IMAGE = torch.tensor([0, 0, 1, 2])


def test_hand_computed_case_with_ties():
    i2t, t2i = retrieval_rank_stats(torch.eye(3, dtype=torch.float64), S.t().contiguous(), CAPTION_IMAGE)
    assert i2t.rank.tolist() == [0, 1, 3] and i2t.better.tolist() == [0, 1, 0] and i2t.tied.tolist() == [3, 2, 4]
    # caption 1's column (0.2, 0.2, 0.3): one better image, its own image tied with image 1
    assert t2i.rank.tolist() == [1, 1, 1, 2] and t2i.tied.tolist() == [1, 2, 1, 1]
    m = tie_aware_recall(i2t, t2i, (1, 2))
    # I->T R@1: index hits image 0 only; optimistic images 0 and 2; pessimistic none;
    # expected (1/3 + 0 + 1/4) / 3 = 7/36 (image 0: 1 slot among 3 tied, image 2: 1 among 4)
    assert m["i2t_r1"] == pytest.approx(100 / 3)
    assert m["i2t_r1_optimistic"] == pytest.approx(200 / 3) and m["i2t_r1_pessimistic"] == 0.0
    assert m["i2t_r1_expected"] == pytest.approx(100 * 7 / 36)
    # R@2: expected (2/3 + 1/2 + 2/4) / 3 = 5/9
    assert m["i2t_r2"] == pytest.approx(200 / 3) and m["i2t_r2_optimistic"] == 100.0
    assert m["i2t_r2_pessimistic"] == 0.0 and m["i2t_r2_expected"] == pytest.approx(100 * 5 / 9)
    # T->I R@2: caption 3 ranks 2 (miss); caption 1 is a hit at best, a miss at worst, 1/2 expected
    assert m["t2i_r1"] == m["t2i_r1_expected"] == 0.0
    assert m["t2i_r2"] == m["t2i_r2_optimistic"] == 75.0 and m["t2i_r2_pessimistic"] == 50.0
    assert m["t2i_r2_expected"] == pytest.approx(62.5)
    assert m["i2t_tied_queries"] == 3 and m["t2i_tied_queries"] == 1 and m["ties"] == "index"
    # the headline follows the rule; the index rule is the one retrieval_recall has always reported
    assert tie_aware_recall(i2t, t2i, (1, 2), "expected")["i2t_r1"] == pytest.approx(100 * 7 / 36)
    legacy = retrieval_recall(torch.eye(3, dtype=torch.float64), S.t().contiguous(), CAPTION_IMAGE, (1, 2))
    assert all(legacy[k] == pytest.approx(m[k]) for k in legacy)
    with pytest.raises(ValueError, match="tie rule must be one of"):
        tie_aware_recall(i2t, t2i, (1,), "random")


def _enumerate(scores: list[float], positives: set[int], k: int) -> tuple[Fraction, int, int]:
    """(hit probability over all orders, min hit, max hit): candidates sorted by (-score, position in a permutation)."""
    hits = []
    for perm in permutations(range(len(scores))):
        pos_in = {c: i for i, c in enumerate(perm)}
        order = sorted(range(len(scores)), key=lambda c: (-scores[c], pos_in[c]))
        hits.append(int(any(c in positives for c in order[:k])))
    return Fraction(sum(hits), len(hits)), min(hits), max(hits)


@pytest.mark.parametrize("seed", range(4))
def test_closed_form_equals_enumeration_of_tie_orders(seed):
    g = torch.Generator().manual_seed(seed)
    n, m = 4, 6
    img = torch.randint(-1, 2, (n, 3), generator=g).double()  # small integer vectors: many exact ties
    txt = torch.randint(-1, 2, (m, 3), generator=g).double()
    cap = torch.cat([torch.arange(n), torch.randint(0, n, (m - n,), generator=g)])
    i2t, t2i = retrieval_rank_stats(img, txt, cap)
    scores = (img @ txt.t()).tolist()
    for k in (1, 2, 3, 5):
        got_i2t, got_t2i = hit_probabilities(i2t, k), hit_probabilities(t2i, k)
        for i in range(n):
            want, lo, hi = _enumerate(scores[i], {c for c in range(m) if cap[c] == i}, k)
            assert float(got_i2t["expected"][i]) == pytest.approx(float(want), abs=1e-12), (i, k)
            assert (got_i2t["pessimistic"][i], got_i2t["optimistic"][i]) == (lo, hi)
        for c in range(m):
            want, lo, hi = _enumerate([scores[i][c] for i in range(n)], {int(cap[c])}, k)
            assert float(got_t2i["expected"][c]) == pytest.approx(float(want), abs=1e-12), (c, k)
            assert (got_t2i["pessimistic"][c], got_t2i["optimistic"][c]) == (lo, hi)
