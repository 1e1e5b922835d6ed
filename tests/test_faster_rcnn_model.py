"""The Faster R-CNN model: backbone reuse, RoI align geometry, loss terms, and that it can learn."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from ai500.models import boxes as box_ops
from ai500.models.faster_rcnn import LOSS_NAMES, FasterRCNN, FasterRCNNConfig

TINY = {"input_shape": (64, 96, 4), "num_classes": 4, "stem_width": 8, "stage_widths": (8, 16),
        "stage_blocks": (1, 1), "stage_strides": (2, 2), "bottleneck": False,
        "rpn_channels": 16, "anchor_sizes": (16.0, 32.0), "aspect_ratios": (0.5, 1.0, 2.0),
        "rpn_batch": 64, "rpn_pre_nms": 200, "rpn_post_nms_train": 64, "rpn_post_nms_test": 32,
        "roi_batch": 32, "head_units": 64, "detections_per_image": 10}


def test_config_derives_stride_and_rejects_bad_shapes():
    cfg = FasterRCNNConfig(**TINY)
    assert cfg.feature_stride == 8 and cfg.anchors_per_position == 6
    with pytest.raises(ValueError, match="multiples of the feature stride"):
        FasterRCNNConfig(**{**TINY, "input_shape": (60, 96, 4)})
    with pytest.raises(ValueError, match="same length"):
        FasterRCNNConfig(**{**TINY, "stage_strides": (2,)})


def test_backbone_is_built_from_the_resnet_blocks_and_anchors_cover_the_map():
    model = FasterRCNN(FasterRCNNConfig(**TINY))
    names = [layer.name for layer in model.backbone.layers]
    assert any(n.startswith("stage2_block1") for n in names)  # ai500.models.resnet.residual_stage
    features, logits, deltas = model(tf.zeros((2, 64, 96, 4)))
    assert features.shape[1:3] == (8, 12)
    assert logits.shape == (2, 8 * 12 * 6) and deltas.shape == (2, 8 * 12 * 6, 4)
    assert model.anchors.shape == (8 * 12 * 6, 4)


def test_roi_align_samples_the_feature_cells_under_the_box():
    model = FasterRCNN(FasterRCNNConfig(**TINY))
    stride = 8
    # Channel 0 holds each cell's column index, channel 1 its row index.
    cols, rows = np.meshgrid(np.arange(12, dtype=np.float32), np.arange(8, dtype=np.float32))
    features = tf.constant(np.stack([cols, rows], -1)[None])
    # A box from the centre of cell (row 1, col 2) to the centre of cell (row 5, col 9).
    roi = tf.constant([[1.5 * stride, 2.5 * stride, 5.5 * stride, 9.5 * stride]])
    pooled = model._roi_align(features, roi, tf.constant([0])).numpy()[0]
    assert pooled.shape == (7, 7, 2)
    # Max-pooled bilinear samples: columns rise from just above 2 to exactly 9 across the crop.
    assert pooled[0, 0, 0] == pytest.approx(2 + 7 / 13, abs=1e-4)
    assert pooled[0, -1, 0] == pytest.approx(9.0, abs=1e-4)
    assert pooled[-1, 0, 1] == pytest.approx(5.0, abs=1e-4)
    assert np.all(np.diff(pooled[0, :, 0]) > 0) and np.all(np.diff(pooled[:, 0, 1]) > 0)


def _one_storm_batch() -> tuple[tf.Tensor, tf.Tensor]:
    """Two fields, each with one bright square 'storm' of class 1 (tropical cyclone)."""
    images = np.random.default_rng(0).normal(0, 0.1, (2, 64, 96, 4)).astype(np.float32)
    boxes = -np.ones((2, 15, 5), np.float32)
    for i, (y, x) in enumerate([(16, 24), (28, 56)]):
        images[i, y:y + 20, x:x + 20, :] += 2.0
        boxes[i, 0] = [y, x, y + 20, x + 20, 1]
    return tf.constant(images), tf.constant(boxes)


def test_losses_are_the_four_named_terms_finite_also_without_any_box():
    model = FasterRCNN(FasterRCNNConfig(**TINY))
    images, boxes = _one_storm_batch()
    losses = model.losses_on(images, boxes)
    assert tuple(losses) == LOSS_NAMES
    assert all(np.isfinite(v.numpy()) and v.numpy() >= 0 for v in losses.values())
    empty = model.losses_on(images, -tf.ones_like(boxes))
    assert float(empty["rpn_box"]) == 0.0 and float(empty["roi_box"]) == 0.0
    assert float(empty["rpn_objectness"]) > 0 and float(empty["roi_class"]) > 0


def test_detector_learns_to_find_a_bright_storm():
    tf.keras.utils.set_random_seed(1)
    model = FasterRCNN(FasterRCNNConfig(**TINY))
    images, boxes = _one_storm_batch()
    optimizer = tf.keras.optimizers.Adam(1e-3)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            losses = model.losses_on(images, boxes)
            total = tf.add_n(list(losses.values()))
        grads = tape.gradient(total, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return total

    first = float(step())
    for _ in range(150):
        last = float(step())
    assert last < 0.3 * first
    found, scores, classes, counts = (t.numpy() for t in tf.function(model.detect)(images))
    assert counts.shape == (2,) and found.shape == (2, 10, 4)
    for i in range(2):
        best = int(np.argmax(scores[i, :counts[i]]))
        assert classes[i, best] == 1  # dataset class 1 = label 2 inside the detector
        iou = box_ops.pairwise_iou(found[i, best:best + 1], boxes[i, :1, :4]).numpy()[0, 0]
        assert iou > 0.5, (found[i, best], boxes[i, 0])
