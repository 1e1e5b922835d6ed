"""Reading one run directory for its summary: config.json (or a segment's segment.json) checked
field by field, the trace files by rank, and each trace checked for what the summary needs.

A trace that cannot be used is a problem of its rank (the summary then says failed), never a
crash; a record or a trace that contradicts the run is a DataError naming its file.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import re
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ai500 import rundir
from ai500.errors import DataError
from ai500.micro.summary import TEXT_COLUMNS as KERNEL_TEXT
from ai500.trace import Trace, read_trace

TRACE_FILE = re.compile(r"trace-rank(\d+)\.h5$")
# What a summary reads of each trace (ai500.trace.read_trace's selection): training epochs or
# micro kernels, node energy samples, rank 0's checkpoints and the attributes; never steps/ and
# system/ (the bulk of a trace) nor the copies of the run's config, threads and GPU that every
# trace repeats (config.json holds them). mllog.txt reads the lowest rank's trace whole.
SUMMARY_GROUPS = ("epochs", "kernels", "energy", "checkpoints")
SKIPPED_ATTRS = ("config", "threads", "gpu")
# Traces are read by a pool of processes from this many on (h5py serialises threads on one lock,
# so processes; a spawned worker costs about half a second to start, which fewer traces do not
# repay), in chunks of CHUNK traces per task.
PARALLEL_FROM = 256
CHUNK = 64
WORKERS_VAR = "AI500_AGGREGATE_WORKERS"
# Columns a trace must hold, by run kind, each finite: training epochs (times are seconds from
# run_start) and micro-benchmark kernel rows (text labels KERNEL_TEXT, then numbers).
EPOCH_COLUMNS = ("epoch", "t_ready", "t_start", "t_train_end", "t_eval_start", "t_eval_end",
                 "samples")
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


def _read_chunk(paths: list[Path]) -> list[Trace | str]:
    """Each trace read for the summary, or why it cannot be (a DataError's text)."""
    result: list[Trace | str] = []
    for path in paths:
        try:
            result.append(read_trace(path, SUMMARY_GROUPS, SKIPPED_ATTRS))
        except DataError as exc:
            result.append(str(exc))
    return result


def reader_count(traces: int, environ: dict[str, str] | None = None) -> int:
    """Processes that read `traces` trace files: AI500_AGGREGATE_WORKERS if set (1: this process
    alone), else one per PARALLEL_FROM traces, at most the cores this process may run on and 16
    (beyond that a parallel file system's metadata server, not the readers, is the limit)."""
    env = os.environ if environ is None else environ
    if env.get(WORKERS_VAR, "").strip():
        try:
            count = int(env[WORKERS_VAR])
            if count < 1:
                raise ValueError
        except ValueError:
            raise DataError(f"{WORKERS_VAR}={env[WORKERS_VAR]!r}: expected a whole number "
                            ">= 1") from None
        return count
    return max(1, min(len(os.sched_getaffinity(0)), 16, traces // PARALLEL_FROM))


def read_traces(paths: dict[int, Path], workers: int | None = None) -> dict[int, Trace | str]:
    """Every trace by rank, read for the summary (SUMMARY_GROUPS, without SKIPPED_ATTRS), or why
    it cannot be; in `workers` processes (default reader_count), each a fresh interpreter
    (spawned: the caller may be an MPI rank, which must not fork)."""
    ranks = sorted(paths)
    workers = reader_count(len(ranks)) if workers is None else workers
    chunks = [ranks[i:i + CHUNK] for i in range(0, len(ranks), CHUNK)]
    if workers <= 1 or len(chunks) <= 1:
        results = [_read_chunk([paths[r] for r in chunk]) for chunk in chunks]
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(workers, len(chunks)), mp_context=context) as pool:
            results = list(pool.map(_read_chunk, [[paths[r] for r in chunk] for chunk in chunks]))
    return {rank: item for chunk, items in zip(chunks, results) for rank, item in zip(chunk, items)}


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
    and may hold no usable trace (a resume that failed in its first epoch). The traces are read
    by read_traces (in parallel from PARALLEL_FROM of them)."""
    run_dir = Path(run_dir)
    source = run_dir / record_name
    cfg = rundir.read_run_json(run_dir, record_name, DataError)
    check_record(cfg, source)
    size, run_id, kind = cfg["dist"]["size"], cfg["run_id"], cfg.get("kind", "training")
    traces: dict[int, Trace] = {}
    problems: dict[int, str] = {}
    sizes: dict[int, int] = {}
    files = trace_files(run_dir)
    for rank, trace in sorted(read_traces(files).items()):
        path = files[rank]
        if isinstance(trace, str):
            problems[rank] = trace
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

