"""ai500.hdf5: every HDF5 file ai500 opens, for reading or writing (traces, HEP and Extreme
Weather datasets, the merged summary), survives a file system that cannot lock files."""

import errno
import os

import h5py
import numpy as np
import pytest

from ai500 import hdf5
from ai500 import trace as tracelib
from ai500.data import hep, weather, weather_synthetic

LOCK_ERROR = ("Unable to synchronously create file (unable to lock file, errno = {}, error "
              "message = 'Function not implemented')")


def no_locking_filesystem(monkeypatch, errno_: int) -> list[str]:
    """h5py.File as on a file system that cannot lock: HDF5's OSError for every open while
    HDF5_USE_FILE_LOCKING is unset. Returns the paths opened that way."""
    real, refused = h5py.File, []

    def fake(path, mode="r", **kwargs):
        if hdf5.LOCKING_VAR not in os.environ:
            refused.append(str(path))
            raise OSError(LOCK_ERROR.format(errno_))
        return real(path, mode, **kwargs)

    # set, then deleted: monkeypatch then restores the variable's absence, whatever ai500 sets
    monkeypatch.setenv(hdf5.LOCKING_VAR, "unset")
    monkeypatch.delenv(hdf5.LOCKING_VAR)
    monkeypatch.setattr(h5py, "File", fake)
    return refused


def _writer(tmp_path, rank=0):
    return tracelib.TraceWriter(tmp_path / tracelib.trace_name(rank),
                                {"run_id": "abc", "rank": rank, "config": {"a": [1, 2]}})


def test_a_file_system_that_cannot_lock_turns_hdf5_locking_off(tmp_path, monkeypatch):
    refused = no_locking_filesystem(monkeypatch, errno.ENOSYS)
    w = _writer(tmp_path)
    assert os.environ[hdf5.LOCKING_VAR] == "FALSE"  # set by the probe, before the trace
    assert len(refused) == 1 and ".ai500-lock-probe-" in refused[0]
    w.add_epoch({"epoch": 0, "x": 1.0})
    w.close("ok")
    t = tracelib.read_trace(w.path)
    assert t.attrs["hdf5_file_locking"].startswith("HDF5_USE_FILE_LOCKING=FALSE set by ai500")
    assert not list(tmp_path.glob(".ai500-lock-probe-*"))


def test_a_lock_held_elsewhere_does_not_turn_locking_off(tmp_path, monkeypatch):
    """EAGAIN is another process's lock (locking works): the variable stays unset and the
    error is not hidden."""
    no_locking_filesystem(monkeypatch, errno.EAGAIN)
    w = _writer(tmp_path)
    assert hdf5.LOCKING_VAR not in os.environ
    assert w.attrs["hdf5_file_locking"].startswith("default")
    with pytest.raises(OSError, match="unable to lock file"):
        w.flush()


def test_the_users_locking_choice_is_kept_and_recorded(tmp_path, monkeypatch):
    monkeypatch.setenv(hdf5.LOCKING_VAR, "TRUE")
    w = _writer(tmp_path)
    w.close("ok")
    assert tracelib.read_trace(w.path).attrs["hdf5_file_locking"] == (
        "HDF5_USE_FILE_LOCKING=TRUE (environment)")


def test_readers_on_a_file_system_that_cannot_lock_retry_without_locking(tmp_path, monkeypatch):
    w = _writer(tmp_path)
    w.close("ok")
    no_locking_filesystem(monkeypatch, errno.ENOLCK)
    assert tracelib.read_trace(w.path).attrs["status"] == "ok"
    assert os.environ[hdf5.LOCKING_VAR] == "FALSE"


def test_hep_files_are_written_and_read_where_the_file_system_cannot_lock(tmp_path, monkeypatch):
    """A run's first HDF5 open may be a dataset's (inspection, staging or a streamed batch), on
    a parallel file system mounted without flock: it must not fail there."""
    hep.write_split(tmp_path / "before.h5", 6, seed=3, image_size=16)
    refused = no_locking_filesystem(monkeypatch, errno.ENOSYS)
    assert hep.inspect_files([tmp_path / "before.h5"]) == [6]
    assert refused == [str(tmp_path / "before.h5")]
    assert os.environ[hdf5.LOCKING_VAR] == "FALSE"
    events = hep.load_range([tmp_path / "before.h5"], [6], 1, 5)
    assert events["data"].shape == (4, 16, 16, 3)
    assert np.isfinite(events["data"]).all()

    monkeypatch.delenv(hdf5.LOCKING_VAR)  # a new process: the writer meets the refusal first
    hep.write_split(tmp_path / "after.h5", 6, seed=3, image_size=16)
    assert len(refused) == 2 and os.environ[hdf5.LOCKING_VAR] == "FALSE"
    assert np.array_equal(hep.load_range([tmp_path / "after.h5"], [6], 0, 6)["data"],
                          hep.load_range([tmp_path / "before.h5"], [6], 0, 6)["data"])


def test_weather_files_are_read_where_the_file_system_cannot_lock(tmp_path, monkeypatch):
    weather_synthetic.write_split(tmp_path / "fields.h5", 3, seed=5, height=48, width=64)
    refused = no_locking_filesystem(monkeypatch, errno.EOPNOTSUPP)
    assert weather.inspect_files([tmp_path / "fields.h5"]) == [3]
    assert len(refused) == 1 and os.environ[hdf5.LOCKING_VAR] == "FALSE"
    fields = weather.load_range([tmp_path / "fields.h5"], [3], 0, 3)
    assert fields["images"].shape[0] == 3 and fields["boxes"].shape[0] == 3


def test_only_the_errors_of_a_file_system_without_locks_count():
    assert hdf5.cannot_lock(OSError(LOCK_ERROR.format(errno.ENOSYS)))
    assert hdf5.cannot_lock(OSError(LOCK_ERROR.format(errno.ENOLCK)))
    assert not hdf5.cannot_lock(OSError(LOCK_ERROR.format(errno.EAGAIN)))
    assert not hdf5.cannot_lock(OSError(LOCK_ERROR.format(errno.EACCES)))
    assert not hdf5.cannot_lock(OSError("Unable to open file (file signature not found)"))
