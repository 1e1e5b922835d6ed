"""Faster R-CNN box operations against hand-computed boxes, in eager mode and inside tf.function."""

import math

import numpy as np
import tensorflow as tf

from ai500.models.boxes import (
    assign_targets,
    batched_nms,
    clip_boxes,
    decode,
    encode,
    make_anchors,
    nms,
    pairwise_iou,
    sample_targets,
)

SQUARE = [0.0, 0.0, 10.0, 10.0]


def test_iou_of_known_pairs():
    others = [
        SQUARE,  # identical: 1
        [20.0, 20.0, 30.0, 30.0],  # disjoint: 0
        [0.0, 10.0, 10.0, 20.0],  # shares an edge only: 0
        [0.0, 5.0, 10.0, 15.0],  # half of each overlaps: 50 / 150
        [2.0, 2.0, 7.0, 7.0],  # contained: 25 / 100
        [5.0, 5.0, 5.0, 5.0],  # zero area inside the square: 0
    ]
    iou = pairwise_iou([SQUARE], others).numpy()
    assert iou.shape == (1, 6) and iou.dtype == np.float32
    np.testing.assert_allclose(iou[0], [1.0, 0.0, 0.0, 1 / 3, 0.25, 0.0], rtol=1e-6)


def test_iou_zero_area_pairs_are_zero_not_nan():
    point = [[3.0, 3.0, 3.0, 3.0]]
    np.testing.assert_array_equal(pairwise_iou(point, point).numpy(), [[0.0]])
    assert pairwise_iou(tf.zeros([0, 4]), [SQUARE]).shape == (0, 1)


def test_iou_is_symmetric_and_in_unit_interval():
    rng = np.random.default_rng(0)
    a, b = random_boxes(rng, 30), random_boxes(rng, 20)
    ab, ba = pairwise_iou(a, b).numpy(), pairwise_iou(b, a).numpy()
    np.testing.assert_allclose(ab, ba.T, rtol=1e-6)
    assert np.all((ab >= 0.0) & (ab <= 1.0))


def random_boxes(rng, n):
    top_left = rng.uniform(0.0, 80.0, (n, 2))
    return np.concatenate([top_left, top_left + rng.uniform(1.0, 40.0, (n, 2))], axis=1).astype(np.float32)


def test_encode_hand_computed():
    anchor = [[0.0, 0.0, 10.0, 20.0]]  # centre (5, 10), h 10, w 20
    box = [[2.0, 4.0, 22.0, 14.0]]  # centre (12, 9), h 20, w 10
    np.testing.assert_allclose(encode(box, anchor).numpy(), [[0.7, -0.05, math.log(2), -math.log(2)]],
                               rtol=1e-6)
    np.testing.assert_allclose(encode(box, anchor, (10.0, 10.0, 5.0, 5.0)).numpy(),
                               [[7.0, -0.5, 5 * math.log(2), -5 * math.log(2)]], rtol=1e-6)


def test_encode_decode_round_trip():
    rng = np.random.default_rng(1)
    boxes, anchors = random_boxes(rng, 200), random_boxes(rng, 200)
    for weights in ((1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)):
        back = decode(encode(boxes, anchors, weights), anchors, weights).numpy()
        np.testing.assert_allclose(back, boxes, atol=1e-4)


def test_encode_of_degenerate_box_is_finite():
    assert np.all(np.isfinite(encode(tf.zeros([1, 4]), [SQUARE]).numpy()))


def test_decode_clips_huge_size_deltas():
    anchor = [[0.0, 0.0, 10.0, 20.0]]
    box = decode([[0.0, 0.0, 1e4, 100.0]], anchor).numpy()
    assert np.all(np.isfinite(box))
    # Both sizes grow by at most 1000/16 = 62.5 about the unchanged centre (5, 10).
    np.testing.assert_allclose(box, [[5 - 312.5, 10 - 625.0, 5 + 312.5, 10 + 625.0]], rtol=1e-5)


def hand_anchors(height, width, stride, sizes, ratios):
    """Anchors written as a conv output [H, W, A*4] with explicit loops, A index = size * R + ratio."""
    out = np.zeros((height, width, len(sizes) * len(ratios) * 4), np.float32)
    for i in range(height):
        for j in range(width):
            for s, size in enumerate(sizes):
                for r, ratio in enumerate(ratios):
                    cy, cx = (i + 0.5) * stride, (j + 0.5) * stride
                    h, w = size * math.sqrt(ratio), size / math.sqrt(ratio)
                    a = s * len(ratios) + r
                    out[i, j, 4 * a:4 * a + 4] = [cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2]
    return out


def test_anchors_hand_values_and_order():
    anchors = make_anchors(2, 3, 16, (32.0, 64.0), (0.5, 1.0, 2.0)).numpy()
    assert anchors.shape == (2 * 3 * 6, 4) and anchors.dtype == np.float32
    # Row 1: cell (0, 0) centred at (8, 8), size 32, ratio 1.
    np.testing.assert_allclose(anchors[1], [-8.0, -8.0, 24.0, 24.0])
    # Row 35 = cell (1, 2) * 6 + size 64 * 3 + ratio 2: centre (24, 40), h 64*sqrt(2), w 64/sqrt(2).
    h, w = 64 * math.sqrt(2), 64 / math.sqrt(2)
    np.testing.assert_allclose(anchors[35], [24 - h / 2, 40 - w / 2, 24 + h / 2, 40 + w / 2], rtol=1e-6)
    # Reshaping a [H, W, A*4] conv output to [H*W*A, 4] lines up row by row.
    np.testing.assert_allclose(anchors, hand_anchors(2, 3, 16, (32.0, 64.0), (0.5, 1.0, 2.0)).reshape(-1, 4),
                               rtol=1e-6, atol=1e-5)


def test_anchor_sizes_ratios_and_centres():
    anchors = make_anchors(2, 3, 16, (32.0, 64.0), (0.5, 1.0, 2.0)).numpy().reshape(2, 3, 6, 4)
    h = anchors[..., 2] - anchors[..., 0]
    w = anchors[..., 3] - anchors[..., 1]
    np.testing.assert_allclose(h * w, np.broadcast_to(np.repeat([32.0**2, 64.0**2], 3), (2, 3, 6)), rtol=1e-5)
    np.testing.assert_allclose(h / w, np.broadcast_to(np.tile([0.5, 1.0, 2.0], 2), (2, 3, 6)), rtol=1e-5)
    centres = (anchors[..., :2] + anchors[..., 2:]) / 2
    np.testing.assert_allclose(centres[1, 2], np.tile([24.0, 40.0], (6, 1)), atol=1e-4)


def test_anchors_from_tensor_sizes_inside_tf_function():
    @tf.function(input_signature=[tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32)])
    def anchors(height, width):
        return make_anchors(height, width, 16, (32.0, 64.0), (0.5, 1.0, 2.0))

    np.testing.assert_allclose(anchors(tf.constant(2), tf.constant(3)).numpy(),
                               make_anchors(2, 3, 16, (32.0, 64.0), (0.5, 1.0, 2.0)).numpy())


def test_clip_boxes():
    boxes = [[-5.0, 3.0, 50.0, 120.0], [1.0, 2.0, 3.0, 4.0]]
    expected = [[0.0, 3.0, 40.0, 100.0], [1.0, 2.0, 3.0, 4.0]]
    np.testing.assert_array_equal(clip_boxes(boxes, 40, 100).numpy(), expected)
    np.testing.assert_array_equal(clip_boxes(boxes, tf.constant(40), tf.constant(100.0)).numpy(), expected)


def test_nms_hand_case():
    boxes = [
        [0.0, 1.0, 10.0, 11.0],  # IoU 90/110 with the square, lower score: suppressed
        SQUARE,
        [50.0, 50.0, 60.0, 60.0],  # far away: kept
        [0.0, 0.0, 10.0, 5.0],  # IoU exactly 0.5 with the square
    ]
    scores = [0.8, 0.9, 0.7, 0.6]
    np.testing.assert_array_equal(nms(boxes, scores, 10, 0.5).numpy(), [1, 2, 3])  # suppressed only above
    np.testing.assert_array_equal(nms(boxes, scores, 10, 0.49).numpy(), [1, 2])
    np.testing.assert_array_equal(nms(boxes, scores, 1, 0.5).numpy(), [1])
    np.testing.assert_array_equal(nms(boxes, scores, 10, 0.5, score_threshold=0.65).numpy(), [1, 2])
    assert nms(boxes, scores, 10, 0.5).dtype == tf.int32


def test_batched_nms_is_class_aware():
    boxes = [SQUARE, [0.0, 1.0, 10.0, 11.0], [0.0, 0.0, 10.0, 9.0]]
    scores = [0.9, 0.8, 0.7]
    np.testing.assert_array_equal(batched_nms(boxes, scores, [1, 2, 2], 10, 0.5).numpy(), [0, 1])
    np.testing.assert_array_equal(batched_nms(boxes, scores, [1, 2, 3], 10, 0.5).numpy(), [0, 1, 2])
    np.testing.assert_array_equal(batched_nms(boxes, scores, [1, 1, 1], 10, 0.5).numpy(), [0])


def test_batched_nms_empty_inside_tf_function():
    @tf.function(input_signature=[tf.TensorSpec([None, 4]), tf.TensorSpec([None]), tf.TensorSpec([None], tf.int32)])
    def run(boxes, scores, classes):
        return batched_nms(boxes, scores, classes, 10, 0.5)

    assert run(tf.zeros([0, 4]), tf.zeros([0]), tf.zeros([0], tf.int32)).shape == (0,)
    np.testing.assert_array_equal(run([SQUARE, SQUARE], [0.5, 0.6], [1, 2]).numpy(), [1, 0])


GT_BOXES = [SQUARE, [20.0, 20.0, 30.0, 30.0], [100.0, 100.0, 110.0, 110.0]]
GT_LABELS = [2, 1, 3]
BOXES = [
    SQUARE,  # IoU 1 with gt 0: positive, label 2
    [0.0, 0.0, 10.0, 6.0],  # IoU 0.6 with gt 0: ignore band
    [0.0, 0.0, 10.0, 2.0],  # IoU 0.2: background
    [40.0, 40.0, 50.0, 50.0],  # no overlap: background
    [20.0, 20.0, 30.0, 25.0],  # IoU 0.5 with gt 1, tied best for it: ignore, rescued for the RPN
    [20.0, 25.0, 30.0, 30.0],  # the other tied best box of gt 1
]


def test_assign_targets_hand_case():
    labels, matched = assign_targets(BOXES, GT_BOXES, GT_LABELS, 0.7, 0.3)
    np.testing.assert_array_equal(labels.numpy(), [2, -1, 0, 0, -1, -1])
    assert labels.dtype == tf.int32 and matched.dtype == tf.float32
    np.testing.assert_array_equal(matched.numpy()[[0, 1, 4, 5]], [GT_BOXES[0]] * 2 + [GT_BOXES[1]] * 2)


def test_assign_targets_thresholds_are_inclusive_below():
    # IoU exactly positive_iou is positive, exactly negative_iou is ignored (background is < only).
    boxes = [[0.0, 0.0, 10.0, 7.0], [0.0, 0.0, 10.0, 3.0], [0.0, 0.0, 10.0, 2.9]]
    labels, _ = assign_targets(boxes, [SQUARE], [4], 0.7, 0.3)
    np.testing.assert_array_equal(labels.numpy(), [4, -1, 0])


def test_assign_targets_low_quality_rescue():
    # gt 1's best boxes (IoU 0.5) become positive; gt 2 overlaps nothing, so rescues no IoU-0 box.
    labels, matched = assign_targets(BOXES, GT_BOXES, GT_LABELS, 0.7, 0.3, allow_low_quality=True)
    np.testing.assert_array_equal(labels.numpy(), [2, -1, 0, 0, 1, 1])
    np.testing.assert_array_equal(matched.numpy()[4:], [GT_BOXES[1]] * 2)


def test_assign_targets_without_ground_truth():
    labels, matched = assign_targets(BOXES, tf.zeros([0, 4]), tf.zeros([0], tf.int32), 0.7, 0.3, True)
    np.testing.assert_array_equal(labels.numpy(), np.zeros(6))
    np.testing.assert_array_equal(matched.numpy(), np.zeros((6, 4)))


def test_assign_targets_inside_tf_function_with_dynamic_counts():
    spec = [tf.TensorSpec([None, 4]), tf.TensorSpec([None, 4]), tf.TensorSpec([None], tf.int32)]

    @tf.function(input_signature=spec)
    def assign(boxes, gt_boxes, gt_labels):
        return assign_targets(boxes, gt_boxes, gt_labels, 0.7, 0.3, allow_low_quality=True)

    labels, matched = assign(BOXES, tf.zeros([0, 4]), tf.zeros([0], tf.int32))
    np.testing.assert_array_equal(labels.numpy(), np.zeros(6))
    np.testing.assert_array_equal(matched.numpy(), np.zeros((6, 4)))
    labels, _ = assign(BOXES, GT_BOXES, GT_LABELS)
    np.testing.assert_array_equal(labels.numpy(), [2, -1, 0, 0, 1, 1])


LABELS = np.array([1, 2, 3, 1, 1, 2, 2, 3, 1, 1] + [0] * 50 + [-1] * 20, np.int32)


def check_sample(sampled, labels, positives, negatives):
    sampled = np.asarray(sampled)
    kept = sampled != -1
    assert np.sum(sampled >= 1) == positives and np.sum(sampled == 0) == negatives
    np.testing.assert_array_equal(sampled[kept], labels[kept])  # kept boxes keep their labels
    assert np.all(labels[kept] != -1)


def test_sample_targets_counts_and_fraction():
    check_sample(sample_targets(LABELS, 16, 0.25, seed=0), LABELS, 4, 12)
    check_sample(sample_targets(LABELS, 16, 0.25), LABELS, 4, 12)
    few_positives = LABELS.copy()
    few_positives[2:10] = -1  # two positives left
    check_sample(sample_targets(few_positives, 16, 0.5, seed=0), few_positives, 2, 14)  # negatives fill up
    small = np.array([1, 0, 0, -1, 2, -1], np.int32)
    check_sample(sample_targets(small, 16, 0.5, seed=0), small, 2, 2)


def test_sample_targets_is_deterministic_with_a_seed():
    first = sample_targets(LABELS, 16, 0.25, seed=7).numpy()
    np.testing.assert_array_equal(sample_targets(LABELS, 16, 0.25, seed=7).numpy(), first)
    assert not np.array_equal(sample_targets(LABELS, 16, 0.25, seed=8).numpy(), first)
    np.testing.assert_array_equal(sample_targets(LABELS, 16, 0.25, seed=tf.constant([7, 0])).numpy(), first)


def test_sample_targets_inside_tf_function():
    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32)])
    def sample(labels):
        return sample_targets(labels, 16, 0.25, seed=7)

    np.testing.assert_array_equal(sample(LABELS).numpy(), sample_targets(LABELS, 16, 0.25, seed=7).numpy())
    assert sample(tf.zeros([0], tf.int32)).shape == (0,)
