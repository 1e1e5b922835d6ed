"""Node energy meters (RAPL, NVML, a CPU-time model), a background sampler and derived energy figures.

Every meter reports cumulative joules per domain since it was created. Measured sources (RAPL, NVML)
are always preferred; the CPU-time model (`estimated`) is used only when no measured source is readable
and its numbers are never added to measured joules. Where RAPL (CPU packages and DRAM) and NVML (the
job's GPUs) both read, a node's energy is their sum, and `coverage` says what it covers: `cpu`, `gpu`,
`cpu+gpu` or `estimated`. One rank per node runs the meters (the caller decides which, and tells NVML
which GPUs are the job's); nothing here imports MPI or Horovod.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Protocol

import numpy as np
import psutil

from ai500.errors import ConfigError

DEFAULT_POWERCAP_ROOT = Path("/sys/class/powercap")

# Default for the CPU-time model, in watts per fully busy core: an Intel Xeon Platinum 8380 (Ice Lake-SP,
# a common 2021-era HPC node CPU) has a 270 W TDP over 40 cores = 6.75 W/core (Intel's product
# specification). An AMD EPYC 7763 (280 W, 64 cores) gives 4.4 W/core, so the figure is a round upper
# middle of current server parts. It counts the CPU package only (no DRAM, GPU, fans, PSU losses) and,
# on SMT machines, each busy hardware thread as a core, so it is a rough figure: set it per system.
DEFAULT_WATTS_PER_CORE = 6.75

_ZONE_RE = re.compile(r"^(intel-rapl|amd-rapl)((?::\d+)+)$")
_CONTROL_TYPES = ("intel-rapl", "amd-rapl")
# Slurm prints NO_VAL64 (2**64 - 2), INFINITE64 (2**64 - 1) and similar sentinels where no energy
# was gathered: read as joules, NO_VAL64 would be 1.8e19 J.
_SLURM_SENTINEL = 2**63


class Meter(Protocol):
    """What every energy meter offers."""

    method: str  # "rapl", "nvml", "nvml-power-integrated" or "estimated"
    available: bool
    reason: str  # why the meter is unavailable; "" when available

    def domains(self) -> list[str]:
        """Names of the domains `read` reports (empty when unavailable)."""
        ...

    def read(self) -> dict[str, float]:
        """Cumulative joules per domain since the meter was created; may raise OSError."""
        ...


@dataclass(frozen=True)
class EnergyConfig:
    """The energy section of a run's config.

    `watts_per_core` (W per busy core) and `idle_watts` (W, added per wall second) feed only the
    `estimated` model; `interval_s` is the sampling period in seconds (at most 1.0, i.e. >= 1 Hz).
    """

    powercap_root: Path = DEFAULT_POWERCAP_ROOT
    use_nvml: bool = True
    watts_per_core: float = DEFAULT_WATTS_PER_CORE
    idle_watts: float = 0.0
    interval_s: float = 1.0

    def __post_init__(self) -> None:
        if not self.watts_per_core > 0:
            raise ConfigError(f"energy.watts_per_core must be > 0 W, got {self.watts_per_core}")
        if not self.idle_watts >= 0:
            raise ConfigError(f"energy.idle_watts must be >= 0 W, got {self.idle_watts}")
        _check_interval(self.interval_s)


def _check_interval(interval_s: float) -> None:
    if not 0 < interval_s <= 1.0:
        raise ConfigError(f"energy sampling interval must be in (0, 1] s (>= 1 Hz), got {interval_s}")


def _read_int(path: Path) -> int:
    """One integer from a sysfs file."""
    return int(path.read_text().strip())


@dataclass
class _Zone:
    domain: str
    path: Path
    max_uj: int
    last_uj: int
    total_uj: int = 0


def _zone_key(path: Path) -> tuple[str, tuple[int, ...]]:
    match = _ZONE_RE.match(path.name)
    assert match is not None
    return match.group(1), tuple(int(i) for i in match.group(2)[1:].split(":"))


def _find_zone_dirs(root: Path) -> list[Path]:
    """Zone directories under a powercap root, flat (`/sys/class/powercap`) or nested (`/sys/devices/...`).

    Only names that look like zones or control types are entered, so sysfs link loops are never followed.
    """
    seen: dict[Path, Path] = {}
    stack = [root]
    while stack:
        directory = stack.pop()
        for entry in directory.iterdir():
            if not entry.is_dir():
                continue
            if entry.name in _CONTROL_TYPES:
                stack.append(entry)
            elif _ZONE_RE.match(entry.name):
                seen.setdefault(entry.resolve(), entry)
                stack.append(entry)
    return sorted(seen.values(), key=_zone_key)


def _zone_domain(zone_dir: Path, name: str) -> str | None:
    """Domain label for a zone: packages and DRAM count; core, uncore and psys would double count."""
    if name.startswith("package"):
        return name
    if name == "dram":
        return f"dram-{_zone_key(zone_dir)[1][0]}"
    return None


class RaplMeter:
    """CPU package and DRAM energy from the Linux powercap interface (Intel RAPL and AMD's RAPL zones).

    Counters (`energy_uj`, microjoules) wrap at `max_energy_range_uj`; a wrap between two reads is
    undone exactly in integer microjoules. Only one wrap per read interval can be seen, which at >= 1 Hz
    sampling needs minutes of headroom that real counters (hundreds of kJ) always have.
    """

    method = "rapl"

    def __init__(self, root: Path = DEFAULT_POWERCAP_ROOT) -> None:
        self.available = False
        self.reason = ""
        self._zones: list[_Zone] = []
        if not root.is_dir():
            self.reason = f"no {root} (powercap driver not loaded or not Linux)"
            return
        try:
            zones = self._open_zones(root)
        except OSError as exc:
            why = "permission denied" if isinstance(exc, PermissionError) else (exc.strerror or str(exc))
            name = Path(exc.filename).name if exc.filename else "powercap file"
            self.reason = f"{name} not readable: {why} ({exc.filename})"
            return
        if not zones:
            self.reason = f"no RAPL package or DRAM zones under {root}"
            return
        self._zones = zones
        self.available = True

    @staticmethod
    def _open_zones(root: Path) -> list[_Zone]:
        zones: dict[str, _Zone] = {}
        for zone_dir in _find_zone_dirs(root):
            domain = _zone_domain(zone_dir, (zone_dir / "name").read_text().strip())
            # The same package listed by two control types is counted once.
            if domain is None or domain in zones:
                continue
            zones[domain] = _Zone(
                domain=domain,
                path=zone_dir / "energy_uj",
                max_uj=_read_int(zone_dir / "max_energy_range_uj"),
                last_uj=_read_int(zone_dir / "energy_uj"),
            )
        return list(zones.values())

    def domains(self) -> list[str]:
        """Domain names, e.g. ["package-0", "dram-0", "package-1", "dram-1"]."""
        return [zone.domain for zone in self._zones]

    def read(self) -> dict[str, float]:
        """Joules per domain since the meter was created."""
        out = {}
        for zone in self._zones:
            now = _read_int(zone.path)
            zone.total_uj += (now - zone.last_uj) % (zone.max_uj + 1)
            zone.last_uj = now
            out[zone.domain] = zone.total_uj / 1_000_000
        return out


class NvmlMeter:
    """GPU energy per device from NVML (`pynvml`, from the nvidia-ml-py package; optional).

    `devices` are the GPUs to read, as the node names them: CUDA_VISIBLE_DEVICES entries (ordinals,
    GPU-<uuid>) or CUDA ordinals, which are NVML's indices because ai500.dist sets
    CUDA_DEVICE_ORDER=PCI_BUS_ID, NVML's order; None reads every GPU NVML sees. NVML itself sees
    every GPU of the node whatever CUDA_VISIBLE_DEVICES says, so a node shared with other jobs is
    metered for this job's GPUs only. Domains are "gpu-<NVML index>".

    Uses the total-energy counter (millijoules, Volta and newer) when every GPU supports it (method
    `nvml`); otherwise integrates power samples (milliwatts) taken at each `read` with the trapezoid
    rule (method `nvml-power-integrated`), so its accuracy follows the sampling rate.
    """

    def __init__(self, nvml: ModuleType | None = None, clock: Callable[[], float] = time.monotonic,
                 devices: Sequence[str] | None = None) -> None:
        self.method = "nvml"
        self.available = False
        self.reason = ""
        self._clock = clock
        self._handles: list[object] = []
        self._indices: list[int] = []
        if devices is not None and not devices:
            self.reason = "the job computes on no GPU of this node"
            return
        if nvml is None:
            try:
                import pynvml as nvml
            except ImportError:
                self.reason = "pynvml not installed"
                return
        self._nvml = nvml
        try:
            nvml.nvmlInit()
            if devices is None:
                self._indices = list(range(nvml.nvmlDeviceGetCount()))
                self._handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in self._indices]
            else:
                self._open(devices)
        except nvml.NVMLError as exc:
            self.reason = f"NVML not usable: {exc}"
            return
        except ValueError as exc:
            self.reason = str(exc)
            return
        if not self._handles:
            self.reason = "NVML sees no GPUs"
            return
        try:
            self._start_mj = [nvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in self._handles]
        except nvml.NVMLError:
            self.method = "nvml-power-integrated"
            try:
                self._last_w = self._power_w()
            except nvml.NVMLError as exc:
                self.reason = f"GPU has neither an energy counter nor power readings: {exc}"
                return
            self._last_t = clock()
            self._joules = [0.0] * len(self._handles)
        self.available = True

    def _open(self, devices: Sequence[str]) -> None:
        """Handles of the named GPUs; ValueError naming one NVML does not know (or a MIG
        instance, whose energy NVML counts only for its whole GPU)."""
        nvml = self._nvml
        for device in devices:
            if device.startswith("MIG-"):
                raise ValueError(f"GPU {device} is a MIG instance: NVML counts energy for whole "
                                 "GPUs only, not metered")
            try:
                if device.isdigit():
                    handle, index = nvml.nvmlDeviceGetHandleByIndex(int(device)), int(device)
                else:
                    handle = nvml.nvmlDeviceGetHandleByUUID(device)
                    index = nvml.nvmlDeviceGetIndex(handle)
            except nvml.NVMLError as exc:
                raise ValueError(f"NVML has no GPU {device} ({exc})") from None
            self._handles.append(handle)
            self._indices.append(index)

    def _power_w(self) -> list[float]:
        return [self._nvml.nvmlDeviceGetPowerUsage(h) / 1000 for h in self._handles]

    def domains(self) -> list[str]:
        """Domain names, one per GPU read: ["gpu-0", "gpu-1", ...] by NVML index."""
        return [f"gpu-{i}" for i in self._indices] if self.available else []

    def read(self) -> dict[str, float]:
        """Joules per GPU since the meter was created."""
        if self.method == "nvml":
            now_mj = [self._nvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in self._handles]
            joules = [(now - start) / 1000 for now, start in zip(now_mj, self._start_mj)]
        else:
            t, watts = self._clock(), self._power_w()
            dt = t - self._last_t
            self._joules = [j + 0.5 * (w0 + w1) * dt for j, w0, w1 in zip(self._joules, self._last_w, watts)]
            self._last_t, self._last_w = t, watts
            joules = self._joules
        return dict(zip(self.domains(), joules))


class _ProcessTreeCpuTime:
    """Cumulative CPU seconds (user + system) of some processes and all their descendants.

    A process that exits keeps its last seen time, so the total never goes backwards; pids already gone
    when this is created are skipped.
    """

    def __init__(self, processes: Iterable[int | psutil.Process] | None) -> None:
        self._roots: list[psutil.Process] = []
        for proc in [psutil.Process()] if processes is None else processes:
            try:
                self._roots.append(proc if isinstance(proc, psutil.Process) else psutil.Process(proc))
            except psutil.NoSuchProcess:
                continue
        self._seen: dict[int, float] = {}

    def __call__(self) -> float:
        """CPU seconds of every process seen so far."""
        for root in self._roots:
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            for proc in tree:
                try:
                    times = proc.cpu_times()
                except psutil.Error:
                    continue
                self._seen[proc.pid] = times.user + times.system
        return sum(self._seen.values())


class EstimatedMeter:
    """A model, not a measurement: joules = CPU seconds of the job's processes x watts per core
    (+ idle_watts x wall seconds). Labelled `estimated` everywhere; one domain, "node".

    `processes` are pids or psutil processes (default: this process); their descendants are included and
    CPU time is counted from the meter's creation. `cpu_seconds` replaces the psutil source (a callable
    returning cumulative CPU seconds).
    """

    method = "estimated"
    available = True
    reason = ""

    def __init__(
        self,
        processes: Iterable[int | psutil.Process] | None = None,
        watts_per_core: float = DEFAULT_WATTS_PER_CORE,
        idle_watts: float = 0.0,
        *,
        cpu_seconds: Callable[[], float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not watts_per_core > 0 or not idle_watts >= 0:
            raise ConfigError(
                f"need watts_per_core > 0 W and idle_watts >= 0 W, got {watts_per_core}, {idle_watts}"
            )
        self.watts_per_core = watts_per_core
        self.idle_watts = idle_watts
        self._cpu_seconds = cpu_seconds if cpu_seconds is not None else _ProcessTreeCpuTime(processes)
        self._cpu_base = self._cpu_seconds()
        self._clock = clock
        self._t0 = clock()

    def domains(self) -> list[str]:
        """The single domain ["node"]."""
        return ["node"]

    def read(self) -> dict[str, float]:
        """Estimated joules since the meter was created."""
        joules = (self._cpu_seconds() - self._cpu_base) * self.watts_per_core
        if self.idle_watts:
            joules += self.idle_watts * (self._clock() - self._t0)
        return {"node": joules}


def select_meters(
    config: EnergyConfig, processes: Iterable[int | psutil.Process] | None = None,
    gpus: Sequence[str] | None = None,
) -> list[Meter]:
    """Every measured meter probed (available or not, so callers can record each `reason`), plus the
    `estimated` model only when no measured one is available. `processes` feed the model (default: this
    process and its descendants); pass all of the node's ranks when one rank meters the node. `gpus`
    are the job's GPUs on the node for NVML (NvmlMeter `devices`; None: every GPU NVML sees)."""
    meters: list[Meter] = [RaplMeter(config.powercap_root)]
    if config.use_nvml:
        meters.append(NvmlMeter(devices=gpus))
    if not any(m.available for m in meters):
        meters.append(EstimatedMeter(processes, config.watts_per_core, config.idle_watts))
    return meters


# What each method measures, for `coverage`.
_COVERS = {"rapl": "cpu", "nvml": "gpu", "nvml-power-integrated": "gpu", "estimated": "estimated"}


def coverage(methods: Iterable[str]) -> str:
    """What energy from meters of these methods covers: "cpu" (RAPL: packages and DRAM), "gpu"
    (NVML: the job's GPUs), "cpu+gpu" (both, summed), "estimated" (the CPU-time model) or "none"."""
    parts = {_COVERS.get(method, method) for method in methods}
    if "estimated" in parts:
        return "estimated"
    return "+".join(part for part in ("cpu", "gpu") if part in parts) or "none"


@dataclass(frozen=True)
class EnergySamples:
    """Sampled cumulative energy: `t` (n,) seconds, `joules` (n, d) joules per domain since each meter
    was created; `domains` and `methods` (d,) name each column and its source."""

    t: np.ndarray
    joules: np.ndarray
    domains: tuple[str, ...]
    methods: tuple[str, ...]

    @property
    def method(self) -> str:
        """One label for the whole: "rapl", "nvml+rapl", "estimated", ... or "unavailable"."""
        return "+".join(sorted(set(self.methods))) or "unavailable"

    @property
    def coverage(self) -> str:
        """What the total covers: "cpu", "gpu", "cpu+gpu", "estimated" or "none" (`coverage`)."""
        return coverage(self.methods)

    def total(self) -> np.ndarray:
        """(n,) cumulative joules summed over domains."""
        return self.joules.sum(axis=1)

    def columns(self) -> dict[str, np.ndarray]:
        """1-D float64 columns for an HDF5 group: "t" (seconds) and one "<method>:<domain>" per domain
        (cumulative joules), e.g. "rapl:package-0", "estimated:node"."""
        out = {"t": self.t}
        for i, (method, domain) in enumerate(zip(self.methods, self.domains)):
            out[f"{method}:{domain}"] = self.joules[:, i]
        return out

    @classmethod
    def from_columns(cls, columns: Mapping[str, np.ndarray]) -> EnergySamples:
        """The inverse of `columns` (for example a trace's energy group as read back)."""
        t = np.asarray(columns["t"], dtype=np.float64)
        keys = [key for key in columns if key != "t"]
        labels = [key.split(":", 1) for key in keys]
        if any(len(label) != 2 for label in labels):
            raise ValueError(f"energy columns must be 't' and '<method>:<domain>', got {list(columns)}")
        joules = [np.asarray(columns[key], dtype=np.float64) for key in keys]
        return cls(
            t=t,
            joules=np.stack(joules, axis=1) if joules else np.empty((len(t), 0)),
            domains=tuple(d for _, d in labels),
            methods=tuple(m for m, _ in labels),
        )


@dataclass
class _Rows:
    t: list[float] = field(default_factory=list)
    joules: list[list[float]] = field(default_factory=list)


class EnergySampler:
    """Reads the available meters every `interval_s` seconds in a daemon thread.

    Times come from `clock` (seconds; the run's agreed time base). `start` takes the first sample
    synchronously, `stop` joins the thread and takes a last one. The thread sleeps on an Event between
    samples. If a read fails, sampling stops, the samples so far are kept and `error` says why.
    """

    def __init__(
        self,
        meters: Sequence[Meter],
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        _check_interval(interval_s)
        self.interval_s = interval_s
        self.error: str | None = None
        self._meters = [m for m in meters if m.available]
        self._domains = [d for m in self._meters for d in m.domains()]
        self._methods = [m.method for m in self._meters for _ in m.domains()]
        if len(set(self._domains)) != len(self._domains):
            raise ValueError(f"meters report overlapping domains: {self._domains}")
        self._clock = clock
        self._rows = _Rows()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        t = self._clock()
        values: dict[str, float] = {}
        for meter in self._meters:
            values.update(meter.read())
        with self._lock:
            self._rows.t.append(t)
            self._rows.joules.append([values[d] for d in self._domains])

    def _run(self) -> None:
        deadline = time.monotonic() + self.interval_s
        while not self._stop.wait(max(0.0, deadline - time.monotonic())):
            try:
                self._sample()
            except Exception as exc:  # noqa: BLE001 - no meter error may stop training
                self.error = f"{type(exc).__name__}: {exc}"
                return
            # Keep to the schedule; after a slow read skip missed ticks rather than bunch samples.
            deadline = max(deadline + self.interval_s, time.monotonic())

    def start(self) -> None:
        """Take the first sample and start the thread."""
        if self._thread is not None:
            raise RuntimeError("energy sampler already started")
        self._sample()
        self._thread = threading.Thread(target=self._run, name="ai500-energy", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and take a final sample; a no-op when not running."""
        if self._thread is None or self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        if self.error is None:
            self._sample()

    def samples(self) -> EnergySamples:
        """A copy of the samples so far (safe while running)."""
        with self._lock:
            t = np.array(self._rows.t, dtype=np.float64)
            joules = np.array(self._rows.joules, dtype=np.float64).reshape(len(t), len(self._domains))
        return EnergySamples(t, joules, tuple(self._domains), tuple(self._methods))


def _checked_total(samples: EnergySamples) -> tuple[np.ndarray, np.ndarray]:
    if not samples.domains:
        raise ValueError("no energy domains were sampled")
    if len(samples.t) < 2:
        raise ValueError(f"need at least 2 energy samples, got {len(samples.t)}")
    return samples.t, samples.total()


def energy_between(samples: EnergySamples, t0: float, t1: float) -> float:
    """Joules used between t0 and t1 (seconds, the samples' clock), all domains summed, cumulative counters
    interpolated linearly. The samples must cover [t0, t1]: start the sampler before, stop it after."""
    t, total = _checked_total(samples)
    if not t[0] <= t0 <= t1 <= t[-1]:
        raise ValueError(f"interval [{t0}, {t1}] s is not inside the sampled [{t[0]}, {t[-1]}] s")
    return float(np.interp(t1, t, total) - np.interp(t0, t, total))


def average_power(samples: EnergySamples, t0: float, t1: float) -> float:
    """Average watts between t0 and t1 (seconds, t1 > t0)."""
    if not t1 > t0:
        raise ValueError(f"need t1 > t0, got [{t0}, {t1}]")
    return energy_between(samples, t0, t1) / (t1 - t0)


def peak_power(samples: EnergySamples) -> float:
    """Highest watts over any one sampling interval (all domains summed): at 1 Hz, the peak 1 s average."""
    t, total = _checked_total(samples)
    dt, de = np.diff(t), np.diff(total)
    positive = dt > 0
    if not positive.any():
        raise ValueError("energy samples span no time")
    return float(np.max(de[positive] / dt[positive]))


SACCT_NOTE = ("read at the end of the batch script while the job is still running: covers the job "
              "steps that had completed (an srun launch), not the batch step itself")


def sacct_joules(field: str) -> float | None:
    """Joules in one ConsumedEnergyRaw field of sacct's output; None where accounting gathered
    nothing: empty, 0, not a number, negative, or one of Slurm's "no value" sentinels (NO_VAL64)."""
    try:
        joules = float(field.strip())
    except ValueError:
        return None
    return joules if 0 < joules < _SLURM_SENTINEL else None  # NaN fails both


def sacct_record(job_id: str, returncode: int, stdout: str, stderr: str) -> dict:
    """The slurm_energy.json record of one `sacct -j JOBID -n -P -o JobID,ConsumedEnergyRaw` call:
    joules per job step (sacct_joules), and `joules` = the job's own figure, else the sum of its
    launched steps (not .batch or .extern), else None with the reason."""
    record = {"source": "sacct ConsumedEnergyRaw", "job_id": job_id, "joules": None,
              "steps": {}, "reason": None, "note": SACCT_NOTE,
              "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if returncode != 0:
        message = (stderr.strip() or stdout.strip() or f"exit status {returncode}").splitlines()
        record["reason"] = f"sacct failed: {message[0].removeprefix('sacct: ').strip()}"
        return record
    for line in stdout.splitlines():
        if "|" not in line:
            continue
        step, energy = line.split("|")[:2]
        record["steps"][step.strip()] = sacct_joules(energy)
    steps = record["steps"]
    if not steps:
        record["reason"] = "sacct returned no rows for this job"
    elif steps.get(job_id) is not None:
        record["joules"] = steps[job_id]
    else:
        launched = [v for k, v in steps.items()
                    if v is not None and not k.endswith((".batch", ".extern")) and k != job_id]
        if launched:
            record["joules"] = sum(launched)
        else:
            record["reason"] = ("sacct reports no energy for this job (ConsumedEnergyRaw empty, 0 "
                                "or Slurm's no-value marker): the site has no AcctGatherEnergyType "
                                "plugin, or only the still-running batch step used energy")
    return record


def sacct_energy(job_id: str, timeout_s: float = 60.0) -> dict:
    """Slurm's accounted energy of a job as a sacct_record; the reason when there is none (not in
    a job, sacct missing, failing or silent)."""
    if not job_id:
        return {**sacct_record("", 0, "", ""), "reason": "not inside a Slurm job (no SLURM_JOB_ID)"}
    cmd = ["sacct", "-j", job_id, "-n", "-P", "-o", "JobID,ConsumedEnergyRaw"]
    try:
        result = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout_s)
    except FileNotFoundError:
        return sacct_record(job_id, 127, "", "sacct is not on PATH")
    except OSError as exc:
        return sacct_record(job_id, 126, "", f"cannot run sacct ({exc.strerror or exc})")
    except subprocess.TimeoutExpired:
        return sacct_record(job_id, 124, "", f"sacct did not answer within {timeout_s:g} s")
    return sacct_record(job_id, result.returncode, result.stdout, result.stderr)
