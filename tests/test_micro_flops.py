"""Analytic FLOP formulas and output sizes, checked against TensorFlow on the graphs the benchmarks time."""

import pytest
import tensorflow as tf

from ai500.errors import ConfigError
from ai500.micro.flops import conv2d_flops, gemm_flops, output_size, pool_flops
from ai500.micro.kernels import DIRECTIONS, build_kernel, kernel_flops
from ai500.micro.sizes import ConvSize, FcSize, PoolSize, sizes_for

CONV = [
    ConvSize("same_s1", 2, 9, 9, 3, 4, 3, 3, 1, "SAME"),
    ConvSize("same_s2_odd", 2, 9, 10, 3, 5, 3, 3, 2, "SAME"),
    ConvSize("valid_rect_s2", 1, 12, 20, 2, 3, 5, 4, 2, "VALID"),
    ConvSize("pointwise_s2", 3, 8, 8, 6, 2, 1, 1, 2, "VALID"),
]
FC = [FcSize("square", 8, 8, 8), FcSize("wide", 5, 7, 3), FcSize("tall", 33, 4, 9)]
POOL = [
    PoolSize("max_3x3_s2_same", 2, 11, 11, 3, 3, 2, "SAME"),
    PoolSize("overlap_3x3_s2_valid", 2, 13, 13, 4, 3, 2, "VALID"),
    PoolSize("global_7x7", 2, 7, 7, 5, 7, 1, "VALID"),
]


def profiler_flops(op: str, size: ConvSize | FcSize | PoolSize, direction: str) -> int:
    """TensorFlow's profiler count for the concrete-shape graph of the kernel the benchmark times."""
    graph = build_kernel(op, size, direction, "float32").get_concrete_function().graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return tf.compat.v1.profiler.profile(graph, options=options).total_float_ops


@pytest.mark.parametrize("size", CONV, ids=lambda s: s.name)
def test_conv_formula_against_profiler(size: ConvSize) -> None:
    ours = kernel_flops("conv", size, "forward")
    assert all(kernel_flops("conv", size, d) == ours for d in DIRECTIONS["conv"])
    assert profiler_flops("conv", size, "forward") == ours
    # Backward: TensorFlow takes Ho·Wo = H·W / stride², exact only for SAME padding on sizes the stride
    # divides; we count the exact output positions, the multiply-adds the transposed convolution does.
    tf_estimate = int(
        2 * size.batch * size.height * size.width * size.in_channels * size.out_channels
        * size.kernel_h * size.kernel_w / size.stride**2
    )
    assert profiler_flops("conv", size, "backward_data") == tf_estimate
    assert profiler_flops("conv", size, "backward_filter") == tf_estimate
    exact = size.padding == "SAME" and size.height % size.stride == 0 and size.width % size.stride == 0
    assert (tf_estimate == ours) == (exact or size.name == "pointwise_s2")


@pytest.mark.parametrize("direction", DIRECTIONS["fc"])
@pytest.mark.parametrize("size", FC, ids=lambda s: s.name)
def test_gemm_formula_matches_profiler(size: FcSize, direction: str) -> None:
    assert profiler_flops("fc", size, direction) == kernel_flops("fc", size, direction)


@pytest.mark.parametrize("size", POOL, ids=lambda s: s.name)
def test_pool_formula_against_profiler(size: PoolSize) -> None:
    ours = kernel_flops("pool", size, "max_forward")
    outputs = size.batch * size.out_h * size.out_w * size.channels
    assert all(kernel_flops("pool", size, d) == ours for d in DIRECTIONS["pool"])
    # Forward: TensorFlow counts kernel area x outputs, as we do.
    assert profiler_flops("pool", size, "max_forward") == ours
    assert profiler_flops("pool", size, "avg_forward") == ours
    # Backward: TensorFlow adds one scatter per output for MaxPoolGrad and counts a multiply by 1/area and an
    # add per window element for AvgPoolGrad; we count one operation per window element (see flops.py).
    assert profiler_flops("pool", size, "max_backward") == ours + outputs
    assert profiler_flops("pool", size, "avg_backward") == 2 * ours


def test_formulas_by_hand() -> None:
    # ResNet-50's stem conv at batch 1: the well-known 118 M multiply-adds.
    assert conv2d_flops(1, 112, 112, 3, 64, 7, 7) == 2 * 118_013_952
    assert gemm_flops(2, 3, 4) == 48
    assert pool_flops(2, 3, 3, 4, 2, 2) == 2 * 9 * 4 * 4
    fc = FcSize("alexnet_fc6", 128, 9216, 4096)
    assert kernel_flops("fc", fc, "backward_weights") == 2 * 128 * 9216 * 4096


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_output_size_matches_tensorflow(padding: str) -> None:
    for size in range(1, 13):
        for kernel in range(1, 5):
            for stride in range(1, 4):
                if padding == "VALID" and kernel > size:
                    continue
                x = tf.zeros([1, size, 1, 1])
                y = tf.nn.max_pool2d(x, ksize=[kernel, 1], strides=[stride, 1], padding=padding)
                assert output_size(size, kernel, stride, padding) == y.shape[1], (size, kernel, stride)


def test_output_size_of_real_layers() -> None:
    assert output_size(224, 7, 2, "SAME") == 112
    assert output_size(55, 3, 2, "VALID") == 27
    assert output_size(161, 5, 2, "VALID") == 79
    assert output_size(700, 20, 2, "VALID") == 341
    assert output_size(7, 7, 1, "VALID") == 1


@pytest.mark.parametrize(
    "args",
    [(4, 5, 1, "VALID"), (0, 1, 1, "SAME"), (8, 3, 0, "SAME"), (8, 3, 1, "same"), (8, 3, 1, "FULL")],
)
def test_output_size_rejects_impossible_windows(args: tuple) -> None:
    with pytest.raises(ConfigError):
        output_size(*args)


def test_every_table_entry_has_positive_flops() -> None:
    for op, directions in DIRECTIONS.items():
        for preset in ("ci", "small", "full"):
            for size in sizes_for(op, preset):
                assert all(kernel_flops(op, size, d) > 0 for d in directions)
