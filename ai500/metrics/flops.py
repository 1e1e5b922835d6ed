"""Model FLOPs counted by TensorFlow's profiler on a graph with concrete shapes.

The batch dimension must be concrete: with a `None` batch the profiler cannot size convolutions
and silently leaves them out. TensorFlow counts one multiply-add as 2 FLOPs.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

# Training FLOPs per sample ≈ this × forward FLOPs: the backward pass costs about twice the
# forward (gradients with respect to activations and to weights), the usual convention.
TRAIN_TO_FORWARD = 3.0


def forward_flops(fn: Callable, input_specs: list[tf.TensorSpec]) -> int:
    """FLOPs of one call of `fn` on inputs of the given fully-defined shapes (the whole batch)."""
    for spec in input_specs:
        if not spec.shape.is_fully_defined():
            raise ValueError(f"input shape {spec.shape} must be fully defined to count FLOPs")
    graph = tf.function(fn).get_concrete_function(*input_specs).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph=graph, options=options)
    return int(profile.total_float_ops)


def model_flops_per_sample(model: tf.keras.Model, batch_size: int) -> dict[str, float | str]:
    """Forward and training FLOPs per sample of a Keras model, with how they were obtained."""
    spec = tf.TensorSpec([batch_size, *model.input_shape[1:]], model.input.dtype)
    forward = forward_flops(lambda x: model(x, training=False), [spec]) / batch_size
    return {
        "forward": forward,
        "train": TRAIN_TO_FORWARD * forward,
        "method": f"tf-profiler forward count at batch {batch_size} (1 multiply-add = 2 FLOPs); "
                  f"training = {TRAIN_TO_FORWARD:g} x forward",
    }
