"""Energy meters against fake sysfs trees, fake NVML and fake clocks; exact arithmetic throughout."""

from __future__ import annotations

import os
import stat
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from ai500.errors import ConfigError
from ai500.metrics import energy
from ai500.metrics.energy import (
    EnergyConfig,
    EnergySampler,
    EnergySamples,
    EstimatedMeter,
    NvmlMeter,
    RaplMeter,
    average_power,
    energy_between,
    peak_power,
    sacct_energy,
    sacct_joules,
    sacct_record,
    select_meters,
)

MAX_UJ = 262143328850  # a real Intel package max_energy_range_uj


def add_zone(root: Path, zone: str, name: str, energy_uj: int, max_uj: int = MAX_UJ) -> Path:
    """A zone laid out as the kernel does: real directories nested under the control type
    (devices/<type>/<zone>/<subzone>) and a flat symlink per zone in the class directory (root)."""
    control_type = zone.split(":")[0]
    parts = zone.split(":")
    nested = root.parent / "devices" / control_type
    for depth in range(2, len(parts) + 1):
        nested = nested / ":".join(parts[:depth])
    nested.mkdir(parents=True)
    (nested / "name").write_text(name + "\n")
    (nested / "energy_uj").write_text(f"{energy_uj}\n")
    (nested / "max_energy_range_uj").write_text(f"{max_uj}\n")
    root.mkdir(exist_ok=True)
    if not (root / control_type).exists():
        (root / control_type).symlink_to(root.parent / "devices" / control_type)
    (root / zone).symlink_to(nested)
    return nested


def set_energy(root: Path, zone: str, energy_uj: int) -> None:
    (root / zone / "energy_uj").write_text(f"{energy_uj}\n")


@pytest.fixture
def powercap(tmp_path: Path) -> Path:
    return tmp_path / "class" / "powercap"


def test_one_package_with_dram_exact_joules(powercap: Path) -> None:
    add_zone(powercap, "intel-rapl:0", "package-0", 1_000_000)
    add_zone(powercap, "intel-rapl:0:0", "dram", 500_000)
    meter = RaplMeter(powercap)
    assert (meter.available, meter.reason, meter.method) == (True, "", "rapl")
    assert meter.domains() == ["package-0", "dram-0"]
    set_energy(powercap, "intel-rapl:0", 3_500_000)
    set_energy(powercap, "intel-rapl:0:0", 750_000)
    assert meter.read() == {"package-0": 2.5, "dram-0": 0.25}
    set_energy(powercap, "intel-rapl:0", 4_000_000)
    assert meter.read() == {"package-0": 3.0, "dram-0": 0.25}


def test_nested_tree_without_flat_links(powercap: Path) -> None:
    add_zone(powercap, "intel-rapl:0", "package-0", 0)
    add_zone(powercap, "intel-rapl:0:0", "dram", 0)
    meter = RaplMeter(powercap.parent / "devices")  # like pointing at /sys/devices/virtual/powercap
    assert meter.domains() == ["package-0", "dram-0"]


def test_two_packages(powercap: Path) -> None:
    for pkg in (0, 1):
        add_zone(powercap, f"intel-rapl:{pkg}", f"package-{pkg}", 10)
        add_zone(powercap, f"intel-rapl:{pkg}:0", "dram", 20)
    meter = RaplMeter(powercap)
    assert meter.domains() == ["package-0", "dram-0", "package-1", "dram-1"]
    set_energy(powercap, "intel-rapl:0", 10 + 7_000_000)
    set_energy(powercap, "intel-rapl:0:0", 20 + 1_000_000)
    set_energy(powercap, "intel-rapl:1", 10 + 6_500_000)
    set_energy(powercap, "intel-rapl:1:0", 20 + 125_000)
    assert meter.read() == {"package-0": 7.0, "dram-0": 1.0, "package-1": 6.5, "dram-1": 0.125}


def test_counter_wrap_is_exact(powercap: Path) -> None:
    add_zone(powercap, "intel-rapl:0", "package-0", MAX_UJ - 1_000)
    meter = RaplMeter(powercap)
    set_energy(powercap, "intel-rapl:0", 2_000)
    # MAX-1000 -> MAX is 1000 uJ, MAX -> 0 is 1 uJ (the counter holds 0..MAX), 0 -> 2000 is 2000 uJ.
    assert meter.read() == {"package-0": 3_001 / 1_000_000}


def test_repeated_wraps_of_a_small_counter(powercap: Path) -> None:
    add_zone(powercap, "intel-rapl:0", "package-0", 900, max_uj=999)
    meter = RaplMeter(powercap)
    for value in (100, 950, 50, 50):  # deltas 200, 850, 100, 0
        set_energy(powercap, "intel-rapl:0", value)
        joules = meter.read()["package-0"]
    assert joules == 1_150 / 1_000_000


def test_core_uncore_and_psys_are_not_counted(powercap: Path) -> None:
    add_zone(powercap, "intel-rapl:0", "package-0", 0)
    add_zone(powercap, "intel-rapl:0:0", "core", 0)
    add_zone(powercap, "intel-rapl:0:1", "uncore", 0)
    add_zone(powercap, "intel-rapl:0:2", "dram", 0)
    add_zone(powercap, "intel-rapl:1", "psys", 0)
    meter = RaplMeter(powercap)
    assert meter.domains() == ["package-0", "dram-0"]
    for zone in ("intel-rapl:0", "intel-rapl:0:0", "intel-rapl:0:1", "intel-rapl:1"):
        set_energy(powercap, zone, 1_000_000)
    assert meter.read() == {"package-0": 1.0, "dram-0": 0.0}


def test_amd_zones_and_a_package_listed_twice(powercap: Path) -> None:
    add_zone(powercap, "amd-rapl:0", "package-0", 0)
    add_zone(powercap, "amd-rapl:0:0", "core", 0)
    assert RaplMeter(powercap).domains() == ["package-0"]
    add_zone(powercap, "intel-rapl:0", "package-0", 0)  # the same package under a second control type
    assert RaplMeter(powercap).domains() == ["package-0"]


def test_mode_000_energy_file_is_reported(powercap: Path) -> None:
    zone = add_zone(powercap, "intel-rapl:0", "package-0", 0)
    (zone / "energy_uj").chmod(0)
    try:
        (zone / "energy_uj").read_text()
        pytest.skip("this user reads mode-000 files (root); see the monkeypatched test below")
    except PermissionError:
        pass
    meter = RaplMeter(powercap)
    assert not meter.available
    assert meter.reason.startswith("energy_uj not readable: permission denied")


def test_permission_denied_is_reported_not_raised(powercap: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulated by monkeypatching the sysfs reader, since tests may run as root (which reads mode 000)."""
    add_zone(powercap, "intel-rapl:0", "package-0", 0)
    real_read_int = energy._read_int

    def root_only(path: Path) -> int:
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return real_read_int(path)

    monkeypatch.setattr(energy, "_read_int", root_only)
    meter = RaplMeter(powercap)
    assert not meter.available
    assert meter.reason.startswith("energy_uj not readable: permission denied (")
    assert meter.domains() == []


def test_energy_file_that_is_a_directory_is_reported(powercap: Path) -> None:
    """Unreadable without relying on permissions (works as root): energy_uj is a directory."""
    zone = add_zone(powercap, "intel-rapl:0", "package-0", 0)
    (zone / "energy_uj").unlink()
    (zone / "energy_uj").mkdir()
    meter = RaplMeter(powercap)
    assert not meter.available
    assert meter.reason.startswith("energy_uj not readable: ")


def test_no_powercap_directory(tmp_path: Path) -> None:
    meter = RaplMeter(tmp_path / "absent")
    assert (meter.available, meter.domains()) == (False, [])
    assert meter.reason.startswith(f"no {tmp_path / 'absent'}")


def test_powercap_without_rapl_zones(powercap: Path) -> None:
    powercap.mkdir(parents=True)
    meter = RaplMeter(powercap)
    assert not meter.available
    assert meter.reason.startswith("no RAPL package or DRAM zones")


class FakeNvml:
    """The few pynvml calls NvmlMeter makes; energy in mJ, power in mW."""

    class NVMLError(Exception):
        pass

    def __init__(self, energy_mj: list[int] | None, power_mw: list[int], init_error: bool = False) -> None:
        self.energy_mj = energy_mj
        self.power_mw = power_mw
        self.init_error = init_error

    def nvmlInit(self) -> None:
        if self.init_error:
            raise self.NVMLError("Driver Not Loaded")

    def nvmlDeviceGetCount(self) -> int:
        return len(self.power_mw)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        if self.energy_mj is None:
            raise self.NVMLError("Not Supported")
        return self.energy_mj[handle]

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        return self.power_mw[handle]


def test_nvml_energy_counters() -> None:
    nvml = FakeNvml(energy_mj=[1_000, 5_000], power_mw=[0, 0])
    meter = NvmlMeter(nvml)  # type: ignore[arg-type]
    assert (meter.available, meter.method, meter.domains()) == (True, "nvml", ["gpu-0", "gpu-1"])
    nvml.energy_mj = [4_000, 5_500]
    assert meter.read() == {"gpu-0": 3.0, "gpu-1": 0.5}


def test_nvml_power_integrated_with_trapezoid_rule() -> None:
    nvml = FakeNvml(energy_mj=None, power_mw=[100_000])
    now = [0.0]
    meter = NvmlMeter(nvml, clock=lambda: now[0])  # type: ignore[arg-type]
    assert (meter.available, meter.method) == (True, "nvml-power-integrated")
    nvml.power_mw, now[0] = [200_000], 2.0
    assert meter.read() == {"gpu-0": 300.0}  # (100 W + 200 W) / 2 x 2 s
    nvml.power_mw, now[0] = [200_000], 2.5
    assert meter.read() == {"gpu-0": 400.0}


def test_nvml_unavailable_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails as if not installed
    meter = NvmlMeter()
    assert (meter.available, meter.reason, meter.domains()) == (False, "pynvml not installed", [])
    meter = NvmlMeter(FakeNvml(None, [1], init_error=True))  # type: ignore[arg-type]
    assert not meter.available and meter.reason == "NVML not usable: Driver Not Loaded"
    meter = NvmlMeter(FakeNvml(None, []))  # type: ignore[arg-type]
    assert not meter.available and meter.reason == "NVML sees no GPUs"


def test_estimated_meter_is_cpu_seconds_times_watts() -> None:
    cpu = [10.0]
    meter = EstimatedMeter(watts_per_core=6.0, cpu_seconds=lambda: cpu[0])
    assert (meter.method, meter.available, meter.domains()) == ("estimated", True, ["node"])
    cpu[0] = 12.5
    assert meter.read() == {"node": 15.0}  # 2.5 CPU s x 6 W


def test_estimated_meter_idle_watts_per_wall_second() -> None:
    cpu, now = [0.0], [100.0]
    meter = EstimatedMeter(
        watts_per_core=4.0, idle_watts=50.0, cpu_seconds=lambda: cpu[0], clock=lambda: now[0]
    )
    cpu[0], now[0] = 3.0, 102.0
    assert meter.read() == {"node": 3.0 * 4.0 + 50.0 * 2.0}


def test_estimated_meter_counts_this_process_with_psutil() -> None:
    meter = EstimatedMeter([os.getpid()], watts_per_core=1.0)
    end = time.process_time() + 0.1
    while time.process_time() < end:
        pass
    assert meter.read()["node"] > 0.05


def test_estimated_meter_rejects_bad_watts() -> None:
    with pytest.raises(ConfigError):
        EstimatedMeter(watts_per_core=0.0, cpu_seconds=lambda: 0.0)


def test_energy_config_validates() -> None:
    assert EnergyConfig().watts_per_core == energy.DEFAULT_WATTS_PER_CORE
    with pytest.raises(ConfigError, match="watts_per_core"):
        EnergyConfig(watts_per_core=-1.0)
    with pytest.raises(ConfigError, match="1 Hz"):
        EnergyConfig(interval_s=2.0)


def test_select_meters_falls_back_to_estimate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    meters = select_meters(EnergyConfig(powercap_root=tmp_path / "absent"))
    assert [(m.method, m.available) for m in meters] == [
        ("rapl", False),
        ("nvml", False),
        ("estimated", True),
    ]


def test_select_meters_never_adds_estimate_to_measured(powercap: Path) -> None:
    add_zone(powercap, "intel-rapl:0", "package-0", 0)
    meters = select_meters(EnergyConfig(powercap_root=powercap, use_nvml=False))
    assert [(m.method, m.available) for m in meters] == [("rapl", True)]


class CountingMeter:
    """Adds 1.5 J per read; optionally fails after some reads."""

    method = "rapl"
    available = True
    reason = ""

    def __init__(self, fail_after: int | None = None) -> None:
        self.reads = 0
        self.fail_after = fail_after

    def domains(self) -> list[str]:
        return ["package-0"]

    def read(self) -> dict[str, float]:
        if self.fail_after is not None and self.reads >= self.fail_after:
            raise OSError(5, "Input/output error")
        self.reads += 1
        return {"package-0": 1.5 * self.reads}


class TickClock:
    """Returns 0, 1, 2, ... seconds, one tick per call."""

    def __init__(self) -> None:
        self.now = -1.0
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            self.now += 1.0
            return self.now


def wait_for(condition, timeout_s: float = 5.0) -> None:
    end = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.002)


def test_sampler_collects_and_stops_promptly() -> None:
    sampler = EnergySampler([CountingMeter()], interval_s=0.01, clock=TickClock())
    sampler.start()
    wait_for(lambda: len(sampler.samples().t) >= 5)
    sampler.stop()
    samples = sampler.samples()
    n = len(samples.t)
    assert n >= 6  # the final sample is taken by stop()
    assert samples.t.tolist() == [float(i) for i in range(n)]
    assert samples.joules[:, 0].tolist() == [1.5 * (i + 1) for i in range(n)]
    assert (samples.domains, samples.methods, samples.method) == (("package-0",), ("rapl",), "rapl")
    assert sampler.error is None
    time.sleep(0.05)
    assert len(sampler.samples().t) == n  # nothing sampled after stop


def test_sampler_stop_does_not_wait_out_the_interval() -> None:
    sampler = EnergySampler([CountingMeter()], interval_s=1.0, clock=TickClock())
    sampler.start()
    started = time.monotonic()
    sampler.stop()
    assert time.monotonic() - started < 0.5
    assert len(sampler.samples().t) == 2
    sampler.stop()  # a second stop is harmless


def test_sampler_keeps_samples_when_a_meter_fails() -> None:
    sampler = EnergySampler([CountingMeter(fail_after=3)], interval_s=0.01, clock=TickClock())
    sampler.start()
    wait_for(lambda: sampler.error is not None)
    sampler.stop()
    assert sampler.error == "OSError: [Errno 5] Input/output error"
    assert sampler.samples().joules[:, 0].tolist() == [1.5, 3.0, 4.5]


def test_sampler_skips_unavailable_meters_and_rejects_duplicates(tmp_path: Path) -> None:
    sampler = EnergySampler([RaplMeter(tmp_path / "absent")], clock=TickClock())
    sampler.start()
    sampler.stop()
    samples = sampler.samples()
    assert samples.joules.shape == (2, 0) and samples.method == "unavailable"
    with pytest.raises(ValueError, match="overlapping"):
        EnergySampler([CountingMeter(), CountingMeter()])
    with pytest.raises(ConfigError):
        EnergySampler([CountingMeter()], interval_s=0)


def two_domain_samples() -> EnergySamples:
    # package: 0, 8, 24, 48 J; dram: 0, 2, 6, 12 J -> total 0, 10, 30, 60 J at t = 0, 1, 2, 3 s
    joules = np.array([[0.0, 0.0], [8.0, 2.0], [24.0, 6.0], [48.0, 12.0]])
    return EnergySamples(np.array([0.0, 1.0, 2.0, 3.0]), joules, ("package-0", "dram-0"), ("rapl", "rapl"))


def test_energy_between_interpolates_cumulative_counters() -> None:
    samples = two_domain_samples()
    assert energy_between(samples, 0.0, 3.0) == 60.0
    assert energy_between(samples, 0.5, 2.5) == 40.0  # 45 - 5
    assert average_power(samples, 0.5, 2.5) == 20.0
    assert peak_power(samples) == 30.0
    with pytest.raises(ValueError, match="not inside"):
        energy_between(samples, -1.0, 2.0)


def test_columns_round_trip_through_hdf5(tmp_path: Path) -> None:
    samples = two_domain_samples()
    columns = samples.columns()
    assert list(columns) == ["t", "rapl:package-0", "rapl:dram-0"]
    with h5py.File(tmp_path / "trace.h5", "w") as f:
        group = f.create_group("energy")
        for key, values in columns.items():
            group.create_dataset(key, data=np.asarray(values, dtype=np.float64))
    with h5py.File(tmp_path / "trace.h5", "r") as f:
        back = EnergySamples.from_columns({k: ds[()] for k, ds in f["energy"].items()})
    assert sorted(zip(back.domains, back.methods)) == [("dram-0", "rapl"), ("package-0", "rapl")]
    assert back.t.tolist() == samples.t.tolist()
    assert back.total().tolist() == samples.total().tolist()
    empty = EnergySamples.from_columns({"t": np.array([0.0, 1.0])})
    assert empty.joules.shape == (2, 0) and empty.method == "unavailable"


NO_VAL64 = "18446744073709551614"  # Slurm's "no value" marker for 64-bit fields (2**64 - 2)


@pytest.mark.parametrize(
    ("field", "joules"),
    [
        ("4580000", 4580000.0),
        ("  123456  ", 123456.0),
        ("", None),
        ("0", None),  # energy accounting off
        (NO_VAL64, None),  # nothing gathered (not 1.8e19 J)
        ("18446744073709551615", None),  # INFINITE64
        ("9223372036854775808", None),  # 2**63 and above: a sentinel or garbage, never joules
        ("Unknown", None),
        ("-5", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_sacct_joules(field: str, joules: float | None) -> None:
    assert sacct_joules(field) == joules


def test_sacct_record_job_steps_and_sentinels() -> None:
    off = sacct_record("9", 1, "", "sacct: error: Slurm accounting storage is disabled\n")
    assert off["joules"] is None
    assert off["reason"] == "sacct failed: error: Slurm accounting storage is disabled"
    job = sacct_record("9", 0, "9|5120\n9.batch|0\n9.extern|\n9.0|5000\n", "")
    assert job["joules"] == 5120.0 and job["reason"] is None
    assert job["steps"] == {"9": 5120.0, "9.batch": None, "9.extern": None, "9.0": 5000.0}
    steps = sacct_record("9", 0, "9|\n9.batch|\n9.0|300\n9.1|200\n", "")
    assert steps["joules"] == 500.0
    # the job line and the batch step carry NO_VAL64: the launched step's figure is the job's
    marked = sacct_record("9", 0, f"9|{NO_VAL64}\n9.batch|{NO_VAL64}\n9.0|300\n", "")
    assert marked["joules"] == 300.0 and marked["steps"]["9"] is None
    none = sacct_record("9", 0, f"9|0\n9.batch|{NO_VAL64}\n9.0|{NO_VAL64}\n", "")
    assert none["joules"] is None and "no AcctGatherEnergyType plugin" in none["reason"]
    assert sacct_record("9", 0, "", "")["reason"] == "sacct returned no rows for this job"


def fake_sacct(directory: Path, body: str) -> None:
    directory.mkdir()
    script = directory / "sacct"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_sacct_energy_calls_sacct(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_sacct(tmp_path / "bin", f'echo "$@" > {tmp_path / "bin" / "args"}; '
               f'printf "1234|{NO_VAL64}\\n1234.0|98765\\n"')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    record = sacct_energy("1234")
    assert record["joules"] == 98765.0 and record["steps"] == {"1234": None, "1234.0": 98765.0}
    assert (tmp_path / "bin" / "args").read_text().split() == [
        "-j", "1234", "-n", "-P", "-o", "JobID,ConsumedEnergyRaw"
    ]


def test_sacct_energy_without_or_with_failing_sacct(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert sacct_energy("")["reason"] == "not inside a Slurm job (no SLURM_JOB_ID)"
    monkeypatch.setenv("PATH", str(tmp_path))
    assert sacct_energy("1234")["reason"] == "sacct failed: sacct is not on PATH"
    fake_sacct(tmp_path / "bin", "echo 'sacct: error: Problem talking to the database' >&2; exit 1")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    record = sacct_energy("1234")
    assert record["joules"] is None
    assert record["reason"] == "sacct failed: error: Problem talking to the database"
