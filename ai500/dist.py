"""Everything that talks to Horovod or MPI lives here; the rest of ai500 sees one `Dist` record.

`init()` is called once per process; it returns a frozen record of where this rank sits
(rank, size, local rank, local size, host, and the GPU it computes on) that is passed explicitly
to whatever needs it. The collective helpers below must be called by every rank in the same
order, as with any MPI code.

GPU pinning happens here, at init, for every workload and launcher: `choose_gpu` (a pure function
of the GPUs TensorFlow sees, the local rank and size, and the environment) decides, `pin_gpu`
applies it before TensorFlow starts its GPU runtime. One GPU per rank, the local rank's among those
the rank sees, with memory growth on (TensorFlow would otherwise take nearly all of every GPU's
memory in every rank); a rank that sees exactly one GPU keeps it (the launcher already bound it,
as `srun --gpus-per-task=1` does); AI500_GPU_BIND=none turns pinning off.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ai500.errors import Ai500Error, ConfigError

# Environment variables that launchers set to the number of processes they started, in the
# order we trust them. A process started by `srun` without PMI support sees size 1 from MPI
# while the launcher says N: that mismatch is the "N independent singletons" mistake.
LAUNCHER_SIZE_VARS = ("AI500_EXPECTED_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE")
LAUNCHER_RANK_VARS = ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID")

GPU_BIND_VAR = "AI500_GPU_BIND"
GPU_BIND_MODES = ("local", "none")
# What says that GPUs were allocated to this job on this node, whatever TensorFlow sees.
GPU_ALLOCATION_VARS = ("CUDA_VISIBLE_DEVICES", "SLURM_GPUS_ON_NODE", "SLURM_JOB_GPUS")
# A CUDA_VISIBLE_DEVICES entry: an ordinal, a GPU UUID or a MIG instance's; CUDA stops at the
# first entry that is none of these (e.g. -1, or Slurm's NoDevFiles).
_CUDA_DEVICE_RE = re.compile(r"^(\d+|GPU-[0-9A-Fa-f-]+|MIG-[0-9A-Za-z/-]+)$")


@dataclass(frozen=True)
class GpuBinding:
    """The GPU(s) this rank computes on, as decided at init.

    `keep` is the index, among the `visible` GPUs TensorFlow saw, of the one GPU this rank keeps
    (None: no GPU, or pinning off); `node_ids` names the GPUs the rank uses as the node knows them
    (CUDA_VISIBLE_DEVICES entries, else CUDA ordinals), for the node's energy meter; `name` and
    `compute_capability` describe the first of them (filled in by pin_gpu from TensorFlow)."""

    keep: int | None
    visible: int
    node_ids: tuple[str, ...]
    rule: str
    name: str = ""
    compute_capability: tuple[int, int] | None = None

    @property
    def on_gpu(self) -> bool:
        return bool(self.node_ids)

    def describe(self) -> dict[str, Any]:
        """A JSON-ready record for config.json and the trace."""
        return {"device": f"GPU {','.join(self.node_ids)}" if self.on_gpu else "CPU",
                "name": self.name, "compute_capability": self.compute_capability,
                "visible_gpus": self.visible, "node_ids": list(self.node_ids), "rule": self.rule}


NO_GPU = GpuBinding(keep=None, visible=0, node_ids=(), rule="no GPU: TensorFlow sees none")


@dataclass(frozen=True)
class Dist:
    """Where this process sits in the job: global rank and size, rank and size within its node."""

    rank: int
    size: int
    local_rank: int
    local_size: int
    host: str
    gpu: GpuBinding = NO_GPU

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


def cuda_visible_devices(environ: Mapping[str, str]) -> tuple[str, ...] | None:
    """CUDA_VISIBLE_DEVICES as CUDA reads it: the entries before the first one that names no
    device (an ordinal, GPU-<uuid> or MIG-<uuid>); None when the variable is unset."""
    if "CUDA_VISIBLE_DEVICES" not in environ:
        return None
    entries = []
    for entry in environ["CUDA_VISIBLE_DEVICES"].split(","):
        if not _CUDA_DEVICE_RE.match(entry.strip()):
            break
        entries.append(entry.strip())
    return tuple(entries)


def allocated_gpus(environ: Mapping[str, str]) -> str | None:
    """The first of GPU_ALLOCATION_VARS that gives this job GPUs on this node, as VAR=value;
    None when none does."""
    for var in GPU_ALLOCATION_VARS:
        value = environ.get(var, "").strip()
        if var == "CUDA_VISIBLE_DEVICES":
            given = bool(cuda_visible_devices(environ))
        elif var == "SLURM_GPUS_ON_NODE":
            given = value.isdigit() and int(value) > 0
        else:  # SLURM_JOB_GPUS: the allocated GPUs' indices, comma-separated
            given = bool(value) and all(part.strip().isdigit() for part in value.split(","))
        if given:
            return f"{var}={value}"
    return None


def choose_gpu(gpus: Sequence[Any], local_rank: int, local_size: int,
               environ: Mapping[str, str], cuda_build: bool) -> GpuBinding:
    """Which of the GPUs TensorFlow sees (`gpus`, in its order) this rank keeps: the one at its
    local rank, or the only one (the launcher bound it); all of them under AI500_GPU_BIND=none.
    `cuda_build`: whether TensorFlow was built with CUDA. Raises a one-line ConfigError when a
    node runs more ranks than GPUs, or when GPUs are allocated but TensorFlow sees none."""
    bind = environ.get(GPU_BIND_VAR, "local").strip() or "local"
    if bind not in GPU_BIND_MODES:
        raise ConfigError(f"{GPU_BIND_VAR}={bind}: expected local (one GPU per rank, the "
                          "default) or none (leave the GPUs to TensorFlow)")
    n = len(gpus)
    listed = cuda_visible_devices(environ)
    node_ids = tuple(listed[i] if listed is not None and i < len(listed) else str(i)
                     for i in range(n))
    if bind == "none":
        return GpuBinding(None, n, node_ids, f"{GPU_BIND_VAR}=none: all {n} GPU(s) this rank "
                          "sees left to TensorFlow")
    if n == 0:
        evidence = allocated_gpus(environ)
        if evidence is None:
            return NO_GPU
        if not cuda_build:
            raise ConfigError(
                f"GPUs are allocated to this job ({evidence}) but TensorFlow sees none: this is "
                "the CPU-only TensorFlow build (tensorflow-cpu); install the GPU stack with "
                "`make install ACCEL=cuda` and run its Python, .venv-cuda/bin/python "
                f"(or set {GPU_BIND_VAR}=none to run on the CPU anyway)")
        raise ConfigError(
            f"GPUs are allocated to this job ({evidence}) but TensorFlow (a CUDA build) sees "
            "none: the NVIDIA driver is not loadable here or the devices are not in this job's "
            f"cgroup; check nvidia-smi on this node (or set {GPU_BIND_VAR}=none to run on the "
            "CPU anyway)")
    # One visible GPU is this rank's own when it runs alone on the node, or when its
    # CUDA_VISIBLE_DEVICES names that one GPU (a launcher or wrapper bound it per rank).
    bound = n == 1 and (local_size == 1 or listed is not None)
    if not bound and n < local_size:
        raise ConfigError(
            f"{local_size} ranks on this node but {n} GPU{'s' if n > 1 else ''} visible to "
            f"each: one GPU per rank needs at most {n} rank{'s' if n > 1 else ''} per node "
            f"(mpirun --npernode {n}, srun --ntasks-per-node={n} --gpus-per-task=1), or "
            f"{GPU_BIND_VAR}=none to share them")
    keep = 0 if n == 1 else local_rank
    rule = ("the one GPU this rank sees" if n == 1 else
            f"GPU {local_rank} of the {n} this rank sees (its local rank)")
    return GpuBinding(keep, n, (node_ids[keep],), rule)


def pin_gpu(binding: GpuBinding, gpus: Sequence[Any]) -> GpuBinding:
    """Apply a choice to TensorFlow's physical devices `gpus` before its GPU runtime starts:
    only the kept GPU stays visible; memory growth on every GPU used. Returns the binding with
    the device's name and compute capability."""
    import tensorflow as tf

    used = list(gpus) if binding.keep is None else [gpus[binding.keep]]
    if binding.keep is not None:
        tf.config.set_visible_devices(used, "GPU")
    for gpu in used:
        tf.config.experimental.set_memory_growth(gpu, True)
    if not used:
        return binding
    details = tf.config.experimental.get_device_details(used[0])
    capability = details.get("compute_capability")
    return GpuBinding(binding.keep, binding.visible, binding.node_ids, binding.rule,
                      details.get("device_name") or used[0].name,
                      tuple(capability) if capability else None)


@dataclass(frozen=True)
class Failures:
    """What every rank learns when ranks fail: how many, the lowest and the highest failing rank
    (from fixed-size reductions), and the lowest failing rank's message (broadcast from it)."""

    count: int
    lowest: int
    highest: int
    message: str

    def describe(self, size: int) -> str:
        """The lowest failing rank's message, naming the failing ranks: all of them when one or
        two failed (lowest and highest are then the whole list), else how many and their range."""
        if size <= 1:
            return self.message
        if self.count == 1:
            ranks = f"rank {self.lowest}"
        elif self.count == 2:
            ranks = f"ranks {self.lowest}, {self.highest}"
        else:
            ranks = f"{self.count} ranks, {self.lowest} to {self.highest}"
        return f"{self.message} ({ranks})"


def failure_vectors(failed: bool, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """One rank's share of the agreement: a vector reduced by maximum, [failed, -rank, rank]
    (-1 in the rank places when this rank did not fail), and one reduced by sum, [failed]."""
    own = [1.0, -float(rank), float(rank)] if failed else [0.0, -np.inf, -1.0]
    return np.array(own, np.float64), np.array([float(failed)], np.float64)


def agree_over(message: str | None, rank: int, reduce_max: Callable[[np.ndarray], np.ndarray],
               reduce_sum: Callable[[np.ndarray], np.ndarray],
               broadcast: Callable[[str | None, int], str]) -> Failures | None:
    """Collective: whether any rank failed (`message` not None on it), in a fixed number of
    fixed-size collectives whatever the job's size: one maximum of three numbers when every rank
    is fine; then a sum of one number and a broadcast of one message from the lowest failing
    rank. `reduce_max`, `reduce_sum` and `broadcast(obj, root)` are the job's collectives."""
    most, total = failure_vectors(message is not None, rank)
    reduced = reduce_max(most)
    if reduced[0] == 0:
        return None
    count = int(reduce_sum(total)[0])
    lowest, highest = int(-reduced[1]), int(reduced[2])
    return Failures(count, lowest, highest, broadcast(message if rank == lowest else None, lowest))


def init() -> Dist:
    """Start Horovod over MPI, pin this rank's GPU and return its record. Imports TensorFlow
    (seconds). A pinning error on any rank is raised on every rank (everywhere=True)."""
    # CUDA's default order is fastest first; PCI bus order makes CUDA ordinals NVML's indices,
    # so the node's energy meter reads the GPUs the ranks compute on.
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    import horovod.tensorflow as hvd
    import tensorflow as tf
    from mpi4py import MPI  # initialises MPI with thread support before Horovod

    hvd.init()
    check_size(hvd.size())
    gpus = tf.config.list_physical_devices("GPU")
    binding, error = NO_GPU, None
    try:
        binding = pin_gpu(choose_gpu(gpus, hvd.local_rank(), hvd.local_size(), os.environ,
                                     tf.test.is_built_with_cuda()), gpus)
    except ConfigError as exc:
        error = str(exc)
    # Through MPI, not Horovod: a Horovod collective would start TensorFlow's GPU runtime.
    comm = MPI.COMM_WORLD

    def reduce(op: Any) -> Callable[[np.ndarray], np.ndarray]:
        def reduced(values: np.ndarray) -> np.ndarray:
            out = np.empty_like(values)
            comm.Allreduce(values, out, op=op)  # a buffer reduction, element by element
            return out
        return reduced

    failures = agree_over(error, hvd.rank(), reduce(MPI.MAX), reduce(MPI.SUM),
                          lambda obj, root: comm.bcast(obj, root=root))
    if failures is not None:
        raise ConfigError(failures.describe(hvd.size()), everywhere=True)
    return Dist(
        rank=hvd.rank(),
        size=hvd.size(),
        local_rank=hvd.local_rank(),
        local_size=hvd.local_size(),
        host=socket.gethostname(),
        gpu=binding,
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


def broadcast_object(obj: Any, name: str, root: int = 0) -> Any:
    """Rank `root`'s picklable object, on every rank; `name` identifies the call site."""
    return _hvd().broadcast_object(obj, root_rank=root, name=f"ai500.{name}")


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

    Used after steps that can fail on one rank only (reading its data shard, a micro kernel), so
    that every rank exits cleanly with the same message instead of the others waiting in the next
    collective. Fixed-size collectives (agree_over): the cost does not grow with the job, and
    the message is the lowest failing rank's, with the failing ranks (Failures.describe).
    """
    failures = agree_over(None if error is None else str(error), dist.rank, allreduce_max,
                          allreduce_sum,
                          lambda obj, root: broadcast_object(obj, "agree", root=root))
    if failures is not None:
        raise Ai500Error(failures.describe(dist.size), everywhere=True)


def abort(code: int = 1) -> None:
    """End every rank of the job now: used when one rank fails outside a collective.
    Safe to call from any thread (MPI runs with thread support). Before MPI has started (the
    watchdog's initialisation phase) this process just exits: the launcher then ends the job."""
    try:
        MPI = sys.modules.get("mpi4py.MPI")  # imported (and MPI initialised) by init()
        if MPI is not None and MPI.Is_initialized() and not MPI.Is_finalized():
            MPI.COMM_WORLD.Abort(code)
    finally:
        os._exit(code)
