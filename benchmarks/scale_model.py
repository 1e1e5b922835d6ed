"""make bench: the aggregator and the report at thousands of ranks, on synthetic run directories.

Writes one valid run directory per rank count (default 1,024, 4,096 and 16,384 ranks): config.json
and system.json as ai500.run writes them, and one trace per rank written by ai500.trace's own
TraceWriter, shaped like a resnet `small` run: 5 epochs of 128 steps (the small preset's steps per
epoch on 2 ranks), a steps/ row per step, a system/ row per epoch, node energy samples at 1 Hz on
each node's local rank 0 (4 ranks per node) and rank 0's checkpoints. Then it times
`python -m ai500.aggregate RUN_DIR` and `python -m ai500.report RUN_DIR --out DIR` on each, every
one a child process of its own, and prints N, wall seconds, the child's peak RSS (ru_maxrss) and
seconds per rank. Goal (issue 17): 4,096 ranks aggregated in <= 60 s and <= 4 GB, the cost per rank
not rising with N.

Generation is fast because it writes one trace per node layout (a node leader and a plain rank)
with TraceWriter, then copies it for every other rank and rewrites in place only what differs
by rank (rank, host, pid, local rank attributes and the epochs/ timing columns), so every trace
still reads back through ai500.trace.read_trace; `--reference` writes every trace with TraceWriter
instead (slower; the unit test checks that both give the same summary).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import itertools

from ai500 import config, system
from ai500.trace import TraceWriter, trace_name

RANKS = (1024, 4096, 16384)
RANKS_PER_NODE = 4
EPOCHS = 5
STEPS_PER_EPOCH = 128  # resnet small on 2 ranks: 16,384 events / 2 ranks / batch 64
BATCH = 64
STEP_S = 0.25  # seconds per training step of the synthetic timeline
EVAL_S = 3.0
INIT_S = 20.0
RUN_ID = "scale-model"
# What every rank's trace carries as a real one does: the per-epoch metrics (global, identical
# on every rank) that a resnet small run reports, reaching the quality target (0.94) at epoch 3.
VAL_AUC = (0.80, 0.88, 0.92, 0.945, 0.95)


def run_config(ranks: int) -> dict[str, Any]:
    """The resolved RunConfig of `python -m ai500.run --benchmark resnet --preset small
    --epochs 5` as config.json holds it."""
    argv = ["--benchmark", "resnet", "--preset", "small", "--epochs", str(EPOCHS),
            "--run-name", f"np{ranks}"]
    cfg = config.resolve(argv)
    return {**cfg.to_dict(), "precision": "fp32"}


def host(rank: int) -> str:
    return f"node{rank // RANKS_PER_NODE:05d}"


def record(ranks: int) -> dict[str, Any]:
    """config.json of the synthetic run, field for field as ai500.run writes it."""
    hosts = [host(r) for r in range(ranks)]
    cfg = run_config(ranks)
    return {
        "run_id": RUN_ID, "kind": "training", "config": cfg,
        "command": [sys.executable, "-m", "ai500.run", *cfg["argv"]],
        "dist": {"size": ranks, "hosts": hosts, "nodes": len(set(hosts)), "gpus_per_node": 0,
                 "devices": [f"{h} CPU" for h in hosts],
                 "gpu_rank0": {"device": "CPU", "name": "", "compute_capability": None,
                               "visible_gpus": 0, "node_ids": [], "rule": "no GPU"}},
        "precision": {"precision": "fp32", "policy": "float32", "loss_scaling": False,
                      "xla": False, "tf32": None},
        "threads_rank0": {"intra_op": 1, "inter_op": 2, "usable_cores": 1, "node_cores": 4,
                          "rule": "min(cores in affinity mask, node cores / ranks on node)"},
        "versions": {"ai500": "scale-model"},
        "workload": {"model": "resnet (synthetic scale model)"},
        "flops_per_sample": {"forward": 1.0e8, "train": 3.0e8, "method": "scale model"},
    }


def system_record(ranks: int) -> dict[str, Any]:
    """system.json: this machine's node description for every node (host renamed)."""
    node = system.describe_node()
    nodes = [{**copy.deepcopy(node), "host": host(r)} for r in range(0, ranks, RANKS_PER_NODE)]
    return system.describe(nodes, {"launcher": "srun (Slurm step, PMI)",
                                   "slurm": system.unavailable("scale model"),
                                   "mpi": "scale model"})


def epoch_rows(rank: int) -> list[dict[str, float]]:
    """The rank's epochs/ rows: a timeline where every rank starts an epoch after one barrier,
    trains STEPS_PER_EPOCH steps at its own speed (up to 3 % slower, fixed per rank), then all
    finish the training metrics' allreduce and evaluate together."""
    slow = 1.0 + 0.03 * ((rank * 2654435761) % 1000) / 1000
    rows, t = [], 0.0
    for epoch in range(EPOCHS):
        slowest_train = STEPS_PER_EPOCH * STEP_S * 1.03
        t_start = t + 0.01
        train_end = t_start + slowest_train
        rows.append({
            "epoch": epoch, "t_ready": t + 0.001 * (rank % 7) / 7, "t_start": t_start,
            "t_train_end": train_end - (1.03 - slow) * STEPS_PER_EPOCH * STEP_S,
            "t_eval_start": train_end + 0.005, "t_eval_end": train_end + EVAL_S,
            "samples": STEPS_PER_EPOCH * BATCH,
            "train_loss": 0.6 - 0.05 * epoch, "train_accuracy": 0.7 + 0.04 * epoch,
            "val_auc": VAL_AUC[epoch], "val_accuracy": 0.8 + 0.02 * epoch,
            "val_loss": 0.5 - 0.04 * epoch, "val_events": 4096.0})
        t = train_end + EVAL_S + 0.2
    return rows


def trace_attrs(rank: int, ranks: int, cfg: dict[str, Any]) -> dict[str, Any]:
    """A trace's attributes as ai500.run sets them (wall_start and init_seconds at run_start)."""
    return {"run_id": RUN_ID, "benchmark": "resnet", "rank": rank, "size": ranks,
            "local_rank": rank % RANKS_PER_NODE, "local_size": RANKS_PER_NODE, "host": host(rank),
            "pid": 10000 + rank, "config": cfg, "threads": {"intra_op": 1, "inter_op": 2},
            "segment": 0, "gpu": {"device": "CPU"}, "precision": "fp32", "xla": False,
            "step_window": 1, "wall_start": 1.8e9, "init_seconds": INIT_S + 0.5 * (rank % 3)}


def write_trace(run_dir: Path, rank: int, ranks: int, cfg: dict[str, Any]) -> Path:
    """Rank `rank`'s trace, written by TraceWriter as ai500.run's loop writes it: each epoch's
    steps and row, a system row, and on node leaders the node's energy samples (estimated
    meter, 1 Hz; joules at 4 ranks x 6.75 W per core)."""
    writer = TraceWriter(run_dir / trace_name(rank), trace_attrs(rank, ranks, cfg))
    rows = epoch_rows(rank)
    for row in rows:
        step_s = (row["t_train_end"] - row["t_start"]) / STEPS_PER_EPOCH
        for step in range(STEPS_PER_EPOCH):
            t0 = row["t_start"] + step * step_s
            writer.add_step(t0, t0 + step_s, BATCH)
        writer.add_epoch(row)
        writer.add_system(row["t_eval_end"], 98.0, 600e6)
        if rank == 0:
            writer.add_row("checkpoints", {"epoch": row["epoch"], "t_start": row["t_eval_end"],
                                           "t_end": row["t_eval_end"] + 0.1, "bytes": 1.2e6})
    if rank % RANKS_PER_NODE == 0:
        t = np.arange(0.0, rows[-1]["t_eval_end"] + 1.0, 1.0)
        writer.set_group("energy", {"t": t, "estimated:node": t * RANKS_PER_NODE * 6.75})
        writer.attrs["energy_meters"] = {"estimated": "available"}
    writer.close("ok")
    return writer.path


def patch_trace(template: Path, path: Path, rank: int, ranks: int) -> None:
    """A copy of `template` (a trace of the same node role) made rank `rank`'s: the attributes
    and epochs/ columns that differ by rank rewritten in place (same shapes, same dtypes)."""
    shutil.copyfile(template, path)
    attrs = trace_attrs(rank, ranks, {})
    with h5py.File(path, "r+") as f:
        for key in ("rank", "local_rank", "pid", "init_seconds"):
            f.attrs[key] = attrs[key]
        f.attrs["host"] = np.array(attrs["host"].encode(), dtype=f.attrs["host"].dtype)
        rows = epoch_rows(rank)
        for key in ("t_ready", "t_train_end"):
            f["epochs"][key][...] = [row[key] for row in rows]


def _write_block(run_dir: str, ranks: int, first: int, last: int, reference: bool) -> None:
    """Traces of ranks [first, last), by TraceWriter (reference) or copied from templates."""
    run_path = Path(run_dir)
    cfg = json.loads((run_path / "config.json").read_text())["config"]
    templates = {role: run_path / trace_name(role) for role in (RANKS_PER_NODE, 1)}
    for rank in range(first, last):
        if rank in (0, *templates):  # written by write_run
            continue
        if reference:
            write_trace(run_path, rank, ranks, cfg)
            continue
        role = RANKS_PER_NODE if rank % RANKS_PER_NODE == 0 else 1
        patch_trace(templates[role], run_path / trace_name(rank), rank, ranks)


def write_run(run_dir: Path, ranks: int, reference: bool = False, workers: int = 2) -> Path:
    """A complete run directory of `ranks` ranks (config.json, system.json, every trace)."""
    if ranks < 2 * RANKS_PER_NODE:
        raise ValueError(f"the scale model needs at least {2 * RANKS_PER_NODE} ranks")
    run_dir.mkdir(parents=True)
    rec = record(ranks)
    (run_dir / "config.json").write_text(json.dumps(rec, indent=2) + "\n")
    (run_dir / "system.json").write_text(json.dumps(system_record(ranks), indent=2) + "\n")
    for rank in (0, 1, RANKS_PER_NODE):  # rank 0 and the two templates, always by TraceWriter
        write_trace(run_dir, rank, ranks, rec["config"])
    if workers <= 1:
        _write_block(str(run_dir), ranks, 0, ranks, reference)
        return run_dir
    bounds = np.linspace(0, ranks, 4 * workers + 1).astype(int)
    with ProcessPoolExecutor(workers) as pool:
        for job in [pool.submit(_write_block, str(run_dir), ranks, int(a), int(b), reference)
                    for a, b in itertools.pairwise(bounds)]:
            job.result()
    return run_dir


def _tree_rss(proc: Any) -> int:
    """Resident bytes of a process and all its descendants now (0 once it has ended)."""
    import psutil

    total = 0
    try:
        for p in [proc, *proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                continue
    except psutil.Error:
        return 0
    return total


def timed(cmd: list[str], log: Path) -> dict[str, float]:
    """Run `cmd` as a child process: wall seconds, CPU seconds (user + system, its own and its
    waited-for children's, e.g. the aggregator's trace readers), its peak RSS (ru_maxrss from wait4: the
    largest single process among it and the children it waited for) and the peak of its whole
    process tree's RSS summed, sampled every 0.1 s (bytes). Exits with its log on failure."""
    import psutil

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    with open(log, "w") as out:
        start = time.perf_counter()
        child = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        proc, tree_peak = psutil.Process(child.pid), 0
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            tree_peak = max(tree_peak, _tree_rss(proc))
            time.sleep(0.1)
        wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        sys.exit(f"scale model: {' '.join(cmd)} exited {child.returncode}:\n"
                 + log.read_text()[-3000:])
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "maxrss_bytes": usage.ru_maxrss * 1024.0,
            "tree_peak_bytes": float(max(tree_peak, usage.ru_maxrss * 1024))}


def load_line() -> str:
    """The machine's load when measured: load averages over 1, 5, 15 minutes and its cores."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f} on {os.cpu_count()} cores"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ranks", default=",".join(map(str, RANKS)),
                   help="comma-separated rank counts [default: %(default)s]")
    p.add_argument("--out", type=Path, default=None,
                   help="directory for the run directories [default: a temporary one]")
    p.add_argument("--keep", action="store_true", help="keep the run directories")
    p.add_argument("--workers", type=int, default=max(1, min(4, os.cpu_count() or 1)),
                   help="processes writing traces [default: %(default)s]")
    p.add_argument("--reference", action="store_true",
                   help="write every trace with TraceWriter (slow) instead of copying templates")
    args = p.parse_args(argv)
    try:
        counts = [int(n) for n in args.ranks.split(",")]
        if any(n < 2 * RANKS_PER_NODE for n in counts):
            raise ValueError
    except ValueError:
        print(f"scale model: error: --ranks {args.ranks}: expected comma-separated counts "
              f">= {2 * RANKS_PER_NODE}", file=sys.stderr)
        return 2
    base = args.out or Path(tempfile.mkdtemp(prefix="ai500-scale-"))
    base.mkdir(parents=True, exist_ok=True)
    print(f"scale model: resnet small-like runs ({EPOCHS} epochs x {STEPS_PER_EPOCH} steps, "
          f"{RANKS_PER_NODE} ranks per node) under {base}; {load_line()} at start", flush=True)
    rows = []
    try:
        for n in counts:
            run_dir = base / f"np{n:05d}"
            if run_dir.exists():
                shutil.rmtree(run_dir)
            t0 = time.perf_counter()
            write_run(run_dir, n, reference=args.reference, workers=args.workers)
            generated = time.perf_counter() - t0
            size = sum(f.stat().st_size for f in run_dir.iterdir())
            agg = timed([sys.executable, "-m", "ai500.aggregate", str(run_dir)],
                        base / f"aggregate-np{n}.log")
            rep = timed([sys.executable, "-m", "ai500.report", str(run_dir), "--mode", "weak",
                         "--out", str(base / f"report-np{n:05d}")], base / f"report-np{n}.log")
            rows.append((n, generated, size, agg, rep, load_line()))
            print(f"  N={n}: generated in {generated:.1f} s ({size / 1e6:.0f} MB), aggregate "
                  f"{agg['wall_s']:.1f} s, report {rep['wall_s']:.1f} s; {load_line()}",
                  flush=True)
            if not args.keep:
                shutil.rmtree(run_dir)
    finally:
        if not args.keep and args.out is None:
            shutil.rmtree(base, ignore_errors=True)
    print()
    print("| N ranks | step | wall s | CPU s | peak RSS MB (largest process) | peak RSS MB "
          "(process tree) | wall ms per rank | CPU ms per rank |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for n, _, _, agg, rep, _ in rows:
        for name, m in (("aggregate", agg), ("report", rep)):
            print(f"| {n} | {name} | {m['wall_s']:.1f} | {m['cpu_s']:.1f} | "
                  f"{m['maxrss_bytes'] / 2**20:.0f} | {m['tree_peak_bytes'] / 2**20:.0f} | "
                  f"{1000 * m['wall_s'] / n:.2f} | {1000 * m['cpu_s'] / n:.2f} |")
    print(f"\nmeasured with {load_line()} at the end (wall times are shared-machine times)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
