"""Learning-rate rule for data-parallel training with a global batch that grows with the ranks."""

from __future__ import annotations

import math

import tensorflow as tf


class LinearScalingSchedule(tf.keras.optimizers.schedules.LearningRateSchedule):
    """Linear scaling rule (Goyal et al., 2017): the peak rate is base_lr × ranks, reached by a
    linear warm-up from base_lr over `warmup_steps`; then cosine decay to zero at `total_steps`
    (the preset's maximum epochs), which keeps batch-norm statistics stable late in training."""

    def __init__(self, base_lr: float, ranks: int, warmup_steps: float, total_steps: float):
        self.base_lr = float(base_lr)
        self.ranks = int(ranks)
        self.warmup_steps = float(warmup_steps)
        self.total_steps = float(max(total_steps, warmup_steps + 1))

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        peak = self.base_lr * self.ranks
        warm = self.base_lr + (peak - self.base_lr) * step / max(self.warmup_steps, 1.0)
        progress = (step - self.warmup_steps) / (self.total_steps - self.warmup_steps)
        decay = 0.5 * peak * (1.0 + tf.cos(math.pi * tf.clip_by_value(progress, 0.0, 1.0)))
        return tf.where(step < self.warmup_steps, warm, decay)

    def describe(self) -> str:
        warmup = (f", linear warm-up from {self.base_lr:g} over {self.warmup_steps:g} steps"
                  if self.warmup_steps > 0 else "")
        return (f"linear scaling: peak {self.base_lr:g} x {self.ranks} ranks = "
                f"{self.base_lr * self.ranks:g}{warmup}, cosine decay to 0 at step "
                f"{self.total_steps:g}")

    def get_config(self) -> dict:
        return {"base_lr": self.base_lr, "ranks": self.ranks, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps}
