"""ResNet (He et al., 2016) as plain Keras functional code, with its config as a dataclass.

`ResNetConfig()` at full scale is ResNet-50: a 7×7/2 stem with 3×3/2 max-pool, four stages of
bottleneck blocks (3, 4, 6, 3) with widths 64…512 (×4 expansion), global average pooling.
Smaller presets shrink widths, depth and input size. `residual_stage` is the building block that
other models (the Faster R-CNN backbone) reuse. Built under a mixed-precision policy
(ai500.precision), the layers compute in bf16 or fp16 and the logits layer in float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

layers = tf.keras.layers


@dataclass(frozen=True)
class ResNetConfig:
    """Shape of the network. Widths are the bottleneck (inner) channel counts per stage."""

    input_shape: tuple[int, int, int] = (224, 224, 3)
    stem_width: int = 64
    stem_kernel: int = 7
    stem_stride: int = 2
    stem_pool: bool = True
    stage_widths: tuple[int, ...] = (64, 128, 256, 512)
    stage_blocks: tuple[int, ...] = (3, 4, 6, 3)
    bottleneck: bool = True
    num_outputs: int = 1
    weight_decay: float = 1e-4

    def __post_init__(self):
        # YAML gives lists; keep the dataclass hashable and its repr stable.
        for name in ("input_shape", "stage_widths", "stage_blocks"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if len(self.stage_widths) != len(self.stage_blocks):
            raise ValueError("stage_widths and stage_blocks must have the same length")


def conv_bn(x, filters: int, kernel: int, stride: int, name: str, weight_decay: float,
            relu: bool = True, zero_gamma: bool = False):
    """Convolution (no bias, "same" padding), batch norm, optional ReLU: the unit every block uses."""
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                      kernel_initializer="he_normal",
                      kernel_regularizer=tf.keras.regularizers.l2(weight_decay) if weight_decay else None,
                      name=f"{name}_conv")(x)
    # Zero-initialising the last BN of each residual branch makes every block start as the
    # identity, which is what lets large-batch training warm up stably (Goyal et al., 2017).
    x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn",
                                  gamma_initializer="zeros" if zero_gamma else "ones")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def residual_block(x, width: int, stride: int, bottleneck: bool, name: str,
                   weight_decay: float = 0.0):
    """One residual block: basic (two 3×3) or bottleneck (1×1, 3×3, 1×1 with 4× expansion)."""
    out_channels = width * 4 if bottleneck else width
    shortcut = x
    if stride != 1 or x.shape[-1] != out_channels:
        shortcut = conv_bn(x, out_channels, 1, stride, f"{name}_proj", weight_decay, relu=False)
    if bottleneck:
        y = conv_bn(x, width, 1, 1, f"{name}_a", weight_decay)
        y = conv_bn(y, width, 3, stride, f"{name}_b", weight_decay)
        y = conv_bn(y, out_channels, 1, 1, f"{name}_c", weight_decay, relu=False, zero_gamma=True)
    else:
        y = conv_bn(x, width, 3, stride, f"{name}_a", weight_decay)
        y = conv_bn(y, width, 3, 1, f"{name}_b", weight_decay, relu=False, zero_gamma=True)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))


def residual_stage(x, width: int, blocks: int, stride: int, bottleneck: bool, name: str,
                   weight_decay: float = 0.0):
    """`blocks` residual blocks; the first one changes resolution by `stride`."""
    for i in range(blocks):
        x = residual_block(x, width, stride if i == 0 else 1, bottleneck, f"{name}_block{i + 1}",
                           weight_decay)
    return x


def build_resnet(cfg: ResNetConfig) -> tf.keras.Model:
    """A ResNet classifier returning `num_outputs` logits per image (float32 under any policy)."""
    inputs = tf.keras.Input(shape=cfg.input_shape, name="image")
    x = conv_bn(inputs, cfg.stem_width, cfg.stem_kernel, cfg.stem_stride, "stem", cfg.weight_decay)
    if cfg.stem_pool:
        x = layers.MaxPool2D(3, strides=2, padding="same", name="stem_pool")(x)
    for i, (width, blocks) in enumerate(zip(cfg.stage_widths, cfg.stage_blocks)):
        x = residual_stage(x, width, blocks, 1 if i == 0 else 2, cfg.bottleneck,
                           f"stage{i + 1}", cfg.weight_decay)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    logits = layers.Dense(cfg.num_outputs, dtype="float32", name="logits")(x)
    return tf.keras.Model(inputs, logits, name="resnet")
