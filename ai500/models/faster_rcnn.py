"""Faster R-CNN (Ren et al., 2015): a ResNet backbone, a region proposal network and a RoI head.

One feature map at stride `feature_stride` is shared by both stages:

1. The RPN slides a 3×3 conv over it and predicts, for each of the A anchors at every position
   (several sizes × aspect ratios), an objectness logit and box deltas. Decoded, clipped to the
   image, the top-scoring ones go through non-maximum suppression: these are the proposals.
2. Each proposal's features are cut out of the map by RoI align (bilinear crop-and-resize to
   2·roi_size, then 2×2 max-pool) and a two-layer MLP classifies it into background + the dataset
   classes and refines its box with class-specific deltas.

Training targets are sampled by IoU as in the paper: per image `rpn_batch` anchors (half positive at
most, positives IoU ≥ 0.7 or the best anchor of each true box, negatives < 0.3) and `roi_batch`
proposals with the true boxes added (a quarter positive at most, IoU ≥ 0.5). Gradients do not
flow through the proposals' coordinates (the "approximate joint training" of the paper).

Boxes are (ymin, xmin, ymax, xmax) in input pixels; label 0 is background, dataset class c is c+1.

Under a mixed-precision policy (ai500.precision) the backbone and the heads' hidden layers compute
in bf16 or fp16; the heads' output layers (objectness, class logits, box deltas), RoI align, box
decoding and every loss are float32. `jit_compile=True` XLA-compiles the backbone and RPN head (the
dense part, nearly all of the FLOPs); target sampling, NMS and RoI align have data-dependent
shapes that XLA cannot compile and run as ordinary TensorFlow ops.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from ai500.models import boxes as box_ops
from ai500.models.resnet import conv_bn, residual_stage

layers = tf.keras.layers

# Second-stage deltas are scaled so that their spread is near 1 (Faster R-CNN's "box coder weights").
ROI_DELTA_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
LOSS_NAMES = ("rpn_objectness", "rpn_box", "roi_class", "roi_box")


@dataclass(frozen=True)
class FasterRCNNConfig:
    """Network shape and the detector's sampling/NMS settings (counts are per image)."""

    input_shape: tuple[int, int, int] = (768, 1152, 16)
    num_classes: int = 4
    stem_width: int = 64
    stage_widths: tuple[int, ...] = (64, 128, 256)
    stage_blocks: tuple[int, ...] = (3, 4, 6)
    stage_strides: tuple[int, ...] = (2, 2, 2)
    bottleneck: bool = True
    weight_decay: float = 1e-4
    rpn_channels: int = 256
    anchor_sizes: tuple[float, ...] = (32.0, 64.0, 128.0, 256.0)
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    rpn_batch: int = 256
    rpn_pre_nms: int = 2000
    rpn_post_nms_train: int = 512
    rpn_post_nms_test: int = 300
    rpn_nms_iou: float = 0.7
    roi_batch: int = 128
    roi_size: int = 7
    head_units: int = 1024
    detections_per_image: int = 100
    detection_score: float = 0.05
    detection_nms_iou: float = 0.5

    def __post_init__(self):
        for name in ("input_shape", "stage_widths", "stage_blocks", "stage_strides", "anchor_sizes",
                     "aspect_ratios"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not len(self.stage_widths) == len(self.stage_blocks) == len(self.stage_strides):
            raise ValueError("stage_widths, stage_blocks and stage_strides must have the same length")
        if self.input_shape[0] % self.feature_stride or self.input_shape[1] % self.feature_stride:
            raise ValueError(f"input height and width {self.input_shape[:2]} must be multiples of "
                             f"the feature stride {self.feature_stride}")

    @property
    def feature_stride(self) -> int:
        """Input pixels per feature-map cell: the stem's 2 times every stage's stride."""
        stride = 2
        for s in self.stage_strides:
            stride *= s
        return stride

    @property
    def anchors_per_position(self) -> int:
        return len(self.anchor_sizes) * len(self.aspect_ratios)


def _normal(stddev: float) -> tf.keras.initializers.Initializer:
    """Small-normal initialiser for the heads' last layers (a new instance per layer: Keras gives
    a reused unseeded instance the same values every time)."""
    return tf.keras.initializers.RandomNormal(stddev=stddev)


def build_backbone(cfg: FasterRCNNConfig) -> tf.keras.Model:
    """ResNet trunk (the resnet benchmark's blocks) from the image to the shared feature map."""
    inputs = tf.keras.Input(shape=cfg.input_shape, name="image")
    x = conv_bn(inputs, cfg.stem_width, 3, 2, "stem", cfg.weight_decay)
    for i, (width, blocks, stride) in enumerate(zip(cfg.stage_widths, cfg.stage_blocks,
                                                    cfg.stage_strides)):
        x = residual_stage(x, width, blocks, stride, cfg.bottleneck, f"stage{i + 1}",
                           cfg.weight_decay)
    return tf.keras.Model(inputs, x, name="backbone")


def build_rpn_head(cfg: FasterRCNNConfig, channels: int) -> tf.keras.Model:
    """Feature map → (objectness logits [B, H·W·A], box deltas [B, H·W·A, 4])."""
    features = tf.keras.Input(shape=(None, None, channels), name="features")
    x = layers.Conv2D(cfg.rpn_channels, 3, padding="same", activation="relu",
                      kernel_initializer=_normal(0.01), name="rpn_conv")(features)
    a = cfg.anchors_per_position
    # Outputs in float32 under a mixed policy (a layer casts its input to its own dtype).
    logits = layers.Conv2D(a, 1, kernel_initializer=_normal(0.01), dtype="float32",
                           name="rpn_objectness")(x)
    deltas = layers.Conv2D(4 * a, 1, kernel_initializer=_normal(0.01), dtype="float32",
                           name="rpn_deltas")(x)
    logits = layers.Reshape((-1,), dtype="float32", name="rpn_objectness_flat")(logits)
    deltas = layers.Reshape((-1, 4), dtype="float32", name="rpn_deltas_flat")(deltas)
    return tf.keras.Model(features, [logits, deltas], name="rpn_head")


def build_box_head(cfg: FasterRCNNConfig, channels: int) -> tf.keras.Model:
    """Pooled RoI features [R, s, s, C] → (class logits [R, K+1], class-specific deltas [R, K+1, 4])."""
    k = cfg.num_classes + 1
    pooled = tf.keras.Input(shape=(cfg.roi_size, cfg.roi_size, channels), name="roi_features")
    x = layers.Flatten(name="roi_flatten")(pooled)
    for i in range(2):
        x = layers.Dense(cfg.head_units, activation="relu", name=f"roi_fc{i + 1}")(x)
    logits = layers.Dense(k, kernel_initializer=_normal(0.01), dtype="float32", name="roi_class")(x)
    deltas = layers.Dense(4 * k, kernel_initializer=_normal(0.001), dtype="float32",
                          name="roi_deltas")(x)
    deltas = layers.Reshape((k, 4), dtype="float32")(deltas)
    return tf.keras.Model(pooled, [logits, deltas], name="box_head")


def _huber(x, delta: float):
    """Smooth-L1 per element (quadratic below `delta`, linear above)."""
    a = tf.abs(x)
    return tf.where(a < delta, 0.5 * a * a / delta, a - 0.5 * delta)


class FasterRCNN(tf.keras.Model):
    """The two-stage detector; `losses_on` trains, `detect` predicts (see the module docstring)."""

    def __init__(self, cfg: FasterRCNNConfig, jit_compile: bool = False):
        super().__init__(name="faster_rcnn")
        self.cfg = cfg
        self._trunk = (tf.function(self._run_trunk, jit_compile=True) if jit_compile
                       else self._run_trunk)
        self.backbone = build_backbone(cfg)
        channels = self.backbone.output_shape[-1]
        self.rpn_head = build_rpn_head(cfg, channels)
        self.box_head = build_box_head(cfg, channels)
        self.image_height, self.image_width = cfg.input_shape[:2]
        self.anchors = box_ops.make_anchors(self.image_height // cfg.feature_stride,
                                            self.image_width // cfg.feature_stride,
                                            cfg.feature_stride, cfg.anchor_sizes, cfg.aspect_ratios)

    def call(self, images, training=False):
        """Backbone and RPN outputs: (features, objectness logits, RPN deltas)."""
        return self._trunk(images, training)

    def _run_trunk(self, images, training):
        features = self.backbone(images, training=training)
        logits, deltas = self.rpn_head(features, training=training)
        return features, logits, deltas

    def _proposals(self, logits, deltas, post_nms: int):
        """One image's proposals [P, 4] (P ≤ post_nms), best objectness first, no gradient."""
        logits, deltas = tf.stop_gradient(logits), tf.stop_gradient(deltas)
        k = min(self.cfg.rpn_pre_nms, int(self.anchors.shape[0]))
        scores, top = tf.math.top_k(logits, k=k)
        boxes = box_ops.decode(tf.gather(deltas, top), tf.gather(self.anchors, top))
        boxes = box_ops.clip_boxes(boxes, self.image_height, self.image_width)
        keep = box_ops.nms(boxes, scores, post_nms, self.cfg.rpn_nms_iou)
        return tf.gather(boxes, keep)

    def _roi_align(self, features, rois, image_index):
        """Pooled features [R, roi_size, roi_size, C] of rois [R, 4] (input pixels)."""
        # crop_and_resize takes corners as fractions of (map size - 1) in units of cells, and
        # cell j's centre sits at input pixel (j + 0.5) · stride.
        stride = self.cfg.feature_stride
        fh, fw = self.image_height // stride, self.image_width // stride
        norm = (rois / stride - 0.5) / tf.constant([fh - 1, fw - 1] * 2, tf.float32)
        size = 2 * self.cfg.roi_size
        crops = tf.image.crop_and_resize(tf.cast(features, tf.float32), norm, image_index,
                                         [size, size])
        return tf.nn.max_pool2d(crops, 2, 2, "VALID")

    def losses_on(self, images, gt_boxes, training: bool = True, seed=None) -> dict[str, tf.Tensor]:
        """The four training losses for a batch: images [B, H, W, C]; gt_boxes [B, M, 5] rows
        (ymin, xmin, ymax, xmax, class), unused rows with class −1. `seed` ([2] int32, e.g. (run
        and rank, step)) makes the anchor and RoI sampling a pure function of it; None draws from
        the global generator."""
        cfg = self.cfg

        def sampling_seed(image: int, stage: int):
            return None if seed is None else seed + tf.constant([2 * image + stage, 0], tf.int32)

        features, logits, deltas = self(images, training=training)
        batch = images.shape[0]
        rpn_obj, rpn_box, rois, roi_labels, roi_targets, roi_image = [], [], [], [], [], []
        for i in range(batch):  # targets differ per image; the batch is small and static
            used = gt_boxes[i, :, 4] >= 0
            boxes_i = tf.boolean_mask(gt_boxes[i, :, :4], used)
            labels_i = tf.cast(tf.boolean_mask(gt_boxes[i, :, 4], used), tf.int32) + 1

            # Stage 1: objectness for sampled anchors, box deltas for the positive ones.
            anchor_labels, anchor_gt = box_ops.assign_targets(
                self.anchors, boxes_i, tf.ones_like(labels_i), 0.7, 0.3, allow_low_quality=True)
            anchor_labels = box_ops.sample_targets(anchor_labels, cfg.rpn_batch, 0.5,
                                                   sampling_seed(i, 0))
            sampled = anchor_labels >= 0
            positive = anchor_labels >= 1
            rpn_obj.append(tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(
                tf.cast(tf.boolean_mask(positive, sampled), tf.float32),
                tf.boolean_mask(logits[i], sampled))))
            target = box_ops.encode(tf.boolean_mask(anchor_gt, positive),
                                    tf.boolean_mask(self.anchors, positive))
            rpn_box.append(tf.reduce_sum(_huber(tf.boolean_mask(deltas[i], positive) - target, 1 / 9)))

            # Stage 2 targets: proposals plus the true boxes, sampled by IoU.
            proposals = tf.concat([self._proposals(logits[i], deltas[i], cfg.rpn_post_nms_train),
                                   boxes_i], axis=0)
            labels, matched = box_ops.assign_targets(proposals, boxes_i, labels_i, 0.5, 0.5)
            labels = box_ops.sample_targets(labels, cfg.roi_batch, 0.25, sampling_seed(i, 1))
            keep = tf.where(labels >= 0)[:, 0]
            rois.append(tf.gather(proposals, keep))
            roi_labels.append(tf.gather(labels, keep))
            roi_targets.append(box_ops.encode(tf.gather(matched, keep), rois[-1], ROI_DELTA_WEIGHTS))
            roi_image.append(tf.fill(tf.shape(keep), i))

        rois, labels = tf.concat(rois, 0), tf.concat(roi_labels, 0)
        class_logits, roi_deltas = self.box_head(
            self._roi_align(features, rois, tf.concat(roi_image, 0)), training=training)
        positive = labels >= 1
        chosen = tf.gather(roi_deltas, labels, batch_dims=1)  # each RoI's deltas for its true class
        n_rois = tf.cast(tf.maximum(tf.shape(labels)[0], 1), tf.float32)
        n_anchors = float(batch * cfg.rpn_batch)
        return {
            "rpn_objectness": tf.add_n(rpn_obj) / n_anchors,
            "rpn_box": tf.add_n(rpn_box) / n_anchors,
            "roi_class": tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels, class_logits)),
            "roi_box": tf.reduce_sum(_huber(tf.boolean_mask(chosen - tf.concat(roi_targets, 0),
                                                            positive), 1.0)) / n_rois,
        }

    def detect(self, images):
        """Detections per image, padded to `detections_per_image`: boxes [B, D, 4] (input pixels),
        scores [B, D], dataset classes [B, D] (int32), counts [B] (int32)."""
        cfg = self.cfg
        features, logits, deltas = self(images, training=False)
        batch, d = images.shape[0], cfg.detections_per_image
        proposals = [self._proposals(logits[i], deltas[i], cfg.rpn_post_nms_test)
                     for i in range(batch)]
        image_index = tf.concat([tf.fill([tf.shape(p)[0]], i) for i, p in enumerate(proposals)], 0)
        class_logits, roi_deltas = self.box_head(
            self._roi_align(features, tf.concat(proposals, 0), image_index), training=False)
        probs = tf.nn.softmax(class_logits)
        counts = [tf.shape(p)[0] for p in proposals]
        out_boxes, out_scores, out_classes, out_counts = [], [], [], []
        for i, (p, probs_i, deltas_i) in enumerate(zip(
                proposals, tf.split(probs, counts), tf.split(roi_deltas, counts))):
            # Every (proposal, class) pair is a candidate: its class-specific box and probability.
            k = cfg.num_classes
            anchors = tf.repeat(p, k, axis=0)
            boxes = box_ops.clip_boxes(
                box_ops.decode(tf.reshape(deltas_i[:, 1:], [-1, 4]), anchors, ROI_DELTA_WEIGHTS),
                self.image_height, self.image_width)
            scores = tf.reshape(probs_i[:, 1:], [-1])
            classes = tf.tile(tf.range(k, dtype=tf.int32), [tf.shape(p)[0]])
            keep = box_ops.batched_nms(boxes, scores, classes, d, cfg.detection_nms_iou,
                                       cfg.detection_score)
            n = tf.shape(keep)[0]
            pad = [[0, d - n]]
            out_boxes.append(tf.pad(tf.gather(boxes, keep), pad + [[0, 0]]))
            out_scores.append(tf.pad(tf.gather(scores, keep), pad))
            out_classes.append(tf.pad(tf.gather(classes, keep), pad, constant_values=-1))
            out_counts.append(n)
        return (tf.stack(out_boxes), tf.stack(out_scores), tf.stack(out_classes),
                tf.stack(out_counts))
