"""Faster R-CNN on extreme-weather climate fields: find and classify storms and atmospheric rivers.

Data: 16-channel fields in the Extreme Weather HDF5 layout (ai500.data.weather), synthetic or read
from files. Training takes a random crop of `crop_height × crop_width` from each field every epoch
(boxes shifted and clipped; mostly-cut boxes dropped), validation the centre crop; at the full
preset the crop is the whole 768×1152 field. Channels are standardised with means and standard
deviations of the first NORM_SAMPLES training fields, computed by rank 0 and broadcast, so all ranks
use the same numbers whatever their count. Fields are staged in memory or streamed from the files
(--stage, ai500.data.stream); validation fields are centre-cropped and standardised once when staged,
batch by batch at every evaluation when streamed.

Quality: mAP at IoU 0.5 over the four classes on the whole validation set: every rank detects on
its shard, the detections and true boxes are gathered (global image ids) and every rank computes
the same mAP and per-class AP.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from ai500 import dist as distlib
from ai500 import precision
from ai500.config import RunConfig, settings_from
from ai500.data import common, stream, weather, weather_synthetic
from ai500.dist import Dist
from ai500.errors import ConfigError
from ai500.metrics import detection, flops
from ai500.models.faster_rcnn import FasterRCNN, FasterRCNNConfig
from ai500.watchdog import progress
from ai500.workloads import steps_per_epoch
from ai500.workloads.schedule import schedule_for

NORM_SAMPLES = 64
NORM_BLOCK = 8
EVAL_BATCH = 8
CLASS_KEYS = ("td", "tc", "etc", "ar")  # short names of weather.CLASSES for the per-class AP columns


@dataclass(frozen=True)
class DataSettings:
    """The `data` section: field and crop size (pixels), synthetic set sizes and seed."""

    field_height: int
    field_width: int
    crop_height: int
    crop_width: int
    n_train: int
    n_val: int
    seed: int

    def __post_init__(self):
        if min(self.field_height, self.field_width, self.crop_height, self.crop_width,
               self.n_train, self.n_val) < 1:
            raise ValueError("sizes and counts must be >= 1")
        if self.crop_height > self.field_height or self.crop_width > self.field_width:
            raise ValueError(f"crop {self.crop_height}x{self.crop_width} is larger than the field "
                             f"{self.field_height}x{self.field_width}")


def load_shards(data: DataSettings, data_path: str | None, dist: Dist, stage: str
                ) -> tuple[stream.Staged | stream.Streamed, stream.Staged | stream.Streamed,
                           tuple[np.ndarray, np.ndarray], stream.StageChoice, str]:
    """This rank's training fields (equal counts on all ranks) and validation fields (all covered),
    each with fields images (n, 16, H, W) and boxes (n, 15, 5), staged or streamed as `stage`
    decides, and the channel means and standard deviations of the first NORM_SAMPLES training
    fields, read NORM_BLOCK at a time (a full-size field is 57 MB). Rank 0 alone inspects the files
    and computes the statistics, and broadcasts both: these collectives come before anything a rank
    can fail at alone (see ai500.data.stream.once)."""
    shape = (data.field_height, data.field_width)
    if data_path is None:
        seeds = {split: common.split_seed(data.seed, split) for split in common.SPLITS}
        shards, choice = stream.stage_synthetic(
            weather.WeatherLayout((len(weather.CHANNELS), *shape)),
            {"train": data.n_train, "val": data.n_val}, dist, stage,
            lambda split, start, count: weather_synthetic.generate_samples(
                start, count, seeds[split], *shape))
        n_norm = min(NORM_SAMPLES, data.n_train)
        stats = weather.normalisation_once(dist, lambda: (
            weather_synthetic.generate_samples(lo, min(NORM_BLOCK, n_norm - lo), seeds["train"],
                                               *shape)["images"]
            for lo in range(0, n_norm, NORM_BLOCK)))
        return shards["train"], shards["val"], stats, choice, (
            f"synthetic, generated in memory (data seed {data.seed})")
    # Both splits' layouts are checked (by rank 0) before any field is read.
    splits = stream.once(dist, lambda: weather.inspect_splits(Path(data_path)), "weather.inspect")
    for name, split in (("training", splits["train"]), ("validation", splits["val"])):
        if split.sample_shape[1:] != shape:
            raise ConfigError(f"{name} fields are {split.sample_shape[1]}x{split.sample_shape[2]}; "
                              f"the preset's data section says {shape[0]}x{shape[1]} (set "
                              "field_height/field_width with --config)")
    stats = weather.normalisation_once(
        dist, lambda: weather.first_fields(splits["train"], NORM_SAMPLES, NORM_BLOCK))
    shards, choice = stream.stage_splits(lambda s: weather.WeatherLayout(s.sample_shape), splits,
                                         dist.rank, dist.size, dist.local_size, stage)
    return shards["train"], shards["val"], stats, choice, f"files under {data_path}"


class Workload:
    """Two-stage detector trained with Horovod data parallelism."""

    kind = "training"

    def __init__(self, cfg: RunConfig, dist: Dist):
        self.cfg, self.dist = cfg, dist
        self.data = settings_from(DataSettings, cfg.data, "data")
        self.train, self.val, (self.mean, self.std), choice, self.data_source = load_shards(
            self.data, cfg.data_path, dist, cfg.stage)
        self.stage = choice.describe()  # recorded by the driver in this rank's trace
        self.crop = (self.data.crop_height, self.data.crop_width)
        self.val_boxes = weather.centre_crop_boxes(self.val.field("boxes"), self.data.field_height,
                                                   self.data.field_width, *self.crop)
        self.val_index = np.arange(self.val.start, self.val.start + len(self.val))
        # Staged: the cropped, standardised validation fields are prepared once, and the raw
        # shard is let go. Streamed: they are read and prepared at every evaluation.
        self._val_images: np.ndarray | None = None
        if self.val.mode == "memory":
            self._val_images = np.concatenate(list(self.validation_crops(
                stream.blocks(len(self.val), EVAL_BATCH))))
            self.val = None
        channels = len(weather.CHANNELS)
        self.model_cfg = settings_from(FasterRCNNConfig,
                                       {**cfg.model, "input_shape": (*self.crop, channels)}, "model")
        with precision.policy(cfg.precision):
            self.model = FasterRCNN(self.model_cfg, jit_compile=cfg.xla)
        self.samples_per_step = cfg.train.batch_size
        self.steps_per_epoch = steps_per_epoch(len(self.train), self.samples_per_step, "fields")
        self.schedule = schedule_for(cfg.train, dist.size, self.steps_per_epoch,
                                     rule="linear", decay="cosine")
        self.optimizer = precision.optimizer(tf.keras.optimizers.SGD(self.schedule, momentum=0.9),
                                             cfg.precision)
        # Target sampling is seeded by (run seed and rank, step): a resumed run draws what an
        # uninterrupted one would have drawn.
        self.sampling_seed = (cfg.seed * 1_000_003 + dist.rank * 64) % 2**31
        self._truths: np.ndarray | None = None
        self._val_fields = 0.0  # validation fields over all ranks, counted at the first evaluation
        self._broadcast_done = False

    def _standardise(self, images: np.ndarray) -> np.ndarray:
        """(n, C, H, W) fields → (n, H, W, C) float32, each channel to zero mean, unit variance."""
        x = (images - self.mean[:, None, None]) / self.std[:, None, None]
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1), dtype=np.float32)

    def validation_crops(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """This rank's validation fields centre-cropped and standardised, (n, h, w, C) float32, for
        each block of shard indices: prepared (staged) or read from the files now (streamed)."""
        if self._val_images is not None:
            for rows in blocks:
                yield self._val_images[rows]
            return
        for batch in self.val.batches(blocks):
            images, _ = weather.random_crop(batch["images"], batch["boxes"], *self.crop, None)
            yield self._standardise(images)

    def describe(self) -> dict[str, Any]:
        c = self.model_cfg
        return {
            "model": "Faster R-CNN",
            "parameters": sum(int(part.count_params()) for part in
                              (self.model.backbone, self.model.rpn_head, self.model.box_head)),
            "backbone": f"ResNet ({'bottleneck' if c.bottleneck else 'basic'} blocks "
                        f"{list(c.stage_blocks)}, widths {list(c.stage_widths)}), "
                        f"feature stride {c.feature_stride}",
            "anchors": f"sizes {list(c.anchor_sizes)} px x aspect ratios (h/w) {list(c.aspect_ratios)}",
            "input_shape": list(c.input_shape),
            "field_shape": [self.data.field_height, self.data.field_width],
            "crops": "random per field and epoch (training), centre (validation)",
            "channel_normalisation": f"mean/std over the first {NORM_SAMPLES} training fields",
            "data_source": self.data_source,
            "stage_rank0": self.stage,
            "train_fields_per_rank": len(self.train),
            "train_fields_used_per_epoch": self.steps_per_epoch * self.samples_per_step * self.dist.size,
            "val_fields_this_rank": len(self.val_index),
            "optimizer": "SGD, momentum 0.9, L2 weight decay from the model config",
            "lr_rule": self.schedule.describe(),
            "quality": "val_map: mAP at IoU 0.5 over the 4 classes (all-point interpolated AP)",
        }

    def checkpoint_state(self) -> dict[str, Any]:
        self.optimizer.build(self.model.trainable_variables)  # momentum slots exist before a restore
        return {"model": self.model, "optimizer": self.optimizer}

    def train_batches(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        # Field order and crop offsets depend on (seed, epoch, rank) only: a run repeats exactly.
        rng, order = stream.epoch_order(self.cfg.seed, epoch, self.dist.rank, len(self.train))
        for b in self.train.batches(stream.step_indices(order, self.samples_per_step,
                                                        self.steps_per_epoch)):
            images, boxes = weather.random_crop(b["images"], b["boxes"], *self.crop, rng)
            yield self._standardise(images), boxes.astype(np.float32)

    @tf.function
    def _train_step(self, images, boxes):
        with tf.GradientTape() as tape:
            seed = tf.stack([tf.constant(self.sampling_seed, tf.int32),
                             tf.cast(self.optimizer.iterations, tf.int32)])
            losses = self.model.losses_on(images, boxes, training=True, seed=seed)
            total = tf.add_n(list(losses.values()))
            regularised = total + tf.add_n(self.model.losses) if self.model.losses else total
        variables = self.model.trainable_variables
        grads = precision.averaged_gradients(tape, regularised, variables, self.optimizer)
        self.optimizer.apply_gradients(zip(grads, variables))
        return {"loss": total, **losses, **precision.loss_scale(self.optimizer)}

    def train_step(self, batch: tuple[tf.Tensor, tf.Tensor]) -> dict[str, tf.Tensor]:
        stats = self._train_step(*batch)
        if not self._broadcast_done:
            distlib.broadcast_training_state([self.model], [self.optimizer])
            self._broadcast_done = True
        return stats

    @tf.function
    def _detect(self, images):
        return self.model.detect(images)

    def detections(self, batches: Iterable[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray,
                                                                      np.ndarray]]:
        """Per image of batches of at most EVAL_BATCH standardised crops: boxes [n, 4] (crop
        pixels), scores [n], dataset classes [n]."""
        out = []
        for chunk in batches:
            n = len(chunk)
            if n < EVAL_BATCH:  # one compiled shape: pad the last batch with blank fields
                chunk = np.concatenate([chunk, np.zeros((EVAL_BATCH - n, *chunk.shape[1:]),
                                                        chunk.dtype)])
            boxes, scores, classes, counts = (t.numpy() for t in self._detect(tf.constant(chunk)))
            out += [(boxes[j, :counts[j]], scores[j, :counts[j]], classes[j, :counts[j]])
                    for j in range(n)]
            progress()  # a long evaluation is progress, not a stall, for the watchdog
        return out

    def evaluate(self) -> dict[str, float]:
        distlib.average_statistics([self.model])  # one model on every rank, evaluated and saved
        if self._truths is None:  # the true boxes never change: gather them once
            self._truths = distlib.allgather_array(detection.truth_rows(self.val_boxes,
                                                                        self.val_index))
            self._val_fields = float(distlib.allreduce_sum([len(self.val_index)])[0])
        found = self.detections(self.validation_crops(stream.blocks(len(self.val_index), EVAL_BATCH)))
        rows = [np.column_stack([np.full(len(s), gid), c, s, b])
                for gid, (b, s, c) in zip(self.val_index, found)]
        local = np.concatenate(rows).astype(np.float64).reshape(-1, 7)
        everything = distlib.allgather_array(local)
        result = detection.mean_average_precision(everything, self._truths,
                                                  num_classes=len(CLASS_KEYS))
        metrics = {"val_map": result["map"]}
        metrics.update({f"val_ap_{key}": ap for key, ap in zip(CLASS_KEYS, result["ap"])})
        metrics["val_detections"] = float(len(everything))
        metrics["val_fields"] = self._val_fields
        return metrics

    def flops_per_sample(self) -> dict[str, Any]:
        c = self.model_cfg
        image = tf.TensorSpec([EVAL_BATCH, *c.input_shape], tf.float32)
        trunk = flops.forward_flops(lambda x: self.model(x, training=False), [image]) / EVAL_BATCH
        channels = self.model.backbone.output_shape[-1]
        rois = tf.TensorSpec([c.roi_batch, c.roi_size, c.roi_size, channels], tf.float32)
        head = flops.forward_flops(lambda x: self.model.box_head(x, training=False), [rois])
        forward = trunk + head
        return {
            "forward": forward,
            "train": flops.TRAIN_TO_FORWARD * forward,
            "method": f"tf-profiler counts (1 multiply-add = 2 FLOPs): backbone and RPN at batch "
                      f"{EVAL_BATCH} ({trunk:.4g} per image) plus the RoI head on the {c.roi_batch} "
                      f"sampled RoIs of a training image ({head:.4g}); proposal decoding, NMS and "
                      f"RoI align not counted; training = {flops.TRAIN_TO_FORWARD:g} x forward",
        }

    def write_figures(self, run_dir: Path) -> list[Path]:
        """validation_boxes.png: the TMQ channel of the validation field of rank 0's shard with the
        most true boxes, north up, with true (solid) and predicted (dashed, score ≥ 0.5) boxes."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch, Rectangle

        channel = weather.CHANNELS.index("TMQ")
        pick = int(np.argmax((self.val_boxes[..., 4] >= 0).sum(axis=1)))
        image = next(self.validation_crops([np.array([pick])]))
        boxes, scores, classes = self.detections([image])[0]
        fig, ax = plt.subplots(figsize=(8, 8 * image.shape[1] / image.shape[2] + 0.6))
        # Row 0 is the southernmost row of a field: draw it at the bottom.
        shown = ax.imshow(image[0, :, :, channel] * self.std[channel] + self.mean[channel],
                          origin="lower", cmap="viridis")
        fig.colorbar(shown, ax=ax, shrink=0.8, label="TMQ (kg/m²)")
        colours = plt.get_cmap("tab10")
        for row in self.val_boxes[pick]:
            if row[4] >= 0:
                ax.add_patch(Rectangle((row[1], row[0]), row[3] - row[1], row[2] - row[0],
                                       fill=False, lw=2, color=colours(int(row[4]))))
        for box, score, cls in zip(boxes, scores, classes):
            if score >= 0.5:
                ax.add_patch(Rectangle((box[1], box[0]), box[3] - box[1], box[2] - box[0],
                                       fill=False, lw=1.5, ls="--", color=colours(int(cls))))
                ax.text(box[1], box[2], f"{CLASS_KEYS[cls]} {score:.2f}", color=colours(int(cls)),
                        fontsize=8, va="bottom")
        ax.set_title(f"validation field {int(self.val_index[pick])}: true boxes solid, detections "
                     "(score ≥ 0.5) dashed", fontsize=9)
        ax.legend(handles=[Patch(color=colours(c), label=f"{k}: {n.replace('_', ' ')}")
                           for c, (k, n) in enumerate(zip(CLASS_KEYS, weather.CLASSES))],
                  loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2, fontsize=8, frameon=False)
        path = Path(run_dir) / "validation_boxes.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        return [path]
