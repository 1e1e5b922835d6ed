"""Benchmarks as workloads: each module here builds a model and its data and trains one step.

A workload module defines `Workload`, constructed as `Workload(cfg: RunConfig, dist: Dist)` (it
stages its data shard and builds its model there, raising `Ai500Error` for bad input; it must
not call collectives there, since a rank that fails must reach the driver's error agreement,
except ai500.data.stream.once, rank 0's file inspection broadcast, which every rank reaches before
anything can fail on one rank alone), with:

    kind = "training"
    samples_per_step: int           samples this rank processes per training step
    steps_per_epoch: int            identical on every rank (collectives run in lock-step)
    describe() -> dict              model and data facts for config.json
    train_batches(epoch) -> Iterator    this rank's batches for one epoch: a plain generator of
                                    tuples of numpy arrays; the driver runs it in a background
                                    thread (ai500.data.pipeline.Prefetcher) and hands train_step
                                    tuples of tf.Tensors
    train_step(batch) -> dict[str, tf.Tensor]
                                    one optimisation step; returns this rank's per-sample means
                                    (e.g. loss, accuracy) as scalars: tf.Tensors left on the
                                    device, which the driver sums there and reads back once per
                                    epoch (a Python float works too, but float() on a tensor makes
                                    every step wait for the device)
    evaluate() -> dict[str, float]  validation metrics over the whole validation set (all ranks),
                                    of one model: call dist.average_statistics(models) before
                                    anything reads batch-norm moving statistics, so every rank
                                    evaluates, and the driver then checkpoints, identical models
    flops_per_sample() -> dict      {"forward", "train": FLOPs per sample, "method": str}
    write_figures(run_dir)          optional: rank 0 writes pictures of the result (no collectives)
    stage: dict                     optional, needed for --stage stream: how this rank holds its
                                    data shard (ai500.data.stream.StageChoice.describe(): mode
                                    memory or stream, and why); the driver records it in the
                                    rank's trace and the summary
    checkpoint_state() -> dict[str, trackable]
                                    optional, needed for --checkpoint-every/--resume: the objects
                                    that hold the training state at an epoch boundary (models,
                                    optimizers, tf.Variables), by stable names, all variables
                                    already created (call `optimizer.build(model.trainable_variables)`
                                    so slots exist before a restore). The driver saves them with
                                    tf.train.Checkpoint, and on --resume restores them on every
                                    rank before the first step, then sets each optimizer's
                                    iteration count to (epochs done) x steps_per_epoch, so each
                                    optimizer must step once per train_step.

Resuming relies on this protocol's determinism: the batches of an epoch (and any noise) must
depend only on (seed, epoch, rank), never on state carried from earlier epochs, so that the epoch
number is the whole data-pipeline position. State that does evolve (a weight average, an RNG
held as a variable) belongs in checkpoint_state(). The first-step broadcast of rank 0's state goes
through `dist.broadcast_training_state`, which skips it after a restore (an optimizer's iteration
count is then above 1): every rank restored the same shared state, and a broadcast would replace
the other ranks' restored batch-norm statistics (which each rank keeps for itself) with rank 0's.

Micro benchmarks (kind = "micro") instead provide `items()` (the kernels to time, in order),
`measure(item) -> dict` (one kernel's timing record: text labels and numbers in seconds, FLOPs)
and `format_row(row) -> str` (rank 0's progress line); the driver runs them with a barrier
before each kernel so all ranks time it at once, and stores the rows in the trace's `kernels/`.
`measure` may call collectives: every rank calls it for the same items in the same order.

Precision (cfg.precision, resolved by the driver) and XLA (cfg.xla) are the workload's to apply
with ai500.precision: build the models under `precision.policy`, wrap each optimizer with
`precision.optimizer`, take gradients with `precision.averaged_gradients`, and compile the forward
pass with jit_compile when cfg.xla.

A workload knows nothing about timing, traces, energy or files: the run driver owns those.
"""

from ai500.errors import ConfigError


def steps_per_epoch(samples: int, batch_size: int, unit: str) -> int:
    """Full batches of `batch_size` in this rank's `samples` training samples (the remainder is
    left out of the epoch); ConfigError if not even one."""
    steps = samples // batch_size
    if steps == 0:
        raise ConfigError(f"batch size {batch_size} exceeds the {samples} training {unit} per rank")
    return steps
