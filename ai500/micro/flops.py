"""Analytic FLOP counts for the micro benchmarks (DESIGN §5): one multiply-add = 2 FLOPs.

Every count covers one call of one direction of one operator:

- convolution: 2·N·Ho·Wo·Co·Kh·Kw·Ci for the forward pass; backward-data (dX from dY and the filter)
  and backward-filter (dW from X and dY) are each the same multiply-adds in another order: same count.
  TensorFlow's profiler counts the backward ops with H·W/stride² in place of Ho·Wo, which is exact only
  for SAME padding on sizes the stride divides; the tests pin that too.
- GEMM (fully-connected): 2·M·N·K for the forward pass; the two backward GEMMs (dX = dY·Wᵀ and
  dW = Xᵀ·dY) each multiply the same three extents, so the same count.
- pooling: N·Ho·Wo·C·Kh·Kw, one operation (a compare for max, an add for average) per window element per
  output. Backward is given the same count: max backward visits every window element to find where the
  maximum was (or reads a stored argmax) and average backward adds its share of the gradient into every
  window element, so the work per window element is again one operation. The one extra operation per output
  (the scatter for max, the 1/(Kh·Kw) scaling for average) is left out so forward and backward rates compare
  directly, and the count stays the single pooling formula of DESIGN §5. TensorFlow's profiler counts
  (Kh·Kw + 1) per output for MaxPoolGrad and 2·Kh·Kw per output for AvgPoolGrad; the tests pin both.

Windows that hang over SAME padding are counted in full, as TensorFlow's profiler also does.
"""

from ai500.errors import ConfigError

PADDINGS = ("SAME", "VALID")


def output_size(size: int, kernel: int, stride: int, padding: str) -> int:
    """Output extent of a convolution or pooling window along one axis (elements).

    SAME: ceil(size / stride) (TensorFlow pads as needed); VALID: floor((size - kernel) / stride) + 1, which
    needs kernel <= size. Raises ConfigError for a non-positive extent or an impossible window.
    """
    for label, value in (("input size", size), ("kernel", kernel), ("stride", stride)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{label} must be a positive integer, got {value!r}")
    if padding == "SAME":
        return -(-size // stride)
    if padding == "VALID":
        if kernel > size:
            raise ConfigError(f"kernel {kernel} is larger than the input ({size}) with VALID padding")
        return (size - kernel) // stride + 1
    raise ConfigError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")


def conv2d_flops(
    batch: int, out_h: int, out_w: int, in_channels: int, out_channels: int, kernel_h: int, kernel_w: int
) -> int:
    """FLOPs of one 2-D convolution direction: 2·N·Ho·Wo·Co·Kh·Kw·Ci."""
    return 2 * batch * out_h * out_w * out_channels * kernel_h * kernel_w * in_channels


def gemm_flops(m: int, n: int, k: int) -> int:
    """FLOPs of one (M×K)·(K×N) matrix product: 2·M·N·K."""
    return 2 * m * n * k


def pool_flops(batch: int, out_h: int, out_w: int, channels: int, kernel_h: int, kernel_w: int) -> int:
    """FLOPs of one pooling direction (max or average, forward or backward): N·Ho·Wo·C·Kh·Kw."""
    return batch * out_h * out_w * channels * kernel_h * kernel_w
