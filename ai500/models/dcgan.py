"""DCGAN (Radford et al., 2016) for single-channel maps, as in CosmoGAN (Mustafa et al., 2019).

Generator: latent vector → Dense → reshape to b×b×g_filters[0] → batch norm, ReLU → one stride-2
transposed convolution per further width (batch norm, ReLU) → a last stride-2 transposed convolution
to one channel with tanh. Each transposed convolution doubles the side, so
b = image_size / 2^len(g_filters). Discriminator: stride-2 convolutions with LeakyReLU(0.2), batch norm
on all but the first, then flatten → one logit (no fully connected hidden layer). Full scale is
CosmoGAN's 256×256 model (latent 64, generator widths 512…64, discriminator 64…512, 5×5 kernels).
`upsample: resize` replaces each transposed convolution by a nearest-neighbour doubling and a stride-1
convolution (Odena et al., 2016, "Deconvolution and Checkerboard Artifacts"). A stride-2 transposed
convolution computes even and odd output pixels from different kernel taps, so a generator easily paints
a pattern with the period of its strides, which the power spectrum sees as spikes. `ema_decay` is not
architecture but the averaging constant of the evaluated generator copy.
Under a mixed-precision policy (ai500.precision) the final layers stay float32: the generator's last
convolution and tanh, and the discriminator's logit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import tensorflow as tf

layers = tf.keras.layers
# model.upsample -> how each generator layer doubles the map side
UPSAMPLING = {"transpose": "stride-2 transposed convolutions",
              "resize": "nearest-neighbour doubling, then a stride-1 convolution"}


@dataclass(frozen=True)
class DCGANConfig:
    image_size: int = 256
    latent_dim: int = 64
    g_filters: tuple[int, ...] = (512, 256, 128, 64)
    d_filters: tuple[int, ...] = (64, 128, 256, 512)
    kernel: int = 5
    upsample: str = "transpose"  # or "resize" (see the module docstring)
    ema_decay: float = 0.99  # weight average of the generator that is evaluated (see the workload)

    def __post_init__(self):
        for name in ("g_filters", "d_filters"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if not self.g_filters or not self.d_filters:
            raise ValueError("g_filters and d_filters must be non-empty")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.upsample not in UPSAMPLING:
            raise ValueError(f"upsample must be one of {', '.join(UPSAMPLING)}, got {self.upsample!r}")
        if self.latent_dim < 1 or self.kernel < 1:
            raise ValueError(f"latent_dim and kernel must be >= 1, got {self.latent_dim}, {self.kernel}")
        ups = 2 ** len(self.g_filters)
        if self.image_size % ups or self.image_size < ups:
            raise ValueError(f"image_size {self.image_size} must be a multiple of 2^{len(self.g_filters)} "
                             f"= {ups} (one doubling per generator width)")

    @property
    def base_size(self) -> int:
        return self.image_size // 2 ** len(self.g_filters)


def _init():
    """DCGAN's weight initialisation, N(0, 0.02); a fresh initializer per layer."""
    return tf.keras.initializers.RandomNormal(stddev=0.02)


def _doubling(cfg: DCGANConfig, width: int, name: str, **conv_args) -> Callable[[tf.Tensor], tf.Tensor]:
    """A layer stack that doubles the side and outputs `width` channels, by `cfg.upsample`."""
    if cfg.upsample == "transpose":
        return layers.Conv2DTranspose(width, cfg.kernel, strides=2, padding="same",
                                      kernel_initializer=_init(), name=name, **conv_args)
    up = layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_up")
    conv = layers.Conv2D(width, cfg.kernel, padding="same", kernel_initializer=_init(), name=name,
                         **conv_args)
    return lambda x: conv(up(x))


def build_generator(cfg: DCGANConfig, name: str = "generator") -> tf.keras.Model:
    """Latent (latent_dim,) → map (S, S, 1) in [−1, 1]."""
    b, widths = cfg.base_size, cfg.g_filters
    z = tf.keras.Input(shape=(cfg.latent_dim,), name="latent")
    x = layers.Dense(b * b * widths[0], use_bias=False, kernel_initializer=_init(), name="g_project")(z)
    x = layers.Reshape((b, b, widths[0]), name="g_reshape")(x)
    x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="g_bn0")(x)
    x = layers.ReLU(name="g_relu0")(x)
    for i, width in enumerate(widths[1:], start=1):
        x = _doubling(cfg, width, f"g_deconv{i}", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"g_bn{i}")(x)
        x = layers.ReLU(name=f"g_relu{i}")(x)
    x = _doubling(cfg, 1, f"g_deconv{len(widths)}", dtype="float32")(x)
    out = layers.Activation("tanh", dtype="float32", name="g_tanh")(x)
    return tf.keras.Model(z, out, name=name)


def build_discriminator(cfg: DCGANConfig) -> tf.keras.Model:
    """Map (S, S, 1) → one real-vs-fake logit."""
    image = tf.keras.Input(shape=(cfg.image_size, cfg.image_size, 1), name="map")
    x = image
    for i, width in enumerate(cfg.d_filters):
        x = layers.Conv2D(width, cfg.kernel, strides=2, padding="same", use_bias=i == 0,
                          kernel_initializer=_init(), name=f"d_conv{i}")(x)
        if i > 0:
            x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"d_bn{i}")(x)
        x = layers.LeakyReLU(0.2, name=f"d_lrelu{i}")(x)
    x = layers.Flatten(name="d_flatten")(x)
    logit = layers.Dense(1, kernel_initializer=_init(), dtype="float32", name="d_logit")(x)
    return tf.keras.Model(image, logit, name="discriminator")
