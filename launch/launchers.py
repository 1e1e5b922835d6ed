"""One small class per way of starting ranks, registered by name.

Each launcher turns a rank count and the arguments of the program into one argv list through a
single method, `command(ranks, args) -> list[str]`; nothing here runs anything, so every argv is
unit-tested exactly without MPI or Slurm.

    mpirun  Open MPI on this node: `mpirun [--allow-run-as-root] [--oversubscribe --bind-to none]
            -np N python ARGS`. Below the core count Open MPI's own placement applies (one slot per
            core, ranks bound to cores for N <= 2 and to sockets above); when N exceeds the cores it
            must be told to oversubscribe, and binding is switched off so ranks can share cores.
            Whether a run was oversubscribed is reported by `oversubscribed(N)`, and recorded.
    srun    inside a Slurm allocation: `srun --mpi=pmix -n N python ARGS`; Slurm places the ranks.
    local   one process, no MPI: `python ARGS` (N must be 1).
    slurm   a batch job: `sbatch --parsable -n N [--ntasks-per-node=K] SCRIPT ARGS`; the script
            (slurm/<benchmark>.sbatch) starts the ranks and passes ARGS to ai500.run (it resolves --benchmark, --out and
            --run-name itself), so ARGS are ai500.run's arguments, not python's (`starts_python`
            is False). --parsable makes sbatch answer with the job id alone.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import psutil

LAUNCHERS: dict[str, type[Launcher]] = {}


def register(cls: type[Launcher]) -> type[Launcher]:
    """Class decorator: make a launcher available by its `name`."""
    LAUNCHERS[cls.name] = cls
    return cls


def names() -> list[str]:
    return list(LAUNCHERS)


def get(name: str, **options) -> Launcher:
    """A launcher by registered name, built with `options` (its dataclass fields)."""
    if name not in LAUNCHERS:
        raise ValueError(f"unknown launcher {name!r} (known: {', '.join(LAUNCHERS)})")
    return LAUNCHERS[name](**options)


def local_cores() -> int:
    """Cores on this node that Open MPI counts as slots: physical cores (not hardware threads),
    no more than the CPUs this process may run on (a container's or job's cpuset)."""
    physical = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    try:
        allowed = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        allowed = physical
    return max(1, min(physical, allowed))


def _check_ranks(ranks: int) -> None:
    if isinstance(ranks, bool) or not isinstance(ranks, int) or ranks < 1:
        raise ValueError(f"rank count must be a whole number >= 1, got {ranks!r}")


class Launcher:
    """Base: `command(ranks, args)` is the whole job of a launcher."""

    name: ClassVar[str]
    # True: `args` are the Python interpreter's (["-m", "ai500.run", ...]); False: the launcher
    # hands them to a script that starts Python itself (ai500.run's arguments only).
    starts_python: ClassVar[bool] = True

    def command(self, ranks: int, args: Sequence[str]) -> list[str]:
        raise NotImplementedError

    def oversubscribed(self, ranks: int) -> bool | None:
        """True when N ranks exceed this node's cores; None where the scheduler decides."""
        return None

    def describe(self) -> dict:
        """What to record in a sweep manifest about how ranks were started."""
        return {"name": self.name}


@register
@dataclass(frozen=True)
class Mpirun(Launcher):
    """Open MPI's mpirun on this node."""

    name: ClassVar[str] = "mpirun"
    python: str = sys.executable
    cores: int = field(default_factory=local_cores)
    as_root: bool = field(default_factory=lambda: os.geteuid() == 0)

    def oversubscribed(self, ranks: int) -> bool:
        return ranks > self.cores

    def command(self, ranks: int, args: Sequence[str]) -> list[str]:
        _check_ranks(ranks)
        argv = ["mpirun"]
        if self.as_root:  # Open MPI refuses to start as root unless told
            argv.append("--allow-run-as-root")
        if self.oversubscribed(ranks):
            argv += ["--oversubscribe", "--bind-to", "none"]
        return [*argv, "-np", str(ranks), self.python, *args]

    def describe(self) -> dict:
        return {"name": self.name, "cores": self.cores, "as_root": self.as_root,
                "binding": "Open MPI default (core for N <= 2, socket above) up to the core "
                "count; --oversubscribe --bind-to none beyond it"}


@register
@dataclass(frozen=True)
class Srun(Launcher):
    """Slurm's srun inside an allocation, wiring ranks up through PMIx."""

    name: ClassVar[str] = "srun"
    python: str = sys.executable

    def command(self, ranks: int, args: Sequence[str]) -> list[str]:
        _check_ranks(ranks)
        return ["srun", "--mpi=pmix", "-n", str(ranks), self.python, *args]


@register
@dataclass(frozen=True)
class Local(Launcher):
    """One plain Python process (Horovod runs it as a single rank without MPI)."""

    name: ClassVar[str] = "local"
    python: str = sys.executable

    def command(self, ranks: int, args: Sequence[str]) -> list[str]:
        _check_ranks(ranks)
        if ranks != 1:
            raise ValueError(f"the local launcher starts one process, not {ranks}; "
                             "use mpirun or srun for more ranks")
        return [self.python, *args]

    def oversubscribed(self, ranks: int) -> bool:
        return False


@register
@dataclass(frozen=True)
class Sbatch(Launcher):
    """One Slurm batch job per run: the script starts the ranks and runs ai500.run with `args`."""

    name: ClassVar[str] = "slurm"
    starts_python: ClassVar[bool] = False
    script: str = "slurm/resnet.sbatch"
    # Ranks per node (sbatch --ntasks-per-node); None: the script's own (#SBATCH lines).
    ntasks_per_node: int | None = None

    def command(self, ranks: int, args: Sequence[str]) -> list[str]:
        _check_ranks(ranks)
        per_node = [] if self.ntasks_per_node is None else [
            f"--ntasks-per-node={self.ntasks_per_node}"]
        return ["sbatch", "--parsable", "-n", str(ranks), *per_node, self.script, *args]

    def describe(self) -> dict:
        per_node = {} if self.ntasks_per_node is None else {
            "ntasks_per_node": self.ntasks_per_node}
        return {"name": self.name, "script": self.script, **per_node}
