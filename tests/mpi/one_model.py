"""Run under mpirun by tests/test_one_model.py: build a benchmark's workload at the ci preset,
train a few steps (so each rank's batch-norm statistics differ), evaluate, and report whether
every rank then holds bit-identical variables and what quality it measured.

    one_model.py BENCHMARK train OUT.npz    train, evaluate, rank 0 saves the model variables
    one_model.py BENCHMARK load IN.npz      load those variables on every rank, evaluate
Rank 0 prints one JSON line: {"identical": bool, "values": n, "metrics": {...}}.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import tensorflow as tf

from ai500 import config, registry
from ai500 import dist as distlib
from ai500.data.pipeline import Prefetcher


def model_variables(workload) -> list[tf.Variable]:
    state = workload.checkpoint_state()
    return [v for obj in state.values() if isinstance(obj, tf.keras.Model) for v in obj.variables]


def main() -> None:
    benchmark, mode, path = sys.argv[1:4]
    cfg = config.resolve(["--benchmark", benchmark, "--preset", "ci"])
    dist = distlib.init()
    tf.keras.utils.set_random_seed(cfg.seed)
    workload = registry.load(benchmark).Workload(cfg, dist)
    variables = model_variables(workload)
    # The one input path: a workload yields numpy batches (tf.data's from_generator stalled
    # epochs in its teardown), which the driver's Prefetcher turns into tensors.
    numpy_batches = all(isinstance(part, np.ndarray) for part in next(workload.train_batches(0)))
    if mode == "train":
        with Prefetcher(workload.train_batches(0)) as batches:
            for _ in range(min(3, workload.steps_per_epoch)):
                workload.train_step(next(batches))
    else:
        saved = np.load(path)
        for i, v in enumerate(variables):
            v.assign(saved[f"v{i}"])
    metrics = workload.evaluate()
    digest = hashlib.sha256(b"".join(v.numpy().tobytes() for v in variables)).hexdigest()
    digests = distlib.allgather_object(digest, "one_model")
    if dist.is_root:
        if mode == "train":
            np.savez(path, **{f"v{i}": v.numpy() for i, v in enumerate(variables)})
        print(json.dumps({"identical": len(set(digests)) == 1, "ranks": dist.size,
                          "numpy_batches": numpy_batches,
                          "values": sum(int(np.prod(v.shape)) for v in variables),
                          "metrics": metrics}), flush=True)


if __name__ == "__main__":
    main()
