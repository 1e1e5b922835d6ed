
import h5py
import numpy as np
import pytest

from ai500 import trace as tracelib
from ai500.errors import DataError


def _writer(tmp_path, rank=0):
    return tracelib.TraceWriter(tmp_path / tracelib.trace_name(rank),
                                {"run_id": "abc", "rank": rank, "config": {"a": [1, 2]}})


def test_round_trip_after_each_flush(tmp_path):
    w = _writer(tmp_path)
    w.add_epoch({"epoch": 0, "t_start": 0.0, "t_train_end": 1.5, "train_loss": 0.7})
    w.add_step(0.0, 0.1, 32)
    w.add_system(1.5, 99.0, 1e9)
    w.flush()
    t = tracelib.read_trace(w.path)
    assert t.attrs["status"] == "running" and t.attrs["config"] == {"a": [1, 2]}
    assert t.epochs["t_train_end"].tolist() == [1.5]
    w.add_epoch({"epoch": 1, "t_start": 1.5, "t_train_end": 2.5, "train_loss": 0.6})
    w.close("ok")
    t = tracelib.read_trace(w.path)
    assert t.attrs["status"] == "ok"
    assert t.epochs["train_loss"].tolist() == [0.7, 0.6]
    assert t.groups["steps"]["samples"].tolist() == [32]
    assert not list(tmp_path.glob("*.tmp"))


def test_epoch_fields_must_not_change(tmp_path):
    w = _writer(tmp_path)
    w.add_epoch({"epoch": 0, "a": 1})
    with pytest.raises(ValueError):
        w.add_epoch({"epoch": 1, "b": 1})


def test_step_sample_stays_bounded_and_even(tmp_path):
    w = _writer(tmp_path)
    n = 3 * tracelib.MAX_STEP_ROWS + 17
    for i in range(n):
        w.add_step(float(i), i + 0.5, 8)
    starts = np.array(w.steps["t_start"])
    assert len(starts) < tracelib.MAX_STEP_ROWS
    assert starts[0] == 0.0
    strides = np.unique(np.diff(starts))
    assert len(strides) == 1 and strides[0] == 4.0  # one even stride after two doublings


def test_a_killed_writer_leaves_the_last_flushed_file(tmp_path):
    w = _writer(tmp_path)
    w.add_epoch({"epoch": 0, "x": 1.0})
    w.flush()
    # A crash while writing the next version leaves only a stray temporary file behind.
    (tmp_path / (w.path.name + ".tmp")).write_bytes(b"\x89HDF partial")
    assert tracelib.read_trace(w.path).epochs["x"].tolist() == [1.0]


def test_unreadable_and_foreign_files_are_clear_errors(tmp_path):
    bad = tmp_path / "trace-rank00000.h5"
    bad.write_bytes(b"not hdf5 at all")
    with pytest.raises(DataError, match="not a readable HDF5 trace"):
        tracelib.read_trace(bad)
    w = _writer(tmp_path, rank=1)
    w.flush()
    data = w.path.read_bytes()
    w.path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="trace-rank00001.h5"):
        tracelib.read_trace(w.path)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(DataError, match="schema version 99"):
        tracelib.read_trace(other)


def test_only_the_groups_and_attributes_asked_for_are_read(tmp_path):
    w = _writer(tmp_path)
    w.add_epoch({"epoch": 0, "t_start": 0.0})
    w.add_step(0.0, 0.1, 32)
    w.close("ok")
    t = tracelib.read_trace(w.path, groups=("epochs", "energy"), skip_attrs=("config",))
    assert set(t.groups) == {"epochs"} and "config" not in t.attrs
    assert t.attrs["status"] == "ok" and t.epochs["t_start"].tolist() == [0.0]
