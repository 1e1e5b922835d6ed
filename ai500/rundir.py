"""Who may write a run directory, and where a resumed run's segments go.

Ownership: the process that writes a run directory (rank 0 of a fresh run or of a `--resume`)
holds `RUN_DIR/run.lock`, a small JSON file naming its host, pid, the pid's start time and a
random token. It is created exclusively (written under a temporary name, then hard-linked to
`run.lock`, which fails if the name exists: atomic, and safe on NFS, unlike O_EXCL on old NFS
clients) and removed when the run ends, cleanly or with an error every rank agreed on. A rank that
dies or is killed leaves its lock behind; a later `--resume` on the same host sees that the pid
is gone (or now belongs to a process started at another time) and takes the lock over. A lock
held from another host cannot be checked from here, so it is refused with the file to remove.

Segments: a resumed run appends to its run directory and never rewrites what is there. The first
run (segment 0) writes `config.json` and `trace-rank*.h5` at the top; resume k writes into
`segment-kk/` its own `segment.json` (the same record as config.json, plus where it resumed
from) and `trace-rank*.h5`, each trace with times from that segment's own run_start.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ai500.errors import ConfigError

LOCK_NAME = "run.lock"
RECORD_NAME = "config.json"
SEGMENT_RECORD = "segment.json"
_SEGMENT_RE = re.compile(r"segment-(\d+)$")


def read_run_json(run_dir: Path, name: str, error: type[Exception] = ConfigError) -> Any:
    """The parsed JSON file `name` of a run (or segment) directory; `error` (one line naming the
    directory or the file) if the directory or the file is missing, unreadable or not JSON."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise error(f"{run_dir}: no such run directory")
    path = run_dir / name
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"{run_dir}: no {name} (not a run directory)") from None
    except (OSError, ValueError) as exc:
        raise error(f"{path}: unreadable or not JSON ({exc})") from None


def read_record(run_dir: Path) -> dict[str, Any]:
    """A run directory's config.json (the run's record); ConfigError if absent or malformed."""
    path = Path(run_dir) / RECORD_NAME
    record = read_run_json(run_dir, RECORD_NAME)
    if not (isinstance(record, dict) and isinstance(record.get("config"), dict)
            and isinstance(record.get("run_id"), str)):
        raise ConfigError(f"{path}: malformed (expected run_id and config)")
    return record


def segment_dir(run_dir: Path, index: int) -> Path:
    """Where segment `index` keeps its record and traces (segment 0: the run directory itself)."""
    return Path(run_dir) if index == 0 else Path(run_dir) / f"segment-{index:02d}"


def segment_indices(run_dir: Path) -> list[int]:
    """The resumed segments' indices present in a run directory, ascending (0 not included)."""
    found = []
    for path in Path(run_dir).iterdir():
        match = _SEGMENT_RE.match(path.name)
        if match and path.is_dir():
            found.append(int(match.group(1)))
    return sorted(found)


def new_segment_dir(run_dir: Path) -> tuple[int, Path]:
    """Create the next segment's directory (exclusively; call while holding the lock)."""
    index = max(segment_indices(run_dir), default=0) + 1
    path = segment_dir(run_dir, index)
    path.mkdir()
    return index, path


def _process_start(pid: int) -> float | None:
    """The Unix time a live process started, or None if there is no such process."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


@dataclass(frozen=True)
class Lock:
    """A run directory's lock as read from disk."""

    path: Path
    host: str
    pid: int
    pid_start: float | None
    token: str
    since: str

    def alive(self) -> bool | None:
        """True/False on the lock's own host; None where it cannot be told (another host)."""
        if self.host != socket.gethostname():
            return None
        started = _process_start(self.pid)
        # A pid reused by a process started at another time is not the lock's owner.
        return started is not None and (self.pid_start is None or abs(started - self.pid_start) < 1.0)

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} since {self.since}"


def read_lock(run_dir: Path) -> Lock | None:
    """The lock on a run directory, or None if it has none; ConfigError if unreadable."""
    path = Path(run_dir) / LOCK_NAME
    try:
        fields = json.loads(path.read_text())
        return Lock(path, str(fields["host"]), int(fields["pid"]), fields.get("pid_start"),
                    str(fields["token"]), str(fields.get("since", "?")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: unreadable lock ({exc}); if no run is writing {run_dir}, "
                          "remove the file") from None


def check_free(run_dir: Path) -> None:
    """ConfigError if a live process (or one on another host) holds the run directory."""
    lock = read_lock(run_dir)
    if lock is None:
        return
    alive = lock.alive()
    if alive:
        raise ConfigError(f"{run_dir} is in use by a live run ({lock.describe()}); "
                          "refusing to write into it at the same time")
    if alive is None:
        raise ConfigError(f"{run_dir} is locked by {lock.describe()}, another host, so this host "
                          f"cannot tell whether that run still writes it; if it does not, remove "
                          f"{lock.path} and resume again")


def acquire(run_dir: Path, command: list[str]) -> str:
    """Take the run directory's lock; returns the token that release() needs.
    A stale lock (its pid gone on this host) is taken over; a live one is refused (ConfigError)."""
    run_dir = Path(run_dir)
    path = run_dir / LOCK_NAME
    token = secrets.token_hex(8)
    pid = os.getpid()
    record = {"host": socket.gethostname(), "pid": pid, "pid_start": _process_start(pid),
              "token": token, "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "command": command}
    tmp = run_dir / f".{LOCK_NAME}.{pid}.{token}"
    tmp.write_text(json.dumps(record) + "\n")
    try:
        for _ in range(3):
            try:
                os.link(tmp, path)  # fails if the lock exists: exclusive creation with content
                return token
            except FileExistsError:
                pass
            stale = read_lock(run_dir)
            if stale is None:
                continue  # released meanwhile: try again
            check_free(run_dir)  # raises unless the holder is gone
            _break_stale(stale)
        raise ConfigError(f"{path}: could not take the lock (other processes keep taking it)")
    finally:
        tmp.unlink(missing_ok=True)


def _break_stale(stale: Lock) -> None:
    """Move a dead process's lock aside. Renaming is atomic, so of two processes breaking the same
    lock only one moves it; if what was moved is not the stale lock (a racer had already replaced
    it with its own), it is put back."""
    moved = stale.path.with_name(f".{LOCK_NAME}.stale.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        os.rename(stale.path, moved)
    except FileNotFoundError:
        return
    try:
        if json.loads(moved.read_text()).get("token") != stale.token:
            try:
                os.link(moved, stale.path)
            except FileExistsError:
                pass
    finally:
        moved.unlink(missing_ok=True)


def release(run_dir: Path, token: str) -> None:
    """Remove the lock if this process still holds it (never another's)."""
    try:
        lock = read_lock(run_dir)
    except ConfigError:
        return
    if lock is not None and lock.token == token:
        lock.path.unlink(missing_ok=True)
