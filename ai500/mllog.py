"""MLPerf-format logging: one `:::MLLOG {json}` line per record, so MLPerf's tools read our runs.

Each record is a JSON object with, in this order, `namespace`, `time_ms` (milliseconds since the Unix
epoch), `event_type` (INTERVAL_START, INTERVAL_END or POINT_IN_TIME), `key`, `value` and `metadata`
(`file` and `lineno` of the logging call, then any metadata given). Three verbs: `start` and `end`
bracket an interval (init, run, epoch, eval), `event` records a point in time. Keys live here, once.

Times: MLPerf's own logger stamps whole milliseconds from the wall clock. Ours come from one wall-clock
anchor plus a monotonic high-resolution clock, kept to the microsecond (a float `time_ms`, which
MLPerf's parser reads); the clock is injectable, so tests compare exact output.

`write_mllog(run_dir)` builds `mllog.txt` for a finished run from config.json, summary.json and the
rank-0 trace: init_start (process start) → init_stop = run_start (after the barrier, the trace's
`wall_start`) → per epoch epoch_start/epoch_stop, eval_start/eval_stop and eval_accuracy (the
benchmark's quality metric; its name in the metadata) → run_stop with status `success` when the
target was reached (for a micro benchmark, which has no target: when the run completed), `aborted`
otherwise. As in MLPerf, the run stops at the target: run_stop is at
the summary's time to quality (slowest rank), and epochs trained after it (--no-stop-at-target) are
not logged. epoch_num counts from 1 as in MLPerf's references (trace epoch + 1).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ai500.errors import DataError
from ai500.system import platform_name, read_system

PREFIX = ":::MLLOG "

# Event types
INTERVAL_START = "INTERVAL_START"
INTERVAL_END = "INTERVAL_END"
POINT_IN_TIME = "POINT_IN_TIME"

# Keys (MLPerf names)
SUBMISSION_BENCHMARK = "submission_benchmark"
SUBMISSION_ORG = "submission_org"
SUBMISSION_DIVISION = "submission_division"
SUBMISSION_PLATFORM = "submission_platform"
SUBMISSION_STATUS = "submission_status"
INIT_START = "init_start"
INIT_STOP = "init_stop"
RUN_START = "run_start"
RUN_STOP = "run_stop"
EPOCH_START = "epoch_start"
EPOCH_STOP = "epoch_stop"
EVAL_START = "eval_start"
EVAL_STOP = "eval_stop"
EVAL_ACCURACY = "eval_accuracy"
GLOBAL_BATCH_SIZE = "global_batch_size"
NUMBER_OF_NODES = "number_of_nodes"
ACCELERATORS_PER_NODE = "accelerators_per_node"
PRECISION = "precision"  # ours (fp32, bf16, fp16), not an MLPerf key: MLPerf leaves it to the code
SEED = "seed"
TRAIN_SAMPLES = "train_samples"
EVAL_SAMPLES = "eval_samples"
CACHE_CLEAR = "cache_clear"
# Where each training workload's describe() (config.json "workload") gives the samples an epoch
# trains on over all ranks (resnet events, dcgan maps, faster_rcnn fields).
TRAIN_SAMPLE_KEYS = ("train_events_used_per_epoch", "train_maps_used_per_epoch",
                     "train_fields_used_per_epoch")
# The epoch column in which each training workload reports how many validation samples its
# evaluation scored over all ranks (resnet, faster_rcnn, dcgan's generated maps).
EVAL_SAMPLE_COLUMNS = ("val_events", "val_fields", "val_generated_maps")

# Metadata keys and values
EPOCH_NUM = "epoch_num"
STATUS = "status"
SUCCESS = "success"
ABORTED = "aborted"

# Submission keys' defaults; AI500_SUBMISSION_ORG etc. or write_mllog(submission=...) override them.
# Division "open": ai500 is not an MLPerf closed-division benchmark. Status "research".
SUBMISSION_DEFAULTS = {SUBMISSION_ORG: "ai500", SUBMISSION_DIVISION: "open",
                       SUBMISSION_STATUS: "research", SUBMISSION_PLATFORM: None}
MLLOG_NAME = "mllog.txt"


def anchored_clock() -> Callable[[], float]:
    """Milliseconds since the Unix epoch: one wall-clock reading, then perf_counter offsets."""
    wall, start = time.time(), time.perf_counter()
    return lambda: (wall + (time.perf_counter() - start)) * 1e3


def _clean(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, non-finite floats to null."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class MLLogger:
    """Writes `:::MLLOG` lines to `sink` (a callable taking one line, without newline)."""

    def __init__(self, sink: Callable[[str], Any] | None = None,
                 clock: Callable[[], float] | None = None, namespace: str = ""):
        self.sink = sink or (lambda line: print(line, flush=True))
        self.clock = clock or anchored_clock()
        self.namespace = namespace

    def start(self, key: str, value: Any = None, metadata: dict | None = None,
              time_ms: float | None = None) -> str:
        """The start of an interval (e.g. init_start, epoch_start)."""
        return self._log(INTERVAL_START, key, value, metadata, time_ms)

    def end(self, key: str, value: Any = None, metadata: dict | None = None,
            time_ms: float | None = None) -> str:
        """The end of an interval (e.g. run_stop with metadata status)."""
        return self._log(INTERVAL_END, key, value, metadata, time_ms)

    def event(self, key: str, value: Any = None, metadata: dict | None = None,
              time_ms: float | None = None) -> str:
        """A point in time (a setting such as global_batch_size, or eval_accuracy)."""
        return self._log(POINT_IN_TIME, key, value, metadata, time_ms)

    def _log(self, event_type: str, key: str, value: Any, metadata: dict | None,
             time_ms: float | None) -> str:
        caller = sys._getframe(2)  # the start/end/event call site
        record = {
            "namespace": self.namespace,
            "time_ms": round(float(self.clock() if time_ms is None else time_ms), 3),
            "event_type": event_type,
            "key": key,
            "value": _clean(value),
            "metadata": {"file": os.path.basename(caller.f_code.co_filename),
                         "lineno": caller.f_lineno, **_clean(metadata or {})},
        }
        line = PREFIX + json.dumps(record, allow_nan=False)
        self.sink(line)
        return line


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: missing (write_mllog needs a finished run directory)") from None
    except ValueError as exc:
        raise DataError(f"{path}: malformed ({exc})") from None


def _first_trace(run_dir: Path, size: int):
    """Rank 0's trace, or the lowest readable rank's where rank 0 left none."""
    from ai500.trace import read_trace, trace_name

    problems = []
    for rank in range(size):
        try:
            return read_trace(run_dir / trace_name(rank))
        except DataError as exc:
            problems.append(str(exc))
    raise DataError(f"{run_dir}: no readable trace ({'; '.join(problems[:2])})")


def accelerators_per_node(cfg: dict) -> int:
    """GPUs the job computes on per node (the most on any node), as the run recorded them; 0
    for a CPU run."""
    dist = cfg.get("dist") or {}
    if dist.get("gpus_per_node") is not None:
        return int(dist["gpus_per_node"])
    device = str((cfg.get("workload") or {}).get("device_rank0") or "")
    if "gpu" in device.lower():  # one GPU per rank
        return max(1, int(dist.get("size", 1)) // max(1, int(dist.get("nodes", 1))))
    return 0


def write_mllog(run_dir: Path, submission: dict | None = None,
                epochs: dict[str, Any] | None = None) -> Path:
    """Write RUN_DIR/mllog.txt from a finished run directory and return its path. `epochs`:
    rank 0's epoch columns in seconds from the first run_start, for a resumed run whose epochs
    span segments (ai500/aggregate/segments.py); by default the rank-0 trace's."""
    run_dir = Path(run_dir)
    cfg = _read_json(run_dir / "config.json")
    summary = _read_json(run_dir / "summary.json")
    dist = cfg.get("dist") or {}
    size, nodes = int(dist.get("size", 1)), int(dist.get("nodes", 1))
    trace = _first_trace(run_dir, size)
    wall = float(trace.attrs["wall_start"])
    init_s = float(trace.attrs.get("init_seconds") or 0.0)
    ms = lambda offset: (wall + offset) * 1e3  # seconds from run_start -> time_ms

    sub = {**SUBMISSION_DEFAULTS}
    for key in sub:
        env = os.environ.get("AI500_" + key.upper())
        if env:
            sub[key] = env
    sub.update(submission or {})
    if not sub[SUBMISSION_PLATFORM]:
        described = read_system(run_dir)
        hosts = dist.get("hosts") or ["unknown"]
        # From system.json (ai500/system.py); runs from before it existed name their host.
        sub[SUBMISSION_PLATFORM] = (platform_name(described) if described
                                    else f"{nodes}x{hosts[0]}")

    lines: list[str] = []
    log = MLLogger(lines.append)
    t_init = ms(-init_s)
    log.start(INIT_START, time_ms=t_init)
    log.event(SUBMISSION_BENCHMARK, summary.get("benchmark"), time_ms=t_init)
    for key in (SUBMISSION_ORG, SUBMISSION_DIVISION, SUBMISSION_PLATFORM, SUBMISSION_STATUS):
        log.event(key, sub[key], time_ms=t_init)
    log.event(SEED, summary.get("seed", (cfg.get("config") or {}).get("seed")), time_ms=t_init)
    if summary.get("global_batch_size") is not None:
        log.event(GLOBAL_BATCH_SIZE, summary["global_batch_size"], time_ms=t_init)
    log.event(NUMBER_OF_NODES, nodes, time_ms=t_init)
    log.event(ACCELERATORS_PER_NODE, accelerators_per_node(cfg),
              {"ranks_per_node": size // max(1, nodes)}, time_ms=t_init)
    run_cfg = cfg.get("config") or {}
    log.event(PRECISION, summary.get("precision") or run_cfg.get("precision") or "fp32",
              {"xla": bool(run_cfg.get("xla", False))}, time_ms=t_init)
    workload = cfg.get("workload") or {}
    used = next((k for k in TRAIN_SAMPLE_KEYS if workload.get(k) is not None), None)
    if used is not None:
        log.event(TRAIN_SAMPLES, workload[used], time_ms=t_init)
    epochs = trace.epochs if epochs is None else epochs
    counted = next((c for c in EVAL_SAMPLE_COLUMNS if len(epochs.get(c, []))), None)
    if counted is not None:
        log.event(EVAL_SAMPLES, int(epochs[counted][0]), {"column": counted}, time_ms=t_init)
    # MLPerf HPC asks whether caches were cleared before the run; ai500 does not drop the OS
    # page cache (it stages each rank's shard in memory before run_start), and says so.
    log.event(CACHE_CLEAR, False, {"note": "the OS page cache is not cleared; each rank's data "
                                           "shard is staged in memory before run_start"},
              time_ms=t_init)
    log.end(INIT_STOP, time_ms=ms(0.0))
    log.start(RUN_START, time_ms=ms(0.0))

    quality = summary.get("quality") or {}
    # A training run succeeds when it reaches its target; a micro benchmark (no target) when it
    # completes.
    reached = summary.get("status") == "ok" and (summary.get("kind") == "micro"
                                                  or bool(quality.get("reached")))
    metric = quality.get("metric")
    n = len(epochs.get("epoch", []))
    last = summary.get("time_to_quality_epoch") if reached else None
    for e in range(n if last is None else min(n, int(last) + 1)):
        meta = {EPOCH_NUM: e + 1}
        log.start(EPOCH_START, metadata=meta, time_ms=ms(epochs["t_start"][e]))
        log.end(EPOCH_STOP, metadata=meta, time_ms=ms(epochs["t_train_end"][e]))
        t_eval = epochs["t_eval_start"][e]
        log.start(EVAL_START, metadata=meta, time_ms=ms(t_eval))
        log.end(EVAL_STOP, metadata=meta, time_ms=ms(epochs["t_eval_end"][e]))
        if metric in epochs:
            log.event(EVAL_ACCURACY, float(epochs[metric][e]), {**meta, "metric": metric},
                      time_ms=ms(epochs["t_eval_end"][e]))
    if reached and summary.get("time_to_quality_s") is not None:
        t_stop = float(summary["time_to_quality_s"])
    else:
        ends = [float(epochs["t_eval_end"][-1])] if n else [0.0]
        t_stop = max(ends + [float(summary.get("run_s") or 0.0)])
    log.end(RUN_STOP, metadata={STATUS: SUCCESS if reached else ABORTED}, time_ms=ms(t_stop))

    path = run_dir / MLLOG_NAME
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path
