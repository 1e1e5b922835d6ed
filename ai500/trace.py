"""Per-rank HDF5 trace: written only by its own rank, readable after every flushed epoch.

Layout (schema version SCHEMA_VERSION):
  attributes  schema_version, run_id, benchmark, rank, size, local_rank, local_size, host, pid,
              config (JSON), wall_start (Unix seconds at run_start), init_seconds, status,
              hdf5_file_locking (how HDF5 locked this file: default, the user's
              HDF5_USE_FILE_LOCKING, or FALSE set by ai500 where the file system cannot lock)
  epochs/     one 1-D column per field: epoch, t_ready (this rank reached the barrier that
              starts the epoch), t_start (past it), t_train_end, t_eval_start, t_eval_end,
              samples, input_crc32 (this rank's training input of the epoch, fingerprinted:
              ai500.data.pipeline), train_<metric>..., <eval metric>...
  checkpoints/  rank 0 only: epoch, t_start, t_end, bytes of each checkpoint written
  steps/      t_start, t_end, samples — a bounded sample (every stride-th row; the stride doubles
              whenever the buffer fills, so long runs keep an even sample in bounded memory); a
              row is one step on a CPU, a window of `step_window` steps (attribute) on a GPU,
              where the driver waits for the device only at the end of each window
  system/     t, cpu_percent, rss_bytes
  other groups a benchmark or meter adds (energy/, kernels/ ...), same column layout; text
  columns are stored as UTF-8 strings, numbers as float64
Times are seconds of time.perf_counter() relative to run_start, which every rank takes right
after one barrier; wall_start anchors them to the wall clock.

Why the file is rewritten whole at every flush (to a temporary name, then renamed): HDF5 gives no
crash consistency for a file modified in place, so a rank killed in the middle of an append can
leave an unreadable file. A trace is small, so rewriting it is cheap, and the rename is atomic:
a killed rank always leaves the trace as of its last completed epoch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ai500.errors import HDF5_ERRORS, DataError, first_line
from ai500.hdf5 import file_locking, open_h5

SCHEMA_VERSION = 2  # 2: epochs gained t_ready and t_eval_start (time accounting)
MAX_STEP_ROWS = 4096

def trace_name(rank: int) -> str:
    return f"trace-rank{rank:05d}.h5"


def _fixed_text(values: list[str]) -> np.ndarray:
    """UTF-8 text as fixed-length HDF5 strings (stored in place, not in the global heap)."""
    encoded = [v.encode() for v in values]
    return np.array(encoded, dtype=h5py.string_dtype("utf-8", max(1, *map(len, encoded))))


class TraceWriter:
    """Collects one rank's records in memory and rewrites its trace file at each flush()."""

    def __init__(self, path: Path, attrs: dict[str, Any]):
        self.path = Path(path)
        self.attrs = {"schema_version": SCHEMA_VERSION, "status": "running", **attrs,
                      "hdf5_file_locking": file_locking(self.path.parent)}
        self.groups: dict[str, dict[str, list]] = {
            "epochs": {},
            "steps": {"t_start": [], "t_end": [], "samples": []},
            "system": {"t": [], "cpu_percent": [], "rss_bytes": []},
        }
        self._step_stride = 1
        self._step_count = 0
        self._before_flush: list[Callable[[TraceWriter], None]] = []

    def before_flush(self, hook: Callable[[TraceWriter], None]) -> None:
        """Run `hook(self)` at every flush, e.g. to copy a background sampler's data in."""
        self._before_flush.append(hook)

    @property
    def epochs(self) -> dict[str, list]:
        return self.groups["epochs"]

    @property
    def steps(self) -> dict[str, list]:
        return self.groups["steps"]

    def add_row(self, group: str, row: dict[str, float | str]) -> None:
        """Append one record to a group of columns; every row of a group has the same fields."""
        columns = self.groups.setdefault(group, {})
        if columns and set(row) != set(columns):
            raise ValueError(f"{group} fields changed: {sorted(row)} vs {sorted(columns)}")
        for key, value in row.items():
            columns.setdefault(key, []).append(value if isinstance(value, str) else float(value))

    def add_epoch(self, row: dict[str, float]) -> None:
        """Append one epoch's record."""
        self.add_row("epochs", row)

    def add_step(self, t_start: float, t_end: float, samples: int) -> None:
        """Record a step's start/end (seconds) and samples, keeping a bounded, even sample."""
        self._step_count += 1
        if (self._step_count - 1) % self._step_stride:
            return
        for key, value in (("t_start", t_start), ("t_end", t_end), ("samples", samples)):
            self.steps[key].append(float(value))
        if len(self.steps["t_start"]) >= MAX_STEP_ROWS:
            for key in self.steps:
                self.steps[key] = self.steps[key][::2]
            self._step_stride *= 2

    def add_system(self, t: float, cpu_percent: float, rss_bytes: int) -> None:
        self.add_row("system", {"t": t, "cpu_percent": cpu_percent, "rss_bytes": rss_bytes})

    def set_group(self, name: str, columns: dict[str, np.ndarray]) -> None:
        """Store a whole group of columns (for example energy samples), replacing earlier ones."""
        self.groups[name] = {k: list(np.asarray(v)) for k, v in columns.items()}

    def flush(self) -> None:
        """Write everything so far to the trace file atomically."""
        for hook in self._before_flush:
            hook(self)
        tmp = self.path.with_name(self.path.name + ".tmp")
        # The newest file format checksums every piece of metadata, fletcher32 every column's
        # values, and text is stored in place: a damaged trace then reads as a clean error.
        # (Older formats let damaged metadata or a damaged global heap, where variable-length
        # text lives, hang or crash libhdf5: seen in tests/test_fuzz.py.)
        with open_h5(tmp, "w", libver="latest") as f:
            for key, value in self.attrs.items():
                if isinstance(value, (dict, list)):
                    value = json.dumps(value)
                f.attrs[key] = _fixed_text([value])[0] if isinstance(value, str) else value
            for name, columns in self.groups.items():
                group = f.create_group(name)
                for key, values in columns.items():
                    data = (_fixed_text(values) if values and isinstance(values[0], str)
                            else np.asarray(values, dtype=np.float64))
                    group.create_dataset(key, data=data, fletcher32=bool(len(data)))
        os.replace(tmp, self.path)

    def close(self, status: str) -> None:
        """Mark the trace finished ('ok' or 'failed') and flush it."""
        self.attrs["status"] = status
        self.flush()


STATUSES = ("running", "ok", "failed")
JSON_ATTRS = ("config", "threads", "energy_meters")  # dicts TraceWriter stores as JSON text
# Attributes that must have this type where present (float: a finite int or float).
ATTR_TYPES: dict[str, type] = {"run_id": str, "benchmark": str, "host": str, "status": str,
                               "rank": int, "size": int, "local_rank": int, "local_size": int,
                               "pid": int, "segment": int, "wall_start": float,
                               "init_seconds": float}


@dataclass
class Trace:
    """One rank's trace as read back: attributes and column groups."""

    path: Path
    attrs: dict[str, Any]
    groups: dict[str, dict[str, np.ndarray]]

    @property
    def epochs(self) -> dict[str, np.ndarray]:
        return self.groups.get("epochs", {})


def _attr(value: Any) -> Any:
    """An attribute as a Python value; text written fixed-length reads back as UTF-8 bytes."""
    value = value.item() if isinstance(value, np.generic) else value
    return value.decode("utf-8") if isinstance(value, bytes) else value


# Columns and attributes are read through h5py's low-level API: its high-level objects cost more
# than a short column's bytes (0.3 ms per column, 2.2x the whole read of a trace; measured with
# benchmarks/scale_model.py's traces), which rank 0 pays for every column of every rank.

def _column(path: Path, name: str, ds: Any) -> np.ndarray:
    """A 1-D column of numbers or UTF-8 text (an h5py low-level object); DataError for anything
    else."""
    if not isinstance(ds, h5py.h5d.DatasetID) or len(ds.shape or ()) != 1:
        raise DataError(f"{path}: {name} is not a 1-D column")
    if h5py.check_string_dtype(ds.dtype) is not None:
        return np.asarray(h5py.Dataset(ds).asstr()[()], dtype=object)
    if ds.dtype.kind not in "fiu":
        raise DataError(f"{path}: {name} has dtype {ds.dtype}, expected numbers or text")
    values = np.empty(ds.shape, ds.dtype)
    if len(values):
        ds.read(h5py.h5s.ALL, h5py.h5s.ALL, values)
    return values


def _read_attr(loc: Any, name: str) -> Any:
    """Attribute `name` of a low-level object, as a Python value (see _attr)."""
    attr = h5py.h5a.open(loc, name.encode())
    if attr.shape is None:  # an empty (null dataspace) attribute
        return None
    value = np.empty(attr.shape, attr.dtype)
    attr.read(value)
    return _attr(value[()] if value.ndim == 0 else value)


def _attr_names(loc: Any) -> list[str]:
    """The names of a low-level object's attributes."""
    names: list[str] = []
    h5py.h5a.iterate(loc, lambda name, *_: names.append(name.decode()))
    return names


def _check_attrs(path: Path, attrs: dict[str, Any]) -> None:
    """DataError unless the schema version is ours and the known attributes have their types."""
    version = attrs.get("schema_version")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise DataError(f"{path}: schema version {version!r}, expected {SCHEMA_VERSION}")
    for key, kind in ATTR_TYPES.items():
        if key not in attrs:
            continue
        value = attrs[key]
        good = (type(value) in (int, float) and np.isfinite(value) if kind is float
                else type(value) is kind)
        if not good:
            raise DataError(f"{path}: attribute {key} is {value!r}, expected {kind.__name__}")
    if "status" in attrs and attrs["status"] not in STATUSES:
        raise DataError(f"{path}: status {attrs['status']!r}, expected one of {', '.join(STATUSES)}")
    for key in JSON_ATTRS:
        if key in attrs:
            try:
                attrs[key] = json.loads(attrs[key])
            except (TypeError, ValueError):
                attrs[key] = None
            if not isinstance(attrs[key], dict):
                raise DataError(f"{path}: attribute {key} is not a JSON object")


def read_trace(path: Path, groups: Collection[str] | None = None,
               skip_attrs: Collection[str] = ()) -> Trace:
    """Read and check a trace file: our schema version, attributes of the right types, groups of
    1-D columns of one length each. DataError naming the file for anything else: missing,
    truncated, corrupt, another schema, another layout.

    `groups`: read only these groups, where present (None: all); `skip_attrs`: attributes not to
    read. The aggregator reads only what a summary needs: at thousands of ranks, each column and
    attribute read costs more than its bytes (HDF5 object lookups), and each parsed copy of the
    run's config holds more memory than the rank's epochs."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        with open_h5(path, "r") as f:
            root = f.id
            found = {k: _read_attr(root, k) for k in _attr_names(root) if k not in skip_attrs}
            _check_attrs(path, found)
            columns: dict[str, dict[str, np.ndarray]] = {}
            present = [n.decode() for n in h5py.h5g.open(root, b"/")]
            for name in present if groups is None else [g for g in groups if g in present]:
                group = h5py.h5o.open(root, name.encode())
                if not isinstance(group, h5py.h5g.GroupID):
                    raise DataError(f"{path}: {name} is not a group of columns")
                columns[name] = {k.decode(): _column(path, f"{name}/{k.decode()}",
                                                     h5py.h5o.open(group, k)) for k in group}
    except HDF5_ERRORS as exc:
        raise DataError(f"{path}: not a readable HDF5 trace ({first_line(exc)})") from None
    for name, group_columns in columns.items():
        lengths = {len(v) for v in group_columns.values()}
        if len(lengths) > 1:
            raise DataError(f"{path}: {name} columns have different lengths {sorted(lengths)}")
    return Trace(path=path, attrs=found, groups=columns)
