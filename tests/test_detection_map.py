"""VOC-style mean average precision against hand-computed precision/recall curves."""

import numpy as np
import pytest

from ai500.metrics.detection import mean_average_precision, truth_rows

A = [0.0, 0.0, 10.0, 10.0]
B = [20.0, 20.0, 30.0, 30.0]
C = [50.0, 0.0, 60.0, 10.0]
FAR = [80.0, 80.0, 90.0, 90.0]


def det(image, cls, score, box):
    return [image, cls, score, *box]


def truth(image, cls, box):
    return [image, cls, *box]


def class0_ap(detections, truths, **kwargs):
    result = mean_average_precision(np.array(detections), np.array(truths), 1, **kwargs)
    return result["ap"][0]


def test_perfect_detections():
    truths = [truth(0, 0, A), truth(0, 1, B), truth(1, 0, B), truth(1, 1, C)]
    detections = [det(t[0], t[1], 0.9, t[2:]) for t in truths]
    result = mean_average_precision(np.array(detections), np.array(truths), 2)
    assert result == {"map": 1.0, "ap": [1.0, 1.0], "classes_with_truth": 2}


def test_one_missed_box_of_two():
    # Recall reaches 1/2 at precision 1 and never more: AP = 1/2 * 1.
    assert class0_ap([det(0, 0, 0.9, A)], [truth(0, 0, A), truth(0, 0, B)]) == pytest.approx(0.5)


def test_duplicate_detection_is_a_false_positive():
    # TP, duplicate FP, TP: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> 1/2 * 1 + 1/2 * 2/3.
    detections = [det(0, 0, 0.9, A), det(0, 0, 0.8, A), det(0, 0, 0.7, B)]
    assert class0_ap(detections, [truth(0, 0, A), truth(0, 0, B)]) == pytest.approx(5 / 6)


def test_best_iou_truth_taken_means_false_positive():
    # The second detection overlaps A (IoU 90/110) more than the free B (IoU 70/130 >= 0.5), but A is
    # taken: the VOC rule makes it a false positive (COCO would match it to B and give AP 1).
    b_shifted = [0.0, 4.0, 10.0, 14.0]
    detections = [det(0, 0, 0.9, A), det(0, 0, 0.8, [0.0, 1.0, 10.0, 11.0])]
    assert class0_ap(detections, [truth(0, 0, A), truth(0, 0, b_shifted)]) == pytest.approx(0.5)


def test_wrong_class_scores_zero():
    result = mean_average_precision(np.array([det(0, 1, 0.9, A)]), np.array([truth(0, 0, A)]), 2)
    assert result["ap"][0] == 0.0 and np.isnan(result["ap"][1])
    assert result["map"] == 0.0 and result["classes_with_truth"] == 1


def test_high_score_false_positive_before_true_positives():
    truths = [truth(0, 0, A), truth(0, 0, B)]
    # FP, TP, TP: precision 0, 1/2, 2/3 at recall 0, 1/2, 1; the envelope is 2/3 everywhere -> 2/3.
    first = [det(0, 0, 0.95, FAR), det(0, 0, 0.8, A), det(0, 0, 0.7, B)]
    assert class0_ap(first, truths) == pytest.approx(2 / 3)
    last = [det(0, 0, 0.5, FAR), det(0, 0, 0.8, A), det(0, 0, 0.7, B)]
    assert class0_ap(last, truths) == pytest.approx(1.0)


def test_precision_envelope():
    # TP, FP, FP, TP, TP with three truths: precision 1, 1/2, 1/3, 1/2, 3/5 at recall 1/3 .. 1.
    # At recall 2/3 the envelope takes the later 3/5, not 1/2: 1/3 * (1 + 3/5 + 3/5) = 11/15.
    truths = [truth(0, 0, A), truth(0, 0, B), truth(0, 0, C)]
    detections = [det(0, 0, 0.9, A), det(0, 0, 0.8, FAR), det(1, 0, 0.7, A), det(0, 0, 0.6, B),
                  det(0, 0, 0.5, C)]
    assert class0_ap(detections, truths) == pytest.approx(11 / 15)


def test_equal_scores_keep_input_order():
    truths = [truth(0, 0, A)]
    assert class0_ap([det(0, 0, 0.5, FAR), det(0, 0, 0.5, A)], truths) == pytest.approx(0.5)
    assert class0_ap([det(0, 0, 0.5, A), det(0, 0, 0.5, FAR)], truths) == pytest.approx(1.0)


def test_images_with_the_same_coordinates_are_not_confused():
    truths = [truth(0, 0, A), truth(1, 0, A)]
    # Both detections sit in image 0: the second is a duplicate there, not a match for image 1.
    assert class0_ap([det(0, 0, 0.9, A), det(0, 0, 0.8, A)], truths) == pytest.approx(0.5)
    assert class0_ap([det(0, 0, 0.9, A), det(1, 0, 0.8, A)], truths) == pytest.approx(1.0)
    # A detection in an image without truth is a false positive: FP, TP, TP -> 2/3.
    detections = [det(7, 0, 0.95, A), det(0, 0, 0.9, A), det(1, 0, 0.8, A)]
    assert class0_ap(detections, truths) == pytest.approx(2 / 3)


def test_classes_without_truth_are_nan_and_left_out():
    truths = [truth(0, 0, A), truth(0, 2, A), truth(0, 2, B)]
    detections = [det(0, 0, 0.9, A), det(0, 1, 0.9, B), det(0, 2, 0.9, A)]
    result = mean_average_precision(np.array(detections), np.array(truths), 4)
    assert result["ap"][0] == 1.0 and result["ap"][2] == pytest.approx(0.5)
    assert np.isnan(result["ap"][1]) and np.isnan(result["ap"][3])
    assert result["map"] == pytest.approx(0.75) and result["classes_with_truth"] == 2


def test_no_truth_or_no_detections():
    result = mean_average_precision(np.array([det(0, 0, 0.9, A)]), np.zeros((0, 6)), 2)
    assert np.isnan(result["map"]) and result["classes_with_truth"] == 0
    result = mean_average_precision(np.zeros((0, 7)), np.array([truth(0, 1, A)]), 2)
    assert result["map"] == 0.0 and result["ap"][1] == 0.0


def test_iou_threshold_boundary_counts_as_a_match():
    # Convention: IoU >= threshold matches (COCO); the VOC devkit's strict > would reject these.
    truths = [truth(0, 0, A)]
    assert class0_ap([det(0, 0, 0.9, [0.0, 0.0, 10.0, 5.0])], truths) == 1.0  # IoU exactly 0.5
    assert class0_ap([det(0, 0, 0.9, [0.0, 0.0, 10.0, 4.9])], truths) == 0.0
    assert class0_ap([det(0, 0, 0.9, [0.0, 0.0, 10.0, 7.5])], truths, iou_threshold=0.75) == 1.0
    assert class0_ap([det(0, 0, 0.9, [0.0, 0.0, 10.0, 7.4])], truths, iou_threshold=0.75) == 0.0


def random_boxes(rng, n):
    top_left = rng.uniform(0.0, 60.0, (n, 2))
    return np.concatenate([top_left, top_left + rng.uniform(5.0, 30.0, (n, 2))], axis=1)


def voc_reference(detections, truths, iou_threshold):
    """Class-0 AP the slow way: one IoU per (detection, truth) pair, VOC devkit style."""
    detections = sorted(detections, key=lambda d: -d[2])
    taken = [False] * len(truths)
    tp = []
    for d in detections:
        best, best_j = -1.0, -1
        for j, t in enumerate(truths):
            if t[0] != d[0]:
                continue
            inter = (max(0.0, min(d[5], t[4]) - max(d[3], t[2]))
                     * max(0.0, min(d[6], t[5]) - max(d[4], t[3])))
            union = (d[5] - d[3]) * (d[6] - d[4]) + (t[4] - t[2]) * (t[5] - t[3]) - inter
            if inter / union > best:
                best, best_j = inter / union, j
        hit = best >= iou_threshold and not taken[best_j]
        if hit:
            taken[best_j] = True
        tp.append(hit)
    precision = np.cumsum(tp) / np.arange(1, len(tp) + 1)
    recall = np.cumsum(tp) / len(truths)
    # AP as the sum over recall steps of the best precision at that recall or beyond.
    ap, previous = 0.0, 0.0
    for k in range(len(tp)):
        if recall[k] > previous:
            ap += (recall[k] - previous) * precision[k:].max()
            previous = recall[k]
    return ap


def test_matches_a_straightforward_reference_on_random_scenes():
    rng = np.random.default_rng(0)
    truths = [truth(int(rng.integers(0, 5)), 0, box) for box in random_boxes(rng, 40)]
    jitter = rng.normal(0.0, 2.0, (60, 4))
    detections = [det(truths[i][0] if i < 40 else int(rng.integers(0, 5)), 0, float(rng.random()),
                      truths[i % 40][2:] + jitter[i]) for i in range(60)]
    assert class0_ap(detections, truths) == pytest.approx(voc_reference(detections, truths, 0.5))
    assert class0_ap(detections, truths, iou_threshold=0.7) == pytest.approx(
        voc_reference(detections, truths, 0.7))


@pytest.mark.parametrize("detections, truths, num_classes", [
    (np.zeros((2, 6)), np.zeros((1, 6)), 2),  # detections need 7 columns
    (np.zeros((2, 7)), np.zeros((1, 7)), 2),  # truths need 6 columns
    (np.array([det(0, 2, 0.9, A)]), np.array([truth(0, 0, A)]), 2),  # class out of range
    (np.array([det(0, 0.5, 0.9, A)]), np.array([truth(0, 0, A)]), 2),  # class not an integer
    (np.array([det(0, 0, np.nan, A)]), np.array([truth(0, 0, A)]), 2),  # non-finite score
    (np.zeros((0, 7)), np.array([truth(0, 0, A)]), 0),
])
def test_bad_inputs_raise(detections, truths, num_classes):
    with pytest.raises(ValueError):
        mean_average_precision(detections, truths, num_classes)


def test_truth_rows_lists_used_boxes_by_image():
    boxes = np.full((2, 3, 5), -1.0)
    boxes[0, 0] = [1, 2, 3, 4, 2]
    boxes[1, 0] = [5, 6, 7, 8, 0]
    boxes[1, 1] = [9, 10, 11, 12, 3]
    np.testing.assert_array_equal(truth_rows(boxes, np.array([10, 11])), [
        [10, 2, 1, 2, 3, 4], [11, 0, 5, 6, 7, 8], [11, 3, 9, 10, 11, 12]])
    assert truth_rows(np.full((1, 3, 5), -1.0), np.array([0])).shape == (0, 6)
