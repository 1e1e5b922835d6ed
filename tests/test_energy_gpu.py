"""GPU energy with a fake NVML: only the job's GPUs are read (by ordinal or UUID), counters or
integrated power, RAPL + NVML summed per node, and the coverage labels."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from ai500.metrics import energy
from ai500.metrics.energy import EnergyConfig, EnergySampler, NvmlMeter, coverage, select_meters

UUIDS = ["GPU-aaaa0000-0000-0000-0000-000000000000", "GPU-bbbb1111-1111-1111-1111-111111111111",
         "GPU-cccc2222-2222-2222-2222-222222222222", "GPU-dddd3333-3333-3333-3333-333333333333"]


class FakeNvml:
    """A node of four GPUs as pynvml shows it; energy in mJ, power in mW, handles are indices."""

    class NVMLError(Exception):
        pass

    def __init__(self, energy_mj: list[int] | None = None, power_mw: list[int] | None = None):
        self.energy_mj = energy_mj if energy_mj is not None else [0, 0, 0, 0]
        self.counters = energy_mj is not None
        self.power_mw = power_mw or [0, 0, 0, 0]
        self.opened: list[int] = []

    def nvmlInit(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return len(self.power_mw)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        if not 0 <= index < len(self.power_mw):
            raise self.NVMLError("Invalid Argument")
        self.opened.append(index)
        return index

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> int:
        if uuid not in UUIDS:
            raise self.NVMLError("Not Found")
        self.opened.append(UUIDS.index(uuid))
        return UUIDS.index(uuid)

    def nvmlDeviceGetIndex(self, handle: int) -> int:
        return handle

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        if not self.counters:
            raise self.NVMLError("Not Supported")
        return self.energy_mj[handle]

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        return self.power_mw[handle]


def test_only_the_jobs_gpus_are_read_by_ordinal():
    nvml = FakeNvml(energy_mj=[1_000, 2_000, 3_000, 4_000])
    meter = NvmlMeter(nvml, devices=["1", "3"])  # type: ignore[arg-type]
    assert (meter.available, meter.method, meter.domains()) == (True, "nvml", ["gpu-1", "gpu-3"])
    assert sorted(set(nvml.opened)) == [1, 3]  # the other jobs' GPUs are never opened
    nvml.energy_mj = [9_000, 2_500, 9_000, 6_000]
    assert meter.read() == {"gpu-1": 0.5, "gpu-3": 2.0}


def test_gpus_named_by_uuid_map_to_nvml_indices():
    nvml = FakeNvml(energy_mj=[0, 0, 0, 0])
    meter = NvmlMeter(nvml, devices=[UUIDS[2]])  # type: ignore[arg-type]
    assert meter.domains() == ["gpu-2"]
    nvml.energy_mj = [5_000, 5_000, 1_500, 5_000]
    assert meter.read() == {"gpu-2": 1.5}


def test_power_integration_reads_only_the_jobs_gpus():
    nvml = FakeNvml(power_mw=[50_000, 100_000, 300_000, 50_000])
    now = [0.0]
    meter = NvmlMeter(nvml, clock=lambda: now[0], devices=["1"])  # type: ignore[arg-type]
    assert (meter.method, meter.domains()) == ("nvml-power-integrated", ["gpu-1"])
    nvml.power_mw, now[0] = [50_000, 200_000, 300_000, 50_000], 2.0
    assert meter.read() == {"gpu-1": 300.0}  # (100 W + 200 W) / 2 x 2 s; GPU 2's 300 W not ours


@pytest.mark.parametrize("devices, reason", [
    (["7"], "NVML has no GPU 7 (Invalid Argument)"),
    (["GPU-ffff"], "NVML has no GPU GPU-ffff (Not Found)"),
    (["MIG-aaaa/1/0"], ("GPU MIG-aaaa/1/0 is a MIG instance: NVML counts energy for whole "
                        "GPUs only, not metered")),
])
def test_a_gpu_nvml_cannot_meter_is_a_reason(devices, reason):
    meter = NvmlMeter(FakeNvml(energy_mj=[0, 0, 0, 0]), devices=devices)  # type: ignore[arg-type]
    assert (meter.available, meter.reason, meter.domains()) == (False, reason, [])


def test_a_job_without_gpus_on_the_node_does_not_touch_nvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # would say "not installed" if imported
    meter = NvmlMeter(devices=[])
    assert (meter.available, meter.reason) == (False, "the job computes on no GPU of this node")


def test_select_meters_hands_nvml_the_jobs_gpus(tmp_path: Path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(energy_mj=[0, 0, 0, 0]))
    meters = select_meters(EnergyConfig(powercap_root=tmp_path / "absent"), gpus=["0", "2"])
    assert [(m.method, m.available, m.domains()) for m in meters] == [
        ("rapl", False, []), ("nvml", True, ["gpu-0", "gpu-2"])]  # measured: no estimate
    meters = select_meters(EnergyConfig(powercap_root=tmp_path / "absent"), gpus=[])
    assert [(m.method, m.available) for m in meters] == [
        ("rapl", False), ("nvml", False), ("estimated", True)]


@pytest.mark.parametrize("methods, label", [
    (["rapl", "rapl"], "cpu"),
    (["nvml"], "gpu"),
    (["nvml-power-integrated"], "gpu"),
    (["rapl", "nvml", "nvml"], "cpu+gpu"),
    (["nvml-power-integrated", "rapl"], "cpu+gpu"),
    (["estimated"], "estimated"),
    ([], "none"),
])
def test_coverage_labels(methods, label):
    assert coverage(methods) == label


class FakeRapl:
    """A RAPL meter reading one package: 100 W."""

    method, available, reason = "rapl", True, ""

    def __init__(self, clock):
        self.clock = clock

    def domains(self):
        return ["package-0"]

    def read(self):
        return {"package-0": 100.0 * self.clock()}


def test_node_energy_is_rapl_plus_nvml():
    now = [0.0]
    nvml = FakeNvml(energy_mj=[0, 0, 0, 0])
    gpu = NvmlMeter(nvml, devices=["0", "1"])  # type: ignore[arg-type]
    sampler = EnergySampler([FakeRapl(lambda: now[0]), gpu], interval_s=1.0, clock=lambda: now[0])
    sampler._sample()
    now[0], nvml.energy_mj = 10.0, [2_000_000, 3_000_000, 0, 0]  # 200 W and 300 W for 10 s
    sampler._sample()
    samples = sampler.samples()
    assert samples.domains == ("package-0", "gpu-0", "gpu-1")
    assert (samples.method, samples.coverage) == ("nvml+rapl", "cpu+gpu")
    np.testing.assert_allclose(samples.total(), [0.0, 1000.0 + 2000.0 + 3000.0])
    assert energy.energy_between(samples, 0.0, 10.0) == pytest.approx(6000.0)
    back = energy.EnergySamples.from_columns(samples.columns())
    assert back.coverage == "cpu+gpu"
