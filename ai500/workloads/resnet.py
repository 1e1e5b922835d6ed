"""ResNet on high-energy-physics collision images: signal (RPV-SUSY-like multi-jet) vs QCD background.

Quality: ROC AUC over the whole validation set (all ranks' shards gathered), weighted by the
events' `normweight`; accuracy at a 0.5 score threshold, unweighted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from ai500 import dist as distlib
from ai500 import precision
from ai500.config import RunConfig, settings_from
from ai500.data import common, hep, stream
from ai500.data.pipeline import Prefetcher
from ai500.dist import Dist
from ai500.errors import ConfigError
from ai500.metrics import flops, quality
from ai500.models.resnet import ResNetConfig, build_resnet
from ai500.watchdog import progress
from ai500.workloads import steps_per_epoch
from ai500.workloads.schedule import schedule_for

EVAL_BATCH = 256


@dataclass(frozen=True)
class DataSettings:
    """The `data` section: image size (pixels; files must match), synthetic set sizes and seed."""

    image_size: int
    n_train: int
    n_val: int
    seed: int

    def __post_init__(self):
        if min(self.image_size, self.n_train, self.n_val) < 1:
            raise ValueError("image_size, n_train and n_val must be >= 1")


def load_shards(data: DataSettings, data_path: str | None, dist: Dist,
                stage: str) -> tuple[stream.Staged | stream.Streamed, stream.Staged | stream.Streamed,
                                     stream.StageChoice, str]:
    """This rank's training shard (equal sizes on all ranks) and validation shard (all events
    covered), each with fields data (n, S, S, 3), label, weight, normweight; from files in the
    HEP-CNN layout (inspected by rank 0 alone and broadcast, then staged in memory or streamed as
    `stage` decides) or, without a path, generated in memory. The one collective (the inspection's
    broadcast) comes before anything a rank can fail at alone (see ai500.data.stream.once)."""
    if data_path is None:
        shards, choice = stream.stage_synthetic(
            hep.HepLayout(data.image_size), {"train": data.n_train, "val": data.n_val}, dist, stage,
            lambda split, start, count: hep.generate_events(
                start, count, common.split_seed(data.seed, split), data.image_size,
                channels_last=True))
        source = f"synthetic, generated in memory (data seed {data.seed})"
    else:
        shards, choice = hep.open_shards(Path(data_path), data.image_size, dist, stage)
        source = f"files under {data_path}"
    return shards["train"], shards["val"], choice, source


class Workload:
    """ResNet binary classifier trained with Horovod data parallelism."""

    kind = "training"

    def __init__(self, cfg: RunConfig, dist: Dist):
        self.cfg, self.dist = cfg, dist
        data = settings_from(DataSettings, cfg.data, "data")
        self.train, self.val, choice, self.data_source = load_shards(data, cfg.data_path, dist,
                                                                      cfg.stage)
        self.stage = choice.describe()  # recorded by the driver in this rank's trace
        image_shape = (data.image_size, data.image_size, len(hep.CHANNELS))
        try:
            model_cfg = ResNetConfig(**{**cfg.model, "input_shape": image_shape})
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"section 'model': {exc}") from None
        with precision.policy(cfg.precision):
            self.model = build_resnet(model_cfg)
        self.samples_per_step = cfg.train.batch_size
        self.steps_per_epoch = steps_per_epoch(len(self.train), self.samples_per_step, "events")
        self.schedule = schedule_for(cfg.train, dist.size, self.steps_per_epoch,
                                     rule="linear", decay="cosine")
        self.optimizer = precision.optimizer(
            tf.keras.optimizers.SGD(self.schedule, momentum=0.9, nesterov=True), cfg.precision)
        self._forward = tf.function(self._losses, jit_compile=True) if cfg.xla else self._losses
        self._val_truth: tuple[np.ndarray, np.ndarray] | None = None
        self._broadcast_done = False

    def describe(self) -> dict[str, Any]:
        return {
            "model": "ResNet",
            "parameters": int(self.model.count_params()),
            "input_shape": list(self.model.input_shape[1:]),
            "data_source": self.data_source,
            "stage_rank0": self.stage,
            "train_events_per_rank": len(self.train),
            "train_events_used_per_epoch": self.steps_per_epoch * self.samples_per_step * self.dist.size,
            "val_events_this_rank": len(self.val),
            "optimizer": "SGD, Nesterov momentum 0.9, L2 weight decay from the model config",
            "lr_rule": self.schedule.describe(),
        }

    def checkpoint_state(self) -> dict[str, Any]:
        self.optimizer.build(self.model.trainable_variables)  # momentum slots exist before a restore
        return {"model": self.model, "optimizer": self.optimizer}

    def train_batches(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        # The order depends on (seed, epoch, rank) only, so runs with one seed repeat exactly,
        # staged or streamed.
        _, order = stream.epoch_order(self.cfg.seed, epoch, self.dist.rank, len(self.train))
        for batch in self.train.batches(stream.step_indices(order, self.samples_per_step,
                                                            self.steps_per_epoch)):
            yield batch["data"], batch["label"]

    def _losses(self, images, labels):
        """Forward pass: (loss with weight decay, loss, logits), all float32 (XLA-compiled
        with --xla, and so is its gradient)."""
        logits = self.model(images, training=True)[:, 0]
        loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels, logits))
        total = loss + tf.add_n(self.model.losses) if self.model.losses else loss
        return total, loss, logits

    @tf.function
    def _train_step(self, images, labels):
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            total, loss, logits = self._forward(images, labels)
        grads = precision.averaged_gradients(tape, total, variables, self.optimizer)
        self.optimizer.apply_gradients(zip(grads, variables))
        correct = tf.cast(tf.equal(tf.cast(logits > 0, tf.float32), labels), tf.float32)
        return {"loss": loss, "accuracy": tf.reduce_mean(correct),
                **precision.loss_scale(self.optimizer)}

    def train_step(self, batch: tuple[tf.Tensor, tf.Tensor]) -> dict[str, tf.Tensor]:
        stats = self._train_step(*batch)
        if not self._broadcast_done:
            distlib.broadcast_training_state([self.model], [self.optimizer])
            self._broadcast_done = True
        return stats

    @tf.function(reduce_retracing=True)
    def _predict(self, images):
        return tf.sigmoid(self.model(images, training=False)[:, 0])

    def evaluate(self) -> dict[str, float]:
        distlib.average_statistics([self.model])  # one model on every rank, evaluated and saved
        if self._val_truth is None:  # labels and weights never change: gather them once
            self._val_truth = (distlib.allgather_array(self.val.field("label")),
                               distlib.allgather_array(self.val.field("normweight")))
        labels, weights = self._val_truth
        # Read (a streamed shard: from the files) one batch ahead of the prediction.
        with Prefetcher((b["data"],) for b in self.val.batches(stream.blocks(len(self.val),
                                                                            EVAL_BATCH))) as parts:
            local = []
            for (images,) in parts:
                local.append(self._predict(images).numpy())
                progress()  # a long evaluation is progress, not a stall, for the watchdog
        scores = distlib.allgather_array(np.concatenate(local).astype(np.float64))
        eps = 1e-7
        p = np.clip(scores, eps, 1 - eps)
        bce = -(labels * np.log(p) + (1 - labels) * np.log(1 - p))
        return {
            "val_auc": quality.roc_auc(scores, labels, weights),
            "val_accuracy": quality.accuracy(scores, labels),
            "val_loss": float(np.mean(bce)),
            "val_events": float(len(labels)),
        }

    def flops_per_sample(self) -> dict[str, Any]:
        return flops.model_flops_per_sample(self.model, self.samples_per_step)
