"""A real one-node Slurm cluster for the tests: munged, slurmctld and slurmd started from a
temporary directory, used through `SLURM_CONF`, and stopped again by their process ids.
(tests/multinode_cluster.py builds on it: several nodes, each in its own namespaces.)

Nothing outside the directory is touched except (when Slurm is missing and we are root) an
`apt-get install slurm-wlm munge`. Daemons run in the foreground as children of this process,
listen on free ports, and talk through their own munge socket, so a system Slurm or munge on
the same machine is left alone.

    cluster = SlurmCluster(tmp_dir)
    cluster.start()                     # raises ClusterError with the daemon's log on failure
    subprocess.run(["sbatch", "--wait", ...], env=cluster.env)
    cluster.stop()

`python tests/slurm_cluster.py DIR` starts one and keeps it up until Ctrl-C (for debugging).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

PACKAGES = ("slurm-wlm", "munge")
DAEMONS = ("slurmctld", "slurmd", "munged")


class ClusterError(RuntimeError):
    """The cluster could not be started; the message names the daemon and quotes its log."""


def missing_daemons() -> list[str]:
    return [name for name in DAEMONS if shutil.which(name) is None]


def ensure_packages(timeout: float = 900) -> str | None:
    """Install Slurm and munge if they are missing. Returns None when ready, else why not."""
    if not missing_daemons():
        return None
    if os.geteuid() != 0:
        return f"{', '.join(missing_daemons())} not installed, and not root to install them"
    if shutil.which("apt-get") is None:
        return f"Slurm daemons {missing_daemons()} are not installed and there is no apt-get"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]):
        try:
            result = subprocess.run(cmd, check=False, capture_output=True, text=True,
                                    timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return f"`{' '.join(cmd)}` did not finish in {timeout:.0f} s"
        if result.returncode != 0:
            return f"`{' '.join(cmd)}` failed: {result.stderr.strip()[-500:]}"
    if missing_daemons():
        return f"installed {PACKAGES} but {missing_daemons()} are still missing"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def node_line(name: str, addr: str = "127.0.0.1") -> str:
    """`NodeName=... NodeAddr=... CPUs=... RealMemory=...` for this machine, as slurmd itself
    detects it (every node of a test cluster is this machine)."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    fields = out.splitlines()[0].split()
    kept = [f for f in fields[1:] if f.split("=")[0] in
            ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore",
             "RealMemory")]
    return " ".join([f"NodeName={name}", f"NodeAddr={addr}", *kept, "State=UNKNOWN"])


def pmix_available() -> bool:
    """True when Slurm's PMIx plugin is installed (then `srun --mpi=pmix` can start MPI ranks)."""
    for libdir in ("/usr/lib/x86_64-linux-gnu/slurm-wlm", "/usr/lib/aarch64-linux-gnu/slurm-wlm",
                   "/usr/lib64/slurm", "/usr/lib/slurm"):
        if Path(libdir, "mpi_pmix.so").exists():
            return True
    return False


class SlurmCluster:
    """One node (this host), one partition `debug`, root as SlurmUser, no accounting database.

    A subclass with several nodes (tests/multinode_cluster.py) overrides `controller_addr`,
    `node_addr` and `slurmd_command`; every slurmd has its own spool, pid and log file (%n)."""

    controller_addr = "127.0.0.1"

    def __init__(self, root: Path, name: str = "ai500test", nodes: list[str] | None = None):
        self.root = Path(root)
        self.name = name
        self.host = socket.gethostname().split(".")[0]
        self.nodes = nodes or [self.host]
        self.conf = self.root / "slurm.conf"
        self.logs = self.root / "log"
        self.procs: dict[str, subprocess.Popen] = {}

    def node_addr(self, node: str) -> str:
        """The address slurmctld and srun reach NODE's slurmd at."""
        return "127.0.0.1"

    def slurmd_command(self, node: str) -> list[str]:
        """The argv that starts NODE's slurmd in the foreground."""
        return ["slurmd", "-D", "-N", node, "-f", str(self.conf)]

    @property
    def env(self) -> dict[str, str]:
        """os.environ plus SLURM_CONF; Slurm variables of an enclosing job are removed."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_",
                                                                          "SRUN_", "SALLOC_"))}
        env["SLURM_CONF"] = str(self.conf)
        return env

    def write_config(self) -> None:
        for sub in ("munge", "state", "log", "run",
                    *(f"{kind}/{node}" for kind in ("spool", "tmp") for node in self.nodes)):
            (self.root / sub).mkdir(parents=True, exist_ok=True, mode=0o755)
        r = self.root
        lines = [
            f"ClusterName={self.name}",
            f"SlurmctldHost={self.host}({self.controller_addr})",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"SlurmctldPort={free_port()}",
            f"SlurmdPort={free_port()}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={r / 'munge' / 'munge.socket'}",
            f"StateSaveLocation={r / 'state'}",
            # %n: the node's name, so several slurmd on one machine keep apart.
            f"SlurmdSpoolDir={r / 'spool' / '%n'}",
            f"SlurmctldPidFile={r / 'run' / 'slurmctld.pid'}",
            f"SlurmdPidFile={r / 'run' / 'slurmd-%n.pid'}",
            f"SlurmctldLogFile={self.logs / 'slurmctld.log'}",
            f"SlurmdLogFile={self.logs / 'slurmd-%n.log'}",
            # Slurm's PMIx plugin makes its clients' directories here (spmix_appdir_<job>.<step>):
            # one per node, or two nodes on one machine would collide in /tmp.
            f"TmpFS={r / 'tmp' / '%n'}",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            # No cgroups in a container: track processes by parent pid, no task binding.
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            f"MpiDefault={'pmix' if pmix_available() else 'none'}",
            "SwitchType=switch/none",
            "SchedulerType=sched/backfill",
            "ReturnToService=2",
            "JobAcctGatherType=jobacct_gather/linux",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "InactiveLimit=0",
            "KillWait=5",
            "MinJobAge=300",
            "SlurmdTimeout=60",
            *(node_line(node, self.node_addr(node)) for node in self.nodes),
            (f"PartitionName=debug Nodes={','.join(self.nodes)} Default=YES MaxTime=INFINITE "
            "State=UP"),
        ]
        self.conf.write_text("\n".join(lines) + "\n")

    def _spawn(self, name: str, cmd: list[str]) -> None:
        with open(self.logs / f"{name}.stdout", "w") as log:
            self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, env=self.env,
                                                start_new_session=True)

    def _log_tail(self, name: str) -> str:
        text = ""
        for path in (self.logs / f"{name}.log", self.logs / f"{name}.stdout"):
            if path.exists():
                text += path.read_text(errors="replace")[-2000:]
        return text.strip() or "(empty log)"

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise ClusterError(f"{name} exited with status {proc.returncode}:\n"
                                   f"{self._log_tail(name)}")

    def _wait(self, what: str, ready, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            self._check_alive()
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {n}:\n{self._log_tail(n)}" for n in self.procs)
                raise ClusterError(f"{what} not ready after {timeout:.0f} s\n{logs}")
            time.sleep(0.3)

    def start(self, timeout: float = 60) -> None:
        self.write_config()
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        m = self.root / "munge"
        self._spawn("munged", ["munged", "--foreground", "--force",
                               f"--key-file={key}", f"--socket={m / 'munge.socket'}",
                               f"--pid-file={m / 'munged.pid'}", f"--seed-file={m / 'munged.seed'}",
                               f"--log-file={self.logs / 'munged.log'}"])
        self._wait("munged", lambda: (m / "munge.socket").exists(), timeout)
        # -i: ignore any state (the directory is new anyway); -D: stay in the foreground.
        self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)])
        self._wait("slurmctld", lambda: "UP" in self._run(["scontrol", "ping"]).stdout, timeout)
        for node in self.nodes:
            self._spawn(f"slurmd-{node}", self.slurmd_command(node))
        for node in self.nodes:
            self._wait(f"node {node} idle", lambda n=node: self.node_state(n) == "idle", timeout)

    def _run(self, cmd: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, check=False, capture_output=True, text=True, env=self.env,
                              timeout=timeout)

    def node_state(self, node: str | None = None) -> str:
        """sinfo's short state of NODE (default: the first node), without its flag suffix."""
        out = self._run(["sinfo", "-h", "-N", "-n", node or self.nodes[0], "-o",
                         "%t"]).stdout.strip()
        return out.rstrip("*~#!%$@^-")

    @contextlib.contextmanager
    def running(self) -> Iterator[SlurmCluster]:
        """The cluster started for a with-block and stopped after it, also when it fails to
        start (a ClusterError then propagates) or the block raises."""
        try:
            self.start()
            yield self
        finally:
            self.stop()

    def stop(self) -> None:
        """Cancel this cluster's jobs, then stop the daemons we started (by pid), newest first."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            try:
                self._run(["scancel", "--full", "--user", str(os.getuid())], timeout=15)
            except subprocess.TimeoutExpired:
                pass
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        self.procs.clear()


if __name__ == "__main__":
    directory = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/ai500-slurm").resolve()
    reason = ensure_packages()
    if reason:
        sys.exit(reason)
    cluster = SlurmCluster(directory)
    try:
        cluster.start()
        print(f"cluster up: export SLURM_CONF={cluster.conf}", flush=True)
        for name, proc in cluster.procs.items():
            print(f"  {name} pid {proc.pid}", flush=True)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        cluster.stop()
