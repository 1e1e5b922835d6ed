"""Reading one run directory for its summary: config.json (or a segment's segment.json) checked
field by field, the trace files by rank, and each trace checked for what the summary needs.

A trace that cannot be used is a problem of its rank (the summary then says failed), never a
crash; a record or a trace that contradicts the run is a DataError naming its file.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ai500 import rundir
from ai500.errors import DataError
from ai500.micro.summary import TEXT_COLUMNS as KERNEL_TEXT
from ai500.trace import Trace, read_trace

TRACE_FILE = re.compile(r"trace-rank(\d+)\.h5$")
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

