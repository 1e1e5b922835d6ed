"""system.json's facts from fake /proc, /sys and tools: each one read, or unavailable with why."""

from __future__ import annotations

import subprocess

import pytest

from ai500 import system

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC 7763 64-Core Processor
physical id\t: 0
core id\t\t: 0
cpu MHz\t\t: 2445.404
flags\t\t: fpu avx avx2 fma

processor\t: 1
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC 7763 64-Core Processor
physical id\t: 0
core id\t\t: 0
cpu MHz\t\t: 2445.404
flags\t\t: fpu avx avx2 fma

processor\t: 2
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC 7763 64-Core Processor
physical id\t: 1
core id\t\t: 0
cpu MHz\t\t: 2445.404
flags\t\t: fpu avx avx2 fma
"""


def test_cpu_topology_and_isa(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    cpu = system.describe_cpu(str(path))
    assert cpu["model"] == "AMD EPYC 7763 64-Core Processor"
    assert (cpu["vendor"], cpu["family"], cpu["model_number"]) == ("AuthenticAMD", 25, 1)
    assert (cpu["sockets"], cpu["physical_cores"], cpu["logical_cpus"]) == (2, 2, 3)
    assert cpu["threads_per_core"] == 1.5
    assert cpu["isa"] == ["avx", "avx2", "fma"]
    assert cpu["clock_ghz"] == pytest.approx(2.445404) and "cpu MHz" in cpu["clock_source"]


def test_unreadable_cpuinfo_says_why(tmp_path):
    assert "cpuinfo" in system.describe_cpu(str(tmp_path / "cpuinfo"))["unavailable"]
    (tmp_path / "empty").write_text("")
    assert "no processors" in system.describe_cpu(str(tmp_path / "empty"))["unavailable"]


def test_memory(tmp_path):
    (tmp_path / "meminfo").write_text("MemTotal:       24682632 kB\nMemFree: 1 kB\n")
    assert system.describe_memory(str(tmp_path / "meminfo")) == 24682632 * 1024
    assert "MemTotal" in system.describe_memory(str(tmp_path / "none"))["unavailable"]


def test_gpus_from_nvidia_smi_or_why_not():
    out = "0, NVIDIA A100-SXM4-40GB, 40960, 535.104.05, GPU-aaa\n1, NVIDIA A100-SXM4-40GB, 40960, 535.104.05, GPU-bbb\n"
    gpus = system.describe_gpus(lambda argv: out)
    assert [g["index"] for g in gpus] == [0, 1] and gpus[1]["uuid"] == "GPU-bbb"
    assert gpus[0]["memory_bytes"] == 40960 << 20 and gpus[0]["driver"] == "535.104.05"

    def missing(argv):
        raise FileNotFoundError("nvidia-smi not installed")

    def failing(argv):
        raise subprocess.TimeoutExpired(argv, 10)

    assert system.describe_gpus(missing) == {"unavailable": "nvidia-smi: nvidia-smi not installed"}
    assert "timed out" in system.describe_gpus(failing)["unavailable"]


def test_network_and_infiniband(tmp_path):
    net = tmp_path / "net"
    for name, speed, kind in (("lo", None, "772"), ("eth0", "25000", "1"), ("veth1", "-1", "1"),
                              ("ib0", "100000", "32")):
        (net / name).mkdir(parents=True)
        (net / name / "operstate").write_text("up\n")
        (net / name / "mtu").write_text("1500\n")
        (net / name / "type").write_text(kind + "\n")
        if speed is not None:
            (net / name / "speed").write_text(speed + "\n")
    interfaces = {i["name"]: i for i in system.describe_network(str(net))}
    assert set(interfaces) == {"eth0", "veth1", "ib0"}  # loopback left out
    assert interfaces["eth0"]["speed_mbps"] == 25000 and interfaces["ib0"]["kind"] == "infiniband"
    assert "no link speed" in interfaces["veth1"]["speed_mbps"]["unavailable"]
    port = tmp_path / "ib" / "mlx5_0" / "ports" / "1"
    port.mkdir(parents=True)
    (port / "state").write_text("4: ACTIVE\n")
    (port / "rate").write_text("200 Gb/sec (4X HDR)\n")
    (port / "link_layer").write_text("InfiniBand\n")
    devices = system.describe_infiniband(str(tmp_path / "ib"))
    assert devices == [{"device": "mlx5_0", "ports": [{"port": "1", "state": "4: ACTIVE",
                                                       "rate": "200 Gb/sec (4X HDR)",
                                                       "link_layer": "InfiniBand"}]}]
    assert "no InfiniBand" in system.describe_infiniband(str(tmp_path / "none"))["unavailable"]


@pytest.mark.parametrize("environ, expected", [
    ({"OMPI_COMM_WORLD_SIZE": "2"}, "mpirun (Open MPI)"),
    ({"OMPI_COMM_WORLD_SIZE": "2", "SLURM_JOB_ID": "7"}, "mpirun (Open MPI) inside a Slurm allocation"),
    ({"SLURM_JOB_ID": "7", "SLURM_STEP_ID": "0", "PMIX_RANK": "1"}, "srun (Slurm step, PMI)"),
    ({}, "one process, no launcher"),
])
def test_launcher(environ, expected):
    assert system.launcher(environ) == expected


def test_slurm_job_and_platform_name():
    env = {"SLURM_JOB_ID": "42", "SLURM_JOB_PARTITION": "gpu", "SLURM_JOB_NODELIST": "n[1-2]",
           "SLURM_JOB_NUM_NODES": "2", "SLURM_NTASKS": "8"}
    slurm = system.describe_slurm(env)
    assert (slurm["job_id"], slurm["partition"], slurm["node_list"]) == ("42", "gpu", "n[1-2]")
    assert "not a Slurm job" in system.describe_slurm({})["unavailable"]
    node = {"cpu": {"model": "AMD EPYC 7763", "physical_cores": 64},
            "gpus": [{"name": "A100"}, {"name": "A100"}]}
    bare = {"cpu": {"model": "AMD EPYC 7763", "physical_cores": 64},
            "gpus": {"unavailable": "nvidia-smi not installed"}}
    assert system.platform_name(system.describe([node, node], {})) == (
        "2 x AMD EPYC 7763 (64 cores), 2 x A100")
    assert system.platform_name(system.describe([node, bare], {})) == (
        "1 x AMD EPYC 7763 (64 cores), 2 x A100; 1 x AMD EPYC 7763 (64 cores), no GPU")
    one = system.describe([node], {"tensorflow": "2.15.1", "horovod": {"version": "0.28.1"},
                                   "mpi": "Open MPI v4.1.4"})
    assert system.fingerprint(one) != system.fingerprint(system.describe([bare], one["job"]))
    # How many nodes is not part of the system (a scaling sweep varies it); their kind is.
    assert system.fingerprint(one) == system.fingerprint(system.describe([node, node], one["job"]))
    assert system.fingerprint(None) == "unknown (no system.json)"


def test_this_node_is_described_without_failing():
    node = system.describe_node()
    assert node["host"] and isinstance(node["cpu"], dict) and "memory_bytes" in node
    for key in ("gpus", "network", "infiniband"):
        assert isinstance(node[key], (list, dict))


def test_read_system_tolerates_missing_and_damaged_files(tmp_path):
    assert system.read_system(tmp_path) is None
    (tmp_path / "system.json").write_text("{not json")
    assert system.read_system(tmp_path) is None
    (tmp_path / "system.json").write_text('{"nodes": [], "job": {}}')
    assert system.read_system(tmp_path) == {"nodes": [], "job": {}}
