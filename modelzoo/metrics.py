"""The measures of a model's answers against known targets: what a job's `evaluation` and `/evaluate` show.

Plain numpy on the answers `modelzoo.outputs.read_outputs` gives, computed as scikit-learn's metrics
define them (tests/modelzoo/test_metrics.py compares the two on the same predictions): precision, recall
and F1 are 0 where undefined (zero_division=0), r2 of a constant target is 1 for a perfect fit else 0,
log loss clips probabilities to [eps, 1 - eps], roc_auc is null unless both classes occur.
"""

from __future__ import annotations

import numpy as np

# the measures a job may also record on its curve every recorded epoch (the spec's `metrics`), by task: the
# training split's as <name>, the validation split's as val_<name> (workers/engines/figures.py, on the device)
EPOCH_METRICS = {
    "regression": ("mse", "rmse", "mae", "r2"),
    "classification": ("log_loss", "precision", "recall", "f1", "roc_auc"),
}


def regression_metrics(predictions: np.ndarray, y: np.ndarray) -> dict:
    """mse, rmse, mae and r2, averaged over targets (scikit-learn's multioutput="uniform_average")."""
    pred = np.asarray(predictions, dtype=np.float64).reshape(len(y), -1)
    true = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    err = pred - true
    mse_each = (err**2).mean(axis=0)
    ss_res = (err**2).sum(axis=0)
    ss_tot = ((true - true.mean(axis=0)) ** 2).sum(axis=0)
    safe = np.where(ss_tot > 0, ss_tot, 1.0)
    r2_each = np.where(ss_tot > 0, 1 - ss_res / safe, np.where(ss_res == 0, 1.0, 0.0))
    return {
        "rows": len(true),
        "mse": float(mse_each.mean()),
        "rmse": float(np.sqrt(mse_each).mean()),
        "mae": float(np.abs(err).mean(axis=0).mean()),
        "r2": float(r2_each.mean()),
    }


def classification_metrics(predictions: np.ndarray, probabilities: np.ndarray, y: np.ndarray) -> dict:
    """Accuracy, log loss, per-class and macro precision/recall/F1, the confusion matrix, two-class ROC AUC."""
    probs = np.asarray(probabilities, dtype=np.float64)
    k = probs.shape[1]
    true = np.asarray(y).reshape(-1).astype(np.int64)
    pred = np.asarray(predictions).reshape(-1).astype(np.int64)
    matrix = np.zeros((k, k), dtype=np.int64)  # rows: true class, columns: predicted
    np.add.at(matrix, (true, pred), 1)
    tp = np.diag(matrix).astype(np.float64)
    predicted, actual = matrix.sum(axis=0), matrix.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros(k), where=actual > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros(k), where=both > 0)
    return {
        "rows": len(true),
        "accuracy": float((pred == true).mean()),
        "log_loss": log_loss(probs, true),
        "precision": float(precision.mean()),
        "recall": float(recall.mean()),
        "f1": float(f1.mean()),
        "per_class": [
            {"class": c, "precision": float(precision[c]), "recall": float(recall[c]), "f1": float(f1[c]),
             "support": int(actual[c])}
            for c in range(k)
        ],
        "confusion_matrix": matrix.tolist(),
        "roc_auc": roc_auc(probs[:, 1], true) if k == 2 else None,
    }


def log_loss(probs: np.ndarray, true: np.ndarray) -> float:
    eps = np.finfo(probs.dtype).eps
    clipped = np.clip(probs, eps, 1 - eps)
    return float(-np.log(clipped[np.arange(len(true)), true]).mean())


def roc_auc(scores: np.ndarray, true: np.ndarray) -> float | None:
    """Area under the ROC curve: the chance a positive outranks a negative, ties counting half."""
    positives, negatives = int((true == 1).sum()), int((true == 0).sum())
    if positives == 0 or negatives == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # average ranks (1-based) over runs of equal scores
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], len(scores)]
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    rank_sum = ranks[true == 1].sum()
    return float((rank_sum - positives * (positives + 1) / 2) / (positives * negatives))


def score(answers: dict, y: np.ndarray, task: str) -> dict:
    """The measures of `read_outputs`' answers (as numpy arrays) against targets `y`."""
    if task == "regression":
        return regression_metrics(answers["predictions"], y)
    return classification_metrics(answers["predictions"], answers["probabilities"], y)
