"""Quality metrics of binary classifiers: ROC AUC and accuracy, optionally sample-weighted (numpy only)."""

from __future__ import annotations

import numpy as np


def _check(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, ...]:
    """Flatten and validate the inputs; returns float64 scores, boolean labels and float64 weights."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    w = np.ones_like(s) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if not (s.shape == y.shape == w.shape):
        raise ValueError(f"scores, labels and weights differ in length: {s.size}, {y.size}, {w.size}")
    if s.size == 0:
        raise ValueError("no samples to score")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores hold non-finite values")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("labels must be 0 or 1")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weights must be finite and non-negative")
    return s, y == 1, w


def roc_auc(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Area under the ROC curve of `scores` (higher = more signal-like) against 0/1 `labels`.

    Equals the (weighted) probability that a random positive scores above a random negative, tied
    scores counting one half: the trapezoid rule over the distinct score thresholds. Raises ValueError
    when either class has no (weighted) samples.
    """
    s, pos, w = _check(scores, labels, weights)
    order = np.argsort(-s, kind="mergesort")
    s, pos, w = s[order], pos[order], w[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tp = np.r_[0.0, np.cumsum(np.where(pos, w, 0.0))[last_of_tie]]
    fp = np.r_[0.0, np.cumsum(np.where(pos, 0.0, w))[last_of_tie]]
    if tp[-1] <= 0 or fp[-1] <= 0:
        raise ValueError("ROC AUC needs both classes present (with positive weight)")
    area = np.sum(np.diff(fp) * (tp[1:] + tp[:-1])) / 2.0
    return float(area / (tp[-1] * fp[-1]))


def accuracy(
    scores: np.ndarray, labels: np.ndarray, threshold: float = 0.5, weights: np.ndarray | None = None
) -> float:
    """(Weighted) fraction of samples whose decision `scores >= threshold` equals the 0/1 label."""
    s, pos, w = _check(scores, labels, weights)
    total = w.sum()
    if total <= 0:
        raise ValueError("weights sum to zero")
    return float(np.sum(w * ((s >= threshold) == pos)) / total)
