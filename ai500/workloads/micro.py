"""Micro benchmarks: convolution, fully-connected (GEMM) and pooling kernels, timed on their own.

One module serves `conv`, `fc`, `pool` (one operator's size table each) and `micro` (all three in one
job); `cfg.benchmark` says which. Every rank times the same kernels at the same moment (the driver puts a
barrier before each), so the merged traces give the rate the whole system delivers.

Items, in order: first the practical-peak GEMMs (op `peak_gemm`, square n×n·n×n products of the
`peak_gemm_orders` in the preset, growing), then every size of each operator's table with every direction
of that operator (size-major, directions in `ai500.micro.kernels.DIRECTIONS` order). `items()` is a
generator: the peak GEMMs stop at the first order where every library's aggregate rate (TensorFlow, and
numpy) is less than 3 % above its best before it; every rank decides from the same all-rank figures (the
slowest rank's medians, reduced after each order), so every rank stops at the same order.

numpy: on a CPU in float32 every peak GEMM and every fc forward shape is also timed through numpy's GEMM
(`np.matmul` into a preallocated output, the same timing routine, after its own barrier), with numpy's
BLAS given the rank's cores; columns `numpy_median_s` and `numpy_gflops` of every row (NaN where not
timed). The practical peak is the best of both libraries; where numpy beats TensorFlow on an fc shape the
summary says so: a finding about the framework's GEMM, not noise.

Peaks, both recorded in the trace (every row is one `kernels/` record):
- practical: the `peak_gemm` rows themselves, timed exactly like the kernels (same warm-up, repeats and
  barrier), once per rank before the kernels; the summary takes the best aggregate GEMM rate;
- theoretical: this rank's peak in the run's dtype, in column `peak_theoretical_gflops` of every row (NaN
  where not derivable). CPU: cores × clock × FLOPs/cycle (ai500.micro.peak: a microarchitecture table,
  overridable in system.yaml `peak`), with cores = the TensorFlow intra-op threads this rank was given (no
  more than its share of the node's physical cores); GPU: the datasheet peak of the device's name. How it
  was derived, or why it is unknown, is in config.json (`workload.peak`).

float16 is refused on a CPU: TensorFlow 2.15's CPU kernels run float16 GEMMs through Eigen's scalar
emulation (0.4 GFLOPS against 123 for float32 on a 512³ GEMM on one core of this project's AVX-512 VM, about
300× slower), so the figures would measure the emulation, not the hardware, and the `full` tables would take
days. bfloat16 (oneDNN, native on avx512_bf16/AMX) and float32 are the CPU precisions.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import tensorflow as tf

from ai500 import dist as distlib
from ai500.config import RunConfig
from ai500.dist import Dist
from ai500.errors import Ai500Error, ConfigError
from ai500.micro import kernels, peak
from ai500.micro.sizes import OPS, FcSize, Size, sizes_for
from ai500.micro.summary import PEAK_OP

Item = tuple[str, Size, str, str]


@dataclass(frozen=True)
class MicroSettings:
    """The `micro` section of a preset: element type, untimed warm-up calls (after one untimed first
    call), timed repeats, size names (None: the whole table; a list or a comma-separated string) and
    the orders of the square GEMMs whose best rate is the practical peak."""

    dtype: str
    warmup: int
    repeats: int
    peak_gemm_orders: list[int]
    sizes: list[str] | str | None = None

    @classmethod
    def from_section(cls, values: dict[str, Any]) -> MicroSettings:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"section 'micro': unknown key(s) {', '.join(unknown)}")
        missing = sorted(k for k in known - set(values) if k != "sizes")
        if missing:
            raise ConfigError(f"section 'micro': missing key(s) {', '.join(missing)}")
        s = cls(**values)
        if s.dtype not in kernels.DTYPES:
            raise ConfigError(f"section 'micro': dtype must be one of {', '.join(kernels.DTYPES)}, "
                              f"got {s.dtype!r}")
        for name, low in (("warmup", 0), ("repeats", 1)):
            value = getattr(s, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"section 'micro': {name} must be an integer >= {low}, got {value!r}")
        orders = s.peak_gemm_orders
        if (not isinstance(orders, list) or not orders
                or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in orders)
                or orders != sorted(set(orders))):
            raise ConfigError("section 'micro': peak_gemm_orders must be a non-empty, strictly growing "
                              f"list of positive integers, got {orders!r}")
        return s

    def size_names(self) -> list[str] | None:
        """The requested size names in order, or None for every size of the tables."""
        if self.sizes is None:
            return None
        raw = self.sizes.split(",") if isinstance(self.sizes, str) else self.sizes
        if not isinstance(raw, list) or not all(isinstance(n, str) for n in raw):
            raise ConfigError(f"sizes must be size names, got {self.sizes!r}")
        names = [n.strip() for n in raw if n.strip()]
        if not names:
            raise ConfigError("--sizes names no size; give comma-separated names from the preset's table")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"size {', '.join(map(repr, repeated))} given more than once in --sizes")
        return names


def ops_for(benchmark: str) -> tuple[str, ...]:
    """The operators a micro benchmark times: one for conv/fc/pool, all three for micro."""
    if benchmark == "micro":
        return OPS
    if benchmark in OPS:
        return (benchmark,)
    raise ConfigError(f"{benchmark!r} is not a micro benchmark (known: {', '.join(OPS)}, micro)")


def select_sizes(ops: tuple[str, ...], preset: str, names: list[str] | None) -> dict[str, list[Size]]:
    """Each op's sizes in `preset`: its whole table, or the named ones. With several ops, a name picks the
    op whose table holds it and ops with no named size are left out. ConfigError for an unknown name."""
    if names is None:
        return {op: sizes_for(op, preset) for op in ops}
    if len(ops) == 1:
        return {ops[0]: sizes_for(ops[0], preset, names)}
    owner = {size.name: op for op in ops for size in sizes_for(op, preset)}
    unknown = [n for n in names if n not in owner]
    if unknown:
        raise ConfigError(f"unknown size {', '.join(map(repr, unknown))} in preset {preset!r} of "
                          f"{', '.join(ops)}; choose from {', '.join(owner)}")
    picked = {op: sizes_for(op, preset, [n for n in names if owner[n] == op]) for op in ops}
    return {op: sizes for op, sizes in picked.items() if sizes}


def theoretical_cores(dist: Dist) -> tuple[int, str]:
    """The cores this rank computes on: its TensorFlow intra-op threads, at most its share of the node's
    physical cores (hyperthreads share one core's vector units)."""
    threads = tf.config.threading.get_intra_op_parallelism_threads() or len(os.sched_getaffinity(0))
    share = max(1, peak.read_cpuinfo().physical_cores // dist.local_size)
    if threads <= share:
        return threads, f"{threads} TensorFlow intra-op thread(s) of this rank"
    return share, (f"{share} core(s): this rank's share of the node's physical cores "
                   f"(fewer than its {threads} intra-op threads)")


class Workload:
    """Times conv, fc and/or pool kernels over a preset's size tables, after the practical-peak GEMMs."""

    kind = "micro"

    def __init__(self, cfg: RunConfig, dist: Dist):
        self.cfg, self.dist = cfg, dist
        self.settings = MicroSettings.from_section(dict(cfg.micro))
        self.ops = ops_for(cfg.benchmark)
        self.sizes = select_sizes(self.ops, cfg.preset, self.settings.size_names())
        dtype = self.settings.dtype
        on_gpu = dist.gpu.on_gpu  # pinned at init (ai500.dist)
        if on_gpu:
            name = dist.gpu.name
            tf32 = dtype == "float32" and tf.config.experimental.is_tensor_float_32_execution_enabled()
            self.device = f"GPU: {name}"
            self.theoretical = peak.gpu_theoretical_peak(name, dtype, tf32=tf32)
        else:
            if dtype == "float16":
                raise ConfigError(
                    "float16 is not supported on a CPU: TensorFlow's CPU float16 kernels are scalar "
                    "emulation (hundreds of times slower than float32), so they would not measure the "
                    "hardware; use --dtype float32 or bfloat16")
            cores, how = theoretical_cores(dist)
            self.theoretical = peak.cpu_theoretical_peak(dtype, cores=cores,
                                                         overrides=dict(cfg.system.get("peak") or {}))
            self.theoretical["method"] = self.theoretical["method"].replace(
                f"{cores} cores as given", f"{how}", 1)
            self.device = f"CPU: {self.theoretical['cpu']}"
        self.libraries = peak.gemm_libraries(dtype, gpu=on_gpu)
        self.numpy_threads = "numpy not timed (" + (
            "GPU run" if on_gpu else f"{dtype}: numpy's GEMM is float32 only") + ")"
        if "numpy" in self.libraries:
            self.numpy_threads = kernels.set_numpy_threads(self.theoretical["cores"])[1]
        self.peak_sizes = [FcSize(f"gemm_{n}", n, n, n) for n in self.settings.peak_gemm_orders]
        self._peak_rates: dict[str, list[float]] = {}  # aggregate GFLOPS of each library, by order
        self._practical: float | None = None
        self._header_done = False

    def describe(self) -> dict[str, Any]:
        s = self.settings
        orders = ", ".join(map(str, s.peak_gemm_orders))
        return {
            "benchmark": self.cfg.benchmark,
            "ops": list(self.ops),
            "dtype": s.dtype,
            "device_rank0": self.device,
            "warmup": s.warmup,
            "repeats": s.repeats,
            "timing": f"per kernel: 1 untimed first call (tracing, autotuning), {s.warmup} untimed "
            f"warm-up call(s), then {s.repeats} timed calls, each forced to complete; median reported",
            "sizes": {op: [size.name for size in sizes] for op, sizes in self.sizes.items()},
            "directions": {op: list(kernels.DIRECTIONS[op]) for op in self.sizes},
            "kernel_items": len(self.kernel_items()),
            "peak_gemm_items_max": len(self.peak_sizes),
            "libraries": list(self.libraries),
            "numpy_threads": self.numpy_threads,
            "peak": {
                "theoretical_rank0": self.theoretical,
                "practical": {
                    "gemm_orders": list(s.peak_gemm_orders),
                    "min_gain": peak.PEAK_MIN_GAIN,
                    "libraries": list(self.libraries),
                    "method": f"measured: square {s.dtype} GEMMs (n×n by n×n, 2·n³ FLOPs) in "
                    f"{' and '.join(self.libraries)}, n tried in the order {orders} until every "
                    f"library's aggregate rate at an n is less than {peak.PEAK_MIN_GAIN:.0%} above its best "
                    f"before it; rows with op '{PEAK_OP}', timed like the kernels on every rank at once before "
                    "them; the best aggregate rate of any library and n is the peak",
                },
            },
            "row_columns": "op, size, direction, dtype (text); batch, flops (per call), warmup, repeats, "
            "median_s, min_s, max_s, mad_s (seconds per call over the repeats), gflops (flops / median), "
            "images_per_s (batch / median; rows/s for fc), peak_theoretical_gflops (this rank's), "
            "numpy_median_s, numpy_gflops (numpy's GEMM of the same shape: peak GEMMs and fc forward "
            "rows on a CPU in float32; NaN elsewhere)",
        }

    def flops_per_sample(self) -> None:
        return None

    def kernel_items(self) -> list[Item]:
        """Every (op, size, direction, dtype) of the selected tables, in order (after the peak GEMMs)."""
        dtype = self.settings.dtype
        return [(op, size, direction, dtype) for op, sizes in self.sizes.items()
                for size in sizes for direction in kernels.DIRECTIONS[op]]

    def items(self) -> Iterator[Item]:
        """The peak GEMMs of growing order until the rate stops growing (decided after each has been
        measured, from the all-rank rates), then `kernel_items()`."""
        dtype = self.settings.dtype
        self._peak_rates = {}
        for size in self.peak_sizes:
            yield (PEAK_OP, size, "forward", dtype)
            if peak.search_done(self._peak_rates):
                break
        yield from self.kernel_items()

    def _numpy_timed(self, op: str, direction: str) -> bool:
        return "numpy" in self.libraries and (op == PEAK_OP or (op == "fc" and direction == "forward"))

    def measure(self, item: Item) -> dict[str, float | str]:
        """Time one item on this rank; a kernel that cannot run on any rank stops every rank (collective).
        Peak GEMMs and fc forward shapes are timed in numpy too (after a barrier of their own)."""
        op, size, direction, dtype = item
        s = self.settings
        result, error = None, None
        try:
            result = kernels.measure("fc" if op == PEAK_OP else op, size, direction, dtype,
                                     s.warmup, s.repeats)
        except Ai500Error as exc:
            error = exc
        if self.dist.size > 1:
            distlib.agree(error, self.dist)
        elif error is not None:  # one rank: nothing to agree on
            raise Ai500Error(str(error), everywhere=True)
        numpy_median = numpy_gflops = float("nan")
        if self._numpy_timed(op, direction):
            if self.dist.size > 1:
                distlib.barrier()
            ref = kernels.numpy_gemm(size.batch, size.in_features, size.out_features, dtype,
                                     s.warmup, s.repeats)
            numpy_median, numpy_gflops = ref["seconds"]["median"], ref["gflops"]
        if op == PEAK_OP:
            rates = self._aggregate_rates(result["flops"], result["seconds"]["median"], numpy_median)
            for library, rate in rates.items():
                self._peak_rates.setdefault(library, []).append(rate)
            self._practical = max(self._practical or 0.0, result["gflops"],
                                  0.0 if math.isnan(numpy_gflops) else numpy_gflops)
        theoretical = self.theoretical["gflops"]
        seconds = result["seconds"]
        return {
            "op": op, "size": size.name, "direction": direction, "dtype": dtype,
            "batch": size.batch, "flops": result["flops"], "warmup": s.warmup, "repeats": s.repeats,
            "median_s": seconds["median"], "min_s": seconds["min"], "max_s": seconds["max"],
            "mad_s": seconds["mad"], "gflops": result["gflops"], "images_per_s": result["images_per_s"],
            "peak_theoretical_gflops": float("nan") if theoretical is None else theoretical,
            "numpy_median_s": numpy_median, "numpy_gflops": numpy_gflops,
        }

    def _aggregate_rates(self, flops: float, median_s: float, numpy_median_s: float) -> dict[str, float]:
        """Each library's aggregate GFLOPS of one peak GEMM: ranks × FLOPs / the slowest rank's median
        (collective with several ranks, so every rank gets the same figures)."""
        medians = [median_s, -1.0 if math.isnan(numpy_median_s) else numpy_median_s]
        if self.dist.size > 1:
            medians = [float(v) for v in distlib.allreduce_max(medians)]
        return {library: self.dist.size * flops / m / 1e9
                for library, m in zip(("tensorflow", "numpy"), medians) if m > 0}

    def format_row(self, row: dict[str, float | str]) -> str:
        """Rank 0's progress line for one row (its own figures; the summary has the aggregate)."""
        line = (f"{row['op']:<9} {row['size']:<30} {row['direction']:<16} {row['dtype']:<8} "
                f"{row['median_s'] * 1e3:10.3f} ms {row['gflops']:9.2f} GFLOPS "
                f"{row['images_per_s']:11.1f} img/s")
        if math.isfinite(row["numpy_gflops"]):
            line += f" (numpy {row['numpy_gflops']:.2f} GFLOPS)"
        theoretical = row["peak_theoretical_gflops"]
        best = max(row["gflops"], row["numpy_gflops"]) if math.isfinite(row["numpy_gflops"]) else row["gflops"]
        if math.isfinite(theoretical) and best > theoretical:
            line += " ABOVE the theoretical peak: the peak is wrong"
        elif math.isfinite(theoretical):
            line += f" {100 * row['gflops'] / theoretical:5.1f}% theo"
        if row["op"] != PEAK_OP and self._practical:
            line += f" {100 * row['gflops'] / self._practical:5.1f}% prac"
        if not self._header_done:
            self._header_done = True
            line = (f"rank 0 figures per kernel ({self.device}; median of {self.settings.repeats} "
                    "timed calls; % of this rank's theoretical / measured practical peak):\n" + line)
        return line
