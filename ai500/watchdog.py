"""A per-rank watchdog: a rank that makes no progress for `timeout_s` seconds ends the whole job.

Why a watchdog and not only Horovod's stall check: when a rank dies, Open MPI's mpirun already
ends the job, but a rank that *hangs* (a stuck file system, a deadlocked thread) leaves the others
blocked in their next collective forever. Horovod's stall check only warns by default. Every rank
beats its watchdog after each training step, evaluation and kernel; a rank whose watchdog
starves — the hung rank itself, or a healthy rank blocked in a collective waiting for it — prints
who and why and calls MPI_Abort, which takes every rank down. The bound is timeout_s plus one
check interval (timeout_s / 4, at most 5 s).

Testing aid: AI500_FAULT="rank=R,epoch=E,kind=exit|raise|hang|slow" makes rank R fail at the start
of epoch E (exit: the process dies with status 3; raise: an exception; hang: it sleeps forever;
slow: it sleeps SLOW_FAULT_S seconds before the epoch's barrier, as a slow trace flush or
checkpoint on one rank would).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable


class Watchdog:
    """Calls `on_stall(seconds_without_progress)` once if beat() is not called for timeout_s."""

    def __init__(self, timeout_s: float, on_stall: Callable[[float], None]):
        self.timeout_s = float(timeout_s)
        self._on_stall = on_stall
        self._last = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="ai500-watchdog", daemon=True)

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def beat(self) -> None:
        """Record progress now."""
        self._last = time.monotonic()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        interval = min(self.timeout_s / 4, 5.0)
        while not self._stop.wait(interval):
            idle = time.monotonic() - self._last
            if idle > self.timeout_s:
                self._on_stall(idle)
                return


SLOW_FAULT_S = 3.0


def parse_fault(text: str | None) -> dict | None:
    """The AI500_FAULT testing aid as {"rank": int, "epoch": int, "kind": str}, or None."""
    if not text:
        return None
    try:
        fields = dict(item.split("=", 1) for item in text.split(","))
        fault = {"rank": int(fields["rank"]), "epoch": int(fields["epoch"]), "kind": fields["kind"]}
    except (KeyError, ValueError):
        raise ValueError(f"AI500_FAULT={text!r}: expected rank=R,epoch=E,kind=exit|raise|hang|slow"
                         ) from None
    if fault["kind"] not in ("exit", "raise", "hang", "slow"):
        raise ValueError(f"AI500_FAULT={text!r}: kind must be exit, raise, hang or slow")
    return fault


def inject_fault(fault: dict | None, rank: int, epoch: int) -> None:
    """Fail as the AI500_FAULT testing aid asks, if it names this rank and epoch."""
    if fault is None or fault["rank"] != rank or fault["epoch"] != epoch:
        return
    if fault["kind"] == "exit":
        print(f"ai500: injected fault: rank {rank} exits at epoch {epoch}", file=sys.stderr, flush=True)
        os._exit(3)
    if fault["kind"] == "raise":
        raise RuntimeError(f"injected fault at epoch {epoch}")
    if fault["kind"] == "slow":
        time.sleep(SLOW_FAULT_S)
        return
    while True:
        time.sleep(3600)
