"""Everything that talks to Horovod or MPI lives here; the rest of ai500 sees one `Dist` record.

`init()` is called once per process; it returns a frozen record of where this rank sits
(rank, size, local rank, local size, host) that is passed explicitly to whatever needs it.
The collective helpers below must be called by every rank in the same order, as with any MPI code.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

import numpy as np

from ai500.errors import Ai500Error, ConfigError

# Environment variables that launchers set to the number of processes they started, in the
# order we trust them. A process started by `srun` without PMI support sees size 1 from MPI
# while the launcher says N: that mismatch is the "N independent singletons" mistake.
LAUNCHER_SIZE_VARS = ("AI500_EXPECTED_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE")
LAUNCHER_RANK_VARS = ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID")


@dataclass(frozen=True)
class Dist:
    """Where this process sits in the job: global rank and size, rank and size within its node."""

    rank: int
    size: int
    local_rank: int
    local_size: int
    host: str

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    @property
    def node_leader(self) -> bool:
        """True on exactly one rank per node (local rank 0): the one that reads node-level meters."""
        return self.local_rank == 0


def launcher_rank() -> int:
    """This process's rank as the launcher announced it, readable before MPI starts (0 if unknown)."""
    for var in LAUNCHER_RANK_VARS:
        if var in os.environ:
            try:
                return int(os.environ[var])
            except ValueError:
                continue
    return 0


def expected_size(environ: dict[str, str] | None = None) -> tuple[int, str] | None:
    """The process count the launcher intended, and the variable that said so; None if unknown."""
    env = os.environ if environ is None else environ
    for var in LAUNCHER_SIZE_VARS:
        if var in env:
            return int(env[var]), var
    # Under srun each task sees SLURM_STEP_NUM_TASKS; only trust it when we are inside a step
    # (SLURM_PROCID set), not in the batch script's own shell.
    if "SLURM_PROCID" in env and "SLURM_STEP_NUM_TASKS" in env:
        return int(env["SLURM_STEP_NUM_TASKS"]), "SLURM_STEP_NUM_TASKS"
    return None


def check_size(size: int, environ: dict[str, str] | None = None) -> None:
    """Raise ConfigError if MPI's world size differs from what the launcher intended."""
    expected = expected_size(environ)
    if expected is not None and expected[0] != size:
        count, var = expected
        raise ConfigError(
            f"MPI reports {size} process(es) but {var}={count}: the ranks did not join one job "
            "(with srun use --mpi=pmix, or launch with mpirun)"
        )


def init() -> Dist:
    """Start Horovod over MPI and return this rank's record. Imports TensorFlow (seconds)."""
    import horovod.tensorflow as hvd
    from mpi4py import MPI  # noqa: F401  (initialises MPI with thread support before Horovod)

    hvd.init()
    check_size(hvd.size())
    return Dist(
        rank=hvd.rank(),
        size=hvd.size(),
        local_rank=hvd.local_rank(),
        local_size=hvd.local_size(),
        host=socket.gethostname(),
    )


def _hvd():
    import horovod.tensorflow as hvd

    return hvd


def barrier() -> None:
    """Block until every rank has called barrier().

    Not hvd.join(): in Horovod 0.28's TensorFlow binding only the first join() waits for the
    other ranks and later calls return at once (measured: 1.19 s, then 0.0 s, 0.0 s with one
    rank sleeping 1 s before each). A named scalar allreduce waits every time.
    """
    import tensorflow as tf

    _hvd().allreduce(tf.constant(0.0, tf.float32), name="ai500.barrier").numpy()


def allreduce_sum(values: np.ndarray | list[float]) -> np.ndarray:
    """Element-wise sum of a small float64 vector over all ranks."""
    import tensorflow as tf

    hvd = _hvd()
    return hvd.allreduce(tf.constant(np.asarray(values, np.float64)), op=hvd.Sum).numpy()


def allreduce_max(values: np.ndarray | list[float]) -> np.ndarray:
    """Element-wise maximum of a small float64 vector over all ranks."""
    import tensorflow as tf

    hvd = _hvd()
    return hvd.allreduce(tf.constant(np.asarray(values, np.float64)), op=hvd.Max).numpy()


def allgather_array(values: np.ndarray) -> np.ndarray:
    """Concatenate each rank's array along axis 0 in rank order; lengths may differ per rank."""
    import tensorflow as tf

    return _hvd().allgather(tf.constant(values)).numpy()


# Horovod matches collectives across ranks by name, and names object collectives after the
# object's type by default: ranks passing objects of different types (None on one, a string on
# another) would then wait in different collectives. Every call site names its own.

def allgather_object(obj: Any, name: str) -> list[Any]:
    """Every rank's picklable object, in rank order; `name` identifies the call site."""
    return _hvd().allgather_object(obj, name=f"ai500.{name}")


def broadcast_object(obj: Any, name: str) -> Any:
    """Rank 0's picklable object, on every rank; `name` identifies the call site."""
    return _hvd().broadcast_object(obj, root_rank=0, name=f"ai500.{name}")


def broadcast_variables(variables: list) -> None:
    """Overwrite every rank's TensorFlow variables with rank 0's values."""
    _hvd().broadcast_variables(variables, root_rank=0)


def broadcast_training_state(models: list, optimizers: list) -> bool:
    """Call after the first training step, when the optimizers' slots exist: every rank gets rank
    0's weights and optimizer states. Skipped after a resume (iteration count above 1), where every
    rank restored the same shared state and its own batch-norm statistics, which a broadcast would
    replace with rank 0's. Returns whether it broadcast."""
    if int(optimizers[0].iterations) != 1:
        return False
    variables = [v for model in models for v in model.variables]
    for optimizer in optimizers:
        slots = optimizer.variables
        variables += list(slots() if callable(slots) else slots)
    broadcast_variables(variables)
    return True


def average_statistics(models: list) -> int:
    """Make every rank hold one model before an evaluation or a checkpoint: each model's
    non-trainable variables (batch-norm moving means and variances; the trainable weights are
    already identical, since every rank applies the same averaged gradients) are replaced by their
    mean over the ranks. One fused allreduce, summed in float64 and cast back, so every rank gets
    the same bits. Averaging each rank's moving variance leaves out the spread of the ranks' means
    (every rank's batches are drawn from the same distribution, so that spread is small).
    Returns the number of values averaged."""
    import tensorflow as tf

    variables = [v for model in models for v in model.non_trainable_variables
                 if v.dtype.is_floating]
    if not variables:
        return 0
    flat = np.concatenate([v.numpy().astype(np.float64).ravel() for v in variables])
    hvd = _hvd()
    mean = hvd.allreduce(tf.constant(flat), op=hvd.Sum, name="ai500.statistics").numpy() / hvd.size()
    offset = 0
    for v in variables:
        n = int(np.prod(v.shape))
        v.assign(mean[offset:offset + n].reshape(v.shape).astype(v.dtype.as_numpy_dtype))
        offset += n
    return len(flat)


def distributed_tape(tape):
    """Wrap a GradientTape so gradient() returns gradients averaged over all ranks."""
    return _hvd().DistributedGradientTape(tape)


def agree(error: Ai500Error | None, dist: Dist) -> None:
    """Collective: if any rank hit a user-facing error, raise it on every rank.

    Used after steps that can fail on one rank only (reading its data shard), so that every rank
    exits cleanly with the same message instead of the others waiting in the next collective.
    """
    messages = allgather_object(None if error is None else str(error), "agree")
    failed = [(rank, msg) for rank, msg in enumerate(messages) if msg is not None]
    if not failed:
        return
    first_msg = failed[0][1]
    if dist.size > 1:
        ranks = [rank for rank, _ in failed]
        shown = ", ".join(map(str, ranks[:8])) + (", ..." if len(ranks) > 8 else "")
        first_msg = f"{first_msg} (rank{'s' if len(ranks) > 1 else ''} {shown})"
    raise Ai500Error(first_msg, everywhere=True)


def abort(code: int = 1) -> None:
    """End every rank of the job now: used when one rank fails outside a collective.
    Safe to call from any thread (MPI runs with thread support)."""
    try:
        from mpi4py import MPI

        MPI.COMM_WORLD.Abort(code)
    finally:
        os._exit(code)
