"""Size tables of the micro benchmarks, drawn from real CNN layers (tensors are NHWC).

Sources:
- ResNet-50 v1.5 (stride 2 on the 3×3 of each stage's first block, as in MLPerf): every distinct conv shape,
  the stem 3×3/2 max pool and the global average pool. The projection shortcut of stage 2 has the shape of
  the 64→256 expansion, so it appears once.
- VGG-16: a few 3×3 conv layers, the 2×2/2 max pools and the classifier layers.
- AlexNet: the overlapping 3×3/2 max pools and the classifier layers.
- DeepBench (Baidu) training set: conv rows are (W, H, C, N, K, S=filter width, R=filter height, pads,
  strides); the explicit pads chosen here give the same output size as TensorFlow's SAME or VALID. GEMM rows
  are (M, N, K) with C = A(M×K)·B(K×N), so for a dense layer M = out, N = batch, K = in.

Presets: `ci` holds 2-3 tiny shapes per op (seconds in all); `small` the real layer shapes with the batch
cut so a 2-core CPU runs each op's whole table in float32 in about a minute with `REPEATS["small"]` (conv
37 s, fc 23 s, pool 39 s measured on a 2-core AVX-512 VM); `full` the real shapes at a typical per-device
training batch (ResNet-50 and AlexNet 128, VGG-16 64, DeepBench its own N).
"""

from dataclasses import dataclass, replace

from ai500.errors import ConfigError
from ai500.micro.flops import output_size

OPS = ("conv", "fc", "pool")
PRESETS = ("ci", "small", "full")


def _validate(name: str, extents: dict[str, int], windows: tuple[tuple[int, int, int, str], ...]) -> None:
    """Raise ConfigError naming the size for a non-positive extent or for a window (input size, kernel,
    stride, padding) that does not fit its input."""
    try:
        for label, value in extents.items():
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{label} must be a positive integer, got {value!r}")
        for window in windows:
            output_size(*window)
    except ConfigError as err:
        raise ConfigError(f"size {name!r}: {err}") from None


@dataclass(frozen=True)
class ConvSize:
    """One 2-D convolution: input (batch, height, width, in_channels) and filter (kernel_h, kernel_w,
    in_channels, out_channels); stride in both directions."""

    name: str
    batch: int
    height: int
    width: int
    in_channels: int
    out_channels: int
    kernel_h: int
    kernel_w: int
    stride: int
    padding: str

    def __post_init__(self) -> None:
        _validate(
            self.name,
            {"batch": self.batch, "height": self.height, "width": self.width, "in_channels": self.in_channels,
             "out_channels": self.out_channels, "kernel_h": self.kernel_h, "kernel_w": self.kernel_w,
             "stride": self.stride},
            ((self.height, self.kernel_h, self.stride, self.padding),
             (self.width, self.kernel_w, self.stride, self.padding)),
        )

    @property
    def out_h(self) -> int:
        """Output height (elements)."""
        return output_size(self.height, self.kernel_h, self.stride, self.padding)

    @property
    def out_w(self) -> int:
        """Output width (elements)."""
        return output_size(self.width, self.kernel_w, self.stride, self.padding)


@dataclass(frozen=True)
class FcSize:
    """One dense layer: input (batch, in_features) times weights (in_features, out_features)."""

    name: str
    batch: int
    in_features: int
    out_features: int

    def __post_init__(self) -> None:
        extents = {"batch": self.batch, "in_features": self.in_features, "out_features": self.out_features}
        _validate(self.name, extents, ())


@dataclass(frozen=True)
class PoolSize:
    """One square pooling window over input (batch, height, width, channels)."""

    name: str
    batch: int
    height: int
    width: int
    channels: int
    kernel: int
    stride: int
    padding: str

    def __post_init__(self) -> None:
        _validate(
            self.name,
            {"batch": self.batch, "height": self.height, "width": self.width, "channels": self.channels,
             "kernel": self.kernel, "stride": self.stride},
            ((self.height, self.kernel, self.stride, self.padding),
             (self.width, self.kernel, self.stride, self.padding)),
        )

    @property
    def out_h(self) -> int:
        """Output height (elements)."""
        return output_size(self.height, self.kernel, self.stride, self.padding)

    @property
    def out_w(self) -> int:
        """Output width (elements)."""
        return output_size(self.width, self.kernel, self.stride, self.padding)


Size = ConvSize | FcSize | PoolSize


@dataclass(frozen=True)
class Repeats:
    """Suggested calls per measurement: untimed warm-up calls, then timed repeats (plus the first call)."""

    warmup: int
    repeats: int


REPEATS = {
    "ci": Repeats(warmup=1, repeats=3),
    "small": Repeats(warmup=2, repeats=5),
    "full": Repeats(warmup=5, repeats=20),
}

# Square GEMM orders tried, growing, for the measured practical peak: the search stops at the first order
# whose best rate (TensorFlow or numpy) is less than 3 % above the best before it (ai500.micro.peak).
PEAK_GEMM_ORDERS = {
    "ci": (128, 256, 512),
    "small": (256, 512, 1024, 2048, 4096),
    "full": (256, 512, 1024, 2048, 4096, 8192),
}


def _batched(sizes: tuple[Size, ...], batch: int) -> tuple[Size, ...]:
    return tuple(replace(size, batch=batch) for size in sizes)


# name, batch, height, width, in_channels, out_channels, kernel_h, kernel_w, stride, padding
_RESNET50_CONV = (
    ConvSize("resnet50_conv1_7x7_s2", 128, 224, 224, 3, 64, 7, 7, 2, "SAME"),
    ConvSize("resnet50_conv2_1x1_64to64", 128, 56, 56, 64, 64, 1, 1, 1, "VALID"),
    ConvSize("resnet50_conv2_3x3", 128, 56, 56, 64, 64, 3, 3, 1, "SAME"),
    ConvSize("resnet50_conv2_1x1_64to256", 128, 56, 56, 64, 256, 1, 1, 1, "VALID"),
    ConvSize("resnet50_conv2_1x1_256to64", 128, 56, 56, 256, 64, 1, 1, 1, "VALID"),
    ConvSize("resnet50_conv3_1x1_256to128", 128, 56, 56, 256, 128, 1, 1, 1, "VALID"),
    ConvSize("resnet50_conv3_3x3_s2", 128, 56, 56, 128, 128, 3, 3, 2, "SAME"),
    ConvSize("resnet50_conv3_shortcut_s2", 128, 56, 56, 256, 512, 1, 1, 2, "VALID"),
    ConvSize("resnet50_conv3_3x3", 128, 28, 28, 128, 128, 3, 3, 1, "SAME"),
    ConvSize("resnet50_conv3_1x1_128to512", 128, 28, 28, 128, 512, 1, 1, 1, "VALID"),
    ConvSize("resnet50_conv3_1x1_512to128", 128, 28, 28, 512, 128, 1, 1, 1, "VALID"),
    ConvSize("resnet50_conv4_1x1_512to256", 128, 28, 28, 512, 256, 1, 1, 1, "VALID"),
    ConvSize("resnet50_conv4_3x3_s2", 128, 28, 28, 256, 256, 3, 3, 2, "SAME"),
    ConvSize("resnet50_conv4_shortcut_s2", 128, 28, 28, 512, 1024, 1, 1, 2, "VALID"),
    ConvSize("resnet50_conv4_3x3", 128, 14, 14, 256, 256, 3, 3, 1, "SAME"),
    ConvSize("resnet50_conv4_1x1_256to1024", 128, 14, 14, 256, 1024, 1, 1, 1, "VALID"),
    ConvSize("resnet50_conv4_1x1_1024to256", 128, 14, 14, 1024, 256, 1, 1, 1, "VALID"),
    ConvSize("resnet50_conv5_1x1_1024to512", 128, 14, 14, 1024, 512, 1, 1, 1, "VALID"),
    ConvSize("resnet50_conv5_3x3_s2", 128, 14, 14, 512, 512, 3, 3, 2, "SAME"),
    ConvSize("resnet50_conv5_shortcut_s2", 128, 14, 14, 1024, 2048, 1, 1, 2, "VALID"),
    ConvSize("resnet50_conv5_3x3", 128, 7, 7, 512, 512, 3, 3, 1, "SAME"),
    ConvSize("resnet50_conv5_1x1_512to2048", 128, 7, 7, 512, 2048, 1, 1, 1, "VALID"),
    ConvSize("resnet50_conv5_1x1_2048to512", 128, 7, 7, 2048, 512, 1, 1, 1, "VALID"),
)
_VGG16_CONV = (
    ConvSize("vgg16_conv1_1", 64, 224, 224, 3, 64, 3, 3, 1, "SAME"),
    ConvSize("vgg16_conv1_2", 64, 224, 224, 64, 64, 3, 3, 1, "SAME"),
    ConvSize("vgg16_conv3_2", 64, 56, 56, 256, 256, 3, 3, 1, "SAME"),
    ConvSize("vgg16_conv4_2", 64, 28, 28, 512, 512, 3, 3, 1, "SAME"),
    ConvSize("vgg16_conv5_1", 64, 14, 14, 512, 512, 3, 3, 1, "SAME"),
)
_DEEPBENCH_CONV = (
    ConvSize("deepbench_speech_161x700_5x20_s2", 16, 161, 700, 1, 32, 5, 20, 2, "VALID"),
    ConvSize("deepbench_speech_79x341_5x10_s2", 16, 79, 341, 32, 32, 5, 10, 2, "VALID"),
    ConvSize("deepbench_48x480_3x3_1to16", 16, 48, 480, 1, 16, 3, 3, 1, "SAME"),
    ConvSize("deepbench_80x350_3x3_64to64", 16, 80, 350, 64, 64, 3, 3, 1, "SAME"),
    ConvSize("deepbench_28x28_5x5_192to32", 16, 28, 28, 192, 32, 5, 5, 1, "SAME"),
    ConvSize("deepbench_7x7_1x1_832to256", 16, 7, 7, 832, 256, 1, 1, 1, "VALID"),
)

# name, batch, in_features, out_features
_CLASSIFIER_FC = (
    FcSize("alexnet_fc6", 128, 9216, 4096),
    FcSize("alexnet_fc7", 128, 4096, 4096),
    FcSize("alexnet_fc8", 128, 4096, 1000),
    FcSize("vgg16_fc6", 64, 25088, 4096),
    FcSize("resnet50_fc", 128, 2048, 1000),
)
_DEEPBENCH_FC_N128 = (
    FcSize("deepbench_gemm_m1760_n128_k1760", 128, 1760, 1760),
    FcSize("deepbench_gemm_m4096_n128_k4096", 128, 4096, 4096),
)
_DEEPBENCH_FC_LARGE_N = (
    FcSize("deepbench_gemm_m2560_n7000_k2560", 7000, 2560, 2560),
    FcSize("deepbench_gemm_m35_n8457_k2048", 8457, 2048, 35),
)

# name, batch, height, width, channels, kernel, stride, padding
_RESNET50_POOL = (
    PoolSize("resnet50_pool1_max_3x3_s2", 128, 112, 112, 64, 3, 2, "SAME"),
    PoolSize("resnet50_pool_global_avg", 128, 7, 7, 2048, 7, 1, "VALID"),
)
_VGG16_POOL = (
    PoolSize("vgg16_pool1_2x2_s2", 64, 224, 224, 64, 2, 2, "VALID"),
    PoolSize("vgg16_pool3_2x2_s2", 64, 56, 56, 256, 2, 2, "VALID"),
    PoolSize("vgg16_pool5_2x2_s2", 64, 14, 14, 512, 2, 2, "VALID"),
)
_ALEXNET_POOL = (
    PoolSize("alexnet_pool1_3x3_s2", 128, 55, 55, 96, 3, 2, "VALID"),
    PoolSize("alexnet_pool2_3x3_s2", 128, 27, 27, 256, 3, 2, "VALID"),
    PoolSize("alexnet_pool5_3x3_s2", 128, 13, 13, 256, 3, 2, "VALID"),
)

_TABLES: dict[str, dict[str, tuple[Size, ...]]] = {
    "conv": {
        "ci": (
            ConvSize("tiny_conv_3x3", 2, 16, 16, 8, 16, 3, 3, 1, "SAME"),
            ConvSize("tiny_conv_1x1_s2", 2, 16, 16, 16, 32, 1, 1, 2, "VALID"),
            ConvSize("tiny_conv_3x5_valid", 2, 12, 20, 4, 8, 3, 5, 2, "VALID"),
        ),
        "small": _batched(_RESNET50_CONV, 16) + _batched(_VGG16_CONV, 4) + _batched(_DEEPBENCH_CONV, 4),
        "full": _RESNET50_CONV + _VGG16_CONV + _DEEPBENCH_CONV,
    },
    "fc": {
        "ci": (FcSize("tiny_fc_64x128", 16, 64, 128), FcSize("tiny_fc_256x64", 32, 256, 64)),
        "small": _batched(_CLASSIFIER_FC, 64) + _DEEPBENCH_FC_N128 + _batched(_DEEPBENCH_FC_LARGE_N, 1024),
        "full": _CLASSIFIER_FC + _DEEPBENCH_FC_N128 + _DEEPBENCH_FC_LARGE_N,
    },
    "pool": {
        "ci": (
            PoolSize("tiny_pool_max_3x3_s2", 2, 16, 16, 8, 3, 2, "SAME"),
            PoolSize("tiny_pool_2x2_s2", 2, 8, 8, 16, 2, 2, "VALID"),
        ),
        "small": _batched(_RESNET50_POOL + _VGG16_POOL + _ALEXNET_POOL, 32),
        "full": _RESNET50_POOL + _VGG16_POOL + _ALEXNET_POOL,
    },
}


def sizes_for(op: str, preset: str, names: list[str] | None = None) -> list[Size]:
    """The sizes of one op's table in one preset: all of them, or those named (in the order given).

    Raises ConfigError for an unknown op, preset or size name.
    """
    if op not in _TABLES:
        raise ConfigError(f"unknown micro benchmark op {op!r}; choose from {', '.join(OPS)}")
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    table = _TABLES[op][preset]
    if names is None:
        return list(table)
    by_name = {size.name: size for size in table}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise ConfigError(
            f"unknown {op} size {', '.join(map(repr, unknown))} in preset {preset!r}; "
            f"choose from {', '.join(by_name)}"
        )
    return [by_name[name] for name in names]
