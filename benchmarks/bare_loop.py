"""The baseline for ai500's instrumentation overhead: a bare TensorFlow + Horovod training loop
of the same model, batch and optimizer as `ai500.run`, on in-memory tensors, with no traces,
no per-step timing, no evaluation. Run under mpirun; rank 0 prints one JSON line:
{"samples_per_s": global samples / slowest rank's time over the timed epochs}.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import horovod.tensorflow as hvd
import numpy as np
import tensorflow as tf

from ai500 import config
from ai500.models.resnet import ResNetConfig, build_resnet


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="small")
    parser.add_argument("--events-per-rank", type=int, required=True)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    hvd.init()
    cores = os.cpu_count() or 1
    tf.config.threading.set_intra_op_parallelism_threads(max(1, cores // hvd.local_size()))
    tf.config.threading.set_inter_op_parallelism_threads(2)
    preset = config.load_preset("resnet", args.preset)
    batch, lr = preset["train"]["batch_size"], preset["train"]["lr"]
    size = preset["data"]["image_size"]
    model = build_resnet(ResNetConfig(**{**preset["model"], "input_shape": (size, size, 3)}))
    optimizer = tf.keras.optimizers.SGD(lr * hvd.size(), momentum=0.9, nesterov=True)
    rng = np.random.default_rng(hvd.rank())
    images = rng.random((args.events_per_rank, size, size, 3), dtype=np.float32)
    labels = (rng.random(args.events_per_rank) < 0.5).astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(
        batch, drop_remainder=True).prefetch(2)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)[:, 0]
            loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(y, logits))
            total = loss + tf.add_n(model.losses)
        tape = hvd.DistributedGradientTape(tape)
        grads = tape.gradient(total, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    timed_seconds, timed_samples = 0.0, 0
    for epoch in range(args.epochs):
        start = time.perf_counter()
        samples = 0
        for i, (x, y) in enumerate(dataset):
            loss = step(x, y)
            if epoch == 0 and i == 0:
                hvd.broadcast_variables(model.variables + optimizer.variables, root_rank=0)
            samples += batch
        loss.numpy()
        seconds = time.perf_counter() - start
        if epoch > 0:  # epoch 0 is warm-up, as in ai500.run
            timed_seconds += seconds
            timed_samples += samples
    slowest = hvd.allreduce(tf.constant(timed_seconds, tf.float64), op=hvd.Max).numpy()
    total = hvd.allreduce(tf.constant(float(timed_samples), tf.float64), op=hvd.Sum).numpy()
    if hvd.rank() == 0:
        print(json.dumps({"samples_per_s": total / slowest}), flush=True)


if __name__ == "__main__":
    main()
