"""The official GLUE metric of each task, as pure corpus-level functions (REFERENCE.md §5.3).

Official metrics (Wang et al., 2019): CoLA Matthews correlation; STS-B Pearson
and Spearman correlation; MRPC and QQP F1 (positive class 1) and accuracy;
MNLI accuracy on the matched and the mismatched dev set; SST-2, QNLI, RTE,
WNLI accuracy. Values are fractions (MCC and correlations in [-1, 1]);
``glue_score`` reports percent, as GLUE tables do.

Thesis notes: its tables report one number per task (CoLA MCC, STS-B
Spearman, MRPC/QQP F1, otherwise accuracy; ``PRIMARY``), and its code
averaged F1/MCC/Spearman over batches. These functions compute the
corpus-level values the GLUE benchmark defines, so reproduced numbers may
differ slightly from the thesis's batch-averaged ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

ACCURACY_TASKS = ("sst2", "qnli", "rte", "wnli")
TASKS = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli")
# the one number per task that the thesis's GLUE tables show (and the GLUE score averages)
PRIMARY = {
    "cola": "mcc",
    "stsb": "spearman",
    "mrpc": "f1",
    "qqp": "f1",
    "mnli": "accuracy_m",
    **{t: "accuracy" for t in ACCURACY_TASKS},
}


def _pair(predictions: Sequence | np.ndarray, labels: Sequence | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, y = np.asarray(predictions), np.asarray(labels)
    if p.shape != y.shape or p.ndim != 1:
        raise ValueError(f"predictions and labels must be 1-D of equal length, got {p.shape} and {y.shape}")
    if len(p) == 0:
        raise ValueError("no examples to score")
    return p, y


def accuracy(predictions, labels) -> float:
    p, y = _pair(predictions, labels)
    return float((p == y).mean())


def f1_binary(predictions, labels, positive: int = 1) -> float:
    """F1 of the positive class; 0 when there are no predicted and no true positives' overlap."""
    p, y = _pair(predictions, labels)
    tp = float(((p == positive) & (y == positive)).sum())
    denom = float((p == positive).sum() + (y == positive).sum())
    return 2 * tp / denom if denom else 0.0


def matthews_corr(predictions, labels) -> float:
    """Matthews correlation (multiclass form of Gorodkin, 2004); 0 when undefined (a constant side)."""
    p, y = _pair(predictions, labels)
    classes = np.union1d(p, y)
    c = np.array([[np.sum((y == a) & (p == b)) for b in classes] for a in classes], dtype=np.float64)
    t, q, n, correct = c.sum(1), c.sum(0), c.sum(), np.trace(c)
    den = np.sqrt(n * n - q @ q) * np.sqrt(n * n - t @ t)
    return float((correct * n - t @ q) / den) if den else 0.0


def pearson(predictions, labels) -> float:
    p, y = _pair(predictions, labels)
    pc, yc = p.astype(np.float64) - p.mean(), y.astype(np.float64) - y.mean()
    den = np.sqrt((pc @ pc) * (yc @ yc))
    if den == 0:
        raise ValueError("correlation is undefined for constant predictions or labels")
    return float(pc @ yc / den)


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their mean rank (as Spearman's definition needs)."""
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    ranks = np.empty(len(x), dtype=np.float64)
    start = 0
    for stop in range(1, len(x) + 1):
        if stop == len(x) or sorted_x[stop] != sorted_x[start]:
            ranks[order[start:stop]] = (start + stop + 1) / 2.0
            start = stop
    return ranks


def spearman(predictions, labels) -> float:
    p, y = _pair(predictions, labels)
    return pearson(_average_ranks(p.astype(np.float64)), _average_ranks(y.astype(np.float64)))


def task_metrics(task: str, predictions, labels) -> dict[str, float]:
    """All official metrics of one GLUE task's dev set (MNLI: use ``mnli_metrics``)."""
    task = task.lower().replace("-", "")
    if task == "cola":
        return {"mcc": matthews_corr(predictions, labels)}
    if task == "stsb":
        return {"pearson": pearson(predictions, labels), "spearman": spearman(predictions, labels)}
    if task in ("mrpc", "qqp"):
        return {"f1": f1_binary(predictions, labels), "accuracy": accuracy(predictions, labels)}
    if task in ACCURACY_TASKS or task in ("mnlim", "mnlimm", "mnli_matched", "mnli_mismatched"):
        return {"accuracy": accuracy(predictions, labels)}
    if task == "mnli":
        raise ValueError(
            "MNLI has two dev sets: use mnli_metrics(matched_predictions, matched_labels, mismatched_predictions, mismatched_labels)"
        )
    raise ValueError(f"unknown GLUE task {task!r}; use one of {', '.join(TASKS)}")


def mnli_metrics(pred_matched, labels_matched, pred_mismatched, labels_mismatched) -> dict[str, float]:
    return {
        "accuracy_m": accuracy(pred_matched, labels_matched),
        "accuracy_mm": accuracy(pred_mismatched, labels_mismatched),
    }


def glue_score(results: Mapping[str, Mapping[str, float]]) -> float:
    """Unweighted mean (percent) of each given task's primary metric (the thesis's "Score" column)."""
    if not results:
        raise ValueError("no task results to average")
    unknown = [t for t in results if t not in PRIMARY]
    if unknown:
        raise ValueError(f"unknown GLUE task(s) {unknown}; use one of {', '.join(TASKS)}")
    return 100.0 * float(np.mean([results[t][PRIMARY[t]] for t in results]))
