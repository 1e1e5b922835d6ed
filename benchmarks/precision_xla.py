"""Precision and XLA side by side: resnet training throughput with fp32 vs bf16, default vs --xla.

For each model size (the `small` preset's ResNet and the `full` preset's ResNet-50 on 224 x 224
events), four variants of ai500.run are timed:

    fp32    the default                    fp32 --xla    XLA-compiled forward and backward pass
    bf16    --precision bf16               bf16 --xla    both

on the same synthetic events (in memory; `--events-per-rank` per rank, by default 4096 for small
and 256 for full, so the full model's epochs take minutes, not days), for `--epochs` epochs of which epoch 0 (tracing, XLA compilation) is
excluded: throughput is global samples / the slowest rank's training time over epochs 1.. (the
summary's). The variants run in rounds of alternating order (A B C D, D C B A, ...: ABBA), so drifts
in machine load and order effects hit all alike; the table gives each variant's median over the
rounds and the ratios of medians against fp32 (xla/default, bf16/fp32, both/fp32), with the
achieved FLOPS (training FLOPs per sample x throughput; the same model FLOPs in every precision).

    python benchmarks/precision_xla.py                        # small and full, 3 rounds
    python benchmarks/precision_xla.py --sizes small --rounds 1 --epochs 1   # a smoke run

On a CPU without AVX512-BF16 or AMX, bf16 is expected to be slower than fp32 (its kernels
convert through fp32); on a GPU with tensor cores it is the fast path.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none"]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
VARIANTS = {"fp32": [], "fp32 --xla": ["--xla"], "bf16": ["--precision", "bf16"],
            "bf16 --xla": ["--precision", "bf16", "--xla"]}
BASE = "fp32"
# Training events per rank by preset: a few dozen steps of the small model, four of ResNet-50.
EVENTS_PER_RANK = {"small": 4096, "full": 256}


def ai500_run(ranks: int, args: list[str], out: Path) -> dict[str, float]:
    """One resnet ai500.run; its throughput (samples/s), achieved FLOPS and recorded precision."""
    cmd = [*MPIRUN, "-np", str(ranks), sys.executable, "-m", "ai500.run", "--benchmark", "resnet",
           "--out", str(out), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=ROOT, check=False)
    if result.returncode != 0:
        sys.exit(f"bench: command failed ({result.returncode}): {' '.join(cmd)}\n"
                 f"{result.stderr[-2000:]}")
    newest = max(out.iterdir(), key=lambda p: p.stat().st_mtime)
    summary = json.loads((newest / "summary.json").read_text())
    record = json.loads((newest / "config.json").read_text())
    return {"samples_per_s": summary["throughput"]["samples_per_s"],
            "flops_per_s": (summary.get("flops") or {}).get("flops_per_s") or float("nan"),
            "precision": record["config"]["precision"], "xla": record["config"]["xla"]}


def measure(size: str, args: argparse.Namespace, work: Path) -> dict[str, list[dict]]:
    """Every variant of one preset, `args.rounds` ABBA rounds; results per variant."""
    n_train = (args.events_per_rank or EVENTS_PER_RANK.get(size, 1024)) * args.ranks
    override = work / f"{size}.yaml"
    # A data-only override: the preset's model, batch and schedule, fewer events.
    override.write_text(f"data: {{n_train: {n_train}, n_val: {max(64, n_train // 8)}}}\n")
    common = ["--preset", size, "--epochs", str(args.epochs), "--no-stop-at-target",
              "--config", str(override), "--no-energy"]
    results: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    for round_ in range(args.rounds):
        order = list(VARIANTS) if round_ % 2 == 0 else list(VARIANTS)[::-1]
        for name in order:
            r = ai500_run(args.ranks, [*common, *VARIANTS[name]], work / size / name.replace(" ", ""))
            if (r["precision"], r["xla"]) != (name.split()[0], "--xla" in name):
                sys.exit(f"bench: {name} ran as precision {r['precision']}, xla {r['xla']}")
            results[name].append(r)
            print(f"{size} round {round_ + 1}: {name:11s} {r['samples_per_s']:9.1f} samples/s  "
                  f"{r['flops_per_s'] / 1e9:7.2f} GFLOPS", flush=True)
    return results


def report(size: str, results: dict[str, list[dict]], args: argparse.Namespace) -> None:
    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    base = median(BASE, "samples_per_s")
    events = args.events_per_rank or EVENTS_PER_RANK.get(size, 1024)
    print(f"\nresnet {size}: {args.ranks} ranks, {events} events/rank, "
          f"{args.epochs} epoch(s) ({'epoch 0 excluded' if args.epochs > 1 else 'warm-up included'}), "
          f"median of {args.rounds} ABBA round(s):")
    for name in VARIANTS:
        rate = median(name, "samples_per_s")
        print(f"  {name:11s} {rate:9.1f} samples/s  {median(name, 'flops_per_s') / 1e9:7.2f} "
              f"GFLOPS  ratio to {BASE} {rate / base:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="small,full",
                        help="comma-separated presets to compare [default: small,full]")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3,
                        help="epochs per run; epoch 0 is excluded from throughput unless it is the "
                        "only one (a smoke run: then tracing and compilation are included)")
    parser.add_argument("--events-per-rank", type=int, default=None,
                        help="training events per rank [default: 4096 small, 256 full; the "
                        "batch is 64 in both]")
    args = parser.parse_args()
    if args.epochs < 1:
        parser.error("--epochs must be >= 1")
    work = Path(tempfile.mkdtemp(prefix="ai500-precision-xla-"))
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    results = {size: measure(size, args, work) for size in sizes}
    for size in sizes:
        report(size, results[size], args)


if __name__ == "__main__":
    main()
