"""ROC AUC and accuracy against hand-computed cases and the pairwise definition."""

import numpy as np
import pytest

from ai500.metrics.quality import accuracy, roc_auc


def pairwise_auc(scores, labels, weights):
    """P(positive scores above negative) + half P(tie), weighted: the O(n^2) definition."""
    pos, neg = labels == 1, labels == 0
    diff = scores[pos][:, None] - scores[neg][None, :]
    pair_w = weights[pos][:, None] * weights[neg][None, :]
    return np.sum(pair_w * ((diff > 0) + 0.5 * (diff == 0))) / pair_w.sum()


def test_hand_computed():
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)


def test_ties_count_half():
    # pairs (pos, neg): (.5, .5) tie = 1/2, (.5, .2), (.9, .5), (.9, .2) = 1 each -> 3.5 / 4
    assert roc_auc(np.array([0.5, 0.5, 0.2, 0.9]), np.array([1, 0, 0, 1])) == pytest.approx(0.875)
    assert roc_auc(np.full(6, 0.3), np.array([0, 1, 0, 1, 1, 0])) == pytest.approx(0.5)


def test_weighted_hand_computed():
    # positives .35 (w 3), .8 (w 1); negatives .1 (w 1), .4 (w 2): (3*1 + 1*1 + 1*2) / (4*3) = 0.5
    scores, labels = np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])
    assert roc_auc(scores, labels, np.array([1.0, 2.0, 3.0, 1.0])) == pytest.approx(0.5)
    # positive .5 (w 2); negatives .5 (w 3, tie), .2 (w 1): (2*3/2 + 2*1) / (2*4) = 0.625
    assert roc_auc(np.array([0.5, 0.5, 0.2]), np.array([1, 0, 0]), np.array([2.0, 3.0, 1.0])) == pytest.approx(0.625)


def test_matches_pairwise_definition_with_ties_and_weights():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 7, 300).astype(float)  # many ties
    labels = rng.integers(0, 2, 300)
    weights = rng.uniform(0.0, 3.0, 300)
    assert roc_auc(scores, labels, weights) == pytest.approx(pairwise_auc(scores, labels, weights))
    assert roc_auc(scores, labels) == pytest.approx(pairwise_auc(scores, labels, np.ones(300)))


def test_perfect_inverted_random():
    labels = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.9])
    assert roc_auc(scores, labels) == 1.0
    assert roc_auc(-scores, labels) == 0.0
    rng = np.random.default_rng(1)
    n = 200_000
    assert roc_auc(rng.random(n), rng.integers(0, 2, n)) == pytest.approx(0.5, abs=0.01)


def test_weight_two_equals_duplicating_a_sample():
    rng = np.random.default_rng(2)
    scores, labels = rng.random(50), rng.integers(0, 2, 50)
    weights = np.ones(50)
    weights[[3, 17]] = 2.0
    dup = np.r_[np.arange(50), 3, 17]
    assert roc_auc(scores, labels, weights) == pytest.approx(roc_auc(scores[dup], labels[dup]))
    assert accuracy(scores, labels, weights=weights) == pytest.approx(accuracy(scores[dup], labels[dup]))


def test_invariant_to_monotone_transform():
    rng = np.random.default_rng(3)
    scores, labels, weights = rng.normal(size=500), rng.integers(0, 2, 500), rng.random(500)
    base = roc_auc(scores, labels, weights)
    for transformed in (np.exp(scores), 3.0 * scores + 1.0, np.arctan(scores), np.round(scores, 8)):
        assert roc_auc(transformed, labels, weights) == pytest.approx(base)


def test_one_class_raises():
    with pytest.raises(ValueError):
        roc_auc(np.array([0.1, 0.2]), np.array([1, 1]))
    with pytest.raises(ValueError):
        roc_auc(np.array([0.1, 0.2]), np.array([1, 0]), np.array([1.0, 0.0]))


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        roc_auc(np.array([0.1, 0.2]), np.array([1, 0, 1]))
    with pytest.raises(ValueError):
        roc_auc(np.array([0.1, np.nan]), np.array([1, 0]))
    with pytest.raises(ValueError):
        accuracy(np.array([0.1, 0.2]), np.array([2, 0]))


def test_accuracy():
    scores = np.array([0.9, 0.5, 0.2, 0.6])
    labels = np.array([1, 0, 0, 0])
    assert accuracy(scores, labels) == pytest.approx(0.5)  # 0.5 >= threshold counts as positive
    assert accuracy(scores, labels, threshold=0.7) == pytest.approx(1.0)
    assert accuracy(scores, labels, weights=np.array([1.0, 1.0, 1.0, 3.0])) == pytest.approx(2 / 6)
    assert accuracy(scores.astype(np.float32), labels.astype(np.float32)) == pytest.approx(0.5)
