"""Kernels and the timing routine: honest clocks, the ops the benchmark claims to run, clear errors."""

import os
import time

import pytest
import tensorflow as tf

from ai500.errors import ConfigError
from ai500.micro import kernels
from ai500.micro.kernels import DIRECTIONS, Timing, build_kernel, measure, time_kernel
from ai500.micro.sizes import ConvSize, FcSize, PoolSize, Size, sizes_for

OP_TYPES = {
    ("conv", "forward"): "Conv2D",
    ("conv", "backward_data"): "Conv2DBackpropInput",
    ("conv", "backward_filter"): "Conv2DBackpropFilter",
    ("fc", "forward"): "MatMul",
    ("fc", "backward_data"): "MatMul",
    ("fc", "backward_weights"): "MatMul",
    ("pool", "max_forward"): "MaxPool",
    ("pool", "max_backward"): "MaxPoolGrad",
    ("pool", "avg_forward"): "AvgPool",
    ("pool", "avg_backward"): "AvgPoolGrad",
}


class _Result:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def numpy(self) -> None:
        self.log.append("numpy")


def test_time_kernel_calls_and_forces_every_result() -> None:
    log: list[str] = []

    def fn() -> _Result:
        log.append("call")
        return _Result(log)

    timing = time_kernel(fn, warmup=2, repeats=4)
    assert log == ["call", "numpy"] * (1 + 2 + 4)
    assert len(timing.times) == 4
    assert timing.min <= timing.median <= timing.max


def test_time_kernel_clock_covers_the_call() -> None:
    timing = time_kernel(lambda: time.sleep(0.01), warmup=0, repeats=3)
    assert timing.min >= 0.01


def test_timing_statistics() -> None:
    timing = Timing.from_times([1.0, 2.0, 3.0, 10.0])
    assert (timing.median, timing.min, timing.max, timing.mad) == (2.5, 1.0, 10.0, 1.0)


@pytest.mark.parametrize(("warmup", "repeats"), [(-1, 3), (0, 0), (1, 2.5)])
def test_time_kernel_rejects_bad_counts(warmup: int, repeats: int) -> None:
    with pytest.raises(ConfigError):
        time_kernel(lambda: None, warmup, repeats)


@pytest.mark.parametrize(("op", "direction"), list(OP_TYPES))
def test_kernel_runs_the_claimed_op_on_variables(op: str, direction: str) -> None:
    graph = build_kernel(op, sizes_for(op, "ci")[0], direction, "float32").get_concrete_function().graph
    types = [node.type for node in graph.get_operations()]
    assert types.count(OP_TYPES[op, direction]) == 1
    assert "ReadVariableOp" in types  # inputs are read from variables, so nothing can be constant-folded


@pytest.mark.parametrize("op", DIRECTIONS)
def test_measure_reports_consistent_figures(op: str) -> None:
    for size in sizes_for(op, "ci"):
        for direction in DIRECTIONS[op]:
            result = measure(op, size, direction, "float32", warmup=1, repeats=3)
            seconds = result["seconds"]
            assert len(result["times_s"]) == 3
            assert 0 < seconds["min"] <= seconds["median"] <= seconds["max"]
            assert result["gflops"] == pytest.approx(result["flops"] / seconds["median"] / 1e9)
            assert result["images_per_s"] == pytest.approx(size.batch / seconds["median"])
            assert (result["op"], result["size"], result["direction"]) == (op, size.name, direction)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_reduced_precision_runs(dtype: str) -> None:
    for op, direction in (("conv", "backward_filter"), ("fc", "forward"), ("pool", "max_backward")):
        assert measure(op, sizes_for(op, "ci")[0], direction, dtype, warmup=0, repeats=1)["gflops"] > 0


@pytest.mark.parametrize(
    ("op", "small", "large"),
    [
        ("fc", FcSize("gemm_1x", 1024, 2048, 1024), FcSize("gemm_4x", 4096, 2048, 1024)),
        ("conv", ConvSize("conv_1x", 4, 56, 56, 64, 64, 3, 3, 1, "SAME"),
         ConvSize("conv_4x", 16, 56, 56, 64, 64, 3, 3, 1, "SAME")),
        ("pool", PoolSize("pool_1x", 8, 112, 112, 64, 3, 2, "SAME"),
         PoolSize("pool_4x", 32, 112, 112, 64, 3, 2, "SAME")),
    ],
    ids=["fc", "conv", "pool"],
)
def test_four_times_the_work_takes_clearly_longer(op: str, small: Size, large: Size) -> None:
    direction = DIRECTIONS[op][0]
    one, four = (measure(op, size, direction, "float32", warmup=2, repeats=7) for size in (small, large))
    assert four["flops"] == 4 * one["flops"]
    assert four["seconds"]["median"] / one["seconds"]["median"] > 2, (one["times_s"], four["times_s"])


def test_bad_requests_are_config_errors() -> None:
    conv = sizes_for("conv", "ci")[0]
    for args in (
        ("conv", conv, "forward", "float64"),
        ("conv", conv, "sideways", "float32"),
        ("fc", conv, "forward", "float32"),
        ("lstm", conv, "forward", "float32"),
    ):
        with pytest.raises(ConfigError):
            measure(*args, warmup=0, repeats=1)


def test_kernel_the_device_cannot_run_is_one_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing_kernel() -> None:
        raise tf.errors.NotFoundError(None, None, "No registered 'Conv2D' OpKernel for GPU\nmore detail")

    monkeypatch.setattr(kernels, "build_kernel", lambda *args: missing_kernel)
    one_line = r"^conv forward on tiny_conv_3x3 in float16 cannot run .*OpKernel[^\n]*$"
    with pytest.raises(ConfigError, match=one_line):
        measure("conv", sizes_for("conv", "ci")[0], "forward", "float16", warmup=0, repeats=1)


def test_numpy_gemm_is_timed_like_the_kernels():
    from ai500.micro.kernels import numpy_gemm

    result = numpy_gemm(16, 64, 32, "float32", warmup=1, repeats=3)
    assert result["flops"] == 2 * 16 * 64 * 32 and len(result["times_s"]) == 3
    assert result["gflops"] == result["flops"] / result["seconds"]["median"] / 1e9
    with pytest.raises(ConfigError):
        numpy_gemm(16, 64, 32, "bfloat16", warmup=1, repeats=3)


def test_numpy_blas_gets_the_ranks_threads():
    import ctypes

    from ai500.micro.kernels import _loaded_blas, set_numpy_threads

    libs = _loaded_blas()
    if not libs:
        pytest.skip("numpy here uses no OpenBLAS or MKL")
    try:
        assert set_numpy_threads(1)[0] == 1
        lib = ctypes.CDLL(libs[0])
        getter = next(g for s, g in kernels._BLAS_THREADS if hasattr(lib, g))
        assert getattr(lib, getter)() == 1  # the library itself reports it
    finally:
        set_numpy_threads(len(os.sched_getaffinity(0)))
    with pytest.raises(ConfigError):
        set_numpy_threads(0)
