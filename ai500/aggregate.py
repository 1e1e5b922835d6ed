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

A resumed run (`--resume`) is summarised over its segments (ai500/segments.py: which epochs count,
and their two clocks). time_to_quality_s is then on the MLPerf clock, from the first segment's
run_start through every interruption, and flagged mlperf_valid false; time_to_quality_training_s
sums the segments' training time. The first epoch of every segment (graph tracing again) is
excluded from throughput; energy and cost add up every segment's own run, to the quality point.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ai500 import rundir
from ai500.errors import Ai500Error, DataError
from ai500.metrics import scoring
from ai500.segments import TIMES, Segment, describe, join, lineage, load_segments
from ai500.trace import Trace, read_trace

SUMMARY_SCHEMA_VERSION = 1


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


TRACE_FILE = re.compile(r"trace-rank(\d+)\.h5$")
# Columns a trace must hold, by run kind, each finite: training epochs (times are seconds from
# run_start) and micro-benchmark kernel rows (text labels, then numbers).
EPOCH_COLUMNS = ("epoch", "t_ready", "t_start", "t_train_end", "t_eval_start", "t_eval_end",
                 "samples")
KERNEL_TEXT = ("op", "size", "direction", "dtype")
KERNEL_NUMBERS = ("batch", "flops", "median_s", "min_s", "max_s", "mad_s", "gflops", "t_end")


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 1


def _is_number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _is_optional_number(value: Any) -> bool:
    return value is None or _is_number(value)


def _field(record: dict, dotted: str, check: Callable[[Any], bool], expected: str,
           source: Path, required: bool = True) -> None:
    """DataError naming `source` unless record[a][b]... (dotted `a.b...`) passes `check`."""
    value: Any = record
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            if required or not (isinstance(value, dict) or value is None):
                raise DataError(f"{source}: no {dotted}")
            return  # an optional field, or one inside an optional section that is null
        value = value[key]
    if not check(value):
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise DataError(f"{source}: {dotted} is {shown}, expected {expected}")


def check_record(cfg: Any, source: Path) -> None:
    """DataError unless config.json holds what the summary is computed from, with sane types."""
    if not isinstance(cfg, dict):
        raise DataError(f"{source}: expected a JSON object, got {type(cfg).__name__}")
    string = (lambda v: isinstance(v, str), "text")
    mapping = (lambda v: isinstance(v, dict), "an object")
    fields = [("run_id", *string), ("dist.size", _is_count, "a whole number >= 1"),
              ("dist.nodes", _is_count, "a whole number >= 1"),
              ("dist.hosts", lambda v: isinstance(v, list), "a list"),
              ("config", *mapping), ("config.benchmark", *string), ("config.preset", *string)]
    optional = [("kind", lambda v: v in ("training", "micro"), "'training' or 'micro'"),
                ("workload", *mapping), ("flops_per_sample", lambda v: v is None or
                                         isinstance(v, dict), "an object or null"),
                ("flops_per_sample.train", _is_optional_number, "a number or null"),
                ("flops_per_sample.forward", _is_optional_number, "a number or null"),
                ("config.system", *mapping), ("config.system.energy", *mapping),
                ("config.system.energy.enabled", lambda v: type(v) is bool, "true or false"),
                ("config.system.cost", *mapping),
                ("config.system.cost.price_per_node_hour", _is_optional_number, "a number or null")]
    if cfg.get("kind") != "micro":
        fields += [("config.seed", lambda v: type(v) is int, "a whole number"),
                   ("config.train.batch_size", _is_count, "a whole number >= 1"),
                   ("config.quality.metric", *string),
                   ("config.quality.target", _is_number, "a finite number"),
                   ("config.quality.higher_is_better", lambda v: type(v) is bool, "true or false"),
                   ("config.quality.vflops_exponent", _is_number, "a finite number")]
    for dotted, check, expected in fields:
        _field(cfg, dotted, check, expected, source)
    for dotted, check, expected in optional:
        _field(cfg, dotted, check, expected, source, required=False)


def trace_files(run_dir: Path) -> dict[int, Path]:
    """The run directory's trace files by rank (one directory listing)."""
    found = {}
    for path in Path(run_dir).iterdir():
        match = TRACE_FILE.match(path.name)
        if match and path.is_file():
            found[int(match.group(1))] = path
    return found


def content_problem(trace: Trace, kind: str, metric: str | None) -> str | None:
    """Why a readable trace cannot be summarised, or None: no wall_start, or rows (epochs, or
    kernels of a micro benchmark) without a required column, with text where numbers belong,
    with non-finite times, or with epoch times out of order. No rows at all is fine in an
    unfinished trace (a rank that failed in its first epoch), not in one of status ok."""
    if "wall_start" not in trace.attrs:
        return "no wall_start attribute (the trace never reached run_start)"
    micro = kind == "micro"
    group, text, numbers = ("kernels", KERNEL_TEXT, KERNEL_NUMBERS) if micro else (
        "epochs", (), EPOCH_COLUMNS)
    columns = trace.groups.get(group, {})
    if not columns or not len(next(iter(columns.values()))):
        return f"status ok but no {group}" if trace.attrs.get("status") == "ok" else None
    if not micro:
        numbers += (metric,) + tuple(k for k in columns if k.startswith(("train_", "val_")))
    for key in (*text, *numbers):
        if key not in columns:
            return f"{group} has no {key} column"
        if (columns[key].dtype == object) != (key in text):
            return f"{group}/{key} holds {'numbers' if key in text else 'text'}"
        if key in (*EPOCH_COLUMNS, *KERNEL_NUMBERS) and not np.isfinite(columns[key]).all():
            return f"{group}/{key} holds non-finite values"
    if not micro and not (np.all(columns["t_ready"] <= columns["t_start"])
                          and np.all(columns["t_start"] < columns["t_train_end"])
                          and np.all(columns["t_train_end"] <= columns["t_eval_start"])
                          and np.all(columns["t_eval_start"] <= columns["t_eval_end"])
                          and np.all(columns["samples"] >= 0)):
        return ("epochs out of order (need t_ready <= t_start < t_train_end <= t_eval_start <= "
                "t_eval_end, samples >= 0)")
    return None


def load_run(run_dir: Path, record_name: str = "config.json", require_traces: bool = True
             ) -> tuple[dict[str, Any], dict[int, Trace], dict[int, str]]:
    """config.json (checked), the usable traces by rank, and why each other rank has none.

    A trace whose run_id differs from config.json's is from another run: DataError, as is a
    directory without config.json, a malformed one, a size the traces contradict, or no usable
    trace at all. A missing, unreadable or unusable trace is a problem of its rank (the summary
    then says failed); an unfinished one (status not 'ok') is used and is a problem too.
    A resumed run's segment directory is read the same way with `record_name` segment.json,
    and may hold no usable trace (a resume that failed in its first epoch)."""
    run_dir = Path(run_dir)
    source = run_dir / record_name
    cfg = rundir.read_run_json(run_dir, record_name, DataError)
    check_record(cfg, source)
    size, run_id, kind = cfg["dist"]["size"], cfg["run_id"], cfg.get("kind", "training")
    traces: dict[int, Trace] = {}
    problems: dict[int, str] = {}
    sizes: dict[int, int] = {}
    for rank, path in sorted(trace_files(run_dir).items()):
        try:
            trace = read_trace(path)
        except DataError as exc:
            problems[rank] = str(exc)
            continue
        other = trace.attrs.get("run_id")
        if other is not None and other != run_id:
            raise DataError(f"{path}: belongs to run {other}, not {run_id} (config.json)")
        if rank >= size:
            raise DataError(f"{path}: rank {rank}, but {source} says the run had {size} ranks")
        sizes[rank] = trace.attrs.get("size", size)
        why = content_problem(trace, kind, (cfg["config"].get("quality") or {}).get("metric"))
        if other is None:
            why = "no run_id attribute"
        elif trace.attrs.get("rank", rank) != rank:
            why = f"holds rank {trace.attrs['rank']}"
        elif sizes[rank] != size:
            why = f"written by a run of {sizes[rank]} ranks, not {size}"
        if why is not None:
            problems[rank] = f"{path}: {why}"
            continue
        if trace.attrs.get("status") != "ok":
            problems[rank] = f"trace status {trace.attrs.get('status')!r}"
        traces[rank] = trace
    if sizes and size not in sizes.values():
        raise DataError(f"{source}: dist.size is {size}, but the traces were written by a run of "
                        f"{', '.join(map(str, sorted(set(sizes.values()))))} ranks")
    if not traces and require_traces:
        detail = "; ".join(problems[r] for r in sorted(problems)[:2]) or "no trace-rank*.h5 file"
        raise DataError(f"{run_dir}: no usable trace, nothing to summarise ({detail})")
    for rank in range(size):
        if rank not in traces and rank not in problems:
            problems[rank] = "no trace file"
    return cfg, traces, problems


def merge_epochs(traces: dict[int, Trace]) -> dict[str, np.ndarray]:
    """Per-epoch arrays over the epochs every readable rank completed: [rank, epoch] timings."""
    ranks = sorted(traces)
    n = min((len(traces[r].epochs.get("epoch", [])) for r in ranks), default=0)
    column = lambda key: np.array([traces[r].epochs[key][:n] for r in ranks])
    merged = {"rank": np.array(ranks), "epoch": np.arange(n)}
    for key in (*TIMES, "samples"):
        merged[key] = column(key) if n else np.zeros((len(ranks), 0))
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
        node = {"host": trace.attrs.get("host"), "rank": trace.attrs.get("rank"),
                "method": "unreadable", "meters": trace.attrs.get("energy_meters")}
        try:
            samples = EnergySamples.from_columns(trace.groups["energy"])
            node["method"] = samples.method
            if not (np.isfinite(samples.t).all() and np.isfinite(samples.joules).all()):
                raise ValueError("energy samples hold non-finite values")
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


def _single_segment(traces: dict[int, Trace]) -> dict[str, np.ndarray]:
    """merge_epochs plus what a joined run has (segment index, training clock): one segment."""
    merged = merge_epochs(traces)
    merged["segment"] = np.zeros(len(merged["epoch"]), int)
    merged["t_eval_end_training"] = merged["t_eval_end"]
    return merged


def combine_energy(parts: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    """A resumed run's energy: its segments' summaries (`summarise_energy`, each over its own
    recorded run and, up to the quality point, its share) added up, never across methods."""
    methods = sorted({p["method"] for _, p in parts})
    result: dict[str, Any] = {
        "method": "+".join(methods), "joules": None, "joules_to_quality": None,
        "average_power_w": None, "peak_node_power_w": None,
        "per_node": [{**node, "segment": k} for k, p in parts for node in p["per_node"]],
        "definition": parts[0][1]["definition"] + "; a resumed run adds its segments, each "
        "from its run_start to its last recorded evaluation (gaps between them unmetered)",
    }
    missing = [f"segment {k}: {p.get('reason', 'no total')}" for k, p in parts
               if p["joules"] is None]
    if missing:
        result["reason"] = "; ".join(missing)
    elif len(methods) > 1:
        result["reason"] = f"segments metered by different methods ({', '.join(methods)}): not added"
    else:
        result["joules"] = sum(p["joules"] for _, p in parts)
        to_quality = [p["joules_to_quality"] for _, p in parts]
        if all(j is not None for j in to_quality):
            result["joules_to_quality"] = sum(to_quality)
        result["peak_node_power_w"] = max(p["peak_node_power_w"] for _, p in parts)
    return result


ACCOUNTING_DEFINITION = (
    "seconds on the job's timeline: training = from an epoch's start (all ranks past its "
    "barrier) until the last rank finished its steps and the reduction of their metrics; "
    "evaluation = from the last rank starting the global evaluation to the last finishing it; "
    "checkpoint = rank 0's checkpoint writes (barriers included); other = the window's wall time "
    "minus those three: trace flushes, progress lines, waiting at the barrier that starts each "
    "epoch (barrier_wait_s, also counted in other), and on a resumed run the interruptions "
    "(MLPerf clock); it should be near 0")


def checkpoint_seconds(segments: list[Segment]) -> dict[tuple[int, int], float]:
    """Rank 0's checkpoint write time (seconds) by (segment, epoch)."""
    seconds: dict[tuple[int, int], float] = {}
    for seg in segments:
        rows = seg.traces[0].groups.get("checkpoints") if 0 in seg.traces else None
        if rows:
            for epoch, t0, t1 in zip(rows["epoch"], rows["t_start"], rows["t_end"]):
                seconds[(seg.index, int(epoch))] = float(t1 - t0)
    return seconds


def epoch_accounting(merged: dict[str, np.ndarray],
                     checkpoints: dict[tuple[int, int], float]) -> dict[str, np.ndarray]:
    """Per merged epoch, seconds on the job's timeline (every rank starts an epoch together,
    after its barrier): training until the last rank finished its steps, evaluation from the
    last rank starting it to the last finishing, rank 0's checkpoint, the longest wait at the
    starting barrier, the epoch's wall time (to the next epoch's start in the same segment, else
    to the end of its evaluation and checkpoint) and other = wall - training - evaluation -
    checkpoint (never negative: the phases follow one another on every rank)."""
    segment, epoch = merged["segment"], merged["epoch"]
    last = {key: np.nanmax(merged[key], axis=0) for key in TIMES}
    start = last["t_start"]
    result = {
        "training_s": last["t_train_end"] - start,
        "evaluation_s": last["t_eval_end"] - last["t_eval_start"],
        "checkpoint_s": np.array([checkpoints.get((int(g), int(e)), 0.0)
                                  for g, e in zip(segment, epoch)]),
        "barrier_wait_s": np.nanmax(merged["t_start"] - merged["t_ready"], axis=0),
    }
    end = last["t_eval_end"] + result["checkpoint_s"]
    for i in range(len(segment) - 1):
        if segment[i + 1] == segment[i]:  # the epoch lasts until the next one starts
            end[i] = start[i + 1]
    result["wall_s"] = end - start
    result["other_s"] = (result["wall_s"] - result["training_s"] - result["evaluation_s"]
                         - result["checkpoint_s"])
    return result


def account_until(merged: dict[str, np.ndarray], per_epoch: dict[str, np.ndarray],
                  position: int) -> dict[str, float]:
    """Where the seconds from run_start to the end of the evaluation of merged epoch `position`
    went: training, evaluation, checkpoints written before it, and the rest (other)."""
    total = float(np.nanmax(merged["t_eval_end"][:, position]))
    parts = {key: float(per_epoch[key][:position + 1].sum())
             for key in ("training_s", "evaluation_s", "barrier_wait_s")}
    parts["checkpoint_s"] = float(per_epoch["checkpoint_s"][:position].sum())
    other = total - parts["training_s"] - parts["evaluation_s"] - parts["checkpoint_s"]
    return {"total_s": total, **parts, "other_s": other,
            "other_share": other / total if total > 0 else None}


def summarise(cfg: dict[str, Any], traces: dict[int, Trace], problems: dict[int, str],
              segments: list[Segment] | None = None) -> dict:
    """The run summary as a JSON-ready dict (see the module docstring for the definitions).
    `segments`: a resumed run's segments (ai500/segments.py), the first being cfg/traces."""
    run_cfg = cfg["config"]
    q = run_cfg["quality"]
    size = int(cfg["dist"]["size"])
    segments = segments or [Segment(0, cfg, traces, problems)]
    resumed = len(segments) > 1
    chain = lineage(segments)
    if resumed:
        merged, issues, firsts = join(chain)
        rank_problems = {k: v for k, v in issues.items() if k.isdigit()}
        lineage_problems = [f"{k}: {v}" for k, v in issues.items() if not k.isdigit()]
        complete = not issues
    else:
        merged, firsts = _single_segment(traces), [0]
        rank_problems = {str(r): why for r, why in sorted(problems.items())}
        lineage_problems = []
        complete = not problems and len(traces) == size
    n = len(merged["epoch"])
    epoch_time = merged["t_train_end"] - merged["t_start"]  # [rank, epoch]; NaN: no such rank
    slowest = np.nanmax(epoch_time, axis=0) if n else np.zeros(0)
    fastest = np.nanmin(epoch_time, axis=0) if n else np.zeros(0)
    global_samples = np.nansum(merged["samples"], axis=0) if n else np.zeros(0)
    # Each segment's first epoch traces the graphs again: warm-up, unless nothing else is left.
    measured = np.array([i for i in range(n) if i not in firsts[:n]], int)
    if not resumed:
        warmup_note = ("epoch 0 excluded as warm-up (graph tracing)" if n >= 2 else
                       "only one epoch: warm-up included, throughput understated")
    else:
        warmup_note = (f"the first epoch of each segment ({', '.join(str(int(merged['epoch'][i])) for i in firsts)}) "
                       "excluded as warm-up (graph tracing)")
    if not len(measured):
        measured = np.arange(n)
        if resumed:
            warmup_note = "only each segment's first epoch: warm-up included, throughput understated"

    throughput = None
    per_rank = []
    if len(measured) and complete:
        throughput = float(global_samples[measured].sum() / slowest[measured].sum())
        per_rank = [float(np.nansum(merged["samples"][i, measured])
                          / np.nansum(epoch_time[i, measured]))
                    for i in range(len(merged["rank"]))]

    metric = merged.get(q["metric"])
    hit_epochs = []
    if metric is not None:
        better = (metric >= q["target"]) if q["higher_is_better"] else (metric <= q["target"])
        hit_epochs = list(np.nonzero(better)[0])
    ttq_at = int(hit_epochs[0]) if hit_epochs and complete else None  # position in merged
    ttq_epoch = int(merged["epoch"][ttq_at]) if ttq_at is not None else None
    best = None
    finite_values = metric[np.isfinite(metric)] if metric is not None else np.zeros(0)
    if len(finite_values):
        best = float(np.max(finite_values) if q["higher_is_better"] else np.min(finite_values))

    flops_cfg = cfg.get("flops_per_sample") or {}
    flops_per_s = (flops_cfg["train"] * throughput
                   if throughput is not None and flops_cfg.get("train") else None)
    init = [float(t.attrs["init_seconds"]) for t in traces.values() if "init_seconds" in t.attrs]

    per_epoch = epoch_accounting(merged, checkpoint_seconds(segments)) if n else {}
    epochs = []
    for e in range(n):
        row = {"epoch": int(merged["epoch"][e]), "global_samples": int(global_samples[e]),
               "slowest_rank_s": float(slowest[e]), "fastest_rank_s": float(fastest[e]),
               "samples_per_s": float(global_samples[e] / slowest[e]),
               "load_imbalance": float(slowest[e] / fastest[e]),
               "t_end_s": float(np.nanmax(merged["t_eval_end"][:, e])),
               "segment": int(merged["segment"][e]),
               "t_end_training_s": float(np.nanmax(merged["t_eval_end_training"][:, e])),
               **{key: float(values[e]) for key, values in per_epoch.items()}}
        row.update({k: _finite(v[e]) for k, v in merged.items() if k.startswith(("train_", "val_"))})
        epochs.append(row)

    imbalance = slowest[measured] / fastest[measured] if len(measured) else np.zeros(0)
    run_s = float(np.nanmax(merged["t_eval_end"])) if n else None
    run_training_s = float(np.nanmax(merged["t_eval_end_training"])) if n else None
    ttq_s = float(np.nanmax(merged["t_eval_end"][:, ttq_at])) if ttq_at is not None else None
    ttq_training_s = (float(np.nanmax(merged["t_eval_end_training"][:, ttq_at]))
                      if ttq_at is not None else None)
    system = run_cfg.get("system", {})
    if not resumed:
        energy = summarise_energy(cfg, traces, run_s, ttq_s)
        ttq_node_hours = (scoring.node_hours(cfg["dist"]["nodes"], ttq_s)
                          if ttq_s is not None else None)
    else:
        # Each segment over its own recorded run; to quality: whole segments before the one
        # that reached the target, and that one up to the quality point (its own clock).
        q_segment = int(merged["segment"][ttq_at]) if ttq_at is not None else None
        parts, seconds_to_quality = [], []
        for seg in segments:
            own_ttq = None
            if q_segment is not None and seg.index < q_segment:
                own_ttq = seg.energy_end_s
            elif seg.index == q_segment:
                own_ttq = ttq_s - ((seg.wall_start or 0.0) - (segments[0].wall_start or 0.0))
            if own_ttq is not None:
                seconds_to_quality.append((int(seg.record["dist"]["nodes"]), own_ttq))
            parts.append((seg.index, summarise_energy(seg.record, seg.traces, seg.energy_end_s,
                                                      own_ttq)))
        energy = combine_energy(parts)
        total_s = sum(seg.energy_end_s for seg in segments)
        if energy["joules"] is not None and total_s > 0:
            energy["average_power_w"] = energy["joules"] / total_s
        ttq_node_hours = (sum(scoring.node_hours(nodes, s) for nodes, s in seconds_to_quality)
                          if ttq_s is not None else None)
    valid = (scoring.valid_flops(flops_per_s, best, q["target"], q["vflops_exponent"],
                                 q["higher_is_better"])
             if flops_per_s is not None and best is not None and best > 0 else None)
    ttq_definition = ("seconds from run_start (after initialisation and data staging, all ranks "
                      "past a barrier) to the end of the first evaluation reaching the target")
    training_definition = "as time_to_quality_s: the run was not resumed"
    mlperf_reason = "not judged: ai500 does not check MLPerf's rules"
    if resumed:
        ttq_definition = ("MLPerf clock: wall-clock seconds from the first segment's run_start to "
                          "the end of the first evaluation reaching the target, through every "
                          "interruption (lost work, the gap, re-initialisation); not a valid "
                          "MLPerf result: the run was resumed from a checkpoint")
        training_definition = ("training time: the sum over the segments that made the final "
                               "model of their time from run_start to the checkpoint the next "
                               "segment resumed from, then the last segment's time to the quality "
                               "point; initialisation, gaps and work lost after a checkpoint "
                               "excluded")
        mlperf_reason = ("resumed from a checkpoint: MLPerf times one uninterrupted run, so "
                         "time_to_quality_s (its clock, which never pauses) is not a valid result")
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
        "missing_or_failed_ranks": rank_problems,
        "lineage_problems": lineage_problems,
        "resumed": resumed,
        "segments": describe(segments, chain),
        "mlperf_valid": False if resumed else None,
        "mlperf_valid_reason": mlperf_reason,
        "quality": {
            "metric": q["metric"], "target": q["target"],
            "higher_is_better": q["higher_is_better"],
            "reached": ttq_epoch is not None, "best": best,
            "final": _finite(metric[-1]) if metric is not None and len(metric) else None,
        },
        "time_to_quality_s": ttq_s,
        "time_to_quality_epoch": ttq_epoch,
        "time_to_quality_definition": ttq_definition,
        "time_to_quality_training_s": ttq_training_s,
        "time_to_quality_training_definition": training_definition,
        "init_s": max(init) if init else None,
        "init_definition": "process start to run_start, slowest rank (imports, data staging, "
        "model build, FLOP count)" + ("; the first segment's (each segment's is in segments)"
                                      if resumed else ""),
        "run_s": run_s,
        "run_training_s": run_training_s,
        "throughput": {
            "samples_per_s": throughput,
            "per_rank_samples_per_s": per_rank,
            "epochs_measured": [int(merged["epoch"][e]) for e in measured],
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
        "cost": cost_summary(ttq_node_hours, system.get("cost", {}), resumed),
        "load_imbalance": {
            "median": float(np.median(imbalance)) if len(imbalance) else None,
            "max": float(np.max(imbalance)) if len(imbalance) else None,
            "definition": "slowest / fastest rank's training time per measured epoch",
        },
        "checkpoints": checkpoint_stats(segments),
        "time_accounting": {
            "to_quality": account_until(merged, per_epoch, ttq_at) if ttq_at is not None else None,
            "run": account_until(merged, per_epoch, n - 1) if n else None,
            "definition": ACCOUNTING_DEFINITION,
        },
        "epochs": epochs,
    }


def checkpoint_stats(segments: list[Segment]) -> dict[str, Any] | None:
    """What rank 0 recorded about the checkpoints it wrote (none: None)."""
    rows = [t.groups["checkpoints"] for seg in segments for r, t in seg.traces.items()
            if r == 0 and "checkpoints" in t.groups]
    if not rows:
        return None
    seconds = np.concatenate([c["t_end"] - c["t_start"] for c in rows])
    return {"written": len(seconds), "bytes_last": float(rows[-1]["bytes"][-1]),
            "write_s_mean": float(seconds.mean()), "write_s_max": float(seconds.max()),
            "definition": "rank 0's wall time from the start of a checkpoint to its manifest "
            "(every rank's share staged, synced, renamed into place; barriers included)"}


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


def _summary_status(run_dir: Path) -> str | None:
    """The status of the summary.json already in run_dir, or None (none, or unreadable)."""
    try:
        status = json.loads((Path(run_dir) / "summary.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None
    return status if isinstance(status, str) else None


def describe_failure(run_dir: Path, summary: dict) -> str:
    """Why a summary says failed, in one line: the lowest rank's problem (which names its file,
    or is said of the run directory) and how many ranks have one."""
    problems = summary["missing_or_failed_ranks"]
    if not problems:
        if summary.get("kind") == "micro":
            return (f"{run_dir}: {summary['kernels_completed']} of {summary['kernels_expected']} "
                    "kernel rows completed")
        return f"{run_dir}: {summary['epochs_completed']} epochs completed"
    first = min(problems, key=int)
    why = problems[first]
    line = why if why.startswith(str(run_dir)) else f"{run_dir}: rank {first}: {why}"
    return line + (f" (and {len(problems) - 1} more rank(s))" if len(problems) > 1 else "")


def aggregate(run_dir: Path) -> dict:
    """Merge a run directory's traces and write its summary files atomically; returns the summary.

    Never replaces a summary of status ok with a failed one (a trace damaged or removed since):
    that raises DataError and leaves summary.json, summary.h5 and mllog.txt as they are."""
    run_dir = Path(run_dir)
    cfg, traces, problems = load_run(run_dir)
    if cfg.get("kind") == "micro":
        from ai500.micro import summary as micro_summary

        summary = micro_summary.summarise(cfg, traces, problems)
        arrays = micro_summary.merged_arrays(traces)
    else:
        segments = load_segments(run_dir, Segment(0, cfg, traces, problems),
                                 lambda path, name: load_run(path, name, require_traces=False))
        summary = summarise(cfg, traces, problems, segments)
        arrays = join(lineage(segments))[0] if summary["resumed"] else _single_segment(traces)
    if summary["status"] != "ok" and _summary_status(run_dir) == "ok":
        raise DataError(f"{describe_failure(run_dir, summary)}; summary.json (status ok) kept, "
                        "not replaced by a failed one")
    write_summary(run_dir, summary, arrays)
    # mllog.txt comes from the lowest rank's trace that reads; only where that is a usable one.
    if min(trace_files(run_dir)) in traces:
        from ai500.mllog import write_mllog

        # A resumed run's epochs come from several segments: rank 0's row of the joined arrays.
        epochs = ({k: v[0] if np.ndim(v) == 2 else v for k, v in arrays.items()}
                  if summary.get("resumed") else None)
        write_mllog(run_dir, epochs=epochs)
    return summary


def _fmt(value: float | None, unit: str = "", digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 1e6:
        return f"{value:.3e}{unit}"
    return f"{value:.{digits}g}{unit}"


def cost_summary(node_hours: float | None, cost: dict, resumed: bool) -> dict:
    """The summary's cost section: cost to quality, or null with the reason (no price set: the
    default, since a made-up price would read as a real cost; or no time to quality)."""
    price = cost.get("price_per_node_hour")
    value = scoring.cost_to_quality(node_hours, price)
    reason = (None if value is not None else
              "no price_per_node_hour set in system.yaml (a site sets one with --system FILE.yaml)"
              if price is None else "the quality target was not reached")
    return {
        "node_hours_to_quality": node_hours,
        "price_per_node_hour": price,
        "currency": cost.get("currency"),
        "cost_to_quality": value,
        "reason": reason,
        "definition": "nodes x time to quality (hours) x price per node-hour (system config)"
        + ("; a resumed run adds each segment's nodes x its run time up to the quality "
           "point (gaps between segments excluded)" if resumed else ""),
    }


def cost_line(c: dict) -> str:
    """One table line for a cost summary: the cost, or n/a with the reason."""
    hours = f"{_fmt(c['node_hours_to_quality'])} node-hours"
    if c["cost_to_quality"] is None:
        return (f"  cost           n/a, {hours} to quality: "
                f"{c.get('reason') or 'no price or no time to quality'}")
    return f"  cost           {_fmt(c['cost_to_quality'])} {c['currency'] or ''} to quality ({hours})"


def energy_line(e: dict) -> str:
    """One table line for an energy summary, always naming its method."""
    if e["joules"] is None:
        return f"  energy         n/a [{e['method']}] ({e.get('reason', '')})"
    return (f"  energy         {_fmt(e['joules'], ' J')} [{e['method']}], to quality "
            f"{_fmt(e['joules_to_quality'], ' J')}, average {_fmt(e['average_power_w'], ' W')}, "
            f"peak node {_fmt(e['peak_node_power_w'], ' W')}")


def resume_lines(s: dict) -> list[str]:
    """The table's lines for a resumed run: its training time to quality and its segments."""
    lines = [(f"                  {_fmt(s['time_to_quality_training_s'], ' s')} training time "
             "(the sum of the segments' time from run_start; initialisation, gaps and work "
             "lost after a checkpoint excluded)")]
    for g in s["segments"]:
        epochs = "-".join(map(str, sorted(set(g["epochs_recorded"])))) or "none"
        origin = ("" if g["resumed_from_epoch"] is None else
                  f", resumed from the checkpoint of epoch {g['resumed_from_epoch']}")
        branch = "" if g["in_lineage"] else " (not in the final model's lineage)"
        lines.append(f"  segment {g['segment']:<6} {g['ranks']} rank(s), epochs {epochs}{origin}, "
                     f"traces {g['status']}{branch}")
    return lines


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
        + (f" (epoch {s['time_to_quality_epoch']})" if q["reached"] else "")
        + (" on the MLPerf clock (wall time from the first start, interruptions included: not "
           "a valid MLPerf result)" if s["resumed"] else ""),
        *(resume_lines(s) if s["resumed"] else []),
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
        cost_line(s["cost"]),
        (f"  load imbalance {_fmt(s['load_imbalance']['median'])} median, "
        f"{_fmt(s['load_imbalance']['max'])} max (slowest/fastest rank epoch time)"),
    ]
    for window, label in (("to_quality", "to quality"), ("run", "whole run")):
        a = s["time_accounting"][window]
        if a is not None:
            share = "n/a" if a["other_share"] is None else f"{100 * a['other_share']:.2f} %"
            lines.append(f"  time {label:<10} {_fmt(a['total_s'], ' s')} = training "
                         f"{_fmt(a['training_s'], ' s')} + evaluation {_fmt(a['evaluation_s'], ' s')}"
                         f" + checkpoint {_fmt(a['checkpoint_s'], ' s')} + other "
                         f"{_fmt(a['other_s'], ' s')} ({share})")
    if s.get("checkpoints"):
        c = s["checkpoints"]
        lines.append(f"  checkpoints    {c['written']} written, last {_fmt(c['bytes_last'], ' B')}, "
                     f"write {_fmt(c['write_s_mean'], ' s')} mean, {_fmt(c['write_s_max'], ' s')} max")
    for rank, why in s["missing_or_failed_ranks"].items():
        lines.append(f"  rank {rank}: {why}")
    lines.extend(f"  {why}" for why in s.get("lineage_problems", []))
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
    if summary["status"] != "ok":
        print(f"ai500: error: {describe_failure(Path(args.run_dir), summary)} "
              "(summary.json says failed)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
