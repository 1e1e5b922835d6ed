"""make bench: ai500's own costs, as ratios measured side by side in one run.

  end to end       the wall time of E epochs of training *and* evaluation: a bare TensorFlow +
                   Horovod loop (benchmarks/bare_loop.py: same events, model, batch, optimizer,
                   schedule and per-epoch global AUC, nothing else)  /  ai500.run (run_start to
                   the end of its last evaluation) on the same in-memory synthetic events;
                   target >= 0.97; and ai500's own account of that time: *other* (neither
                   training, evaluation nor checkpoint) <= 1 % of it
  input pipeline   ai500.run reading the HDF5 dataset (--data)  vs  in-memory events, throughput;
                   target >= 0.95
  energy sampler   ai500.run with the node energy sampler on  vs  --no-energy, throughput;
                   target >= 0.99
The variants run in interleaved rounds of alternating order (A B C D, D C B A, ...) so drifts in
machine load and order effects hit all of them alike; each ratio is of the medians over rounds,
and for the energy pair also the median of the per-round ratios (the two runs of one round are
adjacent in time). Throughput is global samples / the slowest rank's training time over epochs
1.. (epoch 0 is warm-up) for every variant.

The sampler's effect is far below the noise of one run on a shared machine, so its cost is also
measured directly: the CPU time the sampler thread uses per second of wall time, reading the same
meters the driver selects for this node (`--only energy` runs just that pair and this check).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none"]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def run(cmd: list[str]) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=ROOT, check=False)
    if result.returncode != 0:
        sys.exit(f"bench: command failed ({result.returncode}): {' '.join(cmd)}\n{result.stderr[-2000:]}")
    return result.stdout


def ai500_run(ranks: int, args: list[str], out: Path) -> dict[str, float]:
    """One ai500.run; its throughput, end-to-end wall time (run_start to the last evaluation's
    end) and the share of that time its own accounting calls other."""
    run([*MPIRUN, "-np", str(ranks), sys.executable, "-m", "ai500.run", "--benchmark", "resnet",
         "--out", str(out), *args])
    newest = max(out.iterdir(), key=lambda p: p.stat().st_mtime)
    summary = json.loads((newest / "summary.json").read_text())
    account = summary["time_accounting"]["run"]
    return {"samples_per_s": summary["throughput"]["samples_per_s"], "wall_s": account["total_s"],
            "other_share": account["other_share"]}


def sampler_cpu_fraction(seconds: float) -> tuple[float, int, str]:
    """CPU seconds the node energy sampler uses per wall second, measured in this otherwise idle
    process over `seconds`; also the samples it took and the meter method."""
    from ai500 import config
    from ai500.metrics import energy

    system = config.resolve(["--benchmark", "resnet", "--preset", "ci"]).system  # as the driver's
    energy_cfg = config.energy_settings(system)
    meters = energy.select_meters(energy_cfg, processes=[os.getpid()])
    sampler = energy.EnergySampler(meters, energy_cfg.interval_s)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    sampler.start()
    time.sleep(seconds)
    sampler.stop()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    method = ",".join(m.method for m in meters if m.available)
    return cpu / wall, len(sampler.samples().t), method


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events-per-rank", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--only", choices=("all", "energy"), default="all",
                        help="energy: only the sampler on/off pair and its direct cost")
    parser.add_argument("--sampler-seconds", type=float, default=30.0)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ai500-bench-"))
    n_train = args.events_per_rank * args.ranks
    n_val = n_train // 4  # the small preset's validation share
    override = work / "bench.yaml"
    override.write_text(f"data: {{n_train: {n_train}, n_val: {n_val}}}\n")
    data = work / "hep"
    run([sys.executable, "-m", "ai500.data", "generate", "hep", "--preset", "small",
         "--out", str(data), "--train", str(n_train), "--val", str(n_val)])
    common = ["--preset", "small", "--epochs", str(args.epochs), "--no-stop-at-target",
              "--config", str(override)]
    variants = {
        "bare TF+Horovod loop": lambda: json.loads(run(
            [*MPIRUN, "-np", str(args.ranks), sys.executable, "benchmarks/bare_loop.py",
             "--preset", "small", "--config", str(override),
             "--epochs", str(args.epochs)]).strip().splitlines()[-1]),
        "ai500.run, in-memory events": lambda: ai500_run(args.ranks, common, work / "mem"),
        "ai500.run, HDF5 dataset": lambda: ai500_run(
            args.ranks, [*common, "--data", str(data)], work / "h5"),
        "ai500.run, in-memory, --no-energy": lambda: ai500_run(
            args.ranks, [*common, "--no-energy"], work / "noenergy"),
    }
    if args.only == "energy":
        variants = {name: variants[name] for name in
                    ("ai500.run, in-memory events", "ai500.run, in-memory, --no-energy")}
    results: dict[str, list[dict]] = {name: [] for name in variants}
    for round_ in range(args.rounds):
        # Alternate the order (A B C D, D C B A, ...): neither a drift in load nor being run
        # first (or right after another variant) favours one variant.
        order = list(variants.items()) if round_ % 2 == 0 else list(variants.items())[::-1]
        for name, measure in order:
            results[name].append(measure())
            r = results[name][-1]
            print(f"round {round_ + 1}: {name:34s} {r['samples_per_s']:8.1f} samples/s  "
                  f"{r['wall_s']:7.2f} s end to end"
                  + (f"  other {100 * r['other_share']:.2f} %" if "other_share" in r else ""),
                  flush=True)

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    print(f"\nresnet small, {args.ranks} ranks, {args.events_per_rank} events/rank, "
          f"{args.epochs} epochs, median of {args.rounds} interleaved rounds:")
    for name in variants:
        print(f"  {name:34s} {median(name, 'samples_per_s'):8.1f} samples/s  "
              f"{median(name, 'wall_s'):7.2f} s end to end")
    mem, no_energy = "ai500.run, in-memory events", "ai500.run, in-memory, --no-energy"
    if args.only == "all":
        bare, h5 = "bare TF+Horovod loop", "ai500.run, HDF5 dataset"
        others = [100 * r["other_share"] for name in variants if name != bare
                  for r in results[name]]
        print(f"  end-to-end ratio                  bare/ai500 wall = "
              f"{median(bare, 'wall_s') / median(mem, 'wall_s'):.3f}  (target >= 0.97)")
        print(f"  ai500's other time                 {statistics.median(others):.2f} % median, "
              f"{max(others):.2f} % max of its {len(others)} runs  (target <= 1 %)")
        print(f"  input pipeline ratio              HDF5/memory     = "
              f"{median(h5, 'samples_per_s') / median(mem, 'samples_per_s'):.3f}  (target >= 0.95)")
    paired = [on["samples_per_s"] / off["samples_per_s"]
              for on, off in zip(results[mem], results[no_energy])]
    ratio = median(mem, "samples_per_s") / median(no_energy, "samples_per_s")
    print(f"  energy sampler ratio              on/off          = {ratio:.3f}  (target >= 0.99); "
          f"per round {' '.join(f'{r:.3f}' for r in paired)}, median {statistics.median(paired):.3f}")
    fraction, samples, method = sampler_cpu_fraction(args.sampler_seconds)
    cores = os.cpu_count() or 1
    print(f"  energy sampler direct cost        {fraction * 100:.4f} % of one core "
          f"({samples} samples in {args.sampler_seconds:g} s, meters: {method}); the slowest it "
          f"can make training on {cores} busy cores is a ratio of {1 - fraction / cores:.5f}")


if __name__ == "__main__":
    main()
