"""What a run ran on: system.json in every run directory, written by ai500 itself (MLPerf asks
submitters to write their system description by hand).

One rank per node (local rank 0) describes its node (`describe_node`); rank 0 gathers those and
adds the job (`describe_job`). Nothing here may fail a run: a fact that cannot be read is
`{"unavailable": "<why>"}` (a tool not installed, a file absent, not a Slurm job), never a guess.

Layout (schema SYSTEM_SCHEMA_VERSION):
  nodes   one per node, in rank order of the node leaders: host, os, kernel, cpu (model, vendor,
          family/model, sockets, physical cores, threads per core, logical CPUs, clock with its
          source, vector ISA flags), memory_bytes, gpus (nvidia-smi: index, name, memory, driver,
          uuid), network (interfaces with state, MTU and link speed in Mb/s), infiniband (devices,
          ports with state and rate)
  job     launcher, mpi (library version), slurm (job id, partition, node list, nodes, tasks),
          tensorflow, horovod (version and built operations), cuda/cudnn (TensorFlow's build)
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

SYSTEM_SCHEMA_VERSION = 1
SYSTEM_NAME = "system.json"
CPUINFO = "/proc/cpuinfo"
MEMINFO = "/proc/meminfo"
NET_DIR = "/sys/class/net"
IB_DIR = "/sys/class/infiniband"
ISA_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8",
             "amx_fp16", "sve", "asimd")
TOOL_TIMEOUT_S = 10.0

Runner = Callable[[list[str]], str]


def unavailable(why: str) -> dict[str, str]:
    """The value of a fact that could not be read, saying why."""
    return {"unavailable": why}


def run_tool(argv: list[str]) -> str:
    """stdout of a system tool; OSError/subprocess errors propagate (callers turn them into
    `unavailable`)."""
    if shutil.which(argv[0]) is None:
        raise FileNotFoundError(f"{argv[0]} not installed")
    result = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {result.returncode}: "
                           f"{(result.stderr or result.stdout).strip()[:200]}")
    return result.stdout


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def describe_cpu(cpuinfo_path: str = CPUINFO) -> dict[str, Any]:
    """CPU model and topology from /proc/cpuinfo: sockets (distinct physical ids), physical cores,
    threads per core, logical CPUs; the clock (GHz) with where it came from."""
    from ai500.errors import ConfigError
    from ai500.micro.peak import cpu_clock_ghz, read_cpuinfo

    try:
        info = read_cpuinfo(cpuinfo_path)
    except ConfigError as exc:  # unreadable, or no processors
        return unavailable(str(exc))
    ghz, how = cpu_clock_ghz(info, cpuinfo_path=cpuinfo_path)
    return {
        "model": info.model_name, "vendor": info.vendor or None, "family": info.family,
        "model_number": info.model, "sockets": info.sockets,
        "physical_cores": info.physical_cores, "logical_cpus": info.logical_cpus,
        "threads_per_core": round(info.logical_cpus / info.physical_cores, 2),
        "clock_ghz": ghz, "clock_source": how,
        "isa": [flag for flag in ISA_FLAGS if flag in info.flags],
    }


def describe_memory(meminfo_path: str = MEMINFO) -> int | dict[str, str]:
    """Total memory of the node in bytes (MemTotal)."""
    text = _read(Path(meminfo_path))
    for line in (text or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return unavailable(f"no MemTotal in {meminfo_path}")


def describe_gpus(run: Runner = run_tool) -> list[dict[str, Any]] | dict[str, str]:
    """The node's NVIDIA GPUs from nvidia-smi: index, name, memory (bytes), driver, uuid."""
    query = "index,name,memory.total,driver_version,uuid"
    try:
        out = run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits"])
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        return unavailable(f"nvidia-smi: {exc}")
    gpus = []
    for line in out.strip().splitlines():
        index, name, memory_mib, driver, uuid = (part.strip() for part in line.split(","))
        gpus.append({"index": int(index), "name": name, "memory_bytes": int(float(memory_mib)) << 20,
                     "driver": driver, "uuid": uuid})
    return gpus


def describe_network(net_dir: str = NET_DIR) -> list[dict[str, Any]] | dict[str, str]:
    """Network interfaces other than loopback: state, MTU and link speed (Mb/s, or why not)."""
    root = Path(net_dir)
    if not root.is_dir():
        return unavailable(f"no {net_dir}")
    interfaces = []
    for path in sorted(root.iterdir()):
        if path.name == "lo":
            continue
        speed = _read(path / "speed")
        mbps: int | dict[str, str] = unavailable("the kernel reports no link speed (a virtual "
                                                 "or down link)")
        if speed and speed.isdigit() and int(speed) > 0:
            mbps = int(speed)
        kind = "infiniband" if _read(path / "type") == "32" else "ethernet/other"
        interfaces.append({"name": path.name, "state": _read(path / "operstate"),
                           "mtu": int(_read(path / "mtu") or 0) or None, "speed_mbps": mbps,
                           "kind": kind})
    return interfaces


def describe_infiniband(ib_dir: str = IB_DIR) -> list[dict[str, Any]] | dict[str, str]:
    """InfiniBand (and RoCE) devices from sysfs: each port's state and rate."""
    root = Path(ib_dir)
    if not root.is_dir():
        return unavailable(f"no {ib_dir}: no InfiniBand devices on this node")
    devices = []
    for device in sorted(root.iterdir()):
        ports = [{"port": port.name, "state": _read(port / "state"), "rate": _read(port / "rate"),
                  "link_layer": _read(port / "link_layer")}
                 for port in sorted((device / "ports").glob("*"))]
        devices.append({"device": device.name, "ports": ports})
    return devices


def describe_node(run: Runner = run_tool) -> dict[str, Any]:
    """This node's description (called by one rank per node)."""
    return {"host": socket.gethostname(), "os": platform.platform(), "kernel": platform.release(),
            "cpu": describe_cpu(), "memory_bytes": describe_memory(), "gpus": describe_gpus(run),
            "network": describe_network(), "infiniband": describe_infiniband()}


def launcher(environ: dict[str, str]) -> str:
    """How the ranks were started, from the variables launchers set."""
    slurm = "SLURM_JOB_ID" in environ
    if "OMPI_COMM_WORLD_SIZE" in environ:
        return "mpirun (Open MPI)" + (" inside a Slurm allocation" if slurm else "")
    if "SLURM_STEP_ID" in environ and ("PMIX_RANK" in environ or "PMI_RANK" in environ):
        return "srun (Slurm step, PMI)"
    if "PMIX_RANK" in environ or "PMI_RANK" in environ:
        return "a PMI launcher"
    return "one process, no launcher"


def describe_slurm(environ: dict[str, str]) -> dict[str, Any]:
    """The Slurm job the run is part of, from its environment."""
    if "SLURM_JOB_ID" not in environ:
        return unavailable("not a Slurm job (no SLURM_JOB_ID)")
    keys = {"job_id": "SLURM_JOB_ID", "partition": "SLURM_JOB_PARTITION",
            "node_list": "SLURM_JOB_NODELIST", "nodes": "SLURM_JOB_NUM_NODES",
            "tasks": "SLURM_NTASKS", "cluster": "SLURM_CLUSTER_NAME"}
    return {name: environ.get(var) for name, var in keys.items()}


def mpi_library() -> str:
    """The MPI library's own one-line name and version (Open MPI ends the string with a NUL)."""
    from mpi4py import MPI

    return MPI.Get_library_version().replace("\x00", "").splitlines()[0].strip()


def describe_job(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """The job's software and how it was launched (called on rank 0, after MPI started)."""
    env = dict(os.environ if environ is None else environ)
    job: dict[str, Any] = {"launcher": launcher(env), "slurm": describe_slurm(env)}
    try:
        job["mpi"] = mpi_library()
    except ImportError as exc:
        job["mpi"] = unavailable(f"mpi4py: {exc}")
    try:
        import tensorflow as tf

        build = tf.sysconfig.get_build_info()
        job["tensorflow"] = tf.__version__
        job["cuda"] = build.get("cuda_version") or unavailable("TensorFlow built without CUDA")
        job["cudnn"] = build.get("cudnn_version") or unavailable("TensorFlow built without cuDNN")
    except ImportError as exc:
        job["tensorflow"] = unavailable(f"tensorflow: {exc}")
    try:
        import horovod
        import horovod.tensorflow as hvd

        job["horovod"] = {"version": horovod.__version__,
                          "built": {op: bool(getattr(hvd, f"{op}_built")())
                                    for op in ("mpi", "gloo", "nccl", "ddl", "ccl", "cuda", "rocm")
                                    if hasattr(hvd, f"{op}_built")}}
    except ImportError as exc:
        job["horovod"] = unavailable(f"horovod: {exc}")
    return job


def describe(nodes: list[dict[str, Any]], job: dict[str, Any]) -> dict[str, Any]:
    """system.json's content from the node leaders' descriptions and the job's."""
    return {"schema_version": SYSTEM_SCHEMA_VERSION, "nodes": nodes, "job": job}


def read_system(run_dir: Path) -> dict[str, Any] | None:
    """A run directory's system.json, or None where it has none or it does not read (a run from
    before system.json existed, or a damaged file: the description is never worth failing for)."""
    import json

    try:
        system = json.loads((Path(run_dir) / SYSTEM_NAME).read_text())
    except (OSError, ValueError):
        return None
    return system if isinstance(system, dict) and isinstance(system.get("nodes"), list) else None


def _gpu_names(node: dict[str, Any]) -> list[str]:
    gpus = node.get("gpus")
    return [g["name"] for g in gpus] if isinstance(gpus, list) else []


def platform_name(system: dict[str, Any]) -> str:
    """A one-line platform name (mllog's submission_platform): nodes × CPU (cores), GPUs."""
    nodes = system.get("nodes") or []
    if not nodes:
        return "unknown (no node described)"
    parts = []
    for cpu_text, gpu_text in dict.fromkeys(_node_kind(node) for node in nodes):
        count = sum(1 for node in nodes if _node_kind(node) == (cpu_text, gpu_text))
        parts.append(f"{count} x {cpu_text}, {gpu_text}")
    return "; ".join(parts)


def _node_kind(node: dict[str, Any]) -> tuple[str, str]:
    cpu = node.get("cpu") or {}
    cpu_text = (f"{cpu['model']} ({cpu['physical_cores']} cores)" if "model" in cpu
                else "unknown CPU")
    gpus = _gpu_names(node)
    gpu_text = (", ".join(f"{gpus.count(n)} x {n}" for n in dict.fromkeys(gpus))
                if gpus else "no GPU")
    return cpu_text, gpu_text


def fingerprint(system: dict[str, Any] | None) -> str:
    """What must match for two runs to come from the same system (the report's check across
    merged runs): the kinds of node, not how many (a scaling sweep varies that), and the job's
    software."""
    if not system:
        return "unknown (no system.json)"
    kinds = dict.fromkeys(_node_kind(node) for node in system.get("nodes") or [])
    job = system.get("job") or {}
    horovod = job.get("horovod")
    version = horovod.get("version") if isinstance(horovod, dict) else None
    nodes = " + ".join(f"{cpu}, {gpu}" for cpu, gpu in kinds) or "no node described"
    return f"nodes of {nodes}; TensorFlow {job.get('tensorflow')}, Horovod {version}, {job.get('mpi')}"
