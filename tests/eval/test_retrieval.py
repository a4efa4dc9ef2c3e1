import pytest
import torch
from torchmetrics.retrieval import RetrievalRecall

from mmthesis.eval.retrieval import retrieval_recall


def naive(img, txt, cap, ks=(1, 5, 10)):
    """Independent straightforward computation: Python sort by (-score, index)."""
    S = (img @ txt.T).tolist()
    n, m = len(S), len(S[0])

    def rank(row, p):
        return sorted(range(len(row)), key=lambda j: (-row[j], j)).index(p)

    i2t = [min(rank(S[i], c) for c in range(m) if cap[c] == i) for i in range(n)]
    t2i = [rank([S[i][c] for i in range(n)], int(cap[c])) for c in range(m)]
    out = {f"i2t_r{k}": 100 * sum(r < k for r in i2t) / n for k in ks}
    out.update({f"t2i_r{k}": 100 * sum(r < k for r in t2i) / m for k in ks})
    return out


@pytest.mark.parametrize("block_size", [1, 7, 1024])
def test_matches_naive_with_ties_and_multiple_captions(block_size):
    g = torch.Generator().manual_seed(0)
    n, m = 40, 130
    img = torch.randn(n, 6, generator=g).round()  # integer vectors: many exact ties
    txt = torch.randn(m, 6, generator=g).round()
    cap = torch.cat([torch.arange(n), torch.randint(0, n, (m - n,), generator=g)])
    got = retrieval_recall(img, txt, cap, block_size=block_size)
    want = naive(img, txt, cap)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-9), key
    assert got["mean"] == pytest.approx(sum(want.values()) / 6)


def test_matches_torchmetrics_without_ties():
    g = torch.Generator().manual_seed(1)
    n, per = 30, 3
    img = torch.nn.functional.normalize(torch.randn(n, 16, generator=g), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(n * per, 16, generator=g), dim=-1)
    cap = torch.arange(n * per) // per
    got = retrieval_recall(img, txt, cap)
    S = img @ txt.T
    for k in (1, 5, 10):
        # torchmetrics' recall@k = hits in top-k / all positives; "any positive in top-k" = hit rate
        rr = RetrievalRecall(top_k=k)
        any_hit = []
        for i in range(n):
            top = S[i].topk(k).indices
            any_hit.append(bool((cap[top] == i).any()))
        assert got[f"i2t_r{k}"] == pytest.approx(100 * sum(any_hit) / n)
        # T->I has exactly one positive per query, where recall@k == hit rate: compare with torchmetrics directly
        indexes_t = torch.arange(n * per)[:, None].expand(n * per, n).reshape(-1)
        target_t = (torch.arange(n)[None, :] == cap[:, None]).reshape(-1)
        tm = rr(S.T.reshape(-1), target_t, indexes=indexes_t).item() * 100
        assert got[f"t2i_r{k}"] == pytest.approx(tm, abs=1e-4)


def test_perfect_and_bad_inputs():
    img = torch.eye(4)
    txt = torch.eye(4).repeat_interleave(2, 0)
    cap = torch.arange(8) // 2
    got = retrieval_recall(img, txt, cap)
    assert all(v == 100.0 for v in got.values())
    with pytest.raises(ValueError, match="image 3 has no caption"):
        retrieval_recall(img, txt[:6], cap[:6])
    with pytest.raises(ValueError, match="shape"):
        retrieval_recall(img, txt, cap[:3])
