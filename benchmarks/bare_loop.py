"""The baseline for ai500's end-to-end overhead: a bare TensorFlow + Horovod loop doing the same
training and evaluation as `ai500.run --benchmark resnet` (same synthetic events and batches,
model, optimizer and learning-rate schedule; every epoch the validation shard is scored and the global
ROC AUC computed), with none of ai500's machinery: no traces, no per-step timing, no barriers,
no energy sampler, no checkpoints, no input thread. Run under mpirun; rank 0 prints one JSON line:
{"wall_s": seconds from a barrier after setup to the end of the last evaluation (slowest rank),
 "samples_per_s": global samples / slowest rank's training time over epochs 1.. }.
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
from ai500.data import common, hep
from ai500.metrics import quality
from ai500.models.resnet import ResNetConfig, build_resnet
from ai500.workloads.schedule import schedule_for

EVAL_BATCH = 256  # as ai500.workloads.resnet


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="small")
    parser.add_argument("--config", help="the same YAML overrides ai500.run is given")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    hvd.init()
    rank, size = hvd.rank(), hvd.size()
    cores = os.cpu_count() or 1
    tf.config.threading.set_intra_op_parallelism_threads(max(1, cores // hvd.local_size()))
    tf.config.threading.set_inter_op_parallelism_threads(2)
    argv = ["--benchmark", "resnet", "--preset", args.preset, "--epochs", str(args.epochs)]
    cfg = config.resolve(argv + (["--config", args.config] if args.config else []))
    tf.keras.utils.set_random_seed(cfg.seed)
    data, batch = cfg.data, cfg.train.batch_size
    t0, t1 = hep.shard_range(data["n_train"], rank, size, equal=True)
    v0, v1 = hep.shard_range(data["n_val"], rank, size, equal=False)
    train = hep.generate_events(t0, t1 - t0, data["seed"], data["image_size"])
    val = hep.generate_events(v0, v1 - v0, common.split_seed(data["seed"], "val"),
                              data["image_size"])
    images = np.ascontiguousarray(train["data"].transpose(0, 2, 3, 1))
    val_images = np.ascontiguousarray(val["data"].transpose(0, 2, 3, 1))
    labels = hvd.allgather(tf.constant(val["label"])).numpy()
    weights = hvd.allgather(tf.constant(val["normweight"])).numpy()
    model = build_resnet(ResNetConfig(**{**cfg.model, "input_shape": images.shape[1:]}))
    steps = len(images) // batch
    optimizer = tf.keras.optimizers.SGD(schedule_for(cfg.train, size, steps, "linear", "cosine"),
                                        momentum=0.9, nesterov=True)

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

    @tf.function(reduce_retracing=True)
    def predict(x):
        return tf.sigmoid(model(x, training=False)[:, 0])

    hvd.allreduce(tf.constant(0.0), name="bare.start").numpy()
    start = time.perf_counter()
    timed_seconds, timed_samples = 0.0, 0
    for epoch in range(args.epochs):
        t_epoch = time.perf_counter()
        # The same batches as ai500.workloads.resnet (order from (seed, epoch, rank)), gathered
        # on the main thread; no tf.data (its from_tensor_slices pipeline was slower here, 5.3 s
        # per epoch against 4.4 s for plain slices).
        order = np.random.default_rng([cfg.seed, epoch, rank]).permutation(len(images))
        for i in range(steps):
            idx = np.sort(order[i * batch:(i + 1) * batch])
            loss = step(images[idx], train["label"][idx])
            if epoch == 0 and i == 0:
                hvd.broadcast_variables(model.variables + optimizer.variables, root_rank=0)
        loss.numpy()
        if epoch > 0:  # epoch 0 is warm-up, as in ai500's throughput
            timed_seconds += time.perf_counter() - t_epoch
            timed_samples += steps * batch
        scores = np.concatenate([predict(val_images[i:i + EVAL_BATCH]).numpy()
                                 for i in range(0, len(val_images), EVAL_BATCH)])
        scores = hvd.allgather(tf.constant(scores.astype(np.float64))).numpy()
        auc = quality.roc_auc(scores, labels, weights)
    wall = time.perf_counter() - start
    slowest = hvd.allreduce(tf.constant([wall, timed_seconds], tf.float64), op=hvd.Max).numpy()
    total = hvd.allreduce(tf.constant(float(timed_samples), tf.float64), op=hvd.Sum).numpy()
    if rank == 0:
        print(json.dumps({"wall_s": float(slowest[0]), "samples_per_s": total / slowest[1],
                          "val_auc": auc}), flush=True)


if __name__ == "__main__":
    main()
