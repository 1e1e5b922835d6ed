"""The learning-rate schedule of the training workloads: one class, the scaling rule and the decay
as data.

`train.lr` is the rate of the reference batch `train.reference_batch` (the preset's per-rank batch,
run on one rank). A run whose global batch B (per-rank batch × ranks) differs from it scales the
rate by the workload's rule, peak = lr × f(B / reference batch):

- "linear", for SGD (Goyal et al., 2017): f(x) = x.
- "sqrt", for Adam (Malladi et al., 2022): f(x) = √x. The gradient noise of a batch falls as 1/√B
  and Adam already normalises its step by the gradient's size. (One 2-rank dcgan small run with the
  linear rule stayed near P(k) error 0.7 for nine epochs; not a controlled comparison.)

The rate rises linearly from min(lr, peak) to the peak over the warm-up steps (no ramp when the
peak is not above lr), then is held ("constant") or follows a half cosine to zero at the last
configured step ("cosine", which keeps batch-norm statistics stable late in training).

The schedule depends on the global batch, never on how it is split: weak scaling at the preset's
per-rank batch (B / reference = N) gives peak lr × N (linear) or lr × √N (sqrt), and every point of
a strong sweep (B fixed) runs the same schedule, warm-up start included.
"""

from __future__ import annotations

import math
from typing import Any

import tensorflow as tf

from ai500.config import DECAYS

# The scaling rules: f(global batch / reference batch), its name and how describe() writes lr x f.
RULES = {"linear": (lambda x: x, "linear", "{lr:g} x {ratio}"),
         "sqrt": (math.sqrt, "square-root", "{lr:g} x sqrt({ratio})")}


class ScaledLearningRate(tf.keras.optimizers.schedules.LearningRateSchedule):
    """lr scaled by `rule` for a global batch of `global_batch` samples against `reference_batch`,
    a linear warm-up over `warmup_steps`, then `decay` (the module docstring has the definitions)."""

    def __init__(self, lr: float, global_batch: int, reference_batch: int, rule: str, decay: str,
                 warmup_steps: float, total_steps: float):
        if rule not in RULES:
            raise ValueError(f"scaling rule {rule!r}: expected one of {', '.join(RULES)}")
        if decay not in DECAYS:
            raise ValueError(f"decay {decay!r}: expected one of {', '.join(DECAYS)}")
        if global_batch < 1 or reference_batch < 1:
            raise ValueError(f"batches must be >= 1, got global {global_batch}, "
                             f"reference {reference_batch}")
        self.lr, self.rule, self.decay = float(lr), rule, decay
        self.global_batch, self.reference_batch = int(global_batch), int(reference_batch)
        self.warmup_steps = float(warmup_steps)
        self.total_steps = float(max(total_steps, warmup_steps + 1))
        self.peak = self.lr * RULES[rule][0](self.global_batch / self.reference_batch)
        self.start = min(self.lr, self.peak)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        if self.decay == "constant":
            after = tf.constant(self.peak, tf.float32)
        else:
            progress = (step - self.warmup_steps) / (self.total_steps - self.warmup_steps)
            after = 0.5 * self.peak * (1.0 + tf.cos(math.pi * tf.clip_by_value(progress, 0.0, 1.0)))
        if self.warmup_steps <= 0:
            return after
        warm = self.start + (self.peak - self.start) * step / self.warmup_steps
        return tf.where(step < self.warmup_steps, warm, after)

    def describe(self) -> str:
        _, name, formula = RULES[self.rule]
        scaled = formula.format(lr=self.lr, ratio=f"{self.global_batch} / {self.reference_batch}")
        text = f"{name} scaling with global batch / reference batch: peak {scaled} = {self.peak:g}"
        if self.warmup_steps > 0 and self.peak > self.start:
            text += f", linear warm-up from {self.start:g} over {self.warmup_steps:g} steps"
        elif self.warmup_steps > 0:
            text += f", no warm-up ramp (the peak is not above lr {self.lr:g})"
        if self.decay == "constant":
            return text + ", then constant"
        return (text + f", cosine decay to 0 from step {self.warmup_steps:g} to step "
                f"{self.total_steps:g}")

    def get_config(self) -> dict[str, Any]:
        return {"lr": self.lr, "global_batch": self.global_batch,
                "reference_batch": self.reference_batch, "rule": self.rule, "decay": self.decay,
                "warmup_steps": self.warmup_steps, "total_steps": self.total_steps}


def schedule_for(train, ranks: int, steps_per_epoch: int, rule: str,
                 decay: str) -> ScaledLearningRate:
    """The schedule of a run with these `train` settings (ai500.config.TrainSettings) on `ranks`
    ranks of `steps_per_epoch` steps: warm-up over train.warmup_epochs, then train.decay (or, where
    it is not set, the workload's `decay`); a cosine decay ends with train.epochs. A config.json
    written before reference_batch existed scales by the rank count (reference = its per-rank
    batch), as those runs did."""
    reference = train.reference_batch or train.batch_size
    return ScaledLearningRate(train.lr, train.batch_size * ranks, reference, rule,
                              train.decay or decay,
                              warmup_steps=train.warmup_epochs * steps_per_epoch,
                              total_steps=train.epochs * steps_per_epoch)
