"""python -m ai500.run: one benchmark run on every rank of an MPI job.

    parse options → start ranks → stage data, build model → run directory → barrier (run_start)
    → epochs of timed steps + evaluation, each flushed to this rank's trace → rank 0 merges traces

Timing follows DESIGN §5: run_start is taken right after a barrier once every rank has its data
and model (initialisation is timed separately); time to quality ends with the first evaluation
that reaches the target.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path

# Taken at import, before TensorFlow loads, so initialisation time includes the imports.
PROCESS_START = time.perf_counter()

from ai500 import __version__, config, registry
from ai500 import dist as distlib
from ai500.errors import Ai500Error, ConfigError, TrainingError
from ai500.trace import TraceWriter, trace_name
from ai500.watchdog import Watchdog, inject_fault, parse_fault

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


def versions() -> dict[str, str]:
    import h5py
    import horovod
    import numpy
    import tensorflow as tf
    from mpi4py import MPI

    return {"ai500": __version__, "python": platform.python_version(), "tensorflow": tf.__version__,
            "horovod": horovod.__version__, "numpy": numpy.__version__, "h5py": h5py.__version__,
            "mpi": MPI.Get_library_version().splitlines()[0].strip()}


def make_run_dir(cfg: config.RunConfig, dist: distlib.Dist) -> Path:
    """Rank 0 creates a new, empty run directory (never an existing one); all ranks get its path."""
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
            result = (str(path.resolve()), None)
        except (ConfigError, OSError) as exc:
            result = (None, str(exc))
    path_str, error = distlib.broadcast_object(result, "run_dir")
    if error:
        raise Ai500Error(error, everywhere=True)
    return Path(path_str)


def write_json(path: Path, obj: dict) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


class NodeEnergy:
    """One rank per node (local rank 0) samples the node's energy meters in a background thread
    for the whole run; the other ranks of that node meter nothing, so nothing is counted twice.
    The estimated model, used only when no meter is readable, counts the CPU time of every rank
    on the node."""

    def __init__(self, cfg: config.RunConfig, dist: distlib.Dist, node_pids: list[int]):
        from ai500.metrics import energy

        self.sampler = None
        self.meters: list = []
        if not (cfg.system["energy"]["enabled"] and dist.node_leader):
            return
        energy_cfg = config.energy_settings(cfg.system)
        self.meters = energy.select_meters(energy_cfg, processes=node_pids)
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


def reached(value: float, q: config.QualitySettings) -> bool:
    return value >= q.target if q.higher_is_better else value <= q.target


def execute(cfg: config.RunConfig, dist: distlib.Dist) -> Path:
    """Build the workload, run its timed loop, write traces and (rank 0) the summary."""
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    threads = configure_threads(cfg, dist)
    tf.keras.utils.set_random_seed(cfg.seed)
    module = registry.load(cfg.benchmark)
    error = None
    try:
        workload = module.Workload(cfg, dist)
    except Ai500Error as exc:
        error = exc
    distlib.agree(error, dist)
    hosts_pids = distlib.allgather_object((dist.host, os.getpid()), "hosts")
    hosts = [host for host, _ in hosts_pids]
    meter = NodeEnergy(cfg, dist, [pid for host, pid in hosts_pids if host == dist.host])
    flops = workload.flops_per_sample() if dist.is_root else None
    run_dir = make_run_dir(cfg, dist)
    run_id = distlib.broadcast_object(uuid.uuid4().hex, "run_id")
    if dist.is_root:
        write_json(run_dir / "config.json", {
            "run_id": run_id, "kind": workload.kind, "config": cfg.to_dict(),
            "command": [sys.executable, "-m", "ai500.run", *cfg.argv],
            "dist": {"size": dist.size, "hosts": hosts, "nodes": len(set(hosts)),
                     "gpus_per_node": len(tf.config.list_physical_devices("GPU"))},
            "threads_rank0": threads, "versions": versions(), "workload": workload.describe(),
            "flops_per_sample": flops,
        })
    trace = TraceWriter(run_dir / trace_name(dist.rank), {
        "run_id": run_id, "benchmark": cfg.benchmark, "rank": dist.rank, "size": dist.size,
        "local_rank": dist.local_rank, "local_size": dist.local_size, "host": dist.host,
        "pid": os.getpid(), "config": cfg.to_dict(), "threads": threads,
    })
    loop = micro_loop if workload.kind == "micro" else train_loop

    def stalled(idle: float) -> None:
        print(f"ai500: error: rank {dist.rank} on {dist.host}: no progress for {idle:.0f} s "
              f"(--stall-timeout {cfg.stall_timeout_s:g}): a rank died or hangs, or this rank "
              "waits for one in a collective; ending the job", file=sys.stderr, flush=True)
        distlib.abort(1)

    watchdog = Watchdog(cfg.stall_timeout_s, stalled)
    meter.start()
    distlib.barrier()
    run_start = clock()
    trace.attrs.update(wall_start=time.time(), init_seconds=run_start - PROCESS_START)
    trace.before_flush(lambda t: meter.store(t, run_start))
    watchdog.start()
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
               run_start: float, beat: Callable[[], None]) -> None:
    """Epochs of timed training steps, each followed by a global evaluation, until the
    quality target is reached (unless told to go on) or the epochs run out."""
    import psutil

    process = psutil.Process()
    process.cpu_percent()
    fault = parse_fault(os.environ.get("AI500_FAULT"))  # checked in main(): well formed
    for epoch in range(cfg.train.epochs):
        inject_fault(fault, dist.rank, epoch)
        row = run_epoch(workload, epoch, run_start, trace, dist, beat)
        row["t_eval_start"] = clock() - run_start
        row.update(workload.evaluate())
        beat()
        row["t_eval_end"] = clock() - run_start
        trace.add_epoch(row)
        trace.add_system(row["t_eval_end"], process.cpu_percent(), process.memory_info().rss)
        trace.flush()
        hit = reached(row[cfg.quality.metric], cfg.quality)
        if dist.is_root:
            print(epoch_line(row, cfg.quality.metric, hit), flush=True)
        if hit and cfg.train.stop_at_target:
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


def run_epoch(workload, epoch: int, run_start: float, trace: TraceWriter,
              dist: distlib.Dist, beat: Callable[[], None]) -> dict[str, float]:
    """Train one epoch; returns timings (seconds from run_start) and globally averaged metrics."""
    import numpy as np
    from tqdm import tqdm

    t_start = clock()
    batches = workload.train_batches(epoch)
    sums: dict[str, float] = {}
    samples = 0
    show_bar = dist.is_root and progress_bar_wanted()
    for _ in tqdm(range(workload.steps_per_epoch), disable=not show_bar, leave=False,
                  desc=f"epoch {epoch}"):
        s0 = clock()
        stats = workload.train_step(next(batches))
        s1 = clock()
        beat()
        trace.add_step(s0 - run_start, s1 - run_start, workload.samples_per_step)
        samples += workload.samples_per_step
        for key, value in stats.items():
            sums[key] = sums.get(key, 0.0) + value * workload.samples_per_step
    t_end = clock()
    keys = sorted(sums)
    totals = distlib.allreduce_sum([samples] + [sums[k] for k in keys])
    means = {f"train_{k}": totals[i + 1] / totals[0] for i, k in enumerate(keys)}
    if not all(np.isfinite(v) for v in means.values()):
        bad = ", ".join(f"{k}={v}" for k, v in means.items() if not np.isfinite(v))
        raise TrainingError(f"non-finite training metric in epoch {epoch} ({bad}); "
                            "lower the learning rate (--lr) or check the input data",
                            everywhere=True)
    return {"epoch": epoch, "t_start": t_start - run_start, "t_train_end": t_end - run_start,
            "samples": samples, **means}


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
    if "-h" in argv or "--help" in argv:
        config.build_parser().print_help()
        return 0
    try:
        cfg = config.resolve(argv)
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
    try:
        dist = distlib.init()
    except Ai500Error as exc:
        print(f"ai500: error: {exc}", file=sys.stderr, flush=True)
        return 2
    try:
        execute(cfg, dist)
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
