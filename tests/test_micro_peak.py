"""Theoretical peaks from (fake) cpuinfo text through the microarchitecture table, clocks and their
sources, system.yaml overrides, the GPU datasheet table, and the practical-peak GEMM search."""

import platform
from pathlib import Path

import pytest

from ai500 import config
from ai500.errors import ConfigError
from ai500.micro.peak import (
    DTYPE_NAMES,
    check_overrides,
    cpu_clock_ghz,
    cpu_theoretical_peak,
    gpu_theoretical_peak,
    lookup,
    parse_cpuinfo,
    practical_peak,
    read_cpuinfo,
    search_done,
    stops_growing,
)

BASE = "fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c"
AVX2 = f"{BASE} fma avx2"
AVX512 = f"{AVX2} avx512f avx512dq avx512bw avx512vl"
SAPPHIRE_RAPIDS = f"{AVX512} avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8"
NO_CPUFREQ = "/nonexistent/cpufreq"


def cpuinfo_text(vendor: str = "GenuineIntel", family: int = 6, model: int = 0x55, name: str = "Fake CPU",
                 flags: str = AVX512, cores: int = 4, threads_per_core: int = 1, mhz: float = 2000.0) -> str:
    """/proc/cpuinfo-format text for one socket."""
    return "\n".join(
        f"processor\t: {i}\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\n"
        f"model name\t: {name}\ncpu MHz\t\t: {mhz:.3f}\nphysical id\t: 0\ncore id\t\t: {i % cores}\n"
        f"flags\t\t: {flags}\n"
        for i in range(cores * threads_per_core))


def fake(tmp_path: Path, **kwargs: object) -> str:
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo_text(**kwargs))
    return str(path)


def peak(path: str, dtype: str = "float32", **kwargs: object) -> dict:
    return cpu_theoretical_peak(dtype, cpuinfo_path=path, cpufreq_dir=NO_CPUFREQ, **kwargs)


def test_the_issue_machine_zen3_epyc_7763(tmp_path):
    """AMD EPYC, family 25 model 1 (Zen 3), 2 cores at 2.445 GHz: 2 × 2.445 × 32 = 156.5 GFLOPS, not the
    78.3 a 1-FMA-unit assumption gave."""
    path = fake(tmp_path, vendor="AuthenticAMD", family=25, model=1, flags=AVX2, cores=2, mhz=2445.0,
                name="AMD EPYC 7763 64-Core Processor")
    result = peak(path)
    assert result["microarchitecture"] == "AMD Zen 3"
    assert result["flops_per_cycle"] == 32 and result["ghz"] == pytest.approx(2.445)
    assert result["gflops"] == pytest.approx(156.48)
    assert result["unknown"] is None
    assert "2 FMA unit(s) × 256-bit" in result["flops_per_cycle_source"]
    assert "'cpu MHz'" in result["clock_source"] and "turbo" in result["method"]


@pytest.mark.parametrize(("vendor", "family", "model", "name", "flags", "per_cycle", "arch"), [
    ("AuthenticAMD", 23, 0x01, "AMD EPYC 7601 32-Core Processor", AVX2, 16, "AMD Zen 1/Zen+"),
    ("AuthenticAMD", 23, 0x08, "AMD Ryzen 7 2700X", AVX2, 16, "AMD Zen 1/Zen+"),
    ("AuthenticAMD", 23, 0x31, "AMD EPYC 7742 64-Core Processor", AVX2, 32, "AMD Zen 2"),
    ("AuthenticAMD", 23, 0x71, "AMD Ryzen 9 3900X", AVX2, 32, "AMD Zen 2"),
    ("AuthenticAMD", 25, 0x01, "AMD EPYC 7763", AVX2, 32, "AMD Zen 3"),
    ("AuthenticAMD", 25, 0x21, "AMD Ryzen 9 5950X", AVX2, 32, "AMD Zen 3"),
    ("AuthenticAMD", 25, 0x11, "AMD EPYC 9654 96-Core Processor", AVX512, 32, "AMD Zen 4"),  # 2 × 256
    ("AuthenticAMD", 25, 0x61, "AMD Ryzen 9 7950X", AVX512, 32, "AMD Zen 4"),
    ("AuthenticAMD", 25, 0xA0, "AMD EPYC 9754 128-Core Processor", AVX512, 32, "AMD Zen 4"),
    ("AuthenticAMD", 26, 0x02, "AMD EPYC 9755 128-Core Processor", AVX512, 64,
     "AMD Zen 5 (Turin, Turin Dense)"),
    ("AuthenticAMD", 26, 0x44, "AMD Ryzen 9 9950X", AVX512, 64, "AMD Zen 5 (Granite Ridge)"),
    ("AuthenticAMD", 26, 0x44, "AMD Ryzen 9 9950X", AVX2, 32, "AMD Zen 5 (Granite Ridge)"),  # VM: no avx512f
    ("AuthenticAMD", 26, 0x24, "AMD Ryzen AI 9 HX 370", AVX512, 32, "AMD Zen 5 (Strix Point)"),
    ("AuthenticAMD", 26, 0x70, "AMD RYZEN AI MAX+ 395", AVX512, 64, "AMD Zen 5 (Strix Halo)"),
    ("GenuineIntel", 6, 0x55, "Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz", AVX512, 64,
     "Intel Skylake-SP/Cascade Lake"),
    ("GenuineIntel", 6, 0x55, "Intel(R) Xeon(R) Platinum 8280 CPU @ 2.70GHz", AVX512, 64,
     "Intel Skylake-SP/Cascade Lake"),
    ("GenuineIntel", 6, 0x55, "Intel(R) Xeon(R) Gold 5120 CPU @ 2.20GHz", AVX512, 32,
     "Intel Skylake-SP/Cascade Lake"),
    ("GenuineIntel", 6, 0x55, "Intel(R) Xeon(R) Gold 5122 CPU @ 3.60GHz", AVX512, 64,
     "Intel Skylake-SP/Cascade Lake"),
    ("GenuineIntel", 6, 0x55, "Intel(R) Xeon(R) Silver 4114 CPU @ 2.20GHz", AVX512, 32,
     "Intel Skylake-SP/Cascade Lake"),
    # A VM hiding AVX-512: 256-bit FMAs on ports 0 and 1, the same on every SKU.
    ("GenuineIntel", 6, 0x55, "Intel Xeon Processor (Skylake)", AVX2, 32, "Intel Skylake-SP/Cascade Lake"),
    ("GenuineIntel", 6, 0x3F, "Intel(R) Xeon(R) CPU E5-2680 v3 @ 2.50GHz", AVX2, 32, "Intel Haswell/Broadwell"),
    ("GenuineIntel", 6, 0x7E, "Intel(R) Core(TM) i7-1065G7 CPU @ 1.30GHz", AVX512, 32,
     "Intel Ice Lake/Tiger Lake/Rocket Lake client"),
    ("GenuineIntel", 6, 0x6A, "Intel(R) Xeon(R) Platinum 8380 CPU @ 2.30GHz", AVX512, 64, "Intel Ice Lake-SP"),
    ("GenuineIntel", 6, 0x8F, "Intel(R) Xeon(R) Platinum 8480+", SAPPHIRE_RAPIDS, 64, "Intel Sapphire Rapids"),
    ("GenuineIntel", 6, 0xCF, "Intel(R) Xeon(R) Platinum 8592+", SAPPHIRE_RAPIDS, 64, "Intel Emerald Rapids"),
    ("GenuineIntel", 6, 0xAD, "Intel(R) Xeon(R) 6980P", SAPPHIRE_RAPIDS, 64, "Intel Granite Rapids"),
])
def test_flops_per_cycle_from_the_table(tmp_path, vendor, family, model, name, flags, per_cycle, arch):
    result = peak(fake(tmp_path, vendor=vendor, family=family, model=model, name=name, flags=flags))
    assert (result["flops_per_cycle"], result["microarchitecture"], result["unknown"]) == (per_cycle, arch, None)
    assert result["gflops"] == pytest.approx(4 * result["ghz"] * per_cycle)


@pytest.mark.parametrize(("model", "flags", "per_cycle", "arch"), [
    (0xA7, AVX512, 32, "Intel Ice Lake/Tiger Lake/Rocket Lake client"),  # a real Rocket Lake
    # Seen on a 2-core VM: Rocket Lake's model number with a server core's AMX and AVX512-FP16. numpy's
    # GEMM ran at 1.66x the 1-unit peak there, so the model number was not the core's.
    (0xA7, SAPPHIRE_RAPIDS, 64, "Intel server core with AMX (from the amx_tile flag)"),
    (0x55, SAPPHIRE_RAPIDS, 64, "Intel server core with AMX (from the amx_tile flag)"),
    (0xF0, SAPPHIRE_RAPIDS, 64, "Intel server core with AMX (from the amx_tile flag)"),  # not in the table
    (0x8F, SAPPHIRE_RAPIDS, 64, "Intel Sapphire Rapids"),  # a consistent row still names the core
])
def test_amx_flags_overrule_a_model_number_without_amx(tmp_path, model, flags, per_cycle, arch):
    result = peak(fake(tmp_path, model=model, name="Intel(R) Xeon(R) Processor", flags=flags))
    assert (result["flops_per_cycle"], result["microarchitecture"], result["unknown"]) == (per_cycle, arch, None)


@pytest.mark.parametrize(("vendor", "family", "model", "name", "flags", "fragment"), [
    ("GenuineIntel", 6, 0x55, "Intel Xeon Processor (Skylake, IBRS)", AVX512, "depend on the SKU"),
    ("GenuineIntel", 6, 0x55, "Intel(R) Xeon(R) W-2145 CPU @ 3.70GHz", AVX512, "does not say which"),
    ("GenuineIntel", 6, 0x97, "12th Gen Intel(R) Core(TM) i9-12900K", AVX2, "hybrid"),
    ("GenuineIntel", 6, 0x6C, "Intel(R) Xeon(R) D-2796TE", AVX512, "Xeon D"),
    ("AuthenticAMD", 26, 0x60, "AMD Ryzen AI 7 350", AVX512, "no source"),
    ("AuthenticAMD", 27, 0x00, "AMD Future CPU", AVX512, "not in the microarchitecture table"),
    ("CentaurHauls", 6, 0x0F, "VIA Nano", AVX2, "not in the microarchitecture table"),
    ("AuthenticAMD", 25, 0x01, "AMD EPYC 7763", BASE, "no 'fma' flag"),
])
def test_unknown_says_why_and_never_guesses(tmp_path, vendor, family, model, name, flags, fragment):
    result = peak(fake(tmp_path, vendor=vendor, family=family, model=model, name=name, flags=flags))
    assert result["gflops"] is None and result["flops_per_cycle"] is None
    assert fragment in result["unknown"] and "system.yaml" in result["unknown"]
    assert result["method"].startswith("theoretical: unknown")


@pytest.mark.parametrize(("flags", "dtype", "per_cycle"), [
    (AVX512, "bfloat16", 64),  # no bf16 arithmetic: converted, float32 rate (Emerald Rapids: 64)
    (f"{AVX512} avx512_bf16", "bfloat16", 128),  # VDPBF16PS: twice float32
    (SAPPHIRE_RAPIDS, "bfloat16", 1024),  # AMX tiles
    (SAPPHIRE_RAPIDS, "float16", 128),  # avx512_fp16, no amx_fp16: twice float32
    (AVX512, "float16", 64),  # f16c only converts
])
def test_reduced_precision_per_cycle(tmp_path, flags, dtype, per_cycle):
    result = peak(fake(tmp_path, model=0xCF, flags=flags), dtype)
    assert result["flops_per_cycle"] == per_cycle and f"{dtype} FLOPs/cycle/core" in result["method"]


def test_overrides_replace_each_part(tmp_path):
    skx_vm = fake(tmp_path, model=0x55, name="Intel Xeon Processor (Cascadelake)", cores=2, mhz=3000.0)
    assert peak(skx_vm)["gflops"] is None
    given = peak(skx_vm, overrides={"fma_units": 2})  # the SKU's figure from ARK; width from the table
    assert given["flops_per_cycle"] == 64 and given["gflops"] == pytest.approx(2 * 3.0 * 64)
    assert "fma_units 2 from system.yaml" in given["flops_per_cycle_source"]
    unknown_cpu = fake(tmp_path, vendor="AuthenticAMD", family=99, model=1)
    assert peak(unknown_cpu, overrides={"fma_units": 2})["gflops"] is None  # no width: still unknown
    both = peak(unknown_cpu, overrides={"fma_units": 4, "vector_bits": 128})
    assert both["flops_per_cycle"] == 32 and both["unknown"] is None
    assert "fma_units 4 and vector_bits 128 from system.yaml" in both["flops_per_cycle_source"]
    whole = peak(unknown_cpu, overrides={"flops_per_cycle": 24.0, "clock_ghz": 1.5})
    assert whole["gflops"] == pytest.approx(4 * 1.5 * 24.0)
    assert "peak.flops_per_cycle" in whole["flops_per_cycle_source"]
    assert "peak.clock_ghz" in whole["clock_source"]


@pytest.mark.parametrize(("values", "fragment"), [
    ({"fma_units": 0}, "peak.fma_units must be a whole number from 1 to 8 or null, got 0"),
    ({"fma_units": 1.5}, "peak.fma_units must be"),
    ({"vector_bits": 384}, "peak.vector_bits must be 128, 256 or 512"),
    ({"flops_per_cycle": -1}, "peak.flops_per_cycle must be a finite number > 0"),
    ({"clock_ghz": True}, "peak.clock_ghz must be"),
    ({"clock_ghz": 2400}, "peak.clock_ghz must be a number of GHz"),
    ({"fma_unit": 2}, "unknown key(s) fma_unit in 'peak'"),
])
def test_bad_overrides_are_one_line_errors(values, fragment):
    with pytest.raises(ConfigError) as info:
        check_overrides(values, "--system s.yaml")
    assert fragment in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith("--system s.yaml: ")


def test_system_yaml_peak_section_is_read_and_validated(tmp_path):
    default = config.resolve(["--benchmark", "fc", "--preset", "ci"])
    assert default.system["peak"] == {"fma_units": None, "vector_bits": None, "flops_per_cycle": None,
                                      "clock_ghz": None}
    good = tmp_path / "good.yaml"
    good.write_text("peak: {fma_units: 2, clock_ghz: 2.445}\n")
    cfg = config.resolve(["--benchmark", "fc", "--preset", "ci", "--system", str(good)])
    assert cfg.system["peak"]["fma_units"] == 2 and cfg.system["peak"]["clock_ghz"] == 2.445
    for text, fragment in (("peak: {vector_bits: 1024}\n", "peak.vector_bits must be 128, 256 or 512"),
                           ("peak: {cores: 4}\n", "unknown key(s) cores in 'peak'")):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(ConfigError) as info:
            config.resolve(["--benchmark", "fc", "--preset", "ci", "--system", str(bad)])
        assert fragment in str(info.value) and "\n" not in str(info.value)


def test_clock_sources_in_order(tmp_path):
    named = parse_cpuinfo(cpuinfo_text(name="Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz", mhz=1000.0))
    assert cpu_clock_ghz(named, None, NO_CPUFREQ)[0] == 2.4  # nominal, not the current 1.0 GHz
    assert cpu_clock_ghz(named, {"clock_ghz": 3.1}, NO_CPUFREQ) == (
        3.1, "clock 3.1 GHz given in system.yaml (peak.clock_ghz)")
    plain = parse_cpuinfo(cpuinfo_text(name="AMD EPYC 7763 64-Core Processor", mhz=2445.0))
    ghz, how = cpu_clock_ghz(plain, None, NO_CPUFREQ)
    assert ghz == 2.445 and "no cpufreq driver" in how
    cpufreq = tmp_path / "cpufreq"
    cpufreq.mkdir()
    (cpufreq / "cpuinfo_max_freq").write_text("3500000\n")  # kHz
    ghz, how = cpu_clock_ghz(plain, None, str(cpufreq))
    assert ghz == 3.5 and "maximum (boost) clock" in how and "upper bound" in how
    (cpufreq / "base_frequency").write_text("2450000\n")
    ghz, how = cpu_clock_ghz(plain, None, str(cpufreq))
    assert ghz == 2.45 and "base_frequency" in how
    no_clock = parse_cpuinfo("processor: 0\nvendor_id: AuthenticAMD\n")
    assert cpu_clock_ghz(no_clock, None, NO_CPUFREQ)[0] is None


def test_cpuinfo_parser_and_physical_cores(tmp_path):
    text = cpuinfo_text(family=25, model=1, vendor="AuthenticAMD", cores=2, threads_per_core=2, mhz=3000.0)
    info = parse_cpuinfo(text)
    assert (info.vendor, info.family, info.model, info.physical_cores) == ("AuthenticAMD", 25, 1, 2)
    assert lookup(info).name == "AMD Zen 3"
    path = fake(tmp_path, model=0xCF, cores=2, threads_per_core=2, mhz=3000.0)
    assert read_cpuinfo(path).physical_cores == 2
    assert peak(path)["gflops"] == pytest.approx(2 * 3.0 * 64)
    assert peak(path, cores=1)["gflops"] == pytest.approx(1 * 3.0 * 64)
    with pytest.raises(ConfigError):
        peak(path, cores=0)
    with pytest.raises(ConfigError):
        peak(path, "float64")
    with pytest.raises(ConfigError):
        parse_cpuinfo("\n")
    with pytest.raises(ConfigError):
        read_cpuinfo(str(tmp_path / "missing"))


def test_dtype_names_match_the_kernels():
    from ai500.micro.kernels import DTYPES

    assert DTYPE_NAMES == tuple(DTYPES)


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the microarchitecture table is x86 only")
def test_this_machine_has_a_theoretical_peak_or_says_why():
    result = cpu_theoretical_peak("float32")
    assert (result["gflops"] or 0) > 0 or result["unknown"]


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
    assert result["method"] and (result["unknown"] is None) == (gflops is not None)


# --- the practical peak: the GEMM search ---

def test_stops_growing_and_search_done():
    assert not stops_growing([]) and not stops_growing([10.0])
    assert stops_growing([10.0, 10.2])  # +2 %
    assert not stops_growing([10.0, 10.4])  # +4 %
    assert stops_growing([10.0, 20.0, 9.0])
    assert not search_done({})
    assert not search_done({"tensorflow": [10.0, 20.0], "numpy": [30.0, 6.0]})  # one still climbs
    assert search_done({"tensorflow": [10.0, 10.1], "numpy": [30.0, 6.0]})


def fake_gemm(table: dict[str, dict[int, float]], calls: list):
    def measure(library, n, dtype, warmup, repeats):
        calls.append((library, n))
        return table[library][n]
    return measure


def test_practical_peak_searches_both_libraries_until_the_rate_stops_growing():
    table = {"tensorflow": {256: 40.0, 512: 60.0, 1024: 61.0, 2048: 62.0, 4096: 70.0},
             "numpy": {256: 50.0, 512: 100.0, 1024: 107.0, 2048: 107.5, 4096: 200.0}}
    calls: list = []
    result = practical_peak("float32", (256, 512, 1024, 2048, 4096), 1, 3, measure=fake_gemm(table, calls))
    # n=1024: numpy +7 % (goes on); n=2048: TF +1.6 %, numpy +0.5 %: stop; 4096 is never timed.
    assert [p["order"] for p in result["per_order"]] == [256, 512, 1024, 2048]
    assert ("numpy", 4096) not in calls and ("tensorflow", 4096) not in calls
    assert (result["gflops"], result["library"], result["order"]) == (107.5, "numpy", 2048)
    assert result["stopped_growing"] and "stopped at n=2048" in result["method"]


def test_practical_peak_says_when_it_was_still_growing():
    table = {"tensorflow": {64: 1.0, 128: 2.0}, "numpy": {64: 1.5, 128: 1.6}}
    result = practical_peak("float32", (64, 128), 0, 1, measure=fake_gemm(table, []))
    assert (result["gflops"], result["library"], result["stopped_growing"]) == (2.0, "tensorflow", False)
    assert "may be higher" in result["method"]
    tf_only = practical_peak("bfloat16", (64, 128), 0, 1, measure=fake_gemm(table, []))
    assert list(tf_only["per_order"][0]["gflops"]) == ["tensorflow"]  # numpy has no bfloat16
    with pytest.raises(ConfigError):
        practical_peak("float32", (128, 64), 0, 1, measure=fake_gemm(table, []))


def test_practical_peak_is_measured_for_real_on_tiny_orders():
    result = practical_peak("float32", (32, 64), 0, 2)
    assert result["gflops"] > 0 and result["library"] in ("tensorflow", "numpy")
    assert set(result["per_order"][0]["gflops"]) == {"tensorflow", "numpy"}
    assert result["gflops"] == max(g for p in result["per_order"] for g in p["gflops"].values())
    assert result["method"].startswith("measured:")
