"""Theoretical peaks from (fake) cpuinfo files and the GPU datasheet table; the measured practical peak."""

import platform
from pathlib import Path

import pytest

from ai500.errors import ConfigError
from ai500.micro.peak import (
    cpu_theoretical_peak,
    gpu_theoretical_peak,
    practical_peak,
    read_cpuinfo,
)

BASE_FLAGS = "fpu sse sse2 ssse3 sse4_1 sse4_2"
AVX2_FMA = f"{BASE_FLAGS} avx fma avx2"
AVX512_FMA = f"{AVX2_FMA} avx512f avx512dq avx512bw avx512vl"
SAPPHIRE_RAPIDS = f"{AVX512_FMA} avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8"


def fake_cpuinfo(
    tmp_path: Path, flags: str, cores: int = 4, threads_per_core: int = 1, mhz: float = 2000.0
) -> str:
    """Write a /proc/cpuinfo-format file for one socket and return its path."""
    blocks = [
        f"processor\t: {i}\nmodel name\t: Fake CPU @ 2.00GHz\ncpu MHz\t\t: {mhz:.3f}\n"
        f"physical id\t: 0\ncore id\t\t: {i % cores}\nflags\t\t: {flags}\n"
        for i in range(cores * threads_per_core)
    ]
    path = tmp_path / "cpuinfo"
    path.write_text("\n".join(blocks))
    return str(path)


def peak(path: str, dtype: str, **kwargs: object) -> dict:
    no_cpufreq = "/nonexistent/cpuinfo_max_freq"
    return cpu_theoretical_peak(dtype, cpuinfo_path=path, cpufreq_path=no_cpufreq, **kwargs)


@pytest.mark.parametrize(
    ("flags", "dtype", "per_cycle"),
    [
        (AVX512_FMA, "float32", 32),  # 16 lanes × 2 (FMA) × 1 unit
        (AVX512_FMA, "bfloat16", 32),  # no bf16 arithmetic: computed at the float32 rate
        (f"{AVX512_FMA} avx512_bf16", "bfloat16", 64),  # VDPBF16PS: twice float32
        (SAPPHIRE_RAPIDS, "float32", 64),  # AMX → Xeon server core → 2 FMA units
        (SAPPHIRE_RAPIDS, "float16", 128),  # avx512_fp16: twice float32
        (SAPPHIRE_RAPIDS, "bfloat16", 1024),  # AMX tiles
        (AVX2_FMA, "float32", 16),  # 8 lanes × 2 (FMA) × 1 unit
        (AVX2_FMA, "float16", 16),
        (BASE_FLAGS, "float32", 4),  # SSE2 only: 4 lanes, no FMA
    ],
)
def test_flops_per_cycle_from_flags(tmp_path: Path, flags: str, dtype: str, per_cycle: int) -> None:
    result = peak(fake_cpuinfo(tmp_path, flags), dtype)
    assert result["flops_per_cycle"] == per_cycle
    assert result["gflops"] == pytest.approx(4 * 2.0 * per_cycle)
    assert result["method"].startswith("theoretical:")


def test_method_says_how(tmp_path: Path) -> None:
    assert "1 FMA unit assumed" in peak(fake_cpuinfo(tmp_path, AVX512_FMA), "float32")["method"]
    assert "no FMA" in peak(fake_cpuinfo(tmp_path, BASE_FLAGS), "float32")["method"]
    assert "float32 rate" in peak(fake_cpuinfo(tmp_path, AVX2_FMA), "bfloat16")["method"]
    assert "'cpu MHz'" in peak(fake_cpuinfo(tmp_path, AVX2_FMA), "float32")["method"]


def test_physical_cores_not_hyperthreads_and_overrides(tmp_path: Path) -> None:
    path = fake_cpuinfo(tmp_path, AVX2_FMA, cores=2, threads_per_core=2, mhz=3000.0)
    assert read_cpuinfo(path).physical_cores == 2
    assert peak(path, "float32")["gflops"] == pytest.approx(2 * 3.0 * 16)
    assert peak(path, "float32", cores=1, fma_units=2)["gflops"] == pytest.approx(1 * 3.0 * 32)
    with pytest.raises(ConfigError):
        peak(path, "float32", cores=0)


def test_cpufreq_maximum_wins_over_cpu_mhz(tmp_path: Path) -> None:
    cpufreq = tmp_path / "cpuinfo_max_freq"
    cpufreq.write_text("3500000\n")  # kHz
    path = fake_cpuinfo(tmp_path, AVX2_FMA)
    result = cpu_theoretical_peak("float32", cpuinfo_path=path, cpufreq_path=str(cpufreq))
    assert result["ghz"] == pytest.approx(3.5)
    assert str(cpufreq) in result["method"]


def test_underivable_and_bad_input(tmp_path: Path) -> None:
    assert peak(fake_cpuinfo(tmp_path, "fpu"), "float32")["gflops"] is None
    with pytest.raises(ConfigError):
        peak(fake_cpuinfo(tmp_path, AVX2_FMA), "float64")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError):
        peak(str(empty), "float32")


@pytest.mark.skipif(platform.machine() != "x86_64", reason="flags-based peak is x86 only")
def test_this_machine_has_a_theoretical_peak() -> None:
    assert cpu_theoretical_peak("float32")["gflops"] > 0


@pytest.mark.parametrize(
    ("name", "dtype", "tf32", "gflops"),
    [
        ("NVIDIA A100-SXM4-80GB", "bfloat16", False, 312_000),
        ("NVIDIA A100-SXM4-80GB", "float32", False, 19_500),
        ("NVIDIA A100-SXM4-80GB", "float32", True, 156_000),
        ("NVIDIA A10", "float16", False, 125_000),
        ("NVIDIA H100 80GB HBM3", "float16", False, 989_500),
        ("NVIDIA H100 PCIe", "bfloat16", False, 756_000),
        ("NVIDIA H200", "bfloat16", False, 989_500),
        ("Tesla V100-SXM2-16GB", "float32", True, 15_700),
        ("Tesla V100-SXM2-16GB", "bfloat16", False, None),
        ("NVIDIA GH200 480GB", "float32", False, None),
        ("AMD Instinct MI250X", "float32", False, None),
    ],
)
def test_gpu_datasheet_lookup(name: str, dtype: str, tf32: bool, gflops: float | None) -> None:
    result = gpu_theoretical_peak(name, dtype, tf32=tf32)
    assert result["gflops"] == gflops
    assert result["method"]


def test_practical_peak_is_measured() -> None:
    result = practical_peak("float32", preset="ci")
    assert result["gflops"] > 0
    assert result["gflops"] == max(result["per_order"].values())
    assert result["method"].startswith("measured:")
    with pytest.raises(ConfigError):
        practical_peak("float32", preset="huge")
