import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from mmthesis.eval import glue_metrics as gm

rng = np.random.default_rng(0)


@pytest.mark.parametrize("classes", [2, 3])
def test_mcc_accuracy_f1_match_sklearn(classes):
    for _ in range(20):
        y = rng.integers(0, classes, 57)
        p = np.where(rng.random(57) < 0.6, y, rng.integers(0, classes, 57))
        assert gm.matthews_corr(p, y) == pytest.approx(matthews_corrcoef(y, p), abs=1e-12)
        assert gm.accuracy(p, y) == pytest.approx(accuracy_score(y, p))
        if classes == 2:
            assert gm.f1_binary(p, y) == pytest.approx(f1_score(y, p), abs=1e-12)


def test_degenerate_mcc_and_f1_are_zero_like_sklearn():
    y = np.array([0, 1, 0, 1])
    const = np.zeros(4, dtype=int)
    assert gm.matthews_corr(const, y) == matthews_corrcoef(y, const) == 0.0
    assert gm.f1_binary(const, y) == f1_score(y, const, zero_division=0) == 0.0


def test_correlations_match_scipy_with_ties():
    y = rng.integers(0, 6, 80).astype(float)  # STS-B-like scores with many ties
    p = y + rng.normal(0, 1.5, 80).round(1)
    assert gm.pearson(p, y) == pytest.approx(pearsonr(p, y)[0], abs=1e-12)
    assert gm.spearman(p, y) == pytest.approx(spearmanr(p, y)[0], abs=1e-12)
    with pytest.raises(ValueError, match="constant"):
        gm.pearson(np.ones(5), np.arange(5))


def test_task_metrics_and_glue_score():
    y = np.array([1, 0, 1, 1, 0, 1])
    p = np.array([1, 0, 0, 1, 1, 1])
    m = gm.task_metrics("MRPC", p, y)
    assert m == {"f1": pytest.approx(f1_score(y, p)), "accuracy": pytest.approx(4 / 6)}
    assert set(gm.task_metrics("sts-b", p.astype(float), y.astype(float))) == {"pearson", "spearman"}
    assert gm.task_metrics("cola", p, y)["mcc"] == pytest.approx(matthews_corrcoef(y, p))
    mnli = gm.mnli_metrics([0, 1, 2], [0, 1, 1], [2, 2], [2, 2])
    assert mnli == {"accuracy_m": pytest.approx(2 / 3), "accuracy_mm": 1.0}
    score = gm.glue_score({"cola": {"mcc": 0.5}, "mrpc": m, "mnli": mnli})
    assert score == pytest.approx(100 * (0.5 + m["f1"] + 2 / 3) / 3)
    with pytest.raises(ValueError, match="two dev sets"):
        gm.task_metrics("mnli", p, y)
    with pytest.raises(ValueError, match="unknown GLUE task"):
        gm.task_metrics("squad", p, y)
    with pytest.raises(ValueError, match="equal length"):
        gm.accuracy([1, 0], [1])
