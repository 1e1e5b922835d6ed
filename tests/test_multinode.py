"""Two nodes for real: slurm/*.sbatch with -N 2 (srun/PMIx and mpirun inside the allocation), a
two-node sweep through launch/sweep.py --launcher slurm, `mpirun --host node1,node2` outside
Slurm, and a rank killed on one node mid-run, on the cluster of tests/multinode_cluster.py (two
network + UTS namespaces on a private bridge, one slurmd each). `pytest -k multinode`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import ROOT, load_summary
from multinode_cluster import MultiNodeCluster, namespaces_unavailable
from slurm_cluster import ensure_packages
from test_slurm import SLURM, job_env, job_output, sbatch_then_poll, wait_jobs

from ai500.mllog import MLLOG_NAME, PREFIX
from ai500.trace import read_trace

NODES = ["node1", "node2"]
STALL_S = 60  # --stall-timeout of the fault test: longer than a loaded step or evaluation takes


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two nodes, up for this module's tests; everything made is removed after them."""
    reason = namespaces_unavailable() or ensure_packages()
    if reason:
        pytest.skip(f"no multi-node cluster on this machine: {reason}")
    root = tmp_path_factory.mktemp("multinode")
    try:
        with MultiNodeCluster(root, nodes=len(NODES)).running() as c:
            yield c
    finally:
        shutil.rmtree(root, ignore_errors=True)


def mllog_value(run_dir: Path, key: str):
    for line in (run_dir / MLLOG_NAME).read_text().splitlines():
        if line.startswith(PREFIX):
            record = json.loads(line[len(PREFIX):])
            if record["key"] == key:
                return record["value"]
    raise AssertionError(f"{key} not in {run_dir / MLLOG_NAME}")


def check_two_node_run(run_dir: Path, per_node: int, output: str) -> dict:
    """What only a second node exercises, asserted from the run directory; the summary."""
    assert run_dir.is_dir(), output
    summary = load_summary(run_dir)
    ranks = per_node * len(NODES)
    assert summary["status"] == "ok" and summary["ranks"] == ranks, output
    assert summary["nodes"] == len(NODES)
    assert sorted(set(summary["hosts"])) == NODES and len(summary["hosts"]) == ranks
    assert mllog_value(run_dir, "number_of_nodes") == len(NODES)

    assert sorted(p.name for p in run_dir.glob("trace-rank*.h5")) == [
        f"trace-rank{r:05d}.h5" for r in range(ranks)]
    by_host = defaultdict(list)
    for rank in range(ranks):
        trace = read_trace(run_dir / f"trace-rank{rank:05d}.h5")
        assert trace.attrs["status"] == "ok" and trace.attrs["size"] == ranks
        by_host[trace.attrs["host"]].append(trace)
    assert sorted(by_host) == NODES
    leaders = {}
    for host, traces in by_host.items():
        assert sorted(t.attrs["local_rank"] for t in traces) == list(range(per_node)), host
        assert {t.attrs["local_size"] for t in traces} == {per_node}, host
        # One energy sampler per node: its local rank 0, no other rank of the node.
        metering = [t for t in traces if "energy" in t.groups]
        assert [t.attrs["local_rank"] for t in metering] == [0], host
        leaders[host] = metering[0].attrs["rank"]

    energy = summary["energy"]
    assert {row["host"]: row["rank"] for row in energy["per_node"]} == leaders
    assert energy["joules"] is not None, energy
    assert energy["joules"] == pytest.approx(sum(row["joules"] for row in energy["per_node"]))
    # system.json: one description per node, the job, and the summary and mllog taken from it.
    described = json.loads((run_dir / "system.json").read_text())
    assert [node["host"] for node in described["nodes"]] == NODES
    for node in described["nodes"]:
        assert node["cpu"]["model"] and node["cpu"]["physical_cores"] >= 1
        assert node["memory_bytes"] > 0
    job = described["job"]
    assert job["mpi"].startswith("Open MPI") and job["horovod"]["built"]["mpi"] is True
    if "unavailable" not in job["slurm"]:  # a batch job (srun or mpirun inside it)
        assert job["slurm"]["node_list"] == "node[1-2]" and job["slurm"]["job_id"]
        assert job["slurm"]["partition"]
    assert job["launcher"].startswith(("srun", "mpirun"))
    platform = summary["system"]["platform"]
    assert platform.startswith(f"{len(NODES)} x ") and summary["system"]["nodes_described"] == 2
    assert mllog_value(run_dir, "submission_platform") == platform
    return summary


@pytest.mark.parametrize("launcher", ["srun", "mpirun"])
def test_multinode_resnet_sbatch_one_rank_per_node(cluster, tmp_path, launcher):
    rc, job, out = sbatch_then_poll(
        cluster, tmp_path, ["-N", "2", "--ntasks-per-node=1", str(SLURM / "resnet.sbatch"),
                            "--preset", "ci"], timeout=300, AI500_LAUNCHER=launcher)
    assert rc == 0, out
    assert f"2 ranks on 2 node(s) via {launcher}" in out
    if launcher == "srun":
        assert "srun --mpi=pmix" in out
    check_two_node_run(tmp_path / "runs" / f"resnet-job{job}", 1, out)


def test_multinode_micro_sbatch_two_ranks_per_node(cluster, tmp_path):
    # The script's default of two ranks per node: local ranks 0 and 1 on each host, and only
    # local rank 0 of each meters the node's energy.
    rc, job, out = sbatch_then_poll(
        cluster, tmp_path, ["-N", "2", str(SLURM / "micro.sbatch"), "--benchmark", "fc",
                            "--preset", "ci"], timeout=300)
    assert rc == 0, out
    assert "4 ranks on 2 node(s) via srun" in out
    check_two_node_run(tmp_path / "runs" / f"fc-job{job}", 2, out)


def test_multinode_sweep_through_slurm(cluster, tmp_path):
    """A weak sweep of 1 and 2 ranks with one rank per node: the 2-rank point spans both."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "launch" / "sweep.py"), "--launcher", "slurm",
         "--ntasks-per-node", "1", "--benchmark", "fc", "--mode", "weak", "--ranks", "1,2",
         "--preset", "ci", "--out", str(tmp_path / "sweeps"), "--sweep-name", "fc-weak"],
        check=False, cwd=tmp_path, env=job_env(cluster, SBATCH_OUTPUT=str(tmp_path / "%x-%j.out")),
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    sweep = tmp_path / "sweeps" / "fc-weak"
    manifest = json.loads((sweep / "manifest.json").read_text())
    assert manifest["launcher"] == {"name": "slurm", "script": "slurm/micro.sbatch",
                                    "ntasks_per_node": 1}
    points = manifest["points"]
    statuses = wait_jobs(cluster, [p["job_id"] for p in points], timeout=300)
    for point in points:
        assert statuses[point["job_id"]] == 0, job_output(tmp_path, point["job_id"])
    one, two = (sweep / p["run_dir"] for p in points)
    assert load_summary(one)["nodes"] == 1
    check_two_node_run(two, 1, job_output(tmp_path, points[1]["job_id"]))
    report = subprocess.run([sys.executable, "-m", "ai500.report", str(sweep), "--out",
                             str(sweep / "report")], check=False, cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert report.returncode == 0, report.stdout + report.stderr
    md = (sweep / "report" / "report.md").read_text()  # the runs table: run, N, nodes, ...
    assert "| np0001-r01 | 1 | 1 |" in md and "| np0002-r01 | 2 | 2 |" in md
    assert "System (system.json): nodes of " in md  # one system, whatever the node count


def test_multinode_mpirun_host_outside_slurm(cluster, tmp_path):
    """mpirun on node1 starts node2's daemon through the rsh agent (as it would over ssh);
    the ranks talk over TCP on the nodes' network only."""
    cmd = [*cluster.enter("node1"), "mpirun", "--allow-run-as-root", "--host", ",".join(NODES),
           "-np", "2", *cluster.mpirun_options(), sys.executable, "-m", "ai500.run",
           "--benchmark", "resnet", "--preset", "ci", "--out", str(tmp_path), "--run-name", "r"]
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300,
                            cwd=ROOT, env={**cluster.env, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    check_two_node_run(tmp_path / "r", 1, result.stdout + result.stderr)


def rank_pids(cluster: MultiNodeCluster, node: str) -> list[int]:
    """The ai500.run ranks running on NODE."""
    pids = []
    for pid in cluster.node_pids(node):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"ai500.run" in argv and Path(argv[0].decode()).name.startswith("python"):
            pids.append(pid)
    return pids


def test_multinode_a_rank_killed_on_one_node_ends_the_job(cluster, tmp_path):
    result = subprocess.run(
        ["sbatch", "--parsable", "-N", "2", "--ntasks-per-node=1", str(SLURM / "resnet.sbatch"),
         "--preset", "ci", "--epochs", "20", "--stall-timeout", str(STALL_S)],
        check=False, cwd=tmp_path, env=job_env(cluster), capture_output=True, text=True,
        timeout=60)
    job = result.stdout.strip().split(";")[0]
    assert result.returncode == 0 and job.isdigit(), result.stdout + result.stderr
    deadline = time.monotonic() + 240
    while not re.search(r"^epoch +0 ", job_output(tmp_path, job), re.MULTILINE):
        assert time.monotonic() < deadline, job_output(tmp_path, job)
        time.sleep(0.5)
    victims = rank_pids(cluster, "node2")
    assert len(victims) == 1, victims
    signal_sent = time.monotonic()
    subprocess.run(["kill", "-9", str(victims[0])], check=True, timeout=10)
    status = wait_jobs(cluster, [job], timeout=STALL_S + 60)[job]
    ended_after = time.monotonic() - signal_sent
    out = job_output(tmp_path, job)
    assert status != 0, out
    # Within the watchdog's bound (stall timeout + its check interval); here srun's
    # --kill-on-bad-exit ends the job at once and says which task died where.
    assert ended_after < STALL_S + 5, out
    assert "node2: task 1: Killed" in out, out

    run = tmp_path / "runs" / f"resnet-job{job}"
    for rank in (0, 1):
        trace = read_trace(run / f"trace-rank{rank:05d}.h5")
        assert trace.epochs["epoch"][0] == 0  # epoch 0 completed and kept
        assert trace.attrs["status"] == "running"  # never closed
    agg = subprocess.run([sys.executable, "-m", "ai500.aggregate", str(run)], check=False,
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert agg.returncode == 1 and "status failed" in agg.stdout, agg.stdout + agg.stderr
    summary = load_summary(run)
    assert summary["status"] == "failed"
    assert "1" in summary["missing_or_failed_ranks"], summary["missing_or_failed_ranks"]
