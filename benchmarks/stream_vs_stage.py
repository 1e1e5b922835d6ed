"""Streaming vs staging (issue 17): what --stage stream costs, and whether it keeps memory bounded.

Part `throughput`: resnet at the `small` preset (or `--preset`) from HDF5 files written once
into --work (python -m ai500.data's layout, one event per chunk), `--stage memory` and
`--stage stream` alternating in ABBA rounds (memory stream, stream memory, ...), so drifts in
machine load and order effects hit both alike. Each run trains to the preset's target (or
--epochs); the table gives each stage's median throughput (the summary's: global samples / the
slowest rank's training time, epoch 0 excluded where there are more) and median time to quality,
and the ratio stream / memory of the medians. `--compression none` writes the files with raw
chunks instead of gzip: a streamed event is then a copy, not an inflate on the rank's own cores
(which, on a node whose cores all train, is what streaming compressed events costs).

Part `bound`: resnet on 224 x 224 events (`--bound-model`: the small preset's ResNet, by default;
`full` is ResNet-50, not tried here) with `--stage stream`, one rank, on a shard (training +
validation) 4 x larger than a memory bound of --bound-mb MiB, for one epoch; prints the rank's
peak RSS (getrusage ru_maxrss, as the summary records it) against the bound and the shard's size. The bound covers the whole process: TensorFlow, the model, its
activations and the batches in flight.

    python benchmarks/stream_vs_stage.py                                  # both parts
    python benchmarks/stream_vs_stage.py --parts throughput --rounds 2 --compression none
    python benchmarks/stream_vs_stage.py --events 256 --rounds 1 --epochs 1 --bound-mb 16 \
        --bound-batch 8                                                   # a smoke run

Not timed in `make bench` (an hour or more here). Wall times on a shared machine are noisy: run
it on an idle one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from ai500 import config
from ai500.data import hep

ROOT = Path(__file__).resolve().parents[1]

MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none"]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
STAGES = ("memory", "stream")
BOUND_IMAGE = 224
BOUND_FACTOR = 4  # the shard is this many times the memory bound


def write_set(directory: Path, n_train: int, n_val: int, seed: int, image_size: int,
              compression: str = "gzip") -> Path:
    """The HEP set's files under `directory` (written once, reused by later invocations)."""
    if not (directory / "train.h5").exists():
        directory.mkdir(parents=True, exist_ok=True)
        for split, count in (("train", n_train), ("val", n_val)):
            hep.write_split(directory / f"{split}.h5", count, seed if split == "train" else seed + 1,
                            image_size, chunk_events=128,
                            compression=hep.COMPRESSIONS[compression])
    return directory


def ai500_run(ranks: int, args: list[str], out: Path) -> dict:
    """One resnet ai500.run; its summary."""
    cmd = [*MPIRUN, "-np", str(ranks), sys.executable, "-m", "ai500.run", "--benchmark", "resnet",
           "--out", str(out), "--no-energy", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=ROOT, check=False)
    if result.returncode != 0:
        sys.exit(f"bench: command failed ({result.returncode}): {' '.join(cmd)}\n"
                 f"{result.stderr[-2000:]}")
    newest = max(out.iterdir(), key=lambda p: p.stat().st_mtime)
    return json.loads((newest / "summary.json").read_text())


def throughput(args: argparse.Namespace, work: Path) -> None:
    data = config.load_preset("resnet", args.preset)["data"]
    n_train = args.events or data["n_train"]
    n_val = args.events // 4 if args.events else data["n_val"]
    suffix = "" if args.compression == "gzip" else f"-{args.compression}"
    files = write_set(work / f"hep-{args.preset}-{n_train}{suffix}", n_train, n_val, data["seed"],
                      data["image_size"], args.compression)
    common = ["--preset", args.preset, "--data", str(files), "--seed", "0"]
    if args.epochs:
        common += ["--epochs", str(args.epochs)]
    results: dict[str, list[dict]] = {stage: [] for stage in STAGES}
    for round_ in range(args.rounds):
        for stage in STAGES if round_ % 2 == 0 else STAGES[::-1]:
            s = ai500_run(args.ranks, [*common, "--stage", stage], work / "runs" / stage)
            mode = s["memory"]["stage"]
            if mode != {stage: list(range(args.ranks))}:
                sys.exit(f"bench: --stage {stage} ran as {mode}")
            results[stage].append(s)
            print(f"throughput round {round_ + 1}: {stage:6s} "
                  f"{s['throughput']['samples_per_s']:9.1f} samples/s, time to quality "
                  f"{s['time_to_quality_s'] if s['time_to_quality_s'] is not None else 'n/a'} s, "
                  f"peak RSS {s['memory']['peak_rss_bytes_max'] / 2**20:.0f} MiB", flush=True)
    median = {stage: statistics.median(r["throughput"]["samples_per_s"] for r in results[stage])
              for stage in STAGES}
    ttq = {}
    for stage in STAGES:
        times = [r["time_to_quality_s"] for r in results[stage]]
        ttq[stage] = statistics.median(times) if None not in times else None
    print(f"\nresnet {args.preset} from HDF5 ({n_train} training events, chunks of one event, "
          f"compression {args.compression}, {args.ranks} ranks, {args.rounds} ABBA round(s), "
          "medians)")
    print(f"{'stage':8s} {'samples/s':>10s} {'time to quality s':>18s}")
    for stage in STAGES:
        shown = f"{ttq[stage]:.1f}" if ttq[stage] is not None else "not reached"
        print(f"{stage:8s} {median[stage]:10.1f} {shown:>18s}")
    print(f"throughput ratio stream / memory: {median['stream'] / median['memory']:.3f}")
    if ttq["memory"] and ttq["stream"]:
        print(f"time-to-quality ratio stream / memory: {ttq['stream'] / ttq['memory']:.3f}")


def bound(args: argparse.Namespace, work: Path) -> None:
    limit = args.bound_mb * 2**20
    event_bytes = 3 * BOUND_IMAGE**2 * 4 + 12  # float32 image and label, weight, normweight
    total = math.ceil(BOUND_FACTOR * limit / event_bytes)  # training + validation events
    n_val = max(16, total // 16)
    n_train = total - n_val
    files = write_set(work / f"hep-{BOUND_IMAGE}-{n_train}", n_train, n_val, 1234, BOUND_IMAGE)
    override = work / "bound.yaml"  # the preset's model and schedule, these events and batch
    override.write_text(json.dumps({"data": {"image_size": BOUND_IMAGE, "n_train": n_train,
                                             "n_val": n_val},
                                    "train": {"batch_size": args.bound_batch}}) + "\n")
    s = ai500_run(1, ["--preset", args.bound_model, "--config", str(override), "--data", str(files),
                      "--stage", "stream", "--epochs", "1", "--no-stop-at-target"],
                  work / "runs" / "bound")
    peak = s["memory"]["peak_rss_bytes_max"]
    shard = n_train * event_bytes + n_val * event_bytes
    print(f"\nresnet ({args.bound_model} model) on {BOUND_IMAGE}x{BOUND_IMAGE} events, 1 rank, "
          f"--stage stream, batch {args.bound_batch}: shard {shard / 2**20:.0f} MiB "
          f"({n_train} + {n_val} events) = {shard / limit:.1f} x the bound")
    print(f"peak RSS {peak / 2**20:.0f} MiB vs bound {limit / 2**20:.0f} MiB: "
          f"{'under' if peak <= limit else 'OVER'} the bound ({peak / limit:.2f} x)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", default="throughput,bound", help="throughput, bound or both")
    p.add_argument("--preset", default="small", choices=config.PRESETS)
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--rounds", type=int, default=4, help="ABBA rounds (even: each order as often)")
    p.add_argument("--epochs", type=int, default=None, help="default: the preset's, to target")
    p.add_argument("--events", type=int, default=None,
                   help="training events of the throughput part [default: the preset's]")
    p.add_argument("--compression", default="gzip", choices=sorted(hep.COMPRESSIONS),
                   help="the throughput part's files: gzip level 1 with shuffling (as "
                   "python -m ai500.data writes them) or raw chunks [default: gzip]")
    p.add_argument("--bound-mb", type=int, default=3072,
                   help="memory bound of the whole process, MiB [default: 3072; a smoke run here "
                   "with batch 8 peaked at 1615 MiB, TensorFlow and the model included]")
    p.add_argument("--bound-model", default="small", choices=config.PRESETS,
                   help="the preset whose ResNet the bound part trains [default: small]")
    p.add_argument("--bound-batch", type=int, default=32)
    p.add_argument("--work", default=None, help="directory for the data files and runs "
                   "[default: a temporary one]")
    args = p.parse_args()
    parts = args.parts.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        if "throughput" in parts:
            throughput(args, work)
        if "bound" in parts:
            bound(args, work)


if __name__ == "__main__":
    main()
