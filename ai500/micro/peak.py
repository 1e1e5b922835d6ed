"""Peak rates that put micro-benchmark GFLOPS in context; every figure carries a `method` saying how.

- CPU theoretical peak: cores × clock × FLOPs per cycle per core, the last derived from the SIMD width and
  FMA the CPU reports in /proc/cpuinfo flags (and its AMX tiles where it has them).
- GPU theoretical peak: datasheet figures looked up by device name (data only, never used on a CPU).
- Practical peak: the best rate of a few large square GEMMs, measured with the micro benchmarks' own timing.
"""

import re
from dataclasses import dataclass
from pathlib import Path

from ai500.errors import ConfigError
from ai500.micro.kernels import DTYPES, measure
from ai500.micro.sizes import PEAK_GEMM_ORDERS, PRESETS, REPEATS, FcSize

CPUINFO = "/proc/cpuinfo"
CPUFREQ_MAX = "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq"
_VECTOR_BITS = (("avx512f", 512), ("avx2", 256), ("avx", 256), ("sse2", 128))
_NATIVE_FLAGS = {"bfloat16": ("amx_bf16", "avx512_bf16"), "float16": ("amx_fp16", "avx512_fp16")}
_AMX_FLOPS_PER_CYCLE = 1024  # TDPBF16PS/TDPFP16PS: 16×16×32 multiply-adds per 16 cycles = 512 per cycle


@dataclass(frozen=True)
class CpuInfo:
    """What /proc/cpuinfo says about the CPU: model, feature flags, physical cores, highest 'cpu MHz'."""

    model_name: str
    flags: frozenset[str]
    physical_cores: int
    mhz: float | None


def read_cpuinfo(path: str = CPUINFO) -> CpuInfo:
    """Parse a /proc/cpuinfo-format file. Physical cores = distinct (physical id, core id) pairs, or the
    number of processors where the file has no core ids."""
    processors = []
    for block in Path(path).read_text().split("\n\n"):
        pairs = (line.partition(":") for line in block.splitlines())
        fields = {key.strip(): value.strip() for key, sep, value in pairs if sep}
        if "processor" in fields:
            processors.append(fields)
    if not processors:
        raise ConfigError(f"{path} lists no processors")
    cores = {(p.get("physical id"), p.get("core id")) for p in processors if "core id" in p}
    mhz = [float(p["cpu MHz"]) for p in processors if "cpu MHz" in p]
    return CpuInfo(
        model_name=processors[0].get("model name", "unknown CPU"),
        flags=frozenset(processors[0].get("flags", "").split()),
        physical_cores=len(cores) or len(processors),
        mhz=max(mhz) if mhz else None,
    )


def cpu_clock_ghz(
    info: CpuInfo, cpuinfo_path: str = CPUINFO, cpufreq_path: str = CPUFREQ_MAX
) -> tuple[float | None, str]:
    """The clock (GHz) for the peak and where it came from: the cpufreq maximum if readable, else the highest
    'cpu MHz' in cpuinfo (the current clock; on a VM usually the host's nominal clock)."""
    try:
        return int(Path(cpufreq_path).read_text()) / 1e6, f"maximum clock from {cpufreq_path}"
    except (OSError, ValueError):
        pass
    if info.mhz is None:
        return None, f"no clock: {cpufreq_path} unreadable and no 'cpu MHz' in {cpuinfo_path}"
    return info.mhz / 1e3, f"'cpu MHz' from {cpuinfo_path} (no {cpufreq_path})"


def flops_per_cycle(
    flags: frozenset[str], dtype: str, fma_units: int | None = None
) -> tuple[int | None, str]:
    """FLOPs per cycle per core in `dtype` from the CPU flags, and how that figure was derived.

    Vector width: avx512f 512 bit, avx/avx2 256, sse2 128. FMA (fma flag) counts 2 FLOPs per lane. The
    flags do not report how many FMA units a core has: 2 are assumed where the CPU has AMX (amx_tile is
    reported only by Xeon server cores from Sapphire Rapids on, which have two 512-bit FMA units), else 1,
    a lower bound for most AVX2 and AVX-512 parts; `fma_units` overrides. bfloat16: AMX tiles 1024/cycle,
    else avx512_bf16 (VDPBF16PS, two products per 32-bit lane) twice the float32 rate, else float32's.
    float16: amx_fp16 1024, else avx512_fp16 (32 lanes) twice the float32 rate, else float32's (f16c only
    converts).
    """
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
    bits = next((bits for flag, bits in _VECTOR_BITS if flag in flags), 0)
    if not bits:
        return None, "no avx512f, avx2, avx or sse2 flag: FLOPs per cycle not derivable"
    fma = 2 if "fma" in flags else 1
    if fma_units is not None:
        units, why = fma_units, f"{fma_units} FMA unit(s) as given"
    elif "amx_tile" in flags:
        units, why = 2, "2 FMA units (AMX present: Xeon server core)"
    else:
        units, why = 1, "1 FMA unit assumed"
    fp32 = bits // 32 * fma * units
    fma_how = "FMA" if fma == 2 else "no FMA"
    fp32_how = f"{bits}-bit vectors × {bits // 32} float32 lanes × {fma} ({fma_how}) × {why}"
    if dtype == "float32":
        return fp32, fp32_how
    amx_flag, vector_flag = _NATIVE_FLAGS[dtype]
    if amx_flag in flags:
        return _AMX_FLOPS_PER_CYCLE, f"{amx_flag}: AMX tiles, 512 {dtype} multiply-adds per cycle per core"
    if vector_flag in flags:
        return 2 * fp32, f"{vector_flag}: twice the float32 rate ({fp32_how})"
    return fp32, f"no native {dtype} arithmetic flag: converted and computed at the float32 rate ({fp32_how})"


def cpu_theoretical_peak(
    dtype: str,
    cores: int | None = None,
    cpuinfo_path: str = CPUINFO,
    cpufreq_path: str = CPUFREQ_MAX,
    fma_units: int | None = None,
) -> dict:
    """Theoretical CPU peak (GFLOPS) = cores × clock (GHz) × FLOPs/cycle/core in `dtype`.

    `cores` defaults to the physical cores in the cpuinfo file; pass the cores a rank actually uses. Returns
    gflops (None where not derivable), cores, ghz, flops_per_cycle, cpu (model name) and method.
    """
    info = read_cpuinfo(cpuinfo_path)
    if cores is None:
        cores, cores_how = info.physical_cores, f"{info.physical_cores} physical cores in {cpuinfo_path}"
    elif not isinstance(cores, int) or cores < 1:
        raise ConfigError(f"cores must be a positive integer, got {cores!r}")
    else:
        cores_how = f"{cores} cores as given"
    ghz, ghz_how = cpu_clock_ghz(info, cpuinfo_path, cpufreq_path)
    per_cycle, per_cycle_how = flops_per_cycle(info.flags, dtype, fma_units)
    gflops = None if ghz is None or per_cycle is None else cores * ghz * per_cycle
    return {
        "gflops": gflops,
        "cores": cores,
        "ghz": ghz,
        "flops_per_cycle": per_cycle,
        "cpu": info.model_name,
        "method": f"theoretical: {cores_how} × {ghz_how} × FLOPs/cycle from CPU flags: {per_cycle_how}",
    }


# NVIDIA datasheet peaks in TFLOPS, dense (without structured sparsity). float32 runs on CUDA cores;
# tensorfloat32, float16 and bfloat16 on tensor cores. No entry: the GPU lacks that precision.
_GPU_PEAKS_TFLOPS = {
    "V100-SXM2": {"float32": 15.7, "float16": 125.0},
    "V100-PCIE": {"float32": 14.0, "float16": 112.0},
    "V100S": {"float32": 16.4, "float16": 130.0},
    "T4": {"float32": 8.1, "float16": 65.0},
    "A10": {"float32": 31.2, "tensorfloat32": 62.5, "float16": 125.0, "bfloat16": 125.0},
    "A100": {"float32": 19.5, "tensorfloat32": 156.0, "float16": 312.0, "bfloat16": 312.0},
    "L40S": {"float32": 91.6, "tensorfloat32": 183.0, "float16": 362.0, "bfloat16": 362.0},
    "H100 PCIe": {"float32": 51.0, "tensorfloat32": 378.0, "float16": 756.0, "bfloat16": 756.0},
    "H100 NVL": {"float32": 60.0, "tensorfloat32": 417.5, "float16": 835.5, "bfloat16": 835.5},
    "H100": {"float32": 67.0, "tensorfloat32": 494.5, "float16": 989.5, "bfloat16": 989.5},
    "H200 NVL": {"float32": 60.0, "tensorfloat32": 417.5, "float16": 835.5, "bfloat16": 835.5},
    "H200": {"float32": 67.0, "tensorfloat32": 494.5, "float16": 989.5, "bfloat16": 989.5},
}
_GPU_PRECISION = {
    "float32": "FP32 on CUDA cores",
    "tensorfloat32": "TF32 on tensor cores",
    "float16": "FP16 on tensor cores",
    "bfloat16": "BF16 on tensor cores",
}


def gpu_theoretical_peak(device_name: str, dtype: str, tf32: bool = False) -> dict:
    """Datasheet peak (GFLOPS) of the GPU whose name contains a table key as a whole word (longest key wins).

    For float32, `tf32=True` (TensorFlow's default on Ampere and later) gives the TF32 tensor-core figure.
    Returns gflops (None for an unknown device or a precision it lacks), precision and method.
    """
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
    found = [key for key in _GPU_PEAKS_TFLOPS
             if re.search(rf"(?<!\w){re.escape(key)}(?!\w)", device_name, re.IGNORECASE)]
    if not found:
        return {"gflops": None, "precision": None, "method": f"no datasheet entry for GPU {device_name!r}"}
    key = max(found, key=len)  # "H100 PCIe" over "H100"; whole words, so "A10" never matches "A100"
    peaks = _GPU_PEAKS_TFLOPS[key]
    precision = "tensorfloat32" if dtype == "float32" and tf32 and "tensorfloat32" in peaks else dtype
    if precision not in peaks:
        return {"gflops": None, "precision": None, "method": f"NVIDIA {key} datasheet lists no {dtype} peak"}
    return {
        "gflops": peaks[precision] * 1e3,
        "precision": _GPU_PRECISION[precision],
        "method": f"NVIDIA {key} datasheet peak, {_GPU_PRECISION[precision]}, dense (no sparsity)",
    }


def practical_peak(dtype: str, preset: str = "full") -> dict:
    """Measured practical peak (GFLOPS): the best median rate of square GEMMs of the preset's orders.

    Each GEMM runs through the fc forward kernel and `time_kernel` with the preset's warm-up and repeats.
    Returns gflops, order (the n that gave it), per_order ({n: GFLOPS}) and method.
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    plan, orders = REPEATS[preset], PEAK_GEMM_ORDERS[preset]
    per_order = {
        n: measure("fc", FcSize(f"gemm_{n}", n, n, n), "forward", dtype, plan.warmup, plan.repeats)["gflops"]
        for n in orders
    }
    best = max(per_order, key=per_order.get)
    return {
        "gflops": per_order[best],
        "order": best,
        "per_order": per_order,
        "method": (
            f"measured: best median rate of square {dtype} GEMMs of order {', '.join(map(str, orders))} "
            f"(2·n³ FLOPs each), 1 untimed + {plan.warmup} warm-up + {plan.repeats} timed calls each"
        ),
    }
