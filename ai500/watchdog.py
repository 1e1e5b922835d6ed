"""A per-rank watchdog: a rank that makes no progress for the current phase's timeout ends the job.

Why a watchdog and not only Horovod's stall check: when a rank dies, Open MPI's mpirun already
ends the job, but a rank that *hangs* (a stuck file system, a deadlocked thread) leaves the others
blocked in their next collective forever. Horovod's stall check only warns by default. A rank
whose watchdog starves — the hung rank itself, or a healthy rank blocked in a collective waiting
for it — prints who, in which phase and why, and calls MPI_Abort, which takes every rank down.
The bound is the timeout plus one check interval (timeout / 4, at most 5 s).

Three phases, each with its timeout:
- initialisation (--init-timeout, default 30 min): from before MPI starts to run_start: the first
  collectives, data staging (a `full` shard can take many minutes from a parallel file system),
  model build, FLOP count; staging code may call progress() but need not;
- first epoch (--init-timeout too) of a training run's segment, up to the end of its first
  evaluation: the first training step and the first evaluation batch trace, and with --xla
  compile, their graphs (ResNet-50's XLA training step compiles for more than 300 s on a 2-core
  CPU); a hang here is found after --init-timeout, not --stall-timeout;
- training (--stall-timeout): the driver beats after each training step, evaluation, checkpoint
  and kernel; a workload's evaluation calls progress() between its batches, so a long healthy
  evaluation (resnet `full`: 32,768 events) is never mistaken for a hang. Micro benchmarks enter
  it at run_start.

Testing aid: AI500_FAULT="rank=R,epoch=E,kind=exit|raise|hang|slow" makes rank R fail at the start
of epoch E (exit: the process dies with status 3; raise: an exception; hang: it sleeps forever;
slow: it sleeps SLOW_FAULT_S seconds before the epoch's barrier, as a slow trace flush or
checkpoint on one rank would); epoch=init fails it during initialisation instead, as it stages
its data.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable

INIT_PHASE = "initialisation"
FIRST_EPOCH_PHASE = "first epoch"
TRAINING_PHASE = "training"
DEFAULT_INIT_TIMEOUT_S = 1800.0


class Watchdog:
    """Calls `on_stall(seconds_without_progress, phase)` once if beat() is not called for the
    current phase's timeout (seconds)."""

    def __init__(self, timeout_s: float, on_stall: Callable[[float, str], None],
                 phase: str = TRAINING_PHASE):
        self.timeout_s = float(timeout_s)
        self.phase = phase
        self._on_stall = on_stall
        self._last = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="ai500-watchdog", daemon=True)

    def start(self) -> None:
        """Start watching, and make this the process's watchdog that progress() feeds."""
        global _active
        self.beat()
        _active = self
        self._thread.start()

    def enter(self, phase: str, timeout_s: float) -> None:
        """Go on watching in a new phase, with its timeout (seconds), counting from now."""
        self.phase, self.timeout_s = phase, float(timeout_s)
        self.beat()

    def beat(self) -> None:
        """Record progress now."""
        self._last = time.monotonic()

    def stop(self) -> None:
        global _active
        self._stop.set()
        if _active is self:
            _active = None

    def _watch(self) -> None:
        while not self._stop.wait(min(self.timeout_s / 4, 5.0)):
            idle = time.monotonic() - self._last
            if idle > self.timeout_s:
                self._on_stall(idle, self.phase)
                return


_active: Watchdog | None = None  # the running watchdog of this process (one per rank)


def progress() -> None:
    """Tell this rank's watchdog that work goes on (a no-op when none runs, e.g. in tests):
    for long loops the driver does not see, such as a workload's evaluation batches."""
    dog = _active
    if dog is not None:
        dog.beat()


SLOW_FAULT_S = 3.0


INIT_FAULT = "init"  # AI500_FAULT's epoch for a fault during initialisation


def parse_fault(text: str | None) -> dict | None:
    """The AI500_FAULT testing aid as {"rank": int, "epoch": int or "init", "kind": str}, or
    None."""
    if not text:
        return None
    try:
        fields = dict(item.split("=", 1) for item in text.split(","))
        epoch = fields["epoch"]
        fault = {"rank": int(fields["rank"]),
                 "epoch": INIT_FAULT if epoch == INIT_FAULT else int(epoch),
                 "kind": fields["kind"]}
    except (KeyError, ValueError):
        raise ValueError(f"AI500_FAULT={text!r}: expected rank=R,epoch=E|init,"
                         "kind=exit|raise|hang|slow") from None
    if fault["kind"] not in ("exit", "raise", "hang", "slow"):
        raise ValueError(f"AI500_FAULT={text!r}: kind must be exit, raise, hang or slow")
    return fault


def inject_fault(fault: dict | None, rank: int, epoch: int | str) -> None:
    """Fail as the AI500_FAULT testing aid asks, if it names this rank and epoch (or "init")."""
    if fault is None or fault["rank"] != rank or fault["epoch"] != epoch:
        return
    where = "during initialisation" if epoch == INIT_FAULT else f"at epoch {epoch}"
    if fault["kind"] == "exit":
        print(f"ai500: injected fault: rank {rank} exits {where}", file=sys.stderr, flush=True)
        os._exit(3)
    if fault["kind"] == "raise":
        raise RuntimeError(f"injected fault {where}")
    if fault["kind"] == "slow":
        time.sleep(SLOW_FAULT_S)
        return
    while True:
        time.sleep(3600)
