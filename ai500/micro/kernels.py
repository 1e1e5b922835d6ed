"""Micro-benchmark kernels (conv, fc, pool) on concrete shapes, and the one timing routine they share.

Honesty rules: inputs live in tf.Variables (nothing to constant-fold); every kernel is a `tf.function` that
returns one element of the op's result, so the op can be neither pruned nor skipped, and `.numpy()` on that
element returns only after the op has finished (on a GPU it waits for the stream). Reading one element rather
than reducing the whole output keeps the timed work to the op itself: a full reduction adds 10-20 % to a
pooling kernel on a CPU. Grappler has no rewrite that runs part of a convolution, GEMM or pooling kernel, and
no XLA is used. The first call (tracing, graph optimisation, autotuning) is never timed.

numpy's GEMM (`numpy_gemm`) is timed by the same routine for comparison: `a @ b` returns only when the
product is complete, and numpy's BLAS is given the rank's cores (`set_numpy_threads`), as TensorFlow is.
"""

import ctypes
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from ai500.errors import ConfigError
from ai500.micro.flops import conv2d_flops, gemm_flops, pool_flops
from ai500.micro.sizes import ConvSize, FcSize, PoolSize, Size

DTYPES = {"float32": tf.float32, "float16": tf.float16, "bfloat16": tf.bfloat16}
DIRECTIONS = {
    "conv": ("forward", "backward_data", "backward_filter"),
    "fc": ("forward", "backward_data", "backward_weights"),
    "pool": ("max_forward", "max_backward", "avg_forward", "avg_backward"),
}
_SIZE_TYPES = {"conv": ConvSize, "fc": FcSize, "pool": PoolSize}
_TF_RUN_ERRORS = (
    tf.errors.NotFoundError,
    tf.errors.InvalidArgumentError,
    tf.errors.UnimplementedError,
    tf.errors.ResourceExhaustedError,
)


@dataclass(frozen=True)
class Timing:
    """Repeat times of one kernel (seconds) and their median, min, max and median absolute deviation."""

    times: tuple[float, ...]
    median: float
    min: float
    max: float
    mad: float

    @classmethod
    def from_times(cls, times: list[float]) -> "Timing":
        """Summarise a non-empty list of times (seconds)."""
        median = statistics.median(times)
        return cls(
            times=tuple(times),
            median=median,
            min=min(times),
            max=max(times),
            mad=statistics.median(abs(t - median) for t in times),
        )


def time_kernel(fn: Callable[[], object], warmup: int, repeats: int) -> Timing:
    """Time `fn` (seconds per call): one untimed first call, `warmup` untimed calls, `repeats` timed calls.

    Each call's result is forced to completion (`.numpy()` where it has one) before the clock stops, so a
    kernel should return a scalar tensor that depends on all of its work.
    """
    if not isinstance(warmup, int) or warmup < 0:
        raise ConfigError(f"warmup must be an integer >= 0, got {warmup!r}")
    if not isinstance(repeats, int) or repeats < 1:
        raise ConfigError(f"repeats must be an integer >= 1, got {repeats!r}")

    def call() -> None:
        result = fn()
        if hasattr(result, "numpy"):
            result.numpy()

    for _ in range(1 + warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return Timing.from_times(times)


def _tf_dtype(dtype: str) -> tf.DType:
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
    return DTYPES[dtype]


def _check(op: str, size: Size, direction: str) -> None:
    if op not in DIRECTIONS:
        raise ConfigError(f"unknown micro benchmark op {op!r}; choose from {', '.join(DIRECTIONS)}")
    if not isinstance(size, _SIZE_TYPES[op]):
        raise ConfigError(f"op {op!r} needs a {_SIZE_TYPES[op].__name__}, got {type(size).__name__}")
    if direction not in DIRECTIONS[op]:
        raise ConfigError(f"unknown {op} direction {direction!r}; choose from {', '.join(DIRECTIONS[op])}")


def kernel_flops(op: str, size: Size, direction: str) -> int:
    """Analytic FLOPs of one call of `op` in `direction` on `size` (see ai500.micro.flops)."""
    _check(op, size, direction)
    if isinstance(size, ConvSize):
        return conv2d_flops(size.batch, size.out_h, size.out_w, size.in_channels, size.out_channels,
                            size.kernel_h, size.kernel_w)
    if isinstance(size, FcSize):
        return gemm_flops(size.batch, size.out_features, size.in_features)
    return pool_flops(size.batch, size.out_h, size.out_w, size.channels, size.kernel, size.kernel)


def _random(shape: list[int], dtype: tf.DType, seed: int, scale: float = 1.0) -> tf.Variable:
    """A non-trainable variable of normal(0, scale) values, fixed by `seed` (so runs see the same data)."""
    values = tf.random.stateless_normal(shape, seed=(seed, 0), stddev=scale)
    return tf.Variable(tf.cast(values, dtype), trainable=False)


def _conv_op(size: ConvSize, direction: str, dtype: tf.DType) -> Callable[[], tf.Tensor]:
    x_shape = [size.batch, size.height, size.width, size.in_channels]
    w_shape = [size.kernel_h, size.kernel_w, size.in_channels, size.out_channels]
    y_shape = [size.batch, size.out_h, size.out_w, size.out_channels]
    strides = [1, size.stride, size.stride, 1]
    fan_in = size.kernel_h * size.kernel_w * size.in_channels
    if direction == "forward":
        x, w = _random(x_shape, dtype, 1), _random(w_shape, dtype, 2, fan_in**-0.5)
        return lambda: tf.nn.conv2d(x, w, strides=strides, padding=size.padding)
    dy = _random(y_shape, dtype, 3)
    if direction == "backward_data":
        w = _random(w_shape, dtype, 2, fan_in**-0.5)
        return lambda: tf.raw_ops.Conv2DBackpropInput(
            input_sizes=x_shape, filter=w, out_backprop=dy, strides=strides, padding=size.padding
        )
    x = _random(x_shape, dtype, 1)
    return lambda: tf.raw_ops.Conv2DBackpropFilter(
        input=x, filter_sizes=w_shape, out_backprop=dy, strides=strides, padding=size.padding
    )


def _fc_op(size: FcSize, direction: str, dtype: tf.DType) -> Callable[[], tf.Tensor]:
    if direction == "forward":
        x = _random([size.batch, size.in_features], dtype, 1)
        w = _random([size.in_features, size.out_features], dtype, 2, size.in_features**-0.5)
        return lambda: tf.matmul(x, w)
    dy = _random([size.batch, size.out_features], dtype, 3)
    if direction == "backward_data":
        w = _random([size.in_features, size.out_features], dtype, 2, size.in_features**-0.5)
        return lambda: tf.matmul(dy, w, transpose_b=True)
    x = _random([size.batch, size.in_features], dtype, 1)
    return lambda: tf.matmul(x, dy, transpose_a=True)


def _pool_op(size: PoolSize, direction: str, dtype: tf.DType) -> Callable[[], tf.Tensor]:
    x_shape = [size.batch, size.height, size.width, size.channels]
    window = {"ksize": [1, size.kernel, size.kernel, 1], "strides": [1, size.stride, size.stride, 1]}
    x = _random(x_shape, dtype, 1)
    if direction == "max_forward":
        return lambda: tf.raw_ops.MaxPool(input=x, padding=size.padding, **window)
    if direction == "avg_forward":
        return lambda: tf.raw_ops.AvgPool(value=x, padding=size.padding, **window)
    dy = _random([size.batch, size.out_h, size.out_w, size.channels], dtype, 3)
    if direction == "max_backward":
        y = tf.Variable(tf.raw_ops.MaxPool(input=x, padding=size.padding, **window), trainable=False)
        return lambda: tf.raw_ops.MaxPoolGrad(
            orig_input=x, orig_output=y, grad=dy, padding=size.padding, **window
        )
    return lambda: tf.raw_ops.AvgPoolGrad(orig_input_shape=x_shape, grad=dy, padding=size.padding, **window)


_BUILDERS = {"conv": _conv_op, "fc": _fc_op, "pool": _pool_op}


def build_kernel(op: str, size: Size, direction: str, dtype: str) -> tf.types.experimental.GenericFunction:
    """A `tf.function` running `op` in `direction` on `size` once and returning one element of its result."""
    _check(op, size, direction)
    compute = _BUILDERS[op](size, direction, _tf_dtype(dtype))

    @tf.function
    def kernel() -> tf.Tensor:
        return tf.reshape(compute(), [-1])[-1]

    return kernel


def measure(op: str, size: Size, direction: str, dtype: str, warmup: int, repeats: int) -> dict:
    """Time one (op, size, direction, dtype) and return its figures.

    Keys: op, size (name), direction, dtype, batch, warmup, repeats, times_s (every repeat, seconds),
    seconds (median/min/max/mad), flops (analytic FLOPs per call), gflops (flops / median seconds / 1e9) and
    images_per_s (batch / median seconds; rows per second for fc). Raises ConfigError when the op cannot run
    in this dtype on this device or does not fit in its memory.
    """
    flops = kernel_flops(op, size, direction)
    try:
        timing = time_kernel(build_kernel(op, size, direction, dtype), warmup, repeats)
    except _TF_RUN_ERRORS as err:
        reason = (err.message or type(err).__name__).strip().splitlines()[0]
        raise ConfigError(
            f"{op} {direction} on {size.name} in {dtype} cannot run on this device: {reason}"
        ) from None
    return {
        "op": op,
        "size": size.name,
        "direction": direction,
        "dtype": dtype,
        "batch": size.batch,
        "warmup": warmup,
        "repeats": repeats,
        "times_s": list(timing.times),
        "seconds": {"median": timing.median, "min": timing.min, "max": timing.max, "mad": timing.mad},
        "flops": flops,
        "gflops": flops / timing.median / 1e9,
        "images_per_s": size.batch / timing.median,
    }


def numpy_gemm(m: int, k: int, n: int, dtype: str, warmup: int, repeats: int) -> dict:
    """Time numpy's (M×K)·(K×N) matmul into a preallocated output, like the kernels (`time_kernel`).

    Keys: flops (2·M·N·K), seconds (median/min/max/mad), times_s, gflops (flops / median / 1e9).
    float32 only: numpy has no bfloat16, and its float16 GEMM is not a BLAS call.
    """
    if dtype != "float32":
        raise ConfigError(f"numpy's GEMM is timed in float32 only, not {dtype}")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32) * np.float32(k**-0.5)
    out = np.empty((m, n), dtype=np.float32)
    timing = time_kernel(lambda: np.matmul(a, b, out=out), warmup, repeats)
    flops = gemm_flops(m, n, k)
    return {
        "flops": flops,
        "times_s": list(timing.times),
        "seconds": {"median": timing.median, "min": timing.min, "max": timing.max, "mad": timing.mad},
        "gflops": flops / timing.median / 1e9,
    }


# (setter, getter) of the BLAS libraries numpy wheels and distributions load: numpy's bundled OpenBLAS
# (64-bit interface, suffixed symbols), a plain OpenBLAS, scipy-openblas, MKL.
_BLAS_THREADS = (
    ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
    ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
    ("openblas_set_num_threads", "openblas_get_num_threads"),
    ("MKL_Set_Num_Threads", "MKL_Get_Max_Threads"),
)


def _loaded_blas() -> list[str]:
    """Paths of the BLAS shared libraries loaded in this process (OpenBLAS or MKL), from /proc/self/maps."""
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return []
    paths = {line.split(maxsplit=5)[-1] for line in maps if line.count(" ") >= 5}
    blas = [p for p in paths if p.startswith("/") and ("openblas" in Path(p).name.lower()
                                                       or "mkl_rt" in Path(p).name)]
    return sorted(blas, key=lambda p: ("numpy" not in p, p))  # numpy's own first


def set_numpy_threads(threads: int) -> tuple[int | None, str]:
    """Give numpy's BLAS `threads` threads (the rank's cores, as TensorFlow's intra-op pool has), so that
    ranks sharing a node do not oversubscribe it. Returns (threads the library now reports, or None where
    no BLAS with a known thread setter is loaded, and what was done)."""
    if not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads must be a positive integer, got {threads!r}")
    for path in _loaded_blas():
        lib = ctypes.CDLL(path)
        for setter, getter in _BLAS_THREADS:
            if hasattr(lib, setter) and hasattr(lib, getter):
                getattr(lib, setter)(ctypes.c_int(threads))
                now = int(getattr(lib, getter)())
                return now, f"numpy's BLAS ({Path(path).name}{_blas_core(lib)}) set to {now} thread(s)"
    return None, "numpy's BLAS thread count not set (no OpenBLAS or MKL found loaded): its own default"


def _blas_core(lib: ctypes.CDLL) -> str:
    """", kernels for CORE": the CPU type an OpenBLAS built for many CPUs chose (an OpenBLAS older than
    the CPU falls back to an old type, Prescott say, and its GEMM is then many times slower), or ""."""
    for name in ("openblas_get_corename64_", "scipy_openblas_get_corename64_", "openblas_get_corename"):
        if hasattr(lib, name):
            getter = getattr(lib, name)
            getter.restype = ctypes.c_char_p
            core = getter()
            return f", kernels for {core.decode(errors='replace')}" if core else ""
    return ""
