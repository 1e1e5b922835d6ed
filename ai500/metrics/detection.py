"""Object-detection quality: mean average precision over classes, PASCAL VOC 2010+ style (numpy only).

Boxes are `(ymin, xmin, ymax, xmax)` in pixels, continuous: area = (ymax - ymin) * (xmax - xmin), no +1.
A detection matches a truth when IoU >= iou_threshold (so IoU exactly 0.5 counts at the default; the VOC
devkit uses a strict >, COCO uses >=).
"""

from __future__ import annotations

import numpy as np


def _as_table(rows: np.ndarray, columns: int, name: str) -> np.ndarray:
    """Validate an [K, columns] table of finite numbers; an empty input of any shape is K = 0."""
    table = np.asarray(rows, dtype=np.float64)
    if table.size == 0:
        return table.reshape(0, columns)
    if table.ndim != 2 or table.shape[1] != columns:
        raise ValueError(f"{name} must have shape [K, {columns}], got {table.shape}")
    if not np.all(np.isfinite(table)):
        raise ValueError(f"{name} hold non-finite values")
    return table


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a [N,4] with b [M,4] -> [N,M]; 0 where the union is empty."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0.0, None), axis=-1)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0.0, None), axis=-1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0.0, None), axis=-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _group_by_image(image_ids: np.ndarray) -> dict[float, np.ndarray]:
    """Image id -> indices of its rows, in their original order (a stable sort keeps it)."""
    order = np.argsort(image_ids, kind="stable")
    images, starts = np.unique(image_ids[order], return_index=True)
    return dict(zip(images.tolist(), np.split(order, starts[1:])))


def _true_positives(det: np.ndarray, truth: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy matching of one class -> [K] bool, True where the detection matches a new truth.

    `det` rows are (image, score, box[4]) sorted by descending score; `truth` rows (image, box[4]).
    """
    tp = np.zeros(len(det), dtype=bool)
    truth_by_image = _group_by_image(truth[:, 0])
    # Matching in one image never depends on another, so each image is one small IoU matrix.
    for image, group in _group_by_image(det[:, 0]).items():
        rows = truth_by_image.get(image)
        if rows is None:
            continue
        iou = _iou(det[group, 2:], truth[rows, 1:])
        taken = np.zeros(len(rows), dtype=bool)
        for k, overlaps in zip(group, iou):
            # VOC rule: only the best-IoU truth is considered; if it is already taken the
            # detection is a duplicate and counts as a false positive.
            j = int(np.argmax(overlaps))
            if overlaps[j] >= iou_threshold and not taken[j]:
                taken[j] = tp[k] = True
    return tp


def _average_precision(tp: np.ndarray, num_truths: int) -> float:
    """Area under the all-point interpolated precision/recall curve of score-ordered TP flags."""
    tp_sum = np.cumsum(tp)
    recall = np.r_[0.0, tp_sum / num_truths, 1.0]
    precision = np.r_[0.0, tp_sum / np.arange(1, len(tp) + 1), 0.0]
    envelope = np.maximum.accumulate(precision[::-1])[::-1]  # best precision at any higher recall
    steps = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[steps + 1] - recall[steps]) * envelope[steps + 1]))


def truth_rows(boxes: np.ndarray, image_ids: np.ndarray) -> np.ndarray:
    """Label rows (n, B, 5) `ymin, xmin, ymax, xmax, class` (unused rows class -1) of images with ids
    (n,) -> the truths table [G, 6] (image_id, class, ymin, xmin, ymax, xmax) of
    mean_average_precision, float64, image by image."""
    boxes = np.asarray(boxes)
    used = boxes[..., 4] >= 0
    image_id = np.broadcast_to(np.asarray(image_ids)[:, None], used.shape)[used]
    return np.column_stack([image_id, boxes[used][:, 4], boxes[used][:, :4]]).astype(
        np.float64).reshape(-1, 6)


def mean_average_precision(detections: np.ndarray, truths: np.ndarray, num_classes: int,
                           iou_threshold: float = 0.5) -> dict:
    """Mean over classes of the VOC 2010+ average precision.

    detections [K,7] rows (image_id, class, score, ymin, xmin, ymax, xmax); truths [G,6] rows
    (image_id, class, ymin, xmin, ymax, xmax); classes are 0..num_classes-1. Per class, detections
    in descending score order (stable) match the best-IoU truth of their image if IoU >= iou_threshold
    and it is not already matched; anything else is a false positive.

    Returns {"map": mean AP over classes with truth (nan if none), "ap": per-class AP (nan without
    truth, 0 with truth but no detections), "classes_with_truth": how many classes have truth}.
    """
    det = _as_table(detections, 7, "detections")
    truth = _as_table(truths, 6, "truths")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    for name, classes in (("detections", det[:, 1]), ("truths", truth[:, 1])):
        if np.any((classes != np.round(classes)) | (classes < 0) | (classes >= num_classes)):
            raise ValueError(f"{name} hold classes outside the integers 0..{num_classes - 1}")

    ap = []
    for c in range(num_classes):
        d = det[det[:, 1] == c][:, [0, 2, 3, 4, 5, 6]]
        t = truth[truth[:, 1] == c][:, [0, 2, 3, 4, 5]]
        if len(t) == 0:
            ap.append(float("nan"))
            continue
        d = d[np.argsort(-d[:, 1], kind="stable")]
        ap.append(_average_precision(_true_positives(d, t, iou_threshold), len(t)) if len(d) else 0.0)
    with_truth = [a for a in ap if not np.isnan(a)]
    return {"map": float(np.mean(with_truth)) if with_truth else float("nan"), "ap": ap,
            "classes_with_truth": len(with_truth)}
