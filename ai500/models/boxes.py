"""Box operations for Faster R-CNN (TensorFlow, graph-safe with dynamic box counts).

Boxes are float32 `(ymin, xmin, ymax, xmax)` in pixels of the input image, continuous coordinates:
area = (ymax - ymin) * (xmax - xmin), no +1. Detector labels: 0 is background, dataset class c is
label c + 1; -1 marks a box ignored by the loss. Every function works inside `tf.function` with
unknown N (boxes), M and G (ground truths), G = 0 included.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import tensorflow as tf

# Largest log size ratio decode accepts: a box at most 1000/16 times its anchor, so exp never overflows
# (the value Detectron and torchvision use).
BBOX_CLIP = math.log(1000.0 / 16.0)
# Smallest box side encode divides by / takes the log of, so degenerate (zero-size) boxes give finite
# deltas instead of -inf that would turn a masked loss into NaN.
_MIN_SIDE = 1e-6


def _f32(x) -> tf.Tensor:
    return tf.cast(tf.convert_to_tensor(x), tf.float32)


def _area(boxes: tf.Tensor) -> tf.Tensor:
    """[N,4] -> [N] areas in pixels²; inverted boxes count as zero."""
    return tf.maximum(boxes[:, 2] - boxes[:, 0], 0.0) * tf.maximum(boxes[:, 3] - boxes[:, 1], 0.0)


def pairwise_iou(a, b) -> tf.Tensor:
    """IoU of every box in `a` [N,4] with every box in `b` [M,4] -> [N,M] float32 (0 where union is 0)."""
    a, b = _f32(a), _f32(b)
    top_left = tf.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = tf.minimum(a[:, None, 2:], b[None, :, 2:])
    side = tf.maximum(bottom_right - top_left, 0.0)
    inter = side[..., 0] * side[..., 1]
    union = _area(a)[:, None] + _area(b)[None, :] - inter
    return tf.math.divide_no_nan(inter, union)


def _centre_size(boxes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """[N,4] -> centre y, centre x, height, width, each [N]."""
    h = boxes[:, 2] - boxes[:, 0]
    w = boxes[:, 3] - boxes[:, 1]
    return boxes[:, 0] + 0.5 * h, boxes[:, 1] + 0.5 * w, h, w


def encode(boxes, anchors, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> tf.Tensor:
    """Regression targets of `boxes` [N,4] relative to `anchors` [N,4] -> [N,4] (ty, tx, th, tw) * weights.

    ty = (cy - cy_a) / h_a, tx = (cx - cx_a) / w_a, th = log(h / h_a), tw = log(w / w_a).
    """
    cy, cx, h, w = _centre_size(_f32(boxes))
    acy, acx, ah, aw = _centre_size(_f32(anchors))
    h, w = tf.maximum(h, _MIN_SIDE), tf.maximum(w, _MIN_SIDE)
    ah, aw = tf.maximum(ah, _MIN_SIDE), tf.maximum(aw, _MIN_SIDE)
    deltas = tf.stack([(cy - acy) / ah, (cx - acx) / aw, tf.math.log(h / ah), tf.math.log(w / aw)], axis=1)
    return deltas * tf.constant(weights, tf.float32)


def decode(deltas, anchors, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> tf.Tensor:
    """Inverse of `encode`: deltas [N,4] on `anchors` [N,4] -> boxes [N,4]; th, tw clipped at BBOX_CLIP."""
    d = _f32(deltas) / tf.constant(weights, tf.float32)
    acy, acx, ah, aw = _centre_size(_f32(anchors))
    cy = d[:, 0] * ah + acy
    cx = d[:, 1] * aw + acx
    h = tf.exp(tf.minimum(d[:, 2], BBOX_CLIP)) * ah
    w = tf.exp(tf.minimum(d[:, 3], BBOX_CLIP)) * aw
    return tf.stack([cy - 0.5 * h, cx - 0.5 * w, cy + 0.5 * h, cx + 0.5 * w], axis=1)


def make_anchors(feature_height, feature_width, stride: float, sizes: Sequence[float],
                 aspect_ratios: Sequence[float]) -> tf.Tensor:
    """Anchors of a feature map -> [H*W*A, 4], A = len(sizes) * len(aspect_ratios).

    Cell (i, j) is centred at ((i + 0.5) * stride, (j + 0.5) * stride) pixels. Order: row-major over
    (i, j), then sizes outer and ratios inner, so row r matches a conv output [H, W, A*k] reshaped to
    [H*W*A, k]. Ratio r = height / width at constant area size²: h = size*sqrt(r), w = size/sqrt(r).
    """
    size = tf.constant(sizes, tf.float32)[:, None]
    root = tf.sqrt(tf.constant(aspect_ratios, tf.float32))[None, :]
    half = 0.5 * tf.stack([tf.reshape(size * root, [-1]), tf.reshape(size / root, [-1])], axis=1)  # [A,2]
    cy = (tf.range(feature_height, dtype=tf.float32) + 0.5) * stride
    cx = (tf.range(feature_width, dtype=tf.float32) + 0.5) * stride
    cy, cx = tf.meshgrid(cy, cx, indexing="ij")
    centres = tf.reshape(tf.stack([cy, cx], axis=-1), [-1, 1, 2])  # [H*W,1,2]
    return tf.reshape(tf.concat([centres - half, centres + half], axis=-1), [-1, 4])


def clip_boxes(boxes, height, width) -> tf.Tensor:
    """Clip `boxes` [N,4] to the image [0, height] x [0, width]."""
    boxes = _f32(boxes)
    limit = tf.stack([_f32(height), _f32(width)] * 2)
    return tf.clip_by_value(boxes, 0.0, limit)


def nms(boxes, scores, max_output, iou_threshold: float,
        score_threshold: float = float("-inf")) -> tf.Tensor:
    """Greedy NMS -> int32 indices of kept boxes by descending score.

    Follows tf.image.non_max_suppression: a box is suppressed by a kept one when IoU > iou_threshold
    (strictly), and only boxes with score > score_threshold are considered.
    """
    return tf.image.non_max_suppression(_f32(boxes), _f32(scores), max_output, iou_threshold,
                                        score_threshold)


def batched_nms(boxes, scores, classes, max_output, iou_threshold: float,
                score_threshold: float = float("-inf")) -> tf.Tensor:
    """Class-aware NMS -> int32 indices: boxes of different `classes` [N] never suppress each other."""
    boxes = _f32(boxes)
    # Shift each class into its own disjoint region, so one class-agnostic NMS call does the work;
    # the span is padded so an empty input (reduce over nothing = -inf) still gives a finite offset.
    span = tf.maximum(tf.reduce_max(boxes) - tf.reduce_min(boxes), 0.0) + 1.0
    shifted = boxes + (_f32(classes) * span)[:, None]
    return nms(shifted, scores, max_output, iou_threshold, score_threshold)


def assign_targets(boxes, gt_boxes, gt_labels, positive_iou: float, negative_iou: float,
                   allow_low_quality: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
    """Match `boxes` [N,4] (anchors or proposals) to `gt_boxes` [G,4] with labels `gt_labels` [G] (>= 1).

    Returns (labels [N] int32, matched_gt [N,4] float32): the best-IoU gt's label where max IoU >=
    positive_iou, 0 where max IoU < negative_iou, -1 in between. allow_low_quality (RPN) also makes
    positive, for each gt, the box(es) with that gt's highest IoU when it is > 0. G = 0: all background.
    """
    boxes, gt_boxes = _f32(boxes), _f32(gt_boxes)
    gt_labels = tf.cast(gt_labels, tf.int32)
    n = tf.shape(boxes)[0]

    def match():
        iou = pairwise_iou(boxes, gt_boxes)  # [N,G]
        best = tf.argmax(iou, axis=1, output_type=tf.int32)
        max_iou = tf.reduce_max(iou, axis=1)
        gt_label = tf.gather(gt_labels, best)
        labels = tf.where(max_iou >= positive_iou, gt_label,
                          tf.where(max_iou < negative_iou, 0, -1))
        if allow_low_quality:
            # A gt that no box reaches positive_iou would otherwise teach the RPN nothing.
            gt_max = tf.reduce_max(iou, axis=0)  # [G]
            is_best = (iou == gt_max[None, :]) & (gt_max[None, :] > 0.0)
            labels = tf.where(tf.reduce_any(is_best, axis=1), gt_label, labels)
        return labels, tf.gather(gt_boxes, best)

    def all_background():
        return tf.zeros([n], tf.int32), tf.zeros([n, 4], tf.float32)

    # argmax/gather over an empty gt axis fail at run time, so G = 0 takes its own branch.
    return tf.cond(tf.shape(gt_boxes)[0] > 0, match, all_background)


def _seed_pair(seed) -> tf.Tensor:
    """An int seed or a [2] tensor (e.g. (seed, step)) -> the [2] int32 seed of stateless ops."""
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int32)
    return tf.stack([seed, 0]) if seed.shape.rank == 0 else seed


def sample_targets(labels, num_samples: int, positive_fraction: float, seed=None) -> tf.Tensor:
    """Keep a random minibatch of `labels` [N] int32, set the rest to -1 -> [N] int32.

    Keeps at most round(num_samples * positive_fraction) positives (label >= 1), fills the rest of
    num_samples with negatives (label 0); -1 stays -1. `seed` (int, or [2] ints such as (seed, step))
    makes the draw a pure function of its inputs; None draws from the global generator.
    """
    labels = tf.cast(labels, tf.int32)
    shape = tf.shape(labels)
    # Stateless draws: a fixed seed must give the same subset on every call, also in eager mode.
    keys = (tf.random.uniform(shape) if seed is None
            else tf.random.stateless_uniform(shape, _seed_pair(seed)))

    def pick(mask, count):
        idx = tf.where(mask)[:, 0]
        return tf.gather(idx, tf.argsort(tf.gather(keys, idx)))[:count]

    positives = pick(labels >= 1, round(num_samples * positive_fraction))
    negatives = pick(tf.equal(labels, 0), num_samples - tf.size(positives))
    keep = tf.concat([positives, negatives], axis=0)[:, None]
    return tf.tensor_scatter_nd_update(tf.fill(shape, -1), keep, tf.gather_nd(labels, keep))
