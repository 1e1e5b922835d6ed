"""Learning-rate rule for data-parallel training with a global batch that grows with the ranks."""

from __future__ import annotations

import tensorflow as tf


class LinearScalingSchedule(tf.keras.optimizers.schedules.LearningRateSchedule):
    """Linear scaling rule (Goyal et al., 2017): lr = base_lr × ranks, reached by a linear
    warm-up from base_lr over `warmup_steps` steps, then held constant."""

    def __init__(self, base_lr: float, ranks: int, warmup_steps: float):
        self.base_lr = float(base_lr)
        self.ranks = int(ranks)
        self.warmup_steps = float(warmup_steps)

    def __call__(self, step):
        peak = self.base_lr * self.ranks
        if self.warmup_steps <= 0 or self.ranks == 1:
            return tf.constant(peak, tf.float32)
        fraction = tf.minimum(tf.cast(step, tf.float32) / self.warmup_steps, 1.0)
        return self.base_lr + (peak - self.base_lr) * fraction

    def describe(self) -> str:
        warmup = (f", linear warm-up from {self.base_lr:g} over {self.warmup_steps:g} steps"
                  if self.warmup_steps > 0 and self.ranks > 1 else "")
        return f"linear scaling: {self.base_lr:g} x {self.ranks} ranks = {self.base_lr * self.ranks:g}{warmup}"

    def get_config(self) -> dict:
        return {"base_lr": self.base_lr, "ranks": self.ranks, "warmup_steps": self.warmup_steps}
