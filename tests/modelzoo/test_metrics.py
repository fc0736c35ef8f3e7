"""modelzoo.metrics equals scikit-learn's metrics on the same predictions."""

import numpy as np
import pytest
from sklearn import metrics as sk

from modelzoo.metrics import classification_metrics, regression_metrics


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def assert_classification_matches_sklearn(probs: np.ndarray, y: np.ndarray) -> dict:
    pred = probs.argmax(axis=1)
    k = probs.shape[1]
    labels = list(range(k))
    got = classification_metrics(pred, probs, y)
    assert got["accuracy"] == pytest.approx(sk.accuracy_score(y, pred))
    assert got["log_loss"] == pytest.approx(sk.log_loss(y, probs, labels=labels), rel=1e-9)
    for name, fn in (("precision", sk.precision_score), ("recall", sk.recall_score), ("f1", sk.f1_score)):
        assert got[name] == pytest.approx(fn(y, pred, labels=labels, average="macro", zero_division=0))
        per_class = fn(y, pred, labels=labels, average=None, zero_division=0)
        assert [c[name] for c in got["per_class"]] == pytest.approx(list(per_class))
    assert got["confusion_matrix"] == sk.confusion_matrix(y, pred, labels=labels).tolist()
    assert [c["support"] for c in got["per_class"]] == np.bincount(y, minlength=k).tolist()
    if k == 2:
        assert got["roc_auc"] == pytest.approx(sk.roc_auc_score(y, probs[:, 1]))
    else:
        assert got["roc_auc"] is None
    return got


@pytest.mark.parametrize("k", [2, 3, 10])
def test_classification_measures_equal_sklearn(k):
    rng = np.random.default_rng(k)
    y = rng.integers(0, k, size=200)
    logits = rng.normal(size=(200, k)) + 2.0 * np.eye(k)[y] * rng.uniform(size=(200, 1))
    assert_classification_matches_sklearn(softmax(logits), y)


def test_tied_scores_missing_classes_and_certain_probabilities_equal_sklearn():
    # scores rounded to two values make ties for the AUC; class 2 is never predicted and class 3 never
    # occurs (zero_division); probabilities of exactly 0 and 1 exercise log loss's clipping
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, size=50)
    p1 = np.round(rng.uniform(size=50))
    assert_classification_matches_sklearn(np.stack([1 - p1, p1], axis=1), y)
    y4 = np.array([0, 1, 2, 0, 1, 2, 1, 0])
    probs = softmax(rng.normal(size=(8, 4)))
    probs[:, 2] = 0
    probs /= probs.sum(axis=1, keepdims=True)
    got = assert_classification_matches_sklearn(probs, y4)
    assert got["per_class"][3]["support"] == 0


def test_roc_auc_of_one_class_only_is_none():
    probs = np.array([[0.3, 0.7], [0.6, 0.4]])
    assert classification_metrics(probs.argmax(1), probs, np.array([1, 1]))["roc_auc"] is None


@pytest.mark.parametrize("width", [1, 3])
def test_regression_measures_equal_sklearn(width):
    rng = np.random.default_rng(width)
    y = rng.normal(size=(100, width))
    pred = y + rng.normal(scale=0.3, size=(100, width))
    got = regression_metrics(pred if width > 1 else pred[:, 0], y if width > 1 else y[:, 0])
    assert got["mse"] == pytest.approx(sk.mean_squared_error(y, pred))
    assert got["rmse"] == pytest.approx(sk.root_mean_squared_error(y, pred))
    assert got["mae"] == pytest.approx(sk.mean_absolute_error(y, pred))
    assert got["r2"] == pytest.approx(sk.r2_score(y, pred))
    assert got["rows"] == 100


def test_r2_of_a_constant_target_follows_sklearn():
    y = np.full(5, 2.0)
    assert regression_metrics(y, y)["r2"] == sk.r2_score(y, y) == 1.0
    assert regression_metrics(y + 1, y)["r2"] == sk.r2_score(y, y + 1) == 0.0
