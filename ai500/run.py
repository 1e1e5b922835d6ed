"""python -m ai500.run: one benchmark run on every rank of an MPI job.

    parse options → start ranks → stage data, build model → run directory → barrier (run_start)
    → epochs of timed steps + evaluation, each flushed to this rank's trace (and every K epochs a
    checkpoint) → rank 0 merges traces

Timing follows DESIGN §5: run_start is taken right after a barrier once every rank has its data
and model (initialisation is timed separately); time to quality ends with the first evaluation
that reaches the target.

`--resume RUN_DIR` continues a stopped run: rank 0 takes the directory's lock, the model and
optimizer state are restored on every rank from the newest checkpoint before the first step, and
the run goes on at the next epoch as a new segment (RUN_DIR/segment-kk/, ai500/rundir.py) whose
traces the aggregator joins to the earlier ones.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import platform
import resource
import socket
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

# Taken at import, before TensorFlow loads, so initialisation time includes the imports.
PROCESS_START = time.perf_counter()

from ai500 import __version__, checkpoint, config, precision, registry, rundir, system
from ai500 import dist as distlib
from ai500.data.pipeline import Prefetcher
from ai500.errors import Ai500Error, ConfigError, TrainingError
from ai500.trace import TraceWriter, trace_name
from ai500.watchdog import (
    FIRST_EPOCH_PHASE,
    INIT_FAULT,
    INIT_PHASE,
    TRAINING_PHASE,
    Watchdog,
    inject_fault,
    parse_fault,
)

clock = time.perf_counter


def configure_threads(cfg: config.RunConfig, dist: distlib.Dist) -> dict:
    """Give each rank its share of the node's cores so co-located ranks do not oversubscribe."""
    import tensorflow as tf

    usable = len(os.sched_getaffinity(0))
    node_cores = os.cpu_count() or usable
    # Never more than the cores this rank may run on (its binding), nor more than its fair
    # share of the node: ranks bound to one socket together must split that socket.
    share = max(1, min(usable, node_cores // dist.local_size))
    intra = cfg.intra_threads or share
    inter = cfg.inter_threads or 2
    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter)
    return {"intra_op": intra, "inter_op": inter, "usable_cores": usable, "node_cores": node_cores,
            "rule": "explicit" if cfg.intra_threads else
            "min(cores in affinity mask, node cores / ranks on node)"}


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far, bytes (getrusage ru_maxrss, KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def versions() -> dict[str, str]:
    import h5py
    import horovod
    import numpy
    import tensorflow as tf

    return {"ai500": __version__, "python": platform.python_version(), "tensorflow": tf.__version__,
            "horovod": horovod.__version__, "numpy": numpy.__version__, "h5py": h5py.__version__,
            "mpi": system.mpi_library()}


class RankPlace(NamedTuple):
    """Where one rank runs, as every rank learns it at start-up: host, pid, the GPUs it computes
    on (node ids), and its node's description if it is the node's leader (else None)."""

    host: str
    pid: int
    gpus: tuple[str, ...]
    node: dict | None


class Owner:
    """Rank 0's hold on the run directory's lock (ai500/rundir.py); empty on the other ranks."""

    def __init__(self) -> None:
        self.run_dir: Path | None = None
        self.token: str | None = None

    def take(self, run_dir: Path, command: list[str]) -> None:
        self.token = rundir.acquire(run_dir, command)
        self.run_dir = run_dir

    def release(self) -> None:
        if self.token and self.run_dir:
            rundir.release(self.run_dir, self.token)
        self.token = None


def make_run_dir(cfg: config.RunConfig, dist: distlib.Dist, owner: Owner) -> Path:
    """Rank 0 creates a new, empty run directory (never an existing one) and locks it; all ranks
    get its path."""
    result: tuple[str | None, str | None] = (None, None)
    if dist.is_root:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        name = cfg.run_name or f"{cfg.benchmark}-{stamp}-np{dist.size}"
        path = Path(cfg.out) / name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            for attempt in range(1, 100):
                try:
                    path.mkdir()
                    break
                except FileExistsError:
                    if cfg.run_name:
                        raise ConfigError(f"run directory {path} already exists; "
                                          "refusing to reuse it (choose another --run-name)")
                    path = Path(cfg.out) / f"{name}-{attempt + 1}"
            owner.take(path, cfg.argv)
            result = (str(path.resolve()), None)
        except (ConfigError, OSError) as exc:
            result = (None, str(exc))
    path_str, error = distlib.broadcast_object(result, "run_dir")
    if error:
        raise Ai500Error(error, everywhere=True)
    return Path(path_str)


def claim_for_resume(cfg: config.RunConfig, dist: distlib.Dist, owner: Owner) -> tuple[dict, dict]:
    """Rank 0 locks the run directory to resume and, under the lock, reads its record and checks
    its newest checkpoint's manifest; every rank gets (manifest, record), or the same error."""
    result: tuple[dict | None, dict | None, str | None] = (None, None, None)
    if dist.is_root:
        run_dir = Path(cfg.resume)
        try:
            owner.take(run_dir, cfg.argv)
            record = rundir.read_record(run_dir)
            result = (checkpoint.validate(run_dir, record), record, None)
        except Ai500Error as exc:
            result = (None, None, str(exc))
    manifest, record, error = distlib.broadcast_object(result, "resume")
    if error:
        raise Ai500Error(error, everywhere=True)
    return manifest, record


def restore(ckpt, state: dict, cfg: config.RunConfig, dist: distlib.Dist, manifest: dict,
            steps_per_epoch: int) -> None:
    """Every rank restores the checkpoint from the same files, so all start from one state; the
    ranks agree on any error before the next collective."""
    error = None
    try:
        checkpoint.restore(ckpt, state, Path(cfg.resume), manifest, steps_per_epoch, dist.rank,
                           dist.size)
    except Ai500Error as exc:
        error = exc
    distlib.agree(error, dist)


def open_segment(run_dir: Path, dist: distlib.Dist) -> tuple[int, Path]:
    """Rank 0 (holding the lock) clears half-written checkpoints and creates the next segment's
    directory; every rank gets its index and path."""
    result: tuple[int | None, str | None, str | None] = (None, None, None)
    if dist.is_root:
        try:
            checkpoint.remove_partial(run_dir)
            index, path = rundir.new_segment_dir(run_dir)
            result = (index, str(path), None)
        except OSError as exc:
            result = (None, None, f"{run_dir}: cannot add a segment ({exc})")
    index, path, error = distlib.broadcast_object(result, "segment")
    if error:
        raise Ai500Error(error, everywhere=True)
    return index, Path(path)


class Checkpointer:
    """Every `every` epochs, and after the run's last epoch, a checkpoint (ai500/checkpoint.py):
    each rank writes its rank-local variables, rank 0 the shared state, with barriers between the
    steps, so the write falls between two epochs on every rank: inside the run's wall time,
    outside every epoch's training time."""

    def __init__(self, ckpt, state: dict, every: int, run_dir: Path, fields: dict,
                 elapsed_before_s: float):
        self.ckpt, self.state, self.every, self.run_dir = ckpt, state, every, run_dir
        self.fields = fields  # manifest fields fixed for this segment
        self.elapsed_before_s = elapsed_before_s  # training clock at this segment's run_start

    def after_epoch(self, epoch: int, last: bool, dist: distlib.Dist, trace: TraceWriter,
                    run_start: float) -> None:
        if not (last or (epoch + 1) % self.every == 0):
            return
        import tensorflow as tf

        t0 = clock()
        name = checkpoint.checkpoint_name(epoch, self.fields["segment"])
        try:
            if dist.is_root:
                checkpoint.begin(self.run_dir, name)
            distlib.barrier()
            checkpoint.write_rank_state(self.state, self.run_dir, name, dist.rank)
            distlib.barrier()
            if dist.is_root:
                size = checkpoint.commit(self.ckpt, self.run_dir, name,
                                         {**self.fields, "epoch": epoch, "final": last},
                                         lambda: self.elapsed_before_s + clock() - run_start)
                trace.add_row("checkpoints", {"epoch": epoch, "t_start": t0 - run_start,
                                              "t_end": clock() - run_start, "bytes": size})
        except (OSError, tf.errors.OpError) as exc:
            raise Ai500Error(f"checkpoint after epoch {epoch} not written ({exc})") from None
        distlib.barrier()


def write_json(path: Path, obj: dict) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


class NodeEnergy:
    """One rank per node (local rank 0) samples the node's energy meters in a background thread
    for the whole run; the other ranks of that node meter nothing, so nothing is counted twice.
    The estimated model, used only when no meter is readable, counts the CPU time of every rank
    on the node; NVML reads only `node_gpus`, the GPUs the job's ranks on this node compute on."""

    def __init__(self, cfg: config.RunConfig, dist: distlib.Dist, node_pids: list[int],
                 node_gpus: list[str]):
        from ai500.metrics import energy

        self.sampler = None
        self.meters: list = []
        if not (cfg.system["energy"]["enabled"] and dist.node_leader):
            return
        energy_cfg = config.energy_settings(cfg.system)
        self.meters = energy.select_meters(energy_cfg, processes=node_pids, gpus=node_gpus)
        self.sampler = energy.EnergySampler(self.meters, energy_cfg.interval_s)

    def describe(self) -> dict:
        return {m.method: (m.reason or "available") for m in self.meters}

    def start(self) -> None:
        if self.sampler:
            self.sampler.start()

    def stop(self) -> None:
        if self.sampler:
            self.sampler.stop()

    def store(self, trace: TraceWriter, run_start: float) -> None:
        """Copy the samples so far into the trace (times relative to run_start)."""
        if not self.sampler:
            return
        columns = self.sampler.samples().columns()
        columns["t"] = columns["t"] - run_start
        trace.set_group("energy", columns)
        trace.attrs["energy_meters"] = self.describe()
        if self.sampler.error:
            trace.attrs["energy_error"] = self.sampler.error


def _device_order(node_id: str) -> tuple[int, int, str]:
    """Sort key of GPU names: ordinals by number, then UUIDs."""
    return (0, int(node_id), "") if node_id.isdigit() else (1, 0, node_id)


def reached(value: float, q: config.QualitySettings) -> bool:
    return value >= q.target if q.higher_is_better else value <= q.target


def resolve_precision(cfg: config.RunConfig, dist: distlib.Dist) -> config.RunConfig:
    """The config with its precision decided: --precision, else the device's default (every
    rank of a job has the same kind of GPU, so every rank decides the same)."""
    if cfg.precision is not None:
        return cfg
    return dataclasses.replace(cfg, precision=precision.default_precision(dist.gpu)[0])


def execute(cfg: config.RunConfig, dist: distlib.Dist, watchdog: Watchdog) -> Path:
    """Build the workload, run its timed loop, write traces and (rank 0) the summary; rank 0
    holds the run directory's lock throughout. `watchdog` runs in its initialisation phase
    until run_start, then in its training phase."""
    cfg = resolve_precision(cfg, dist)
    if cfg.precision == "fp16" and not dist.gpu.on_gpu and cfg.train and dist.is_root:
        print("ai500: note: fp16 on a CPU runs TensorFlow's emulated float16 kernels (slow): it "
              "exercises the loss-scaling path, it does not measure the hardware",
              file=sys.stderr, flush=True)
    owner = Owner()
    try:
        return _execute(cfg, dist, owner, watchdog)
    finally:
        owner.release()


def _execute(cfg: config.RunConfig, dist: distlib.Dist, owner: Owner,
             watchdog: Watchdog) -> Path:
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    threads = configure_threads(cfg, dist)
    tf.keras.utils.set_random_seed(cfg.seed)
    module = registry.load(cfg.benchmark)
    checkpointing = bool(cfg.checkpoint_every or cfg.resume)
    if checkpointing and not hasattr(module.Workload, "checkpoint_state"):
        raise ConfigError(f"benchmark {cfg.benchmark!r} cannot checkpoint (its workload has no "
                          "checkpoint_state())", everywhere=True)
    manifest, first_record = claim_for_resume(cfg, dist, owner) if cfg.resume else (None, None)
    error = None
    inject_fault(parse_fault(os.environ.get("AI500_FAULT")), dist.rank, INIT_FAULT)
    try:
        workload = module.Workload(cfg, dist)
    except Ai500Error as exc:
        error = exc
    distlib.agree(error, dist)
    stage = getattr(workload, "stage", None)  # how this rank holds its shard (ai500.data.stream)
    if cfg.stage == "stream" and stage is None:  # every rank built the same workload
        raise ConfigError(f"--stage stream: benchmark {cfg.benchmark!r} does not stream its data "
                          "(it stages it in memory)", everywhere=True)
    state = workload.checkpoint_state() if checkpointing else {}
    ckpt = tf.train.Checkpoint(**state) if checkpointing else None
    if manifest is not None:
        restore(ckpt, state, cfg, dist, manifest, workload.steps_per_epoch)
    # One collective: every rank's place, with its node's description from one rank per node
    # (never failing: unreadable facts say why).
    ranks = [RankPlace(*place) for place in distlib.allgather_object(
        (dist.host, os.getpid(), dist.gpu.node_ids,
         system.describe_node() if dist.node_leader else None), "hosts")]
    hosts = [r.host for r in ranks]
    nodes = [r.node for r in ranks if r.node is not None]
    node_gpus = {host: set() for host in hosts}  # the GPUs the job computes on, per node
    for r in ranks:
        node_gpus[r.host].update(r.gpus)
    meter = NodeEnergy(cfg, dist, [r.pid for r in ranks if r.host == dist.host],
                       sorted(node_gpus[dist.host], key=_device_order))
    precision_record = precision.describe(cfg.precision, cfg.xla, dist.gpu)
    if manifest is None:
        flops = workload.flops_per_sample() if dist.is_root else None
        run_dir = make_run_dir(cfg, dist, owner)
        run_id = distlib.broadcast_object(uuid.uuid4().hex, "run_id")
        segment, segment_path = 0, run_dir
    else:
        run_dir = Path(cfg.resume)
        # Same model and batch as the first segment, so the same FLOPs per sample.
        flops, run_id = first_record.get("flops_per_sample"), manifest["run_id"]
        segment, segment_path = open_segment(run_dir, dist)
    if dist.is_root:
        record = {
            "run_id": run_id, "kind": workload.kind, "config": cfg.to_dict(),
            "command": [sys.executable, "-m", "ai500.run", *cfg.argv],
            "dist": {"size": dist.size, "hosts": hosts, "nodes": len(set(hosts)),
                     "gpus_per_node": max(len(ids) for ids in node_gpus.values()),
                     "devices": [f"{r.host} " + (f"GPU {','.join(r.gpus)}" if r.gpus else "CPU")
                                 for r in ranks],
                     "gpu_rank0": dist.gpu.describe()},
            "precision": precision_record,
            "threads_rank0": threads, "versions": versions(), "workload": workload.describe(),
            "flops_per_sample": flops,
        }
        if manifest is not None:
            record.update(segment=segment, resumed_from={
                key: manifest[key] for key in ("segment", "epoch", "elapsed_s", "path", "ranks")})
        write_json(segment_path / (rundir.SEGMENT_RECORD if segment else rundir.RECORD_NAME),
                   record)
        write_json(segment_path / system.SYSTEM_NAME, system.describe(nodes, system.describe_job()))
    trace = TraceWriter(segment_path / trace_name(dist.rank), {
        "run_id": run_id, "benchmark": cfg.benchmark, "rank": dist.rank, "size": dist.size,
        "local_rank": dist.local_rank, "local_size": dist.local_size, "host": dist.host,
        "pid": os.getpid(), "config": cfg.to_dict(), "threads": threads, "segment": segment,
        "gpu": dist.gpu.describe(), "precision": cfg.precision, "xla": cfg.xla,
        "step_window": step_window(dist),
        **({"stage": stage["mode"], "stage_reason": stage["reason"]} if stage else {}),
    })
    trace.before_flush(lambda t: t.attrs.update(peak_rss_bytes=peak_rss_bytes()))
    if workload.kind == "micro":
        loop = micro_loop
    else:
        checkpointer = None
        if ckpt is not None:
            checkpointer = Checkpointer(ckpt, state, cfg.checkpoint_every or 1, run_dir, {
                "run_id": run_id, "benchmark": cfg.benchmark,
                "config_hash": checkpoint.config_hash(cfg.to_dict()), "segment": segment,
                "ranks": dist.size, "steps_per_epoch": workload.steps_per_epoch,
            }, manifest["elapsed_s"] if manifest else 0.0)
        loop = functools.partial(
            train_loop, checkpointer=checkpointer,
            first_epoch=manifest["epoch"] + 1 if manifest else 0,
            after_first_epoch=lambda: watchdog.enter(TRAINING_PHASE, cfg.stall_timeout_s))

    meter.start()
    distlib.barrier()
    run_start = clock()
    trace.attrs.update(wall_start=time.time(), init_seconds=run_start - PROCESS_START)
    trace.before_flush(lambda t: meter.store(t, run_start))
    if workload.kind == "micro":
        watchdog.enter(TRAINING_PHASE, cfg.stall_timeout_s)
    else:  # tracing (and XLA compiling) the first step and evaluation may take minutes
        watchdog.enter(FIRST_EPOCH_PHASE, cfg.first_epoch_timeout_s)
    try:
        loop(workload, cfg, dist, trace, run_start, watchdog.beat)
    except Ai500Error as exc:
        if exc.everywhere:  # every rank stops here, so the run can still be summarised
            watchdog.stop()
            meter.stop()
            trace.close("failed")
            summarise(run_dir, dist)
        raise
    watchdog.stop()
    meter.stop()
    if dist.is_root and hasattr(workload, "write_figures"):  # e.g. dcgan's generated maps
        workload.write_figures(run_dir)
    trace.close("ok")
    summarise(run_dir, dist)
    return run_dir


def train_loop(workload, cfg: config.RunConfig, dist: distlib.Dist, trace: TraceWriter,
               run_start: float, beat: Callable[[], None], first_epoch: int = 0,
               checkpointer: Checkpointer | None = None,
               after_first_epoch: Callable[[], None] = lambda: None) -> None:
    """Epochs of timed training steps, each followed by a global evaluation (and, when due, a
    checkpoint), from `first_epoch` until the quality target is reached (unless told to go on)
    or the epochs run out. `after_first_epoch` is called once the first of them is evaluated."""
    import psutil

    process = psutil.Process()
    process.cpu_percent()
    fault = parse_fault(os.environ.get("AI500_FAULT"))  # checked in main(): well formed
    for epoch in range(first_epoch, cfg.train.epochs):
        inject_fault(fault, dist.rank, epoch)
        # Every epoch starts after a barrier: what a rank did after the previous epoch (its trace
        # flush, a checkpoint) is then that rank's time between epochs, recorded as the others'
        # wait, not counted in anyone's training time.
        t_ready = clock()
        distlib.barrier()
        row = {"t_ready": t_ready - run_start, **run_epoch(workload, epoch, run_start, trace,
                                                             dist, beat)}
        row["t_eval_start"] = clock() - run_start
        row.update(workload.evaluate())
        beat()
        if epoch == first_epoch:
            after_first_epoch()
        row["t_eval_end"] = clock() - run_start
        if cfg.quality.metric not in row:  # every rank evaluates the same metrics: all stop here
            known = ", ".join(k for k in row if k.startswith("val_"))
            raise ConfigError(f"quality metric {cfg.quality.metric!r} is not one that "
                              f"{cfg.benchmark} reports ({known})", everywhere=True)
        trace.add_epoch(row)
        trace.add_system(row["t_eval_end"], process.cpu_percent(), process.memory_info().rss)
        trace.flush()
        hit = reached(row[cfg.quality.metric], cfg.quality)
        if dist.is_root:
            print(epoch_line(row, cfg.quality.metric, hit), flush=True)
        last = epoch == cfg.train.epochs - 1 or (hit and cfg.train.stop_at_target)
        if checkpointer is not None:
            checkpointer.after_epoch(epoch, last, dist, trace, run_start)
            beat()
        if last:
            break


def micro_loop(workload, cfg: config.RunConfig, dist: distlib.Dist, trace: TraceWriter,
               run_start: float, beat: Callable[[], None]) -> None:
    """Every rank times the same kernels at the same moment (a barrier before each), so the
    merged traces give the rate the whole system delivers, not one rank's alone."""
    for item in workload.items():
        distlib.barrier()
        t_start = clock() - run_start
        row = workload.measure(item)
        beat()
        row.update(t_start=t_start, t_end=clock() - run_start)
        trace.add_row("kernels", row)
        trace.flush()
        if dist.is_root:
            print(workload.format_row(row), flush=True)


def stalled(cfg: config.RunConfig, idle: float, phase: str) -> None:
    """The watchdog's verdict (ai500.watchdog): one line naming this rank, the phase and its
    option, then the whole job ends. The rank is the launcher's (MPI may not have started)."""
    if phase == INIT_PHASE:
        what = "initialisation (MPI start-up, data staging, model build) made no progress"
        option = f"--init-timeout {cfg.init_timeout_s:g}"
        why = "a rank hangs staging its data or never joined the job"
    elif phase == FIRST_EPOCH_PHASE:
        what = ("the first epoch (tracing and compiling the training and evaluation steps) made "
                "no progress")
        option = f"--init-timeout {cfg.first_epoch_timeout_s:g}"
        why = "a rank died or hangs"
    else:
        what, option = "no progress", f"--stall-timeout {cfg.stall_timeout_s:g}"
        why = "a rank died or hangs"
    print(f"ai500: error: rank {distlib.launcher_rank()} on {socket.gethostname()}: {what} for "
          f"{idle:.0f} s ({option}): {why}, or this rank waits for one in a collective; ending "
          "the job", file=sys.stderr, flush=True)
    distlib.abort(1)


def summarise(run_dir: Path, dist: distlib.Dist) -> None:
    """Wait for every rank's final trace, then rank 0 merges them and prints the table."""
    from ai500 import aggregate

    distlib.barrier()
    if dist.is_root:
        summary = aggregate.aggregate(run_dir)
        print(aggregate.format_summary(summary), flush=True)


def progress_bar_wanted(environ: dict[str, str] | None = None, tty: bool | None = None) -> bool:
    """A progress bar only on an interactive terminal. MPI launchers hand ranks a pseudo-terminal
    even when their own output goes to a file, so under a launcher the bar is off unless
    AI500_PROGRESS=1 asks for it (AI500_PROGRESS=0 always turns it off)."""
    env = os.environ if environ is None else environ
    if env.get("AI500_PROGRESS") in ("0", "1"):
        return env["AI500_PROGRESS"] == "1"
    launched = any(var in env for var in (*distlib.LAUNCHER_SIZE_VARS, "SLURM_PROCID"))
    return (sys.stdout.isatty() if tty is None else tty) and not launched


# On a GPU a training step returns once its work is queued, not done; the loop waits for the
# device only every STEP_WINDOW_GPU steps, and each row of the trace's steps/ spans such a window
# (t_end after the wait), so a row's time is what its steps took. On a CPU every step is done
# when it returns: one row per step, no waiting.
STEP_WINDOW_GPU = 16


def step_window(dist: distlib.Dist) -> int:
    """Training steps per row of the trace's steps/ group (see STEP_WINDOW_GPU)."""
    return STEP_WINDOW_GPU if dist.gpu.on_gpu else 1


def run_epoch(workload, epoch: int, run_start: float, trace: TraceWriter,
              dist: distlib.Dist, beat: Callable[[], None]) -> dict[str, float]:
    """Train one epoch; returns timings (seconds from run_start) and globally averaged metrics.

    A step's statistics stay tensors on the device and are summed there; they are read back once,
    at the end of the epoch (and waited for at the end of every step window, on a GPU)."""
    import numpy as np
    import tensorflow as tf
    from tqdm import tqdm

    t_start = clock()
    sums: dict = {}  # float64 tensors: float32 sums would drift over long epochs
    samples = 0
    window = step_window(dist)
    show_bar = dist.is_root and progress_bar_wanted()
    with Prefetcher(workload.train_batches(epoch)) as batches:
        w0, w_samples = clock(), 0
        for step in tqdm(range(workload.steps_per_epoch), disable=not show_bar, leave=False,
                         desc=f"epoch {epoch}"):
            stats = workload.train_step(next(batches))
            for key, value in stats.items():
                value = tf.cast(value, tf.float64)
                sums[key] = sums[key] + value if key in sums else value
            samples += workload.samples_per_step
            w_samples += workload.samples_per_step
            if (step + 1) % window == 0 or step + 1 == workload.steps_per_epoch:
                if window > 1:  # every statistic depends on its step's work: wait for them
                    for value in sums.values():
                        np.asarray(value)
                w1 = clock()
                trace.add_step(w0 - run_start, w1 - run_start, w_samples)
                w0, w_samples = w1, 0
            beat()
        input_crc32 = batches.input_crc32
    keys = sorted(sums)
    # Each statistic is a per-sample mean of a step of samples_per_step samples.
    totals = distlib.allreduce_sum([samples] + [float(sums[k]) * workload.samples_per_step
                                                for k in keys])
    t_end = clock()  # the epoch's training metrics reduced over the ranks are part of training
    means = {f"train_{k}": totals[i + 1] / totals[0] for i, k in enumerate(keys)}
    if not all(np.isfinite(v) for v in means.values()):
        bad = ", ".join(f"{k}={v}" for k, v in means.items() if not np.isfinite(v))
        raise TrainingError(f"non-finite training metric in epoch {epoch} ({bad}); "
                            "lower the learning rate (--lr) or check the input data",
                            everywhere=True)
    return {"epoch": epoch, "t_start": t_start - run_start, "t_train_end": t_end - run_start,
            "samples": samples, "input_crc32": input_crc32, **means}


def epoch_line(row: dict[str, float], metric: str, hit: bool) -> str:
    seconds = row["t_train_end"] - row["t_start"]
    evals = "  ".join(f"{k} {v:.4f}" for k, v in row.items() if k.startswith("val_"))
    trains = "  ".join(f"{k} {v:.4f}" for k, v in row.items() if k.startswith("train_"))
    mark = f"  <- {metric} reached target" if hit else ""
    return (f"epoch {int(row['epoch']):3d}  {trains}  {evals}  train {seconds:.1f} s  "
            f"at {row['t_eval_end']:.1f} s{mark}")


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        if "-h" in argv or "--help" in argv:  # the parser lists AI500_WORKLOADS' names: may fail
            config.build_parser().print_help()
            return 0
        cfg = config.resolve(argv)
        if cfg.resume:  # fail fast here; rank 0 checks again under the lock once MPI runs
            rundir.check_free(Path(cfg.resume))
            checkpoint.validate(Path(cfg.resume), rundir.read_record(Path(cfg.resume)))
        try:
            parse_fault(os.environ.get("AI500_FAULT"))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    except Ai500Error as exc:
        # Every rank parsed the same options and failed the same way; one of them says so.
        if distlib.launcher_rank() == 0:
            print(f"ai500: error: {exc}", file=sys.stderr, flush=True)
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Watches from before MPI starts: a rank that never joins, or hangs staging its data, ends
    # the job after --init-timeout instead of leaving the others in a collective forever.
    watchdog = Watchdog(cfg.init_timeout_s, functools.partial(stalled, cfg), INIT_PHASE)
    watchdog.start()
    try:
        dist = distlib.init()
    except Ai500Error as exc:
        # An error every rank agreed on (GPU pinning) is printed once; others by each rank.
        if not exc.everywhere or distlib.launcher_rank() == 0:
            print(f"ai500: error: {exc}", file=sys.stderr, flush=True)
        return 2
    try:
        execute(cfg, dist, watchdog)
        return 0
    except Ai500Error as exc:
        if exc.everywhere:
            if dist.is_root:
                print(f"ai500: error: {exc}", file=sys.stderr, flush=True)
            return 1
        print(f"ai500: error: rank {dist.rank} on {dist.host}: {exc}", file=sys.stderr, flush=True)
    except Exception as exc:  # noqa: BLE001  (a bug or a fault on this rank alone: report, abort)
        traceback.print_exc()
        print(f"ai500: error: rank {dist.rank} on {dist.host} failed: "
              f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    # Only this rank failed; the others may be blocked in a collective, so end the whole job.
    distlib.abort(1)
    return 1


if __name__ == "__main__":
    sys.exit(main())
