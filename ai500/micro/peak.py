"""Peak rates that put micro-benchmark GFLOPS in context; every figure carries a `method` saying how.

- CPU theoretical peak = cores × clock (GHz) × FLOPs per cycle per core. FLOPs per cycle come from a table
  of microarchitectures (cpuinfo vendor, family, model → FMA pipes per core and the width each executes),
  never from a guess: a CPU the table does not know, or whose figure depends on the SKU where the model
  name does not settle it, gets no peak and a sentence saying why. `system.yaml` (section `peak`)
  overrides any part: fma_units, vector_bits, flops_per_cycle, clock_ghz.
- GPU theoretical peak: datasheet figures looked up by device name (data only, never used on a CPU).
- Practical peak: the best rate of square GEMMs, in TensorFlow and in numpy, over growing orders until the
  rates stop growing (each library's latest order less than `PEAK_MIN_GAIN` above its best before it).

Nothing here imports TensorFlow at module level (ai500.config validates the overrides with it).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ai500.errors import ConfigError

CPUINFO = "/proc/cpuinfo"
CPUFREQ_DIR = "/sys/devices/system/cpu/cpu0/cpufreq"
DTYPE_NAMES = ("float32", "float16", "bfloat16")  # = ai500.micro.kernels.DTYPES (checked by a test)
_NATIVE_FLAGS = {"bfloat16": ("amx_bf16", "avx512_bf16"), "float16": ("amx_fp16", "avx512_fp16")}
_AMX_FLOPS_PER_CYCLE = 1024  # TDPBF16PS/TDPFP16PS: 16×16×32 multiply-adds per 16 cycles = 512 per cycle
PEAK_MIN_GAIN = 0.03  # the GEMM search stops at the first order less than 3 % above the best before it
CLOCK_CAVEAT = "turbo and AVX/AVX-512 clocks differ from it"


@dataclass(frozen=True)
class CpuInfo:
    """What /proc/cpuinfo says about the CPU (first processor's fields), physical cores, logical
    CPUs, sockets (distinct physical ids; None where the text has none), highest 'cpu MHz'."""

    vendor: str
    family: int | None
    model: int | None
    model_name: str
    flags: frozenset[str]
    physical_cores: int
    mhz: float | None
    logical_cpus: int
    sockets: int | None


def _int(text: str | None) -> int | None:
    try:
        return int(text, 0) if text is not None else None
    except ValueError:
        return None


def parse_cpuinfo(text: str, source: str = CPUINFO) -> CpuInfo:
    """Parse /proc/cpuinfo-format text. Physical cores = distinct (physical id, core id) pairs, or the
    number of processors where the text has no core ids."""
    processors = []
    for block in text.split("\n\n"):
        pairs = (line.partition(":") for line in block.splitlines())
        fields = {key.strip(): value.strip() for key, sep, value in pairs if sep}
        if "processor" in fields:
            processors.append(fields)
    if not processors:
        raise ConfigError(f"{source} lists no processors")
    cores = {(p.get("physical id"), p.get("core id")) for p in processors if "core id" in p}
    mhz = [float(p["cpu MHz"]) for p in processors if "cpu MHz" in p]
    first = processors[0]
    return CpuInfo(
        vendor=first.get("vendor_id", ""),
        family=_int(first.get("cpu family")),
        model=_int(first.get("model")),
        model_name=first.get("model name", "unknown CPU"),
        flags=frozenset(first.get("flags", "").split()),
        physical_cores=len(cores) or len(processors),
        mhz=max(mhz) if mhz else None,
        logical_cpus=len(processors),
        sockets=len({p["physical id"] for p in processors if "physical id" in p}) or None,
    )


def read_cpuinfo(path: str = CPUINFO) -> CpuInfo:
    """Parse a /proc/cpuinfo-format file."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return parse_cpuinfo(text, path)


# --- the microarchitecture table --------------------------------------------------------------------

AMD, INTEL = "AuthenticAMD", "GenuineIntel"


@dataclass(frozen=True)
class Microarch:
    """One row: CPUs of `vendor` (cpuinfo vendor_id), `family` and a model in one of `models` (inclusive
    ranges). `widths`: (the flag a width needs, FP32 FMA pipes per core, bits each pipe executes), widest
    first; the first whose flag the CPU reports applies (a VM may hide AVX-512). Pipes None: no one figure
    for the row; `note` says why and what settles it."""

    name: str
    vendor: str
    family: int
    models: tuple[tuple[int, int], ...]
    widths: tuple[tuple[str, int | None, int], ...]
    note: str = ""
    absent: tuple[str, ...] = ()  # flags no CPU of the row has: a CPU reporting one is not of the row


_AVX2 = ("avx2", 2, 256)  # 2 × 256-bit FMA: every row below that has AVX2, with AVX-512 or without it
_AVX512_2 = (("avx512f", 2, 512), _AVX2)
_SET_IT = "set peak.fma_units and peak.vector_bits (or peak.flops_per_cycle) in system.yaml"
# AMX arrived with Sapphire Rapids: an older Intel row reporting amx_tile is a VM that shows a model
# number other than its host's (seen: model 0xA7, Rocket Lake client, with AMX and AVX512-FP16).
_AMX = "amx_tile"
_NO_AMX = (_AMX,)

# Model ranges of AMD rows: Linux arch/x86/kernel/cpu/amd.c, bsp_init_amd() (X86_FEATURE_ZEN1 ... ZEN5).
# Model numbers of Intel rows: Linux arch/x86/include/asm/intel-family.h.
MICROARCHITECTURES = (
    # Zen 1 / Zen+: four 128-bit FP pipes, FMA on two of them; a 256-bit AVX2 FMA is split in two halves.
    # Agner Fog, "The microarchitecture of Intel, AMD and VIA CPUs", AMD Zen chapter; AnandTech, "Intel
    # Skylake-SP vs AMD EPYC 7000" (2017): "AMD's Zen core has only two 128-bit FMACs".
    Microarch("AMD Zen 1/Zen+", AMD, 0x17, ((0x00, 0x2F), (0x50, 0x5F)), (("avx2", 2, 128),),
              "256-bit AVX2 executed as two 128-bit halves"),
    # Zen 2: the FP datapath widened to 256 bits, two FMA pipes. AMD, Hot Chips 31 (2019); Agner Fog, ibid.
    Microarch("AMD Zen 2", AMD, 0x17, ((0x30, 0x4F), (0x60, 0x7F), (0x90, 0x91), (0xA0, 0xAF)), (_AVX2,)),
    # Zen 3: two 256-bit FMA pipes (plus two FADD pipes, not counted: peak counts FMAs). AMD, Hot Chips 33
    # (2021); Chips and Cheese, Zen 3 articles (2021).
    Microarch("AMD Zen 3", AMD, 0x19, ((0x00, 0x0F), (0x20, 0x5F)), (_AVX2,)),
    # Zen 4: AVX-512 "double-pumped" through the 256-bit Zen 3 datapath, so 2 × 256 bits effective.
    # A. Yee (Mysticial), "Zen4's AVX512 Teardown", numberworld.org (2022); Chips and Cheese, Zen 4 (2022).
    Microarch("AMD Zen 4", AMD, 0x19, ((0x10, 0x1F), (0x60, 0xAF)), (_AVX2,),
              "AVX-512 executed on 256-bit datapaths"),
    # Zen 5 on server (Turin 0x00-0x0f; Turin Dense, Zen 5c, 0x10-0x1f) and desktop (Granite Ridge,
    # 0x40-0x4f): native 512-bit datapaths, two FMA pipes. AMD, Hot Chips 2024 and EPYC 9005 launch (2024);
    # A. Yee (Mysticial), "Zen5's AVX512 Teardown", numberworld.org (2024), on a Ryzen 9 9950X.
    Microarch("AMD Zen 5 (Turin, Turin Dense)", AMD, 0x1A, ((0x00, 0x1F),), _AVX512_2),
    Microarch("AMD Zen 5 (Granite Ridge)", AMD, 0x1A, ((0x40, 0x4F),), _AVX512_2),
    # Strix Halo (0x70-0x7f): the desktop CCDs, 512-bit FPU. Chips and Cheese, "AMD's Chiplet APU: An
    # Overview of Strix Halo" (2025).
    Microarch("AMD Zen 5 (Strix Halo)", AMD, 0x1A, ((0x70, 0x7F),), _AVX512_2),
    # Strix Point (0x20-0x2f): mobile Zen 5 with 256-bit FP datapaths (512-bit ops at Zen 4's rate).
    # Chips and Cheese, "AMD's Strix Point: Zen 5 Hits Mobile" (2024); D. Huang's Strix Point tests (2024).
    Microarch("AMD Zen 5 (Strix Point)", AMD, 0x1A, ((0x20, 0x2F),), (_AVX2,),
              "AVX-512 executed on 256-bit datapaths"),
    # Krackan Point (0x60-0x6f): mobile Zen 5; no source at hand says whether its FPU is 256 or 512 bits.
    Microarch("AMD Zen 5 (Krackan Point)", AMD, 0x1A, ((0x60, 0x6F),), (("avx2", None, 256),),
              "mobile Zen 5 whose FP datapath width (256 or 512 bits) this table has no source for"),
    # Haswell and Broadwell (client, -EP/-EX, -D) and Skylake client through Comet Lake: two 256-bit FMA
    # units (ports 0 and 1). Intel 64 and IA-32 Architectures Optimization Reference Manual.
    Microarch("Intel Haswell/Broadwell", INTEL, 6,
              ((0x3C, 0x3C), (0x3F, 0x3F), (0x45, 0x47), (0x3D, 0x3D), (0x4F, 0x4F), (0x56, 0x56)), (_AVX2,),
              absent=_NO_AMX),
    Microarch("Intel Skylake client to Comet Lake", INTEL, 6,
              ((0x4E, 0x4E), (0x5E, 0x5E), (0x8E, 0x8E), (0x9E, 0x9E), (0xA5, 0xA6)), (_AVX2,), absent=_NO_AMX),
    # Skylake-SP, Cascade Lake, Cooper Lake (all model 0x55): one 512-bit FMA unit (ports 0+1 fused) on
    # every SKU, a second one (port 5) only on some: see _skylake_sp_fma_units. 256-bit FMAs run on ports
    # 0 and 1 on every SKU. Intel ARK ("# of AVX-512 FMA Units"); Microway, Skylake-SP specifications
    # ("up to two AVX-512 FMA units per CPU core, depends upon CPU SKU"); J. McCalpin on Intel's forum.
    Microarch("Intel Skylake-SP/Cascade Lake", INTEL, 6, ((0x55, 0x55),),
              (("avx512f", None, 512), _AVX2), "1 or 2 AVX-512 FMA units depending on the SKU", _NO_AMX),
    # Client Ice Lake, Tiger Lake, Rocket Lake: one 512-bit FMA unit (ports 0+1 fused); 2 × 256 with AVX2.
    # Intel Optimization Reference Manual (Sunny Cove/Willow Cove client).
    Microarch("Intel Ice Lake/Tiger Lake/Rocket Lake client", INTEL, 6,
              ((0x7D, 0x7E), (0x8C, 0x8D), (0xA7, 0xA7)), (("avx512f", 1, 512), _AVX2), absent=_NO_AMX),
    # Ice Lake-SP: the server Sunny Cove core adds a second 512-bit FMA unit (port 5). Intel, Hot Chips 32
    # (2020); Intel ARK lists 2 AVX-512 FMA units for the 3rd-gen Xeon Scalable parts.
    Microarch("Intel Ice Lake-SP", INTEL, 6, ((0x6A, 0x6A),), _AVX512_2, absent=_NO_AMX),
    Microarch("Intel Ice Lake-D", INTEL, 6, ((0x6C, 0x6C),), (("avx512f", None, 512), _AVX2),
              "Xeon D: this table has no source for the AVX-512 FMA units of each SKU", _NO_AMX),
    # Sapphire Rapids and Emerald Rapids (Golden Cove/Raptor Cove server cores): 2 × 512-bit FMA, plus AMX.
    # Chips and Cheese, "Golden Cove Hits Servers" (2023): "2×512-bit FMA throughput similar to Intel
    # server CPUs"; Intel Optimization Reference Manual.
    Microarch("Intel Sapphire Rapids", INTEL, 6, ((0x8F, 0x8F),), _AVX512_2),
    Microarch("Intel Emerald Rapids", INTEL, 6, ((0xCF, 0xCF),), _AVX512_2),
    # Granite Rapids (-AP/-SP 0xad, -D 0xae; Redwood Cove server core): 2 × 512-bit FMA, plus AMX.
    # Intel Optimization Reference Manual; Chips and Cheese, Xeon 6 / Granite Rapids articles (2024).
    Microarch("Intel Granite Rapids", INTEL, 6, ((0xAD, 0xAE),), _AVX512_2),
    # Hybrid client parts (Alder Lake, Raptor Lake, Meteor Lake, Arrow Lake, Lunar Lake): performance and
    # efficiency cores have different FP units, so no one per-core figure fits every core.
    Microarch("Intel hybrid client (P- and E-cores)", INTEL, 6,
              ((0x97, 0x97), (0x9A, 0x9A), (0xB7, 0xB7), (0xBA, 0xBA), (0xBF, 0xBF), (0xAA, 0xAA),
               (0xAC, 0xAC), (0xC5, 0xC6), (0xBD, 0xBD)), (("avx2", None, 256),),
              "hybrid: P- and E-cores differ; give the average FLOPs/cycle of the cores used", _NO_AMX),
)


# Every Intel core with AMX tiles (Sapphire Rapids, Emerald Rapids, Granite Rapids) is a server core
# with two 512-bit FMA units, so the flag settles the FP32 rate when the model number cannot.
INTEL_AMX_SERVER = Microarch("Intel server core with AMX (from the amx_tile flag)", INTEL, 6, (),
                             _AVX512_2, "the model number is not one of this table's AMX rows; every "
                             "AMX core so far has 2 × 512-bit FMA units")


def lookup(info: CpuInfo) -> Microarch | None:
    """The table row of this CPU, or None. A row whose model matches but which cannot have one of the
    CPU's flags does not apply; an Intel CPU with AMX and no consistent row is an AMX server core."""
    for row in MICROARCHITECTURES:
        if (row.vendor == info.vendor and row.family == info.family and info.model is not None
                and any(low <= info.model <= high for low, high in row.models)
                and not any(flag in info.flags for flag in row.absent)):
            return row
    if info.vendor == INTEL and info.family == 6 and _AMX in info.flags:
        return INTEL_AMX_SERVER
    return None


def _skylake_sp_fma_units(model_name: str) -> tuple[int | None, str]:
    """AVX-512 FMA units of a Skylake-SP/Cascade Lake SKU from its model name: Platinum and Gold 6xxx 2,
    Gold 5122 and 5222 2, other Gold 5xxx, Silver and Bronze 1 (Intel ARK); otherwise unknown."""
    name = model_name.replace("(R)", "")
    if re.search(r"\bPlatinum\b", name) or re.search(r"\bGold\s+6\d{3}", name):
        return 2, "Xeon Platinum / Gold 6xxx: 2 AVX-512 FMA units"
    if re.search(r"\bGold\s+5[12]22\b", name):
        return 2, "Xeon Gold 5122/5222: 2 AVX-512 FMA units"
    if re.search(r"\bGold\s+5\d{3}", name) or re.search(r"\b(Silver|Bronze)\b", name):
        return 1, "Xeon Gold 5xxx, Silver, Bronze: 1 AVX-512 FMA unit"
    return None, (f"the AVX-512 FMA units of Skylake-SP/Cascade Lake depend on the SKU (Platinum and Gold "
                  f"6xxx: 2; Gold 5xxx, Silver, Bronze: 1) and the model name {model_name!r} does not "
                  "say which")


def fp32_flops_per_cycle(info: CpuInfo, overrides: dict | None = None) -> tuple[float | None, str, str]:
    """FP32 FLOPs per cycle per core: (value or None, how it was derived or why unknown, microarchitecture).

    FMA pipes × bits / 32 lanes × 2 FLOPs per lane (an FMA is a multiply and an add), from the table row
    of the CPU and the widest width whose flag the CPU reports; `overrides` (system.yaml `peak`) replace
    the pipes, the width, or the whole figure (`flops_per_cycle`).
    """
    overrides = overrides or {}
    row = lookup(info)
    arch = row.name if row else "unknown"
    if overrides.get("flops_per_cycle") is not None:
        value = overrides["flops_per_cycle"]
        return value, f"{value:g} FP32 FLOPs/cycle/core given in system.yaml (peak.flops_per_cycle)", arch
    table_units = table_bits = None
    source = why = ""
    if row is None:
        model = "?" if info.model is None else hex(info.model)
        why = (f"CPU {info.model_name!r} (vendor {info.vendor or '?'}, family {info.family}, model {model}) "
               "is not in the microarchitecture table")
    elif "fma" not in info.flags:
        why = f"{row.name}, but the CPU reports no 'fma' flag (hidden by a VM?)"
    else:
        width = next((w for w in row.widths if w[0] in info.flags), None)
        if width is None:
            why = (f"{row.name}, but the CPU reports no {' or '.join(w[0] for w in row.widths)} flag "
                   "(hidden by a VM?)")
        else:
            flag, table_units, table_bits = width
            sku = ""
            if table_units is None and row.name.startswith("Intel Skylake-SP"):
                table_units, sku = _skylake_sp_fma_units(info.model_name)
            if table_units is None:
                why = sku or f"{row.name}: {row.note}"
            else:
                notes = "; ".join(n for n in (sku, row.note) if n)
                source = (f"{row.name}: {table_units} FMA unit(s) × {table_bits}-bit with {flag}"
                          + (f" ({notes})" if notes else ""))
    given = [f"{k} {overrides[k]}" for k in ("fma_units", "vector_bits") if overrides.get(k) is not None]
    units = overrides["fma_units"] if overrides.get("fma_units") is not None else table_units
    bits = overrides["vector_bits"] if overrides.get("vector_bits") is not None else table_bits
    if units is None or bits is None:
        return None, f"{why}; {_SET_IT}", arch
    value = units * bits // 32 * 2
    origin = source
    if given:
        origin = f"{' and '.join(given)} from system.yaml; table: {source or why}"
    return value, (f"{units} FMA unit(s) × {bits}-bit vectors ({bits // 32} FP32 lanes) × 2 FLOPs per FMA "
                   f"= {value} FP32 FLOPs/cycle/core [{origin}]"), arch


def flops_per_cycle(info: CpuInfo, dtype: str, overrides: dict | None = None) -> tuple[float | None, str, str]:
    """FLOPs per cycle per core in `dtype`: (value or None, how or why not, microarchitecture).

    float32: `fp32_flops_per_cycle`. bfloat16: AMX tiles 1024/cycle (amx_bf16), else avx512_bf16
    (VDPBF16PS, two products per 32-bit lane) twice the float32 rate, else float32's. float16: amx_fp16
    1024, else avx512_fp16 (32 lanes) twice the float32 rate, else float32's (f16c only converts).
    """
    if dtype not in DTYPE_NAMES:
        raise ConfigError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPE_NAMES)}")
    fp32, how, arch = fp32_flops_per_cycle(info, overrides)
    if dtype == "float32":
        return fp32, how, arch
    amx_flag, vector_flag = _NATIVE_FLAGS[dtype]
    if amx_flag in info.flags:
        return (_AMX_FLOPS_PER_CYCLE, f"{amx_flag}: AMX tiles, 512 {dtype} multiply-adds per cycle per core",
                arch)
    if fp32 is None:
        return None, how, arch
    if vector_flag in info.flags:
        return 2 * fp32, f"{vector_flag}: twice the float32 rate ({how})", arch
    return fp32, f"no native {dtype} arithmetic flag: converted and computed at the float32 rate ({how})", arch


_MODEL_NAME_GHZ = re.compile(r"@\s*([0-9]+(?:\.[0-9]+)?)\s*GHz", re.IGNORECASE)


def _khz_file(path: Path) -> float | None:
    try:
        return int(path.read_text()) / 1e6
    except (OSError, ValueError):
        return None


def cpu_clock_ghz(info: CpuInfo, overrides: dict | None = None, cpufreq_dir: str = CPUFREQ_DIR,
                  cpuinfo_path: str = CPUINFO) -> tuple[float | None, str]:
    """The clock (GHz) for the peak and where it came from, first found of: peak.clock_ghz in system.yaml;
    the nominal clock in the model name ("@ 2.30GHz", Intel); cpufreq's base_frequency (intel_pstate);
    'cpu MHz' where there is no cpufreq driver (a VM: usually the host's nominal clock); cpufreq's
    cpuinfo_max_freq (the maximum boost clock, an upper bound). Turbo and AVX clocks differ from a nominal
    clock: a turbo above it can put measured rates above the peak."""
    overrides = overrides or {}
    if overrides.get("clock_ghz") is not None:
        return overrides["clock_ghz"], f"clock {overrides['clock_ghz']:g} GHz given in system.yaml (peak.clock_ghz)"
    found = _MODEL_NAME_GHZ.search(info.model_name)
    if found:
        return float(found.group(1)), f"nominal clock in the model name {info.model_name!r}"
    base = _khz_file(Path(cpufreq_dir) / "base_frequency")
    if base:
        return base, f"base clock from {cpufreq_dir}/base_frequency"
    if not Path(cpufreq_dir).is_dir() and info.mhz:
        return info.mhz / 1e3, (f"'cpu MHz' in {cpuinfo_path} (no cpufreq driver, as on a VM: usually the "
                                "host's nominal clock)")
    maximum = _khz_file(Path(cpufreq_dir) / "cpuinfo_max_freq")
    if maximum:
        return maximum, (f"maximum (boost) clock from {cpufreq_dir}/cpuinfo_max_freq: an upper bound, the "
                         "sustained all-core clock is lower")
    if info.mhz:
        return info.mhz / 1e3, f"current clock ('cpu MHz' in {cpuinfo_path}): it varies with load"
    return None, f"no clock in the model name, {cpufreq_dir} or {cpuinfo_path}; set peak.clock_ghz in system.yaml"


def cpu_theoretical_peak(dtype: str, cores: int | None = None, cpuinfo_path: str = CPUINFO,
                         cpufreq_dir: str = CPUFREQ_DIR, overrides: dict | None = None) -> dict:
    """Theoretical CPU peak (GFLOPS) = cores × clock (GHz) × FLOPs/cycle/core in `dtype`.

    `cores` defaults to the physical cores in the cpuinfo file; pass the cores a rank actually uses.
    `overrides`: system.yaml's `peak` section (checked by `check_overrides`). Returns gflops (None where
    not derivable), cores, ghz, clock_source, flops_per_cycle, flops_per_cycle_source, microarchitecture,
    cpu (model name), unknown (why there is no peak, or None) and method.
    """
    info = read_cpuinfo(cpuinfo_path)
    if cores is None:
        cores, cores_how = info.physical_cores, f"{info.physical_cores} physical cores in {cpuinfo_path}"
    elif not isinstance(cores, int) or isinstance(cores, bool) or cores < 1:
        raise ConfigError(f"cores must be a positive integer, got {cores!r}")
    else:
        cores_how = f"{cores} cores as given"
    ghz, ghz_how = cpu_clock_ghz(info, overrides, cpufreq_dir, cpuinfo_path)
    per_cycle, per_cycle_how, arch = flops_per_cycle(info, dtype, overrides)
    gflops = None if ghz is None or per_cycle is None else cores * ghz * per_cycle
    unknown = None
    if per_cycle is None:
        unknown = f"{dtype} FLOPs/cycle unknown: {per_cycle_how}"
    elif ghz is None:
        unknown = f"clock unknown: {ghz_how}"
    method = (f"theoretical: {cores_how} × clock {_fmt(ghz, '.3f')} GHz ({ghz_how}; {CLOCK_CAVEAT}) × "
              f"{_fmt(per_cycle, 'g')} {dtype} FLOPs/cycle/core ({per_cycle_how})")
    return {
        "gflops": gflops, "cores": cores, "ghz": ghz, "clock_source": ghz_how,
        "flops_per_cycle": per_cycle, "flops_per_cycle_source": per_cycle_how, "microarchitecture": arch,
        "cpu": info.model_name, "dtype": dtype, "unknown": unknown,
        "method": method if unknown is None else f"theoretical: unknown — {unknown}",
    }


def _fmt(value: float | None, spec: str) -> str:
    return "unknown" if value is None else format(value, spec)


# system.yaml `peak` keys: what each must be.
_OVERRIDES = {
    "fma_units": (lambda v: type(v) is int and 1 <= v <= 8, "a whole number from 1 to 8"),
    "vector_bits": (lambda v: type(v) is int and v in (128, 256, 512), "128, 256 or 512"),
    "flops_per_cycle": (lambda v: type(v) in (int, float) and math.isfinite(v) and v > 0,
                        "a finite number > 0"),
    "clock_ghz": (lambda v: type(v) in (int, float) and math.isfinite(v) and 0 < v < 20,
                  "a number of GHz > 0 and < 20"),
}


def check_overrides(values: object, where: str) -> dict:
    """The system config's `peak` section, checked: each key null or of its kind; ConfigError (one line
    starting with `where`) otherwise."""
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: section 'peak' must be a mapping, got {values!r}")
    unknown = sorted(set(values) - set(_OVERRIDES))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} in 'peak' "
                          f"(known: {', '.join(_OVERRIDES)})")
    for key, value in values.items():
        check, expected = _OVERRIDES[key]
        if value is not None and not check(value):
            raise ConfigError(f"{where}: peak.{key} must be {expected} or null, got {value!r}")
    return dict(values)


# --- GPU datasheets ---------------------------------------------------------------------------------

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
    Returns gflops (None for an unknown device or a precision it lacks), precision, unknown and method.
    """
    if dtype not in DTYPE_NAMES:
        raise ConfigError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPE_NAMES)}")
    found = [key for key in _GPU_PEAKS_TFLOPS
             if re.search(rf"(?<!\w){re.escape(key)}(?!\w)", device_name, re.IGNORECASE)]
    if not found:
        why = f"no datasheet entry for GPU {device_name!r}"
        return {"gflops": None, "precision": None, "unknown": why, "method": why}
    key = max(found, key=len)  # "H100 PCIe" over "H100"; whole words, so "A10" never matches "A100"
    peaks = _GPU_PEAKS_TFLOPS[key]
    precision = "tensorfloat32" if dtype == "float32" and tf32 and "tensorfloat32" in peaks else dtype
    if precision not in peaks:
        why = f"NVIDIA {key} datasheet lists no {dtype} peak"
        return {"gflops": None, "precision": None, "unknown": why, "method": why}
    return {
        "gflops": peaks[precision] * 1e3,
        "precision": _GPU_PRECISION[precision],
        "unknown": None,
        "method": f"NVIDIA {key} datasheet peak, {_GPU_PRECISION[precision]}, dense (no sparsity)",
    }


# --- the practical peak -----------------------------------------------------------------------------

def gemm_libraries(dtype: str, gpu: bool = False) -> tuple[str, ...]:
    """The libraries whose GEMM the practical peak and the fc forward rows time: TensorFlow always,
    numpy too for float32 on a CPU (numpy has no bfloat16, and its GEMM never runs on a GPU)."""
    return ("tensorflow", "numpy") if dtype == "float32" and not gpu else ("tensorflow",)


def stops_growing(rates: list[float], min_gain: float = PEAK_MIN_GAIN) -> bool:
    """True once the latest rate (of growing orders) is less than `min_gain` above the best before it."""
    return len(rates) >= 2 and rates[-1] < (1 + min_gain) * max(rates[:-1])


def search_done(rates_by_library: dict[str, list[float]], min_gain: float = PEAK_MIN_GAIN) -> bool:
    """True once every library's rate has stopped growing (`stops_growing`): the search goes on while any
    library still gains, so one library's noisy order does not end it while another still climbs."""
    return bool(rates_by_library) and all(stops_growing(r, min_gain) for r in rates_by_library.values())


def _measure_gemm(library: str, n: int, dtype: str, warmup: int, repeats: int) -> float:
    from ai500.micro import kernels
    from ai500.micro.sizes import FcSize

    if library == "numpy":
        return kernels.numpy_gemm(n, n, n, dtype, warmup, repeats)["gflops"]
    return kernels.measure("fc", FcSize(f"gemm_{n}", n, n, n), "forward", dtype, warmup, repeats)["gflops"]


def practical_peak(dtype: str, orders: tuple[int, ...] | list[int], warmup: int, repeats: int,
                   libraries: tuple[str, ...] | None = None,
                   measure: Callable[[str, int, str, int, int], float] | None = None,
                   min_gain: float = PEAK_MIN_GAIN) -> dict:
    """Measured practical peak (GFLOPS) of this process: the best median rate of square n×n·n×n GEMMs over
    `libraries` (default `gemm_libraries(dtype)`), orders tried in the given (growing) order until every
    library's rate at an order is less than `min_gain` above its best before it (`search_done`).

    `measure(library, n, dtype, warmup, repeats) -> GFLOPS` defaults to the fc forward kernel (TensorFlow,
    `tf.function`, forced completion) and `kernels.numpy_gemm`, each with 1 untimed + `warmup` + `repeats`
    calls. Returns gflops, library and order (what gave it), per_order ([{order, gflops: {library: rate}}]),
    stopped_growing (False: the largest order was reached while still growing) and method.
    """
    if not orders or list(orders) != sorted(set(orders)):
        raise ConfigError(f"GEMM orders must be a non-empty, strictly growing list, got {list(orders)!r}")
    libraries = libraries or gemm_libraries(dtype)
    measure = measure or _measure_gemm
    per_order: list[dict] = []
    stopped = False
    for n in orders:
        per_order.append({"order": n, "gflops": {lib: measure(lib, n, dtype, warmup, repeats)
                                                 for lib in libraries}})
        if search_done({lib: [p["gflops"][lib] for p in per_order] for lib in libraries}, min_gain):
            stopped = True
            break
    gflops, order, library = max((rate, p["order"], lib) for p in per_order for lib, rate in p["gflops"].items())
    tried = ", ".join(str(p["order"]) for p in per_order)
    end = (f"stopped at n={per_order[-1]['order']}: every library less than {min_gain:.0%} above its best "
           "before it" if stopped
           else f"n={per_order[-1]['order']} was the largest order tried and the rate was still growing: "
                "the practical peak may be higher")
    return {
        "gflops": gflops, "library": library, "order": order, "per_order": per_order,
        "stopped_growing": stopped,
        "method": (f"measured: best median rate of square {dtype} GEMMs (2·n³ FLOPs) in "
                   f"{' and '.join(libraries)}, n = {tried} ({end}); 1 untimed + {warmup} warm-up + "
                   f"{repeats} timed calls each"),
    }
