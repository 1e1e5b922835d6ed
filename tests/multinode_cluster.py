"""A Slurm cluster of several nodes on this one machine, for the multi-node tests.

Each node is a network namespace and a UTS namespace (its own hostname, node1, node2, ...,
its own address on a private /24), held open by one `sleep` process and joined to the others by
a veth pair on a bridge this module creates. The bridge's own address (.1) is the controller's:
munged and slurmctld run here as in tests/slurm_cluster.py (which this extends), and one real
`slurmd -N nodeK` runs inside each node's namespaces, with its own spool, pid and log files.
Nodes share the file system and the process table with this machine (so the checkout, the venv's
python and munge's socket are the same everywhere), but not the network: ranks on two nodes
talk over TCP on the bridge, and Open MPI sees two hosts, so it never uses shared memory
between them.

Open MPI reaches the same nodes outside Slurm through an rsh agent, DIR/bin/node-shell NODE
COMMAND, that runs COMMAND inside NODE's namespaces with an environment as clean as ssh's:

    nsenter -t $(cat DIR/nodes/node1.pid) --net --uts -- \\
        mpirun --host node1,node2 -np 2 --mca plm_rsh_agent DIR/bin/node-shell \\
        --mca btl_tcp_if_include 10.213.X.0/24 --mca oob_tcp_if_include 10.213.X.0/24 ...

Only addresses made here are ever contacted: the subnet is the first 10.213.X.0/24 that no
route or address of this machine overlaps. `stop()` removes everything: the jobs, the daemons,
every process left in a node's namespaces (found by its /proc/PID/ns/net), the namespaces and
the bridge (the veth pairs go with their namespaces).

    python tests/multinode_cluster.py --nodes 2 DIR     # up until Ctrl-C; prints how to use it
    python tests/multinode_cluster.py --stop DIR        # stops the one started on DIR
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from slurm_cluster import ClusterError, SlurmCluster, ensure_packages

SUBNETS = [ipaddress.ip_network(f"10.213.{x}.0/24") for x in range(256)]
TOOLS = ("ip", "unshare", "nsenter")
# What a non-interactive ssh session gets; the rsh agent gives ranks no more than this.
SSH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _run(cmd: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
    """Run CMD, raising ClusterError with its stderr if it fails."""
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise ClusterError(f"`{' '.join(cmd)}` failed: {result.stderr.strip()}")
    return result


def namespaces_unavailable() -> str | None:
    """Why this machine cannot make node namespaces (None when it can)."""
    if os.geteuid() != 0:
        return "making network and UTS namespaces needs root"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed"
    try:
        trial = subprocess.run(["unshare", "--net", "--uts", "--", "true"], check=False,
                               capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "`unshare --net --uts true` did not finish in 30 s"
    if trial.returncode != 0:
        return f"`unshare --net --uts` failed: {trial.stderr.strip()}"
    return None


def used_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network this machine routes or has an address in."""
    nets = []
    for line in _run(["ip", "-4", "-o", "route", "show", "table", "all"]).stdout.splitlines():
        dest = line.split()[0] if line.split() else ""
        if dest not in ("default", "broadcast", "local", "unreachable", "blackhole", "prohibit"):
            try:
                nets.append(ipaddress.ip_network(dest, strict=False))
            except ValueError:
                continue
    for entry in json.loads(_run(["ip", "-4", "-j", "addr"]).stdout):
        for addr in entry.get("addr_info", []):
            nets.append(ipaddress.ip_network(f"{addr['local']}/{addr['prefixlen']}", strict=False))
    return nets


class NodeSpace:
    """One node's namespaces: a `sleep` holding a new network and UTS namespace, hostname NAME."""

    def __init__(self, name: str, addr: str):
        self.name, self.addr = name, addr
        self.holder = subprocess.Popen(
            ["unshare", "--net", "--uts", "--", "sh", "-c", f"hostname {name} && exec sleep infinity"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True)
        deadline = time.monotonic() + 30
        while self._hostname() != name:
            if self.holder.poll() is not None:
                raise ClusterError(f"namespaces of {name}: {self.holder.stderr.read().strip()}")
            if time.monotonic() > deadline:
                raise ClusterError(f"namespaces of {name} not ready after 30 s")
            time.sleep(0.05)
        self.netns = os.readlink(f"/proc/{self.holder.pid}/ns/net")

    def _hostname(self) -> str | None:
        try:
            if os.readlink(f"/proc/{self.holder.pid}/ns/uts") == os.readlink("/proc/self/ns/uts"):
                return None  # unshare has not switched yet
        except OSError:
            return None
        result = subprocess.run([*self.enter(), "hostname"], check=False, capture_output=True,
                                text=True, timeout=10)
        return result.stdout.strip()

    def enter(self) -> list[str]:
        """The argv prefix that runs a command inside this node."""
        return ["nsenter", "-t", str(self.holder.pid), "--net", "--uts", "--"]

    def pids(self) -> list[int]:
        """Every process in this node's network namespace (the holder included)."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if os.readlink(entry / "ns" / "net") == self.netns:
                        found.append(int(entry.name))
                except OSError:  # gone, or a kernel thread
                    continue
        return found

    def remove(self) -> None:
        """End every process in the node (SIGTERM, then SIGKILL after 5 s); the namespaces,
        and the veth end inside them, go with the last one."""
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 10.0)):
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while self.pids() and time.monotonic() < deadline:
                self.holder.poll()  # reap our own child
                time.sleep(0.1)
        self.holder.wait(timeout=10)


class Network:
    """The bridge on a free 10.213.X.0/24 (this machine is .1) and one NodeSpace per node."""

    def __init__(self) -> None:
        self.bridge: str | None = None
        self.index = 0  # X of 10.213.X.0/24
        self.subnet: ipaddress.IPv4Network | None = None
        self.nodes: dict[str, NodeSpace] = {}

    @property
    def gateway(self) -> str:
        return str(self.subnet[1])

    def create(self, names: list[str]) -> None:
        """Make the bridge and the nodes; on failure what was made stays for remove()."""
        used = used_networks()
        for x, subnet in enumerate(SUBNETS):
            if any(subnet.overlaps(net) for net in used):
                continue
            bridge = f"ai500b{x}"
            if subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=False,
                              capture_output=True, timeout=30).returncode == 0:
                self.bridge, self.index, self.subnet = bridge, x, subnet
                break
        else:
            raise ClusterError("no free 10.213.X.0/24 subnet (or bridge name) on this machine")
        _run(["ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge])
        _run(["ip", "link", "set", self.bridge, "up"])
        for i, name in enumerate(names, start=1):
            node = NodeSpace(name, str(self.subnet[i + 1]))
            self.nodes[name] = node
            veth = f"ai500v{self.index}n{i}"  # at most 15 characters
            _run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns",
                  str(node.holder.pid)])
            _run(["ip", "link", "set", veth, "master", self.bridge, "up"])
            for cmd in (["ip", "link", "set", "lo", "up"],
                        ["ip", "addr", "add", f"{node.addr}/24", "dev", "eth0"],
                        ["ip", "link", "set", "eth0", "up"]):
                _run([*node.enter(), *cmd])

    def remove(self) -> None:
        for node in self.nodes.values():
            node.remove()
        self.nodes.clear()
        if self.bridge:
            subprocess.run(["ip", "link", "del", self.bridge], check=False, capture_output=True,
                           timeout=30)
            self.bridge = None


AGENT = """#!/bin/sh
# Open MPI's rsh agent for the test cluster in {root}: `node-shell NODE COMMAND...` runs COMMAND
# (one shell string, as ssh would) inside NODE's namespaces, with an environment like ssh's.
node=$1
shift
pid=$(cat "{root}/nodes/$node.pid" 2>/dev/null) || {{
    echo "node-shell: no node $node in the cluster in {root}" >&2
    exit 255
}}
exec nsenter -t "$pid" --net --uts -- env -i PATH={path} HOME="$HOME" /bin/sh -c "$*"
"""


class MultiNodeCluster(SlurmCluster):
    """NODES nodes named node1, node2, ... (see the module docstring), one partition `debug`."""

    def __init__(self, root: Path, nodes: int = 2, name: str = "ai500multi"):
        if nodes < 1:
            raise ValueError(f"a cluster needs at least one node, not {nodes}")
        super().__init__(root, name, [f"node{i}" for i in range(1, nodes + 1)])
        self.network = Network()
        self.agent = self.root / "bin" / "node-shell"

    @property
    def controller_addr(self) -> str:
        return self.network.gateway

    @property
    def subnet(self) -> str:
        """The nodes' network, as Open MPI's *_if_include options take it."""
        return str(self.network.subnet)

    def node_addr(self, node: str) -> str:
        return self.network.nodes[node].addr

    def enter(self, node: str) -> list[str]:
        """The argv prefix that runs a command on NODE (in its namespaces)."""
        return self.network.nodes[node].enter()

    def node_pids(self, node: str) -> list[int]:
        """Every process running on NODE."""
        return self.network.nodes[node].pids()

    def slurmd_command(self, node: str) -> list[str]:
        return [*self.enter(node), *super().slurmd_command(node)]

    def mca(self) -> dict[str, str]:
        """Open MPI settings for this cluster: start remote daemons with the rsh agent, and keep
        every rank's and daemon's TCP traffic on the nodes' network."""
        return {"plm_rsh_agent": str(self.agent), "btl_tcp_if_include": self.subnet,
                "oob_tcp_if_include": self.subnet}

    def mpirun_options(self) -> list[str]:
        """mca() as mpirun options."""
        return [arg for key, value in self.mca().items() for arg in ("--mca", key, value)]

    @property
    def env(self) -> dict[str, str]:
        """As SlurmCluster.env, plus mca() as OMPI_MCA_* (sbatch passes them on to the jobs)."""
        return {**super().env, **{f"OMPI_MCA_{k}": v for k, v in self.mca().items()}}

    def start(self, timeout: float = 60) -> None:
        """Make the nodes, then start the daemons. On a ClusterError call stop()."""
        try:
            self.network.create(self.nodes)
        except subprocess.TimeoutExpired as exc:
            raise ClusterError(f"`{' '.join(exc.cmd)}` did not finish") from None
        (self.root / "nodes").mkdir(parents=True, exist_ok=True)
        for name, node in self.network.nodes.items():
            (self.root / "nodes" / f"{name}.pid").write_text(f"{node.holder.pid}\n")
        self.agent.parent.mkdir(parents=True, exist_ok=True)
        self.agent.write_text(AGENT.format(root=self.root, path=SSH_PATH))
        self.agent.chmod(0o755)
        super().start(timeout)
        exports = {"SLURM_CONF": self.conf, **{f"OMPI_MCA_{k}": v for k, v in self.mca().items()}}
        (self.root / "env.sh").write_text("".join(f"export {k}={v}\n" for k, v in exports.items()))

    def stop(self) -> None:
        """Stop the jobs and daemons (SlurmCluster.stop), then remove the nodes and the bridge."""
        try:
            super().stop()
        finally:
            self.network.remove()

    def usage(self) -> str:
        """How to use the running cluster by hand."""
        first, hosts = self.nodes[0], ",".join(self.nodes)
        lines = [(f"cluster {self.name} up: {len(self.nodes)} node(s) on {self.subnet} "
                 f"(controller {self.controller_addr})")]
        lines += [f"  {n}: {self.node_addr(n)}, namespaces held by pid "
                  f"{self.network.nodes[n].holder.pid}" for n in self.nodes]
        lines += [
            f"  . {self.root / 'env.sh'}          # SLURM_CONF and the OMPI_MCA_* settings",
            (f"  sinfo -N; sbatch -N {len(self.nodes)} --ntasks-per-node=1 slurm/resnet.sbatch "
            "--preset ci"),
            f"  {self.agent} {first} hostname          # a shell on a node",
            (f"  {' '.join(self.enter(first))} mpirun --allow-run-as-root --host {hosts} "
            f"-np {len(self.nodes)} {os.path.abspath(sys.executable)} -m ai500.run --benchmark resnet --preset ci"),
            f"  stop: Ctrl-C here, or python tests/multinode_cluster.py --stop {self.root}",
        ]
        return "\n".join(lines)


def stop_running(root: Path) -> int:
    """Ask the harness that started a cluster on ROOT to stop it; its exit status."""
    pid_file = root / "harness.pid"
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError) as exc:
        print(f"no running cluster recorded in {pid_file} ({exc})", file=sys.stderr)
        return 1
    deadline = time.monotonic() + 60
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    return 0 if not pid_file.exists() else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Start a several-node Slurm cluster on this machine "
                                "(see this file's docstring) and keep it up until Ctrl-C.")
    p.add_argument("dir", type=Path, help="working directory (config, logs, spool, agent)")
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--stop", action="store_true", help="stop the cluster running on DIR")
    args = p.parse_args(argv)
    root = args.dir.resolve()
    if args.stop:
        return stop_running(root)
    reason = namespaces_unavailable() or ensure_packages()
    if reason:
        print(f"no cluster: {reason}", file=sys.stderr)
        return 1
    root.mkdir(parents=True, exist_ok=True)
    cluster = MultiNodeCluster(root, args.nodes)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        cluster.start()
        (root / "harness.pid").write_text(f"{os.getpid()}\n")
        print(cluster.usage(), flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
        print("stopping", flush=True)
    except ClusterError as exc:
        print(f"cluster did not start: {exc}", file=sys.stderr)
        return 1
    finally:
        cluster.stop()
        (root / "harness.pid").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
