"""Numerical precision of a training run: fp32, or mixed precision with bf16 or fp16 arithmetic.

`fp32` computes and stores everything in float32. `bf16` and `fp16` are Keras mixed-precision
policies (`mixed_bfloat16`, `mixed_float16`): every variable stays float32, layers compute in the
16-bit type. What stays float32, as the Keras mixed-precision guide advises (each model builder
marks its own): the layers that produce logits and boxes (a classifier's last Dense, both
detector heads' last layers, the generator's last convolution and tanh, the discriminator's
logit), every loss, batch-norm statistics (Keras keeps a batch norm's moving mean and variance,
and its scale and offset, in float32 under a mixed policy), RoI align and box decoding.

fp16 needs loss scaling: its smallest normal number is 6e-5, so small gradients would flush to
zero. The optimizer is wrapped in Keras's dynamic `LossScaleOptimizer` (the scale starts at 2^15,
halves and skips the step when a gradient is not finite, doubles after 2000 finite steps), and
`averaged_gradients` follows the Keras recipe around Horovod's DistributedGradientTape: scale the
loss, average the scaled gradients over the ranks, unscale. Every rank then holds the same
averaged gradients, so every rank skips the same steps and keeps the same scale. bf16 has float32's
exponent range and needs no scaling.

Nothing here imports TensorFlow at import time (config.py uses the names).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ai500 import dist as distlib
from ai500.dist import GpuBinding

PRECISIONS = ("fp32", "bf16", "fp16")
# The micro benchmarks' --dtype name of each precision.
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
KERAS_POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


def resolved(precision: str | None) -> str:
    """A run's precision; None (not yet decided for a device, as for a workload built outside the
    run driver, which decides it with default_precision) is fp32."""
    return precision or "fp32"


def from_dtype(dtype: str) -> str:
    """The precision name of a micro benchmark's element type (float32 → fp32, ...)."""
    return {v: k for k, v in DTYPES.items()}[dtype]


def default_precision(gpu: GpuBinding) -> tuple[str, str]:
    """The precision a run gets without --precision on this rank's device, and why."""
    if not gpu.on_gpu:
        return "fp32", ("CPU: fp32 (TensorFlow's CPU kernels emulate fp16, and bf16 is fast only "
                        "on CPUs with AVX512-BF16 or AMX)")
    cc = gpu.compute_capability or (0, 0)
    if cc >= (8, 0):
        return "bf16", (f"GPU of compute capability {cc[0]}.{cc[1]}: mixed precision, as the "
                        "MLPerf HPC reference codes train; bf16 tensor cores, and bf16 has "
                        "float32's exponent range, so no loss scaling and the quality targets "
                        "tuned in fp32 hold")
    if cc >= (7, 0):
        return "fp16", (f"GPU of compute capability {cc[0]}.{cc[1]}: mixed precision, as the "
                        "MLPerf HPC reference codes train; its tensor cores do fp16, not bf16, "
                        "so fp16 with dynamic loss scaling")
    return "fp32", f"GPU of compute capability {cc[0]}.{cc[1]}: no tensor cores, fp32"


@contextlib.contextmanager
def policy(precision: str | None) -> Iterator[None]:
    """Build models inside this: Keras's global dtype policy is the precision's, then restored."""
    import tensorflow as tf

    before = tf.keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy(KERAS_POLICIES[resolved(precision)])
    try:
        yield
    finally:
        tf.keras.mixed_precision.set_global_policy(before)


def optimizer(inner: Any, precision: str | None) -> Any:
    """`inner` as the precision needs it: wrapped for dynamic loss scaling under fp16."""
    import tensorflow as tf

    if resolved(precision) == "fp16":
        return tf.keras.mixed_precision.LossScaleOptimizer(inner)
    return inner


def _scales(opt: Any) -> bool:
    import tensorflow as tf

    return isinstance(opt, tf.keras.mixed_precision.LossScaleOptimizer)


def averaged_gradients(tape: Any, loss: Any, variables: list, opt: Any) -> list:
    """Gradients of `loss` (recorded on `tape`) for `variables`, averaged over all ranks by
    Horovod's DistributedGradientTape; with a loss-scaling optimizer the loss is scaled on the
    tape first and the averaged gradients unscaled (the Keras recipe)."""
    if _scales(opt):
        with tape:  # re-entered, so the scaling is recorded too
            loss = opt.get_scaled_loss(loss)
    grads = distlib.distributed_tape(tape).gradient(loss, variables)
    return opt.get_unscaled_gradients(grads) if _scales(opt) else grads


def loss_scale(opt: Any) -> dict[str, Any]:
    """{"loss_scale": the current scale} for a loss-scaling optimizer (a step's statistics, so
    the trace shows it move), else {}."""
    return {"loss_scale": opt.loss_scale} if _scales(opt) else {}


def describe(precision: str, xla: bool, gpu: GpuBinding) -> dict[str, Any]:
    """The run's precision record (config.json, the trace, the summary)."""
    import tensorflow as tf

    record: dict[str, Any] = {
        "precision": precision, "keras_policy": KERAS_POLICIES[precision],
        "loss_scaling": ("dynamic (Keras LossScaleOptimizer: 2^15 at the start, halved on a "
                         "non-finite gradient, doubled after 2000 finite steps)"
                         if precision == "fp16" else "none"),
        "float32_parts": "variables, logits and box outputs, losses, batch-norm statistics, "
                         "RoI align, box decoding" if precision != "fp32" else "everything",
        "xla": xla, "default_rule": default_precision(gpu)[1],
        # TensorFloat-32 (Ampere and newer): float32 matmuls and convolutions on tensor cores
        # with a 10-bit mantissa; TensorFlow's default is on.
        "tf32": tf.config.experimental.is_tensor_float_32_execution_enabled() if gpu.on_gpu
        else None,
    }
    return record
