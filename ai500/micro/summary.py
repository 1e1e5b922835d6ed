"""Rank-0 summary of a micro-benchmark run, merged from every rank's `kernels/` trace rows.

Definitions (every figure computed from the merged traces; every rank runs each kernel at the same moment,
after a barrier, so the slowest rank bounds what the system delivered):
- aggregate GFLOPS of a kernel: the sum over ranks of its FLOPs per call / the slowest rank's median
  seconds per call / 1e9 — the rate the whole system sustains, never one rank's rate times the ranks;
- GFLOPS per rank: the median over ranks of each rank's FLOPs / its own median seconds;
- aggregate images/s: the sum over ranks of the batch / the slowest rank's median seconds (rows/s for fc);
- spread: the fastest and slowest single timed call on any rank, each rank's median absolute deviation of
  its timed calls, and the imbalance (slowest / fastest rank's median);
- theoretical peak: each rank's derived peak (column `peak_theoretical_gflops` of its rows); aggregate =
  the sum over ranks (= per-rank peak × ranks when the ranks are alike);
- practical peak: the `peak_gemm` rows (square GEMMs timed like the kernels, on all ranks at once, before
  them, in TensorFlow and, on a CPU in float32, in numpy): aggregate = the best aggregate GEMM rate over
  the orders and libraries, per rank = aggregate / ranks;
- percent of peak: aggregate GFLOPS / aggregate peak × 100, against both peaks. A kernel above the
  theoretical peak gets no percentage but a flag: the peak is wrong (FMA units, vector width or clock —
  a turbo above the nominal clock, say), and the summary says so. Above the practical peak is possible
  (the best square GEMM found is a reference, not a ceiling) and is flagged with its explanation;
- numpy: fc forward rows also carry numpy's aggregate GEMM rate on the same shape and which library was
  faster (a finding about the framework's GEMM).
Aggregates need every rank's trace; the rows every readable rank completed are summarised even in a failed
run (each is an independent measurement), but the status then says "failed".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ai500.metrics import scoring
from ai500.micro.peak import PEAK_MIN_GAIN, search_done
from ai500.summary_common import (
    SUMMARY_SCHEMA_VERSION,
    energy_line,
    finite,
    rank_problem_lines,
    summarise_energy,
    system_line,
)

PEAK_OP = "peak_gemm"
TEXT_COLUMNS = ("op", "size", "direction", "dtype")  # a kernel row's labels, as load_run checks them

DEFINITION = {
    "aggregate_gflops": "sum over ranks of the kernel's FLOPs per call / the slowest rank's median seconds "
    "per call / 1e9 (all ranks run the kernel at once, after a barrier)",
    "gflops_per_rank": "median over ranks of each rank's FLOPs per call / its own median seconds / 1e9",
    "aggregate_images_per_s": "sum over ranks of the batch / the slowest rank's median seconds "
    "(rows per second for fc)",
    "percent_of_peak": "aggregate GFLOPS / aggregate peak × 100, aggregate peak = per-rank peak × ranks "
    "(theoretical: the sum of each rank's peak)",
    "spread": "min_s / max_s: fastest / slowest timed call on any rank; mad_s_per_rank: each rank's median "
    "absolute deviation of its timed calls; imbalance: slowest / fastest rank's median",
    "numpy_aggregate_gflops": "fc forward rows: numpy's GEMM of the same shape, sum over ranks of its FLOPs / "
    "the slowest rank's numpy median / 1e9; faster: the library with the higher aggregate rate",
    "above_theoretical_peak": "the kernel's aggregate rate exceeds the aggregate theoretical peak: no "
    "percentage is given, the theoretical peak is wrong",
    "above_practical_peak": "the kernel beat the best square GEMM measured (the practical peak is the best "
    "GEMM found, a reference rather than a ceiling)",
}
THEORETICAL_WRONG = ("above the theoretical peak: the peak is wrong (FMA units, vector width or clock: a "
                     "turbo above the clock used counts; set them in system.yaml `peak`)")
PRACTICAL_NOTE = ("above the practical peak: this kernel beat every square GEMM measured; the practical peak "
                  "is the best GEMM found (library and order in the peak line), a reference, not a ceiling")


def merged_arrays(traces: dict[int, Any]) -> dict[str, np.ndarray]:
    """The `kernels/` rows every readable rank completed, for summary.h5: `rank` (R,), the text labels
    (n,) from the lowest rank, and each numeric column as a [rank, row] float64 array (R, n)."""
    ranks = sorted(traces)
    groups = [traces[r].groups.get("kernels", {}) for r in ranks]
    n = min((len(g.get("op", ())) for g in groups), default=0)
    first = groups[0] if groups else {}
    merged: dict[str, np.ndarray] = {"rank": np.array(ranks, dtype=np.int64)}
    for key in TEXT_COLUMNS:
        merged[key] = np.array([str(v) for v in list(first.get(key, ()))[:n]], dtype=object)
    for key in first:
        if key in TEXT_COLUMNS:
            continue
        rows = [np.asarray(g[key], dtype=np.float64)[:n] if key in g else np.full(n, np.nan) for g in groups]
        merged[key] = np.array(rows, dtype=np.float64).reshape(len(ranks), n)
    return merged


def _label_problems(traces: dict[int, Any], merged: dict[str, np.ndarray]) -> dict[int, str]:
    """Ranks whose rows are not the same kernels, in the same order, as the lowest rank's."""
    n = len(merged["op"])
    lowest = int(merged["rank"][0]) if len(merged["rank"]) else 0
    found = {}
    for rank, trace in traces.items():
        group = trace.groups.get("kernels", {})
        for key in TEXT_COLUMNS:
            if [str(v) for v in list(group.get(key, ()))[:n]] != list(merged[key]):
                found[rank] = f"kernel rows differ from rank {lowest}'s ({key})"
                break
    return found


def _rate(merged: dict[str, np.ndarray], i: int, column: str = "flops",
          median: str = "median_s") -> tuple[float, float]:
    """(sum over ranks of `column` / slowest `median` seconds, slowest median seconds) of row i."""
    slowest = float(merged[median][:, i].max())
    return float(merged[column][:, i].sum()) / slowest, slowest


def _numpy(merged: dict[str, np.ndarray], i: int, all_ranks: bool) -> dict | None:
    """numpy's figures of row i (aggregate GFLOPS, slowest median, GFLOPS by rank), or None: not timed."""
    if "numpy_median_s" not in merged or not np.isfinite(merged["numpy_median_s"][:, i]).all():
        return None
    flops_per_s, slowest = _rate(merged, i, median="numpy_median_s")
    return {"aggregate_gflops": flops_per_s / 1e9 if all_ranks else None, "slowest_median_s": slowest,
            "gflops_by_rank": [float(v) for v in merged["numpy_gflops"][:, i]]}


def _theoretical(merged: dict[str, np.ndarray], workload: dict, all_ranks: bool) -> dict:
    per_rank = ([finite(v) for v in merged["peak_theoretical_gflops"][:, 0]]
                if "peak_theoretical_gflops" in merged and merged["peak_theoretical_gflops"].size else [])
    known = all_ranks and bool(per_rank) and None not in per_rank
    rank0 = dict(workload.get("peak", {}).get("theoretical_rank0", {}))
    return {
        "aggregate_gflops": float(np.sum(per_rank)) if known else None,
        "gflops_per_rank": float(np.median(per_rank)) if known else None,
        "gflops_by_rank": per_rank,
        "rank0": rank0,
        "unknown": rank0.get("unknown") if rank0.get("gflops") is None else None,
        "exceeded_by": [],
        "method": rank0.get("method", "unavailable") + "; aggregate = the sum of each rank's peak "
        "(= per-rank peak × ranks when the ranks are alike)",
    }


def _practical(merged: dict[str, np.ndarray], workload: dict, all_ranks: bool, size: int) -> dict:
    per_order = []
    for i in np.nonzero(merged["op"] == PEAK_OP)[0]:
        flops_per_s, slowest = _rate(merged, int(i))
        entry = {
            "size": str(merged["size"][i]),
            "order": int(merged["batch"][0, i]),
            "slowest_median_s": slowest,
            "aggregate_gflops": flops_per_s / 1e9 if all_ranks else None,
            "gflops_by_rank": [float(v) for v in merged["gflops"][:, i]],
            "numpy": _numpy(merged, int(i), all_ranks),
        }
        rates = {"tensorflow": entry["aggregate_gflops"],
                 "numpy": entry["numpy"]["aggregate_gflops"] if entry["numpy"] else None}
        rated = {lib: r for lib, r in rates.items() if r is not None}
        entry["best_library"] = max(rated, key=rated.get) if rated else None
        entry["best_gflops"] = rated[entry["best_library"]] if rated else None
        per_order.append(entry)
    rated = [p for p in per_order if p["best_gflops"] is not None]
    best = max(rated, key=lambda p: p["best_gflops"]) if rated else None
    method = workload.get("peak", {}).get("practical", {}).get("method", "measured GEMMs")
    by_library = {"tensorflow": [p["aggregate_gflops"] for p in rated]}
    if rated and all(p["numpy"] for p in rated):
        by_library["numpy"] = [p["numpy"]["aggregate_gflops"] for p in rated]
    stopped = search_done(by_library,
                          workload.get("peak", {}).get("practical", {}).get("min_gain", PEAK_MIN_GAIN))
    return {
        "aggregate_gflops": best["best_gflops"] if best else None,
        "gflops_per_rank": best["best_gflops"] / size if best else None,
        "order": best["order"] if best else None,
        "library": best["best_library"] if best else None,
        "tensorflow_aggregate_gflops": max((p["aggregate_gflops"] for p in rated), default=None),
        "stopped_growing": stopped,
        "per_order": per_order,
        "method": method + "; aggregate GEMM rate = the sum of FLOPs over ranks / the slowest rank's "
        "median, per rank = aggregate / ranks",
    }


def _percent(rate: float | None, peak_gflops: float | None) -> float | None:
    return 100.0 * rate / peak_gflops if rate is not None and peak_gflops else None


def summarise(cfg: dict[str, Any], traces: dict[int, Any], problems: dict[int, str]) -> dict:
    """The micro-benchmark run summary as a JSON-ready dict (definitions in the module docstring)."""
    run_cfg = cfg["config"]
    workload = cfg.get("workload") or {}
    size = int(cfg["dist"]["size"])
    merged = merged_arrays(traces)
    problems = {**_label_problems(traces, merged), **problems}
    n = len(merged["op"])
    all_ranks = len(traces) == size and n > 0
    n_kernels = int(np.sum(merged["op"] != PEAK_OP))
    if "kernel_items" in workload:  # the peak GEMMs stop where the rate stops growing: not counted
        expected, done = workload["kernel_items"], n_kernels
    else:  # a run from before the adaptive peak search: its items included the peak GEMMs
        expected, done = workload.get("items"), n
    complete = all_ranks and not problems and (expected is None or done == expected)
    theoretical = _theoretical(merged, workload, all_ranks)
    practical = _practical(merged, workload, all_ranks, size)
    theo_peak, prac_peak = theoretical["aggregate_gflops"], practical["aggregate_gflops"]
    if theo_peak is not None and prac_peak is not None and prac_peak > theo_peak:
        theoretical["exceeded_by"].append({"what": f"practical peak ({practical['library']} GEMM, n="
                                                   f"{practical['order']})", "aggregate_gflops": prac_peak})

    entries = []
    for i in range(n):
        if merged["op"][i] == PEAK_OP:
            continue
        flops_per_s, slowest = _rate(merged, i)
        images_per_s, _ = _rate(merged, i, "batch")
        median = merged["median_s"][:, i]
        aggregate = flops_per_s / 1e9 if all_ranks else None
        numpy_ref = _numpy(merged, i, all_ranks)
        numpy_rate = numpy_ref["aggregate_gflops"] if numpy_ref else None
        faster = None
        if aggregate is not None and numpy_rate is not None:
            faster = "numpy" if numpy_rate > aggregate else "tensorflow"
        above_theo = theo_peak is not None and aggregate is not None and aggregate > theo_peak
        label = f"{merged['op'][i]} {merged['size'][i]} {merged['direction'][i]}"
        if above_theo:
            theoretical["exceeded_by"].append({"what": label, "aggregate_gflops": aggregate})
        if numpy_rate is not None and theo_peak is not None and numpy_rate > theo_peak:
            theoretical["exceeded_by"].append({"what": f"{label} (numpy)", "aggregate_gflops": numpy_rate})
        entries.append({
            **{key: str(merged[key][i]) for key in TEXT_COLUMNS},
            "batch": int(merged["batch"][0, i]),
            "flops_per_rank": int(merged["flops"][0, i]),
            "median_s_by_rank": [float(v) for v in median],
            "slowest_median_s": slowest,
            "gflops_per_rank": float(np.median(merged["gflops"][:, i])),
            "gflops_by_rank": [float(v) for v in merged["gflops"][:, i]],
            "aggregate_gflops": aggregate,
            "aggregate_images_per_s": images_per_s if all_ranks else None,
            "percent_of_theoretical_peak": None if above_theo else _percent(aggregate, theo_peak),
            "above_theoretical_peak": above_theo,
            "percent_of_practical_peak": _percent(aggregate, prac_peak),
            "above_practical_peak": prac_peak is not None and aggregate is not None and aggregate > prac_peak,
            "numpy_aggregate_gflops": numpy_rate,
            "numpy_slowest_median_s": numpy_ref["slowest_median_s"] if numpy_ref else None,
            "faster": faster,
            "spread": {
                "min_s": float(merged["min_s"][:, i].min()),
                "max_s": float(merged["max_s"][:, i].max()),
                "mad_s_per_rank": [float(v) for v in merged["mad_s"][:, i]],
                "imbalance": slowest / float(median.min()),
            },
        })

    init = [float(t.attrs.get("init_seconds", np.nan)) for t in traces.values()]
    run_s = finite(merged["t_end"].max()) if "t_end" in merged and merged["t_end"].size else None
    # Each rank's own end of the run, on its own clock (summarise_energy says why).
    ends = ({int(rank): float(t.max()) for rank, t in zip(merged["rank"], merged["t_end"])}
            if run_s is not None else {})
    energy = summarise_energy(cfg, traces, ends)
    # Kernels last milliseconds and meters tick once a second, so each kernel's efficiency is
    # its aggregate rate over the run's average power, and is labelled that way.
    for entry in entries:
        entry["gflops_per_watt"] = scoring.flops_per_watt(entry["aggregate_gflops"],
                                                          energy["average_power_w"])
    return {
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "status": "ok" if complete else "failed",
        "kind": "micro",
        "run_id": cfg["run_id"],
        "benchmark": run_cfg["benchmark"],
        "preset": run_cfg["preset"],
        "dtype": run_cfg.get("micro", {}).get("dtype"),
        "ranks": size,
        "nodes": cfg["dist"]["nodes"],
        "hosts": cfg["dist"]["hosts"],
        "device_rank0": workload.get("device_rank0"),
        "versions": cfg.get("versions", {}),
        "command": cfg.get("command"),
        "timing": workload.get("timing"),
        "missing_or_failed_ranks": {str(r): why for r, why in sorted(problems.items())},
        "kernels_completed": done,
        "kernels_expected": expected,
        "peak_gemms_completed": n - n_kernels,
        "init_s": finite(max(init)) if init else None,
        "run_s": run_s,
        "definition": DEFINITION,
        "peak": {"dtype": run_cfg.get("micro", {}).get("dtype"), "theoretical": theoretical,
                 "practical": practical,
                 "theoretical_status": ("unknown" if theo_peak is None and theoretical["unknown"]
                                        else "wrong: exceeded by measured rates" if theoretical["exceeded_by"]
                                        else "ok" if theo_peak is not None else "unavailable")},
        "kernels": entries,
        "energy": energy,
        "gflops_per_watt_definition": "aggregate GFLOPS / the run's average power "
        f"({energy['method']}); meters sample at ~1 Hz, far slower than one kernel",
    }


def _num(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _theoretical_line(s: dict) -> str:
    """The theoretical peak per rank with its clock and FLOPs/cycle labelled (or why it is unknown)."""
    theo = s["peak"]["theoretical"]
    r0 = theo.get("rank0", {})
    if theo["gflops_per_rank"] is None:
        why = theo.get("unknown") or r0.get("unknown") or r0.get("method", "unavailable")
        return f"  theoretical peak per rank: unknown — {why}"
    if r0.get("flops_per_cycle") is None:  # a GPU: a datasheet figure
        return (f"  theoretical peak per rank: {theo['gflops_per_rank']:.1f} GFLOPS ({r0.get('method', '')}); "
                f"aggregate {theo['aggregate_gflops']:.1f} GFLOPS")
    return (f"  theoretical peak per rank: {theo['gflops_per_rank']:.1f} GFLOPS = {r0['cores']} core(s) × "
            f"clock {r0['ghz']:.3f} GHz ({r0['clock_source']}; turbo and AVX clocks differ) × "
            f"{r0['flops_per_cycle']:g} {r0.get('dtype', s['dtype'])} FLOPs/cycle/core "
            f"({r0['flops_per_cycle_source']}); aggregate {theo['aggregate_gflops']:.1f} GFLOPS")


def _practical_line(s: dict) -> str:
    prac = s["peak"]["practical"]
    if prac["aggregate_gflops"] is None:
        return "  practical peak per rank: n/a (no complete peak GEMM on every rank)"
    tried = ", ".join(str(p["order"]) for p in prac["per_order"])
    end = ("stopped growing" if prac["stopped_growing"]
           else "still growing at the largest n tried: the practical peak may be higher")
    tf_best = prac.get("tensorflow_aggregate_gflops")
    return (f"  practical peak per rank: {prac['gflops_per_rank']:.1f} GFLOPS (best square GEMM: "
            f"{prac['library']}, n={prac['order']}; TensorFlow's best {_num(tf_best, '.1f')} agg; n = {tried}, "
            f"{end}); aggregate {prac['aggregate_gflops']:.1f} GFLOPS")


def format_summary(s: dict) -> str:
    """The compact table rank 0 prints: one row per (op, size, direction) with aggregate figures."""
    lines = [
        (f"ai500 {s['benchmark']} ({s['preset']}, {s['dtype']}) on {s['ranks']} rank(s), "
         f"{s['nodes']} node(s): status {s['status']}, {s['kernels_completed']} of "
         f"{s['kernels_expected']} kernel rows"),
        system_line(s.get("system")),
        _theoretical_line(s),
        _practical_line(s),
        ("  median ms: the slowest rank's; agg(regate) = sum of FLOPs over ranks / that time; "
         "% of the aggregate peaks; numpy: its GEMM on the fc forward shapes"),
    ]
    header = ("op", "size", "direction", "median ms", "GFLOPS/rank", "GFLOPS agg", "images/s agg",
              "%theo", "%prac", "numpy agg", "faster")
    rows = []
    for k in s["kernels"]:
        theo = "ABOVE!" if k.get("above_theoretical_peak") else _num(k["percent_of_theoretical_peak"], ".1f")
        prac = _num(k["percent_of_practical_peak"], ".1f") + ("*" if k.get("above_practical_peak") else "")
        faster = ""
        if k.get("faster"):
            ratio = (k["numpy_aggregate_gflops"] / k["aggregate_gflops"] if k["faster"] == "numpy"
                     else k["aggregate_gflops"] / k["numpy_aggregate_gflops"])
            faster = f"{'numpy' if k['faster'] == 'numpy' else 'TF'} ×{ratio:.2f}"
        numpy_cell = "" if k.get("numpy_aggregate_gflops") is None else _num(k["numpy_aggregate_gflops"], ".2f")
        rows.append((k["op"], k["size"], k["direction"], _num(k["slowest_median_s"] * 1e3, ".3f"),
                     _num(k["gflops_per_rank"], ".2f"), _num(k["aggregate_gflops"], ".2f"),
                     _num(k["aggregate_images_per_s"], ".1f"), theo, prac, numpy_cell, faster))
    widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]
    for r in [header, *rows]:
        cells = [f"{v:<{w}}" if c < 3 else f"{v:>{w}}" for c, (v, w) in enumerate(zip(r, widths))]
        lines.append(("  " + "  ".join(cells)).rstrip())
    exceeded = s["peak"]["theoretical"].get("exceeded_by", [])
    if exceeded:
        theo = s["peak"]["theoretical"]["aggregate_gflops"]
        shown = "; ".join(f"{e['what']} {e['aggregate_gflops']:.1f}" for e in exceeded[:5])
        more = f" and {len(exceeded) - 5} more" if len(exceeded) > 5 else ""
        lines.append(f"  ABOVE! {len(exceeded)} measured rate(s) {THEORETICAL_WRONG}: aggregate peak "
                     f"{theo:.1f} GFLOPS, measured {shown}{more} GFLOPS")
    if any(k.get("above_practical_peak") for k in s["kernels"]):
        lines.append(f"  * {PRACTICAL_NOTE}")
    faster_numpy = [k for k in s["kernels"] if k.get("faster") == "numpy"]
    if faster_numpy:
        lines.append(f"  numpy's GEMM beat TensorFlow's on {len(faster_numpy)} fc shape(s): a finding about "
                     "the framework's GEMM on those shapes, not noise")
    lines.append(energy_line(s["energy"]))
    lines.extend(rank_problem_lines(s))
    return "\n".join(lines)
