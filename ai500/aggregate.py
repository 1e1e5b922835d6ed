"""Rank-0 merge of one run's traces into summary.json and summary.h5 (python -m ai500.aggregate RUN_DIR).

Definitions (DESIGN §5), all computed from the merged traces, never extrapolated from one rank:
- epoch time of a rank: its training time in that epoch (t_train_end - t_start), seconds;
- throughput: global samples / the slowest rank's epoch time, summed over the measured epochs;
  the first epoch (warm-up: graph tracing, allocator growth) is excluded when there are two or
  more epochs, and the summary says which epochs were used;
- per-rank throughput: that rank's samples / its own epoch time over the same epochs;
- load imbalance: slowest / fastest rank's epoch time, per epoch (median and max reported);
- time to quality: from run_start to the end of the first evaluation whose globally reduced
  quality reached the target (seconds); initialisation (process start → run_start) separately;
- FLOPS: training FLOPs per sample (TensorFlow profiler, training = 3 × forward) × throughput.
A run with a missing, unfinished or failed rank gets status "failed" and no time-to-quality claim.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ai500.errors import Ai500Error, DataError
from ai500.metrics import scoring
from ai500.trace import Trace, read_trace, trace_name

SUMMARY_SCHEMA_VERSION = 1


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def load_run(run_dir: Path) -> tuple[dict[str, Any], dict[int, Trace], dict[int, str]]:
    """config.json, the readable traces by rank, and a reason for each rank without one."""
    run_dir = Path(run_dir)
    try:
        cfg = json.loads((run_dir / "config.json").read_text())
        size = int(cfg["dist"]["size"])
        run_id = cfg["run_id"]
    except FileNotFoundError:
        raise DataError(f"{run_dir}: no config.json (not a run directory)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{run_dir / 'config.json'}: malformed ({exc})") from None
    traces: dict[int, Trace] = {}
    problems: dict[int, str] = {}
    for rank in range(size):
        path = run_dir / trace_name(rank)
        if not path.exists():
            problems[rank] = "no trace file"
            continue
        try:
            trace = read_trace(path)
        except DataError as exc:
            problems[rank] = str(exc)
            continue
        if trace.attrs.get("run_id") != run_id:
            raise DataError(f"{path}: belongs to run {trace.attrs.get('run_id')}, not {run_id}")
        if trace.attrs.get("status") != "ok":
            problems[rank] = f"trace status {trace.attrs.get('status')!r}"
        traces[rank] = trace
    return cfg, traces, problems


def merge_epochs(traces: dict[int, Trace]) -> dict[str, np.ndarray]:
    """Per-epoch arrays over the epochs every readable rank completed: [rank, epoch] timings."""
    ranks = sorted(traces)
    n = min((len(traces[r].epochs.get("epoch", [])) for r in ranks), default=0)
    column = lambda key: np.array([traces[r].epochs[key][:n] for r in ranks])
    merged = {
        "rank": np.array(ranks),
        "epoch": np.arange(n),
        "t_start": column("t_start") if n else np.zeros((len(ranks), 0)),
        "t_train_end": column("t_train_end") if n else np.zeros((len(ranks), 0)),
        "t_eval_end": column("t_eval_end") if n else np.zeros((len(ranks), 0)),
        "samples": column("samples") if n else np.zeros((len(ranks), 0)),
    }
    # Training and evaluation metrics are global (reduced over ranks) and identical on every
    # rank, so rank 0's copy (or the lowest readable rank's) stands for the run.
    first = traces[ranks[0]].epochs if ranks else {}
    for key, values in first.items():
        if key.startswith(("train_", "val_")):
            merged[key] = np.asarray(values[:n])
    return merged


def summarise_energy(cfg: dict[str, Any], traces: dict[int, Trace], t_end: float | None,
                     t_quality: float | None = None) -> dict[str, Any]:
    """Energy of the run (joules from run_start to t_end, seconds) and to the quality point, summed
    over nodes from each node's metering rank. Nodes metered by different methods (a measured
    counter on one, the estimate on another) are never added: the total is then None."""
    from ai500.metrics.energy import EnergySamples, energy_between, peak_power

    result: dict[str, Any] = {
        "method": "unavailable", "joules": None, "joules_to_quality": None,
        "average_power_w": None, "peak_node_power_w": None, "per_node": [],
        "definition": "node meters sampled at >= 1 Hz by one rank per node, integrated from "
        "run_start; 'estimated' = CPU seconds of the node's ranks x watts per core "
        "(ai500/configs/system.yaml), not a measurement",
    }
    energy_cfg = cfg["config"].get("system", {}).get("energy", {})
    if not energy_cfg.get("enabled", False):
        result["reason"] = "energy metering disabled"
        return result
    metered = [t for t in traces.values() if t.groups.get("energy", {}).get("t") is not None]
    if not metered or t_end is None:
        result["reason"] = "no trace holds energy samples"
        return result
    for trace in metered:
        samples = EnergySamples.from_columns(trace.groups["energy"])
        node = {"host": trace.attrs.get("host"), "rank": trace.attrs.get("rank"),
                "method": samples.method, "meters": json.loads(trace.attrs["energy_meters"])
                if isinstance(trace.attrs.get("energy_meters"), str) else None}
        try:
            node["joules"] = energy_between(samples, 0.0, t_end)
            node["joules_to_quality"] = (energy_between(samples, 0.0, t_quality)
                                         if t_quality is not None else None)
            node["peak_power_w"] = peak_power(samples)
        except ValueError as exc:
            node["joules"] = None
            node["reason"] = str(exc)
        result["per_node"].append(node)
    nodes = cfg["dist"]["nodes"]
    methods = sorted({n["method"] for n in result["per_node"]})
    complete = [n for n in result["per_node"] if n["joules"] is not None]
    result["method"] = "+".join(methods)
    if len(complete) < nodes:
        result["reason"] = f"energy covers {len(complete)} of {nodes} node(s)"
    elif len(methods) > 1:
        result["reason"] = f"nodes metered by different methods ({', '.join(methods)}): not added"
    else:
        result["joules"] = sum(n["joules"] for n in complete)
        if t_quality is not None:
            result["joules_to_quality"] = sum(n["joules_to_quality"] for n in complete)
        result["average_power_w"] = result["joules"] / t_end if t_end > 0 else None
        result["peak_node_power_w"] = max(n["peak_power_w"] for n in complete)
    return result


def summarise(cfg: dict[str, Any], traces: dict[int, Trace], problems: dict[int, str]) -> dict:
    """The run summary as a JSON-ready dict (see the module docstring for the definitions)."""
    run_cfg = cfg["config"]
    q = run_cfg["quality"]
    size = int(cfg["dist"]["size"])
    merged = merge_epochs(traces)
    n = len(merged["epoch"])
    epoch_time = merged["t_train_end"] - merged["t_start"]  # [rank, epoch]
    slowest = epoch_time.max(axis=0) if n else np.zeros(0)
    fastest = epoch_time.min(axis=0) if n else np.zeros(0)
    global_samples = merged["samples"].sum(axis=0) if n else np.zeros(0)
    complete = not problems and len(traces) == size
    measured = np.arange(1, n) if n >= 2 else np.arange(n)
    warmup_note = ("epoch 0 excluded as warm-up (graph tracing)" if n >= 2 else
                   "only one epoch: warm-up included, throughput understated")

    throughput = None
    per_rank = []
    if len(measured) and complete:
        throughput = float(global_samples[measured].sum() / slowest[measured].sum())
        per_rank = [float(merged["samples"][i, measured].sum() / epoch_time[i, measured].sum())
                    for i in range(len(merged["rank"]))]

    metric = merged.get(q["metric"])
    hit_epochs = []
    if metric is not None:
        better = (metric >= q["target"]) if q["higher_is_better"] else (metric <= q["target"])
        hit_epochs = list(np.nonzero(better)[0])
    ttq_epoch = int(hit_epochs[0]) if hit_epochs and complete else None
    best = None
    if metric is not None and len(metric):
        best = float(np.max(metric) if q["higher_is_better"] else np.min(metric))

    flops_cfg = cfg.get("flops_per_sample") or {}
    flops_per_s = (flops_cfg["train"] * throughput
                   if throughput is not None and flops_cfg.get("train") else None)
    init = [float(t.attrs.get("init_seconds", np.nan)) for t in traces.values()]

    epochs = []
    for e in range(n):
        row = {"epoch": e, "global_samples": int(global_samples[e]),
               "slowest_rank_s": float(slowest[e]), "fastest_rank_s": float(fastest[e]),
               "samples_per_s": float(global_samples[e] / slowest[e]),
               "load_imbalance": float(slowest[e] / fastest[e]),
               "t_end_s": float(merged["t_eval_end"][:, e].max())}
        row.update({k: _finite(v[e]) for k, v in merged.items() if k.startswith(("train_", "val_"))})
        epochs.append(row)

    imbalance = slowest[measured] / fastest[measured] if len(measured) else np.zeros(0)
    run_s = float(merged["t_eval_end"].max()) if n else None
    ttq_s = float(merged["t_eval_end"][:, ttq_epoch].max()) if ttq_epoch is not None else None
    energy = summarise_energy(cfg, traces, run_s, ttq_s)
    system = run_cfg.get("system", {})
    price = system.get("cost", {}).get("price_per_node_hour")
    ttq_node_hours = scoring.node_hours(cfg["dist"]["nodes"], ttq_s) if ttq_s is not None else None
    valid = (scoring.valid_flops(flops_per_s, best, q["target"], q["vflops_exponent"],
                                 q["higher_is_better"])
             if flops_per_s is not None and best is not None and best > 0 else None)
    return {
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "status": "ok" if complete and n > 0 else "failed",
        "kind": "training",
        "run_id": cfg["run_id"],
        "benchmark": run_cfg["benchmark"],
        "preset": run_cfg["preset"],
        "ranks": size,
        "nodes": cfg["dist"]["nodes"],
        "hosts": cfg["dist"]["hosts"],
        "seed": run_cfg["seed"],
        "global_batch_size": run_cfg["train"]["batch_size"] * size,
        "versions": cfg.get("versions", {}),
        "command": cfg.get("command"),
        "epochs_completed": n,
        "missing_or_failed_ranks": {str(r): why for r, why in sorted(problems.items())},
        "quality": {
            "metric": q["metric"], "target": q["target"],
            "higher_is_better": q["higher_is_better"],
            "reached": ttq_epoch is not None, "best": best,
            "final": float(metric[-1]) if metric is not None and len(metric) else None,
        },
        "time_to_quality_s": ttq_s,
        "time_to_quality_epoch": ttq_epoch,
        "time_to_quality_definition": "seconds from run_start (after initialisation and data "
        "staging, all ranks past a barrier) to the end of the first evaluation reaching the target",
        "init_s": max(init) if init else None,
        "init_definition": "process start to run_start, slowest rank (imports, data staging, "
        "model build, FLOP count)",
        "run_s": run_s,
        "throughput": {
            "samples_per_s": throughput,
            "per_rank_samples_per_s": per_rank,
            "epochs_measured": [int(e) for e in measured],
            "method": "global samples / slowest rank's training time over the measured epochs; "
            + warmup_note,
        },
        "flops": {
            "per_sample_train": flops_cfg.get("train"),
            "per_sample_forward": flops_cfg.get("forward"),
            "flops_per_s": flops_per_s,
            "method": (flops_cfg.get("method", "unavailable") +
                       "; FLOPS = training FLOPs per sample x throughput"),
            "valid_flops_per_s": valid,
            "valid_flops_definition": f"FLOPS x (best {q['metric']} / target)^n, "
            f"n = {q['vflops_exponent']:g} (HPC AI500 v2)",
            "valid_flops_per_watt": scoring.flops_per_watt(valid, energy["average_power_w"]),
        },
        "energy": energy,
        "samples_per_joule": scoring.samples_per_joule(
            float(global_samples.sum()) if n else None, energy["joules"]),
        "cost": {
            "node_hours_to_quality": ttq_node_hours,
            "price_per_node_hour": price,
            "currency": system.get("cost", {}).get("currency"),
            "cost_to_quality": scoring.cost_to_quality(ttq_node_hours, price),
            "definition": "nodes x time to quality (hours) x price per node-hour (system config)",
        },
        "load_imbalance": {
            "median": float(np.median(imbalance)) if len(imbalance) else None,
            "max": float(np.max(imbalance)) if len(imbalance) else None,
            "definition": "slowest / fastest rank's training time per measured epoch",
        },
        "epochs": epochs,
    }


def write_summary(run_dir: Path, summary: dict, merged: dict[str, np.ndarray]) -> None:
    """summary.json and summary.h5 (the JSON as an attribute plus the merged per-rank arrays,
    in group `epochs` for training runs, `kernels` for micro benchmarks)."""
    run_dir = Path(run_dir)
    text = json.dumps(summary, indent=2) + "\n"
    for name in ("summary.json", "summary.h5"):
        tmp = run_dir / (name + ".tmp")
        if name.endswith(".json"):
            tmp.write_text(text)
        else:
            with h5py.File(tmp, "w") as f:
                f.attrs["summary"] = text
                f.attrs["schema_version"] = SUMMARY_SCHEMA_VERSION
                group = f.create_group("kernels" if summary.get("kind") == "micro" else "epochs")
                for key, values in merged.items():
                    values = np.asarray(values)
                    if values.dtype == object:
                        group.create_dataset(key, data=values.astype(str).tolist(),
                                             dtype=h5py.string_dtype())
                    else:
                        group.create_dataset(key, data=values)
        os.replace(tmp, run_dir / name)


def aggregate(run_dir: Path) -> dict:
    """Merge a run directory's traces and write its summary files; returns the summary."""
    cfg, traces, problems = load_run(run_dir)
    if cfg.get("kind") == "micro":
        from ai500.micro import summary as micro_summary

        summary = micro_summary.summarise(cfg, traces, problems)
        arrays = micro_summary.merged_arrays(traces)
    else:
        summary = summarise(cfg, traces, problems)
        arrays = merge_epochs(traces)
    write_summary(run_dir, summary, arrays)
    if traces:
        from ai500.mllog import write_mllog

        write_mllog(run_dir)
    return summary


def _fmt(value: float | None, unit: str = "", digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 1e6:
        return f"{value:.3e}{unit}"
    return f"{value:.{digits}g}{unit}"


def energy_line(e: dict) -> str:
    """One table line for an energy summary, always naming its method."""
    if e["joules"] is None:
        return f"  energy         n/a [{e['method']}] ({e.get('reason', '')})"
    return (f"  energy         {_fmt(e['joules'], ' J')} [{e['method']}], to quality "
            f"{_fmt(e['joules_to_quality'], ' J')}, average {_fmt(e['average_power_w'], ' W')}, "
            f"peak node {_fmt(e['peak_node_power_w'], ' W')}")


def format_summary(s: dict) -> str:
    """A short human table of a run summary."""
    if s.get("kind") == "micro":
        from ai500.micro import summary as micro_summary

        return micro_summary.format_summary(s)
    q = s["quality"]
    tp = s["throughput"]
    per_rank = tp["per_rank_samples_per_s"]
    lines = [
        (f"ai500 {s['benchmark']} ({s['preset']}) on {s['ranks']} rank(s), "
        f"{s['nodes']} node(s): status {s['status']}"),
        f"  quality        {q['metric']} best {_fmt(q['best'])} (target {q['target']}): "
        + ("reached" if q["reached"] else "NOT reached"),
        f"  time to quality {_fmt(s['time_to_quality_s'], ' s')}"
        + (f" (epoch {s['time_to_quality_epoch']})" if q["reached"] else ""),
        (f"  initialisation {_fmt(s['init_s'], ' s')}   run {_fmt(s['run_s'], ' s')}   "
        f"epochs {s['epochs_completed']}"),
        (f"  throughput     {_fmt(tp['samples_per_s'], ' samples/s')} total, "
        f"{_fmt(float(np.mean(per_rank)) if per_rank else None, ' samples/s')} per rank (mean)"),
        f"                 ({tp['method']})",
        (f"  model FLOPs    {_fmt(s['flops']['per_sample_train'])} per training sample -> "
        f"{_fmt(s['flops']['flops_per_s'], ' FLOP/s')}"),
        (f"  Valid FLOPS    {_fmt(s['flops']['valid_flops_per_s'], ' FLOP/s')} "
         f"({s['flops']['valid_flops_definition']})"),
        energy_line(s["energy"]),
        (f"  cost           {_fmt(s['cost']['cost_to_quality'])} {s['cost']['currency'] or ''} to "
         f"quality ({_fmt(s['cost']['node_hours_to_quality'])} node-hours)"),
        (f"  load imbalance {_fmt(s['load_imbalance']['median'])} median, "
        f"{_fmt(s['load_imbalance']['max'])} max (slowest/fastest rank epoch time)"),
    ]
    for rank, why in s["missing_or_failed_ranks"].items():
        lines.append(f"  rank {rank}: {why}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ai500.aggregate",
                                     description="Merge a run directory's per-rank traces into "
                                     "summary.json and summary.h5 and print the summary table.")
    parser.add_argument("run_dir", help="run directory (holds config.json and trace-rank*.h5)")
    args = parser.parse_args(argv)
    try:
        summary = aggregate(Path(args.run_dir))
    except Ai500Error as exc:
        print(f"ai500: error: {exc}", file=sys.stderr)
        return 1
    print(format_summary(summary))
    return 0 if summary["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
