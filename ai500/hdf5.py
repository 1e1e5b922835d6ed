"""Opening HDF5 files on file systems that cannot lock them.

HDF5 locks every file it opens (flock); some parallel file systems (Lustre mounted without
flock, some NFS and GPFS setups) refuse, and every open then fails, for reading as for writing.
HDF5_USE_FILE_LOCKING=FALSE turns locking off; HDF5 reads it at each open. Every HDF5 file ai500
opens (datasets, traces, the merged trace) goes through open_h5, so a run on such a file system
turns locking off for its process at the first refused open and goes on. Only the errors that
mean "this file system cannot lock" count: EAGAIN/EWOULDBLOCK and EACCES are what a lock held by
another process gives, where locking works and protects.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path
from typing import Any

import h5py

LOCKING_VAR = "HDF5_USE_FILE_LOCKING"
CANNOT_LOCK = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP)
_LOCK_ERROR = re.compile(r"unable to lock file, errno = (\d+)")


def cannot_lock(exc: OSError) -> bool:
    """Whether h5py's error says the file system cannot lock files (HDF5's message: "unable to
    lock file, errno = 38, error message = 'Function not implemented'")."""
    match = _LOCK_ERROR.search(str(exc))
    return match is not None and int(match.group(1)) in CANNOT_LOCK


def open_h5(path: Path | str, mode: str = "r", **kwargs: Any) -> h5py.File:
    """h5py.File(path, mode); on a file system that cannot lock, with HDF5_USE_FILE_LOCKING
    unset, sets it to FALSE for this process and opens again (once)."""
    try:
        return h5py.File(path, mode, **kwargs)
    except OSError as exc:
        if LOCKING_VAR in os.environ or not cannot_lock(exc):
            raise
        os.environ[LOCKING_VAR] = "FALSE"
        return h5py.File(path, mode, **kwargs)


def file_locking(directory: Path) -> str:
    """How this process's HDF5 locks the files it writes in `directory`, for the trace: the
    user's HDF5_USE_FILE_LOCKING if set; else a probe file is created there, and where the file
    system cannot lock, HDF5_USE_FILE_LOCKING=FALSE is set for this process."""
    if LOCKING_VAR in os.environ:
        return f"{LOCKING_VAR}={os.environ[LOCKING_VAR]} (environment)"
    probe = Path(directory) / f".ai500-lock-probe-{os.getpid()}.h5"
    try:
        with open_h5(probe, "w"):
            pass
    except OSError:
        return "default (locking on; the probe file could not be created)"
    finally:
        probe.unlink(missing_ok=True)
    if LOCKING_VAR in os.environ:
        return (f"{LOCKING_VAR}=FALSE set by ai500: the file system under {directory} cannot "
                "lock files")
    return "default (locking on)"
