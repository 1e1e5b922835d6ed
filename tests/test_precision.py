"""Precision options in one process: parsing, the device default, what stays float32 under the
mixed policies, and fp16 loss scaling through ai500.precision.averaged_gradients."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from ai500 import config, precision
from ai500 import dist as distlib
from ai500.dist import NO_GPU, Dist, GpuBinding
from ai500.errors import ConfigError

ONE_RANK = Dist(rank=0, size=1, local_rank=0, local_size=1, host="test")


def gpu(cc: tuple[int, int]) -> GpuBinding:
    return GpuBinding(0, 1, ("0",), "test", "Fake GPU", cc)


@pytest.mark.parametrize("device, expected", [
    (NO_GPU, "fp32"), (gpu((9, 0)), "bf16"), (gpu((8, 0)), "bf16"), (gpu((7, 0)), "fp16"),
    (gpu((7, 5)), "fp16"), (gpu((6, 0)), "fp32")])
def test_default_precision_by_device(device, expected):
    chosen, why = precision.default_precision(device)
    assert chosen == expected and why


def test_precision_and_xla_options():
    cfg = config.resolve(["--benchmark", "resnet", "--preset", "ci"])
    assert (cfg.precision, cfg.xla) == (None, False)  # decided by the driver for the device
    cfg = config.resolve(["--benchmark", "dcgan", "--preset", "ci", "--precision", "fp16", "--xla"])
    assert (cfg.precision, cfg.xla) == ("fp16", True)
    assert cfg.to_dict()["precision"] == "fp16"
    with pytest.raises(ConfigError, match="invalid choice"):
        config.resolve(["--benchmark", "resnet", "--precision", "fp8"])
    with pytest.raises(ConfigError, match="--xla not used by micro benchmark 'conv'"):
        config.resolve(["--benchmark", "conv", "--preset", "ci", "--xla"])


def test_micro_precision_is_its_dtype():
    assert config.resolve(["--benchmark", "conv", "--preset", "ci"]).precision == "fp32"
    cfg = config.resolve(["--benchmark", "fc", "--preset", "ci", "--precision", "bf16"])
    assert (cfg.micro["dtype"], cfg.precision) == ("bfloat16", "bf16")
    cfg = config.resolve(["--benchmark", "fc", "--preset", "ci", "--dtype", "bfloat16"])
    assert cfg.precision == "bf16"
    with pytest.raises(ConfigError, match="--precision fp16 and --dtype float32 disagree"):
        config.resolve(["--benchmark", "fc", "--preset", "ci", "--precision", "fp16",
                        "--dtype", "float32"])


def test_a_config_json_from_before_precision_is_fp32():
    values = config.resolve(["--benchmark", "resnet", "--preset", "ci"]).to_dict()
    del values["precision"], values["xla"]
    cfg = config.RunConfig.from_dict(values)
    assert (cfg.precision, cfg.xla) == ("fp32", False)


def test_policy_is_restored_after_building():
    before = tf.keras.mixed_precision.global_policy().name
    with precision.policy("bf16"):
        assert tf.keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    assert tf.keras.mixed_precision.global_policy().name == before


@pytest.mark.parametrize("mode, compute", [("bf16", "bfloat16"), ("fp16", "float16")])
def test_resnet_under_a_mixed_policy_keeps_logits_and_statistics_float32(mode, compute):
    from ai500.workloads import resnet

    cfg = config.resolve(["--benchmark", "resnet", "--preset", "ci", "--precision", mode])
    w = resnet.Workload(cfg, ONE_RANK)
    model = w.model
    assert model.get_layer("stem_conv").compute_dtype == compute
    assert model.get_layer("logits").compute_dtype == "float32"
    bn = model.get_layer("stem_bn")
    assert {v.dtype for v in bn.weights} == {tf.float32}  # scale, offset, moving mean/variance
    assert all(v.dtype == tf.float32 for v in model.trainable_variables)
    out = model(w.val.field("data")[:4], training=False)
    assert out.dtype == tf.float32 and np.all(np.isfinite(out.numpy()))
    scaled = isinstance(w.optimizer, tf.keras.mixed_precision.LossScaleOptimizer)
    assert scaled == (mode == "fp16")


def test_dcgan_and_faster_rcnn_outputs_are_float32_under_bf16():
    from ai500.workloads import dcgan, faster_rcnn

    cfg = config.resolve(["--benchmark", "dcgan", "--preset", "ci", "--precision", "bf16"])
    w = dcgan.Workload(cfg, ONE_RANK)
    g = w.generator
    assert g.get_layer("g_project").compute_dtype == "bfloat16"
    assert g.layers[-2].compute_dtype == g.layers[-1].compute_dtype == "float32"  # deconv, tanh
    assert w.discriminator.get_layer("d_logit").compute_dtype == "float32"
    assert w.generate(w.eval_latent[:2]).dtype == np.float32

    cfg = config.resolve(["--benchmark", "faster_rcnn", "--preset", "ci", "--precision", "bf16"])
    w = faster_rcnn.Workload(cfg, ONE_RANK)
    _, logits, deltas = w.model(next(w.validation_crops([np.arange(1)])), training=False)
    assert logits.dtype == deltas.dtype == tf.float32
    class_logits, roi_deltas = w.model.box_head(tf.zeros((2, *w.model.box_head.input_shape[1:])))
    assert class_logits.dtype == roi_deltas.dtype == tf.float32
    assert w.model.backbone.get_layer("stem_conv").compute_dtype == "bfloat16"


def test_xla_compiles_the_forward_pass():
    from ai500.workloads import resnet

    cfg = config.resolve(["--benchmark", "resnet", "--preset", "ci", "--xla"])
    w = resnet.Workload(cfg, ONE_RANK)
    assert w._forward.function_spec is not None and w._forward._jit_compile is True
    plain = resnet.Workload(config.resolve(["--benchmark", "resnet", "--preset", "ci"]), ONE_RANK)
    assert plain._forward == plain._losses  # no extra function layer by default


@pytest.fixture
def local_tape(monkeypatch):
    """One process, no Horovod: the 'distributed' tape is the tape itself."""
    monkeypatch.setattr(distlib, "distributed_tape", lambda tape: tape)


def test_fp16_loss_scaling_scales_unscales_and_skips_overflowing_steps(local_tape):
    w = tf.Variable([1.0, 2.0])
    opt = precision.optimizer(tf.keras.optimizers.SGD(0.1), "fp16")

    def step(factor: float):
        with tf.GradientTape() as tape:
            # fp16 arithmetic, as a mixed-policy layer does; the loss itself is float32
            loss = tf.cast(tf.reduce_sum(tf.cast(w, tf.float16) * tf.constant(factor, tf.float16)),
                           tf.float32)
        grads = precision.averaged_gradients(tape, loss, [w], opt)
        opt.apply_gradients(zip(grads, [w]))
        return grads[0].numpy()

    assert float(opt.loss_scale) == 2.0 ** 15
    grads = step(1.5)  # scaled by 2^15 on the tape (1.5 x 2^15 fits in fp16), unscaled after
    np.testing.assert_allclose(grads, [1.5, 1.5])
    np.testing.assert_allclose(w.numpy(), [0.85, 1.85], rtol=1e-6)
    assert float(opt.loss_scale) == 2.0 ** 15
    step(4.0)  # 4 x 2^15 = 131072 overflows fp16 (max 65504): step skipped, scale halved
    np.testing.assert_allclose(w.numpy(), [0.85, 1.85], rtol=1e-6)
    assert float(opt.loss_scale) == 2.0 ** 14
    assert int(opt.iterations) == 2  # a skipped step still counts (the schedule and resume rely on it)
    assert precision.loss_scale(opt)["loss_scale"].numpy() == 2.0 ** 14
    assert precision.loss_scale(tf.keras.optimizers.SGD(0.1)) == {}


def test_precision_record():
    record = precision.describe("fp16", True, NO_GPU)
    assert record["precision"] == "fp16" and record["keras_policy"] == "mixed_float16"
    assert record["loss_scaling"].startswith("dynamic") and record["xla"] is True
    assert record["tf32"] is None  # no GPU
    assert precision.describe("fp32", False, NO_GPU)["loss_scaling"] == "none"
