"""The report's figures: per rank count N the repeats summarised, the scaling figures, and the
cost and time-accounting columns.

Definitions (DESIGN §5), stated in the report too:
- X(N): throughput of an N-rank run, samples/s (global samples / the slowest rank's time over the
  measured epochs, as in the run summary).
- Weak scaling (per-rank batch fixed): weak-scaling efficiency E(N) = X(N) / (N · X(1)). The ratio
  X(N) / X(1) is shown beside it as the scaled throughput ratio; it is not called a speedup.
- Strong scaling (global batch fixed): speedup S(N) = T(1) / T(N) and strong-scaling efficiency
  E(N) = S(N) / N, with T = time to quality when every rank count reached the target, otherwise the
  time per epoch (the mean of the slowest rank's epoch times over the measured epochs); the report
  says which.
- Where the smallest N is not 1, N0 replaces 1: E(N) = X(N)·N0 / (N·X(N0)), S(N) = T(N0) / T(N),
  E(N) = S(N)·N0 / N.
- Repeats: median with [min–max]; with 5 or more repeats also the MLPerf-style olympic mean (the
  best and the worst dropped, the rest averaged). Scaling figures use the medians.
- Energy is read from the run summary's `energy` section (joules, method, joules_to_quality); where a
  run has none the report says n/a, and it never makes a number up. Valid FLOPS likewise comes from
  `flops.valid_flops_per_s`.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from ai500.report.inputs import Run, lookup
from ai500.spread import olympic_mean
from ai500.summary_common import coverage_of


def stats(values: list[float | None]) -> dict | None:
    """Median, min, max over repeats (and the olympic mean from 5 repeats); None without data."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return None
    return {"n": len(vals), "median": statistics.median(vals), "min": min(vals), "max": max(vals),
            "olympic_mean": olympic_mean(vals) if len(vals) >= 5 else None, "values": vals}


def _median(s: dict | None) -> float | None:
    return None if s is None else s["median"]


def epoch_time(summary: dict) -> float | None:
    """Mean of the slowest rank's training time per measured epoch (seconds)."""
    measured = summary.get("throughput", {}).get("epochs_measured") or []
    epochs = {e["epoch"]: e for e in summary.get("epochs", [])}
    times = [epochs[e]["slowest_rank_s"] for e in measured if e in epochs]
    return statistics.fmean(times) if times else None


def training_points(runs: list[Run], mode: str) -> tuple[list[dict], dict]:
    """One row per rank count with the repeats summarised, plus the scaling figures' basis."""
    rows = []
    for n in sorted({r.ranks for r in runs if r.ranks}):
        at_n = [r for r in runs if r.ranks == n]
        ok = [r for r in at_n if r.ok]
        reached = [r for r in ok if r.reached]
        s = [r.summary for r in ok]
        energies = [lookup(x, "energy") or {} for x in s]
        over = [r.oversubscribed for r in at_n if r.oversubscribed is not None]
        rows.append({
            "ranks": n, "runs": len(at_n), "ok": len(ok), "failed": len(at_n) - len(ok),
            "reached": len(reached),
            "global_batch_size": sorted({x["global_batch_size"] for x in s
                                         if x.get("global_batch_size")}),
            "time_to_quality_s": stats([r.summary.get("time_to_quality_s") for r in reached]),
            "time_per_epoch_s": stats([epoch_time(x) for x in s]),
            "throughput": stats([lookup(x, "throughput", "samples_per_s") for x in s]),
            "throughput_per_rank": stats([statistics.fmean(v) if v else None for v in
                                          (lookup(x, "throughput", "per_rank_samples_per_s")
                                           for x in s)]),
            "flops_per_s": stats([lookup(x, "flops", "flops_per_s") for x in s]),
            # runs summarised before --precision were fp32 (summary_common.run_precision)
            "precision": sorted({str(x.get("precision") or "fp32") + (" XLA" if x.get("xla") else "")
                                 for x in s}),
            "valid_flops_per_s": stats([lookup(x, "flops", "valid_flops_per_s") for x in s]),
            "energy_j": stats([e.get("joules") for e in energies]),
            "energy_methods": sorted({str(e["method"]) for e in energies if e.get("method")}),
            "energy_coverage": sorted({str(e.get("coverage") or coverage_of(str(e["method"])))
                                       for e in energies if e.get("method")}),
            "energy_to_quality_j": stats([(lookup(r.summary, "energy") or {})
                                          .get("joules_to_quality") for r in reached]),
            "slurm_energy_j": stats([r.slurm_energy_j for r in ok]),
            **cost_figures(reached),
            **time_figures(reached),
            "load_imbalance_median": stats([lookup(x, "load_imbalance", "median") for x in s]),
            "load_imbalance_max": max((v for v in (lookup(x, "load_imbalance", "max") for x in s)
                                       if v is not None), default=None),
            "best_quality": stats([lookup(x, "quality", "best") for x in s]),
            "init_s": stats([x.get("init_s") for x in s]),
            "oversubscribed": any(over) if over else None,
            "cores": next((r.cores for r in at_n if r.cores), None),
        })
    basis = scaling(rows, mode)
    return rows, basis


def cost_figures(reached: list[Run]) -> dict:
    """A rank count's cost columns from its runs that reached the target: the summaries' cost to
    quality, its currency, and why it is n/a (no price set, for one) where a run has none."""
    costs = [lookup(r.summary, "cost") or {} for r in reached]
    return {"node_hours_to_quality": stats([c.get("node_hours_to_quality") for c in costs]),
            "cost_to_quality": stats([c.get("cost_to_quality") for c in costs]),
            "cost_currency": sorted({str(c["currency"]) for c in costs
                                     if c.get("currency") and c.get("cost_to_quality") is not None}),
            "cost_reasons": sorted({str(c.get("reason") or "no cost in the run summary")
                                    for c in costs if c.get("cost_to_quality") is None})
            or ([] if reached else ["no run reached the quality target"])}


ACCOUNTED = ("total_s", "training_s", "evaluation_s", "checkpoint_s", "other_s", "other_share")


def time_figures(reached: list[Run]) -> dict:
    """A rank count's time to quality taken apart (the summaries' time_accounting.to_quality):
    training, evaluation, checkpoint and other seconds, and other's share, over the runs that
    reached the target."""
    parts = [lookup(r.summary, "time_accounting", "to_quality") or {} for r in reached]
    return {f"ttq_{key}": stats([p.get(key) for p in parts]) for key in ACCOUNTED}


def scaling(rows: list[dict], mode: str) -> dict:
    """Fill in ideal throughput, ratios, speedup and efficiency (in place); return the basis."""
    with_x = [r for r in rows if _median(r["throughput"]) is not None]
    base = with_x[0] if with_x else None
    info: dict[str, Any] = {"baseline_ranks": base["ranks"] if base else None, "basis": None}
    for row in rows:
        row.update(ideal_throughput=None, throughput_ratio=None, speedup=None, efficiency=None)
    if base is None:
        return info
    n0, x0 = base["ranks"], _median(base["throughput"])
    for row in rows:
        x = _median(row["throughput"])
        row["ideal_throughput"] = x0 * row["ranks"] / n0
        if x is not None:
            row["throughput_ratio"] = x / x0
            if mode == "weak":
                row["efficiency"] = x * n0 / (row["ranks"] * x0)
    if mode == "weak":
        info["basis"] = "throughput"
        return info
    ran = [r for r in rows if r["ok"]]
    if ran and all(_median(r["time_to_quality_s"]) is not None for r in ran):
        key, info["basis"] = "time_to_quality_s", "time to quality"
    else:
        key, info["basis"] = "time_per_epoch_s", "time per epoch"
    t0 = _median(base[key])
    info["baseline_time_s"] = t0
    for row in rows:
        t = _median(row[key])
        if t0 is not None and t:
            row["speedup"] = t0 / t
            row["efficiency"] = row["speedup"] * n0 / row["ranks"]
    return info


def micro_points(runs: list[Run]) -> tuple[list[dict], list[dict]]:
    """Micro runs: per N the peaks, and per kernel the aggregate GFLOPS (median over repeats)."""
    ns = sorted({r.ranks for r in runs if r.ranks})
    rows, kernels = [], {}
    for n in ns:
        at_n = [r for r in runs if r.ranks == n]
        ok = [r for r in at_n if r.ok]
        rows.append({
            "ranks": n, "runs": len(at_n), "ok": len(ok), "failed": len(at_n) - len(ok),
            "kernels": stats([len(r.summary.get("kernels", [])) for r in ok]),
            "practical_peak_gflops": stats([lookup(r.summary, "peak", "practical",
                                                   "aggregate_gflops") for r in ok]),
            "theoretical_peak_gflops": stats([lookup(r.summary, "peak", "theoretical",
                                                   "aggregate_gflops") for r in ok]),
        })
        for r in ok:
            for k in r.summary.get("kernels", []):
                label = (k.get("op"), k.get("size"), k.get("direction"))
                kernels.setdefault(label, {}).setdefault(n, []).append(k.get("aggregate_gflops"))
    table = []
    for (op, size, direction), by_n in kernels.items():
        entry = {"op": op, "size": size, "direction": direction,
                 "aggregate_gflops": {n: stats(v) for n, v in by_n.items()}}
        known = [n for n in ns if _median(entry["aggregate_gflops"].get(n)) is not None]
        if len(known) >= 2:
            n0, n1 = known[0], known[-1]
            g0, g1 = _median(entry["aggregate_gflops"][n0]), _median(entry["aggregate_gflops"][n1])
            entry["efficiency_at_max"] = {"ranks": n1, "value": g1 * n0 / (n1 * g0) if g0 else None}
        table.append(entry)
    return rows, table
