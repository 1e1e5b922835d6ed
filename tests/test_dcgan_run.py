"""DCGAN: model structure, FLOPs accounting, and real `mpirun -np 2` runs at the ci preset."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
from conftest import load_summary, mpirun, only_run_dir, python_module

from ai500 import config
from ai500.dist import Dist
from ai500.errors import ConfigError
from ai500.models.dcgan import DCGANConfig, build_discriminator, build_generator
from ai500.trace import read_trace

layers = tf.keras.layers


def test_generator_upsamples_with_transposed_convolutions_to_tanh_maps():
    cfg = DCGANConfig(image_size=32, latent_dim=8, g_filters=(16, 8), d_filters=(8, 16))
    g = build_generator(cfg)
    out = g(np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32) * 10, training=False)
    assert out.shape == (3, 32, 32, 1)
    assert float(tf.reduce_max(tf.abs(out))) <= 1.0
    deconvs = [lyr for lyr in g.layers if isinstance(lyr, layers.Conv2DTranspose)]
    assert len(deconvs) == 2 and all(lyr.strides == (2, 2) for lyr in deconvs)
    assert sum(isinstance(lyr, layers.BatchNormalization) for lyr in g.layers) == 2
    assert g.layers[-1].activation is tf.keras.activations.tanh
    assert [lyr for lyr in g.layers if isinstance(lyr, layers.Dense)] == [g.get_layer("g_project")]


def test_resize_generator_doubles_by_nearest_neighbour_then_convolves():
    cfg = DCGANConfig(image_size=32, latent_dim=8, g_filters=(16, 8), d_filters=(8, 16), upsample="resize")
    g = build_generator(cfg)
    assert g(np.zeros((3, 8), np.float32), training=False).shape == (3, 32, 32, 1)
    assert not any(isinstance(lyr, layers.Conv2DTranspose) for lyr in g.layers)
    ups = [lyr for lyr in g.layers if isinstance(lyr, layers.UpSampling2D)]
    convs = [lyr for lyr in g.layers if type(lyr) is layers.Conv2D]
    assert len(ups) == len(convs) == 2 and all(lyr.strides == (1, 1) for lyr in convs)
    assert all(lyr.interpolation == "nearest" for lyr in ups)
    with pytest.raises(ValueError, match="upsample must be one of"):
        DCGANConfig(upsample="bilinear")


@pytest.mark.parametrize(("upsample", "periodic"), [("transpose", True), ("resize", False)])
def test_only_the_transposed_convolution_paints_a_stride_period_on_a_flat_input(upsample, periodic):
    """Why `upsample: resize`: a flat feature map doubled by a stride-2 transposed convolution comes
    out with a 2-pixel pattern (even and odd pixels use different kernel taps); doubled by
    nearest-neighbour resizing and a convolution it stays flat away from the borders."""
    from ai500.models.dcgan import _doubling

    tf.keras.utils.set_random_seed(0)
    cfg = DCGANConfig(image_size=32, latent_dim=8, g_filters=(16, 8), d_filters=(8, 16), upsample=upsample)
    out = _doubling(cfg, 1, "double")(tf.ones((1, 8, 8, 4)))[0, 4:-4, 4:-4, 0].numpy()
    phases = [out[i::2, j::2].mean() for i in (0, 1) for j in (0, 1)]
    assert (np.ptp(phases) > 1e-3 * np.abs(out).mean()) == periodic
    assert np.ptp(out) > 0 if periodic else np.ptp(out) < 1e-6 * np.abs(out).mean()


def test_discriminator_is_strided_convolutions_and_one_logit():
    cfg = DCGANConfig(image_size=32, latent_dim=8, g_filters=(16, 8), d_filters=(8, 16, 32))
    d = build_discriminator(cfg)
    assert d(tf.zeros((2, 32, 32, 1))).shape == (2, 1)
    convs = [lyr for lyr in d.layers if isinstance(lyr, layers.Conv2D)]
    assert len(convs) == 3 and all(lyr.strides == (2, 2) for lyr in convs)
    # batch norm after every convolution but the first; no fully connected hidden layer
    assert sorted(lyr.name for lyr in d.layers if isinstance(lyr, layers.BatchNormalization)) == \
        ["d_bn1", "d_bn2"]
    dense = [lyr for lyr in d.layers if isinstance(lyr, layers.Dense)]
    assert len(dense) == 1 and dense[0].units == 1 and d.layers[-1] is dense[0]
    assert any(isinstance(lyr, layers.LeakyReLU) for lyr in d.layers)


def test_full_scale_model_is_cosmogan_sized():
    cfg = DCGANConfig()
    assert cfg.image_size == 256 and cfg.base_size == 16
    with pytest.raises(ValueError, match="multiple of"):
        DCGANConfig(image_size=100)


def test_flops_count_both_networks():
    from ai500.workloads import dcgan

    cfg = config.resolve(["--benchmark", "dcgan", "--preset", "ci"])
    w = dcgan.Workload(cfg, Dist(rank=0, size=1, local_rank=0, local_size=1, host="test"))
    f = w.flops_per_sample()
    assert f["forward"] == pytest.approx(f["generator_forward"] + 2 * f["discriminator_forward"])
    assert f["train"] == pytest.approx(3 * f["forward"])
    assert "generator" in f["method"] and "discriminator" in f["method"]
    # ci model (4x4 kernels): the convolutions alone, 2·H·W·Ci·Co·K² (transposed: at the input size)
    g_convs = 2 * 16 * (8 * 8 * 32 * 16 + 16 * 16 * 16 * 1)
    d_convs = 2 * 16 * (16 * 16 * 1 * 8 + 8 * 8 * 8 * 16)
    assert g_convs <= f["generator_forward"] < 1.2 * g_convs
    assert d_convs <= f["discriminator_forward"] < 1.2 * d_convs


def test_bad_sections_are_config_errors():
    from ai500.workloads import dcgan

    dist = Dist(rank=0, size=1, local_rank=0, local_size=1, host="test")
    cfg = config.resolve(["--benchmark", "dcgan", "--preset", "ci"])
    with pytest.raises(ConfigError, match="unknown key"):
        dcgan.Workload(config.RunConfig(**{**cfg.__dict__, "data": {**cfg.data, "nonsense": 1}}), dist)
    with pytest.raises(ConfigError, match="multiple of"):
        dcgan.Workload(config.RunConfig(**{**cfg.__dict__, "data": {**cfg.data, "image_size": 34}}),
                       dist)


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
    # Files written by the generator CLI and read back with --data (the Workload unit tests above
    # cover the in-memory synthetic path; both give the same maps, see test_cosmo_data).
    data = tmp_path_factory.mktemp("cosmo") / "ci"
    gen = python_module("ai500.data", ["generate", "cosmo", "--preset", "ci", "--out", str(data)])
    assert gen.returncode == 0, gen.stderr
    out = tmp_path_factory.mktemp("runs")
    result = mpirun(2, ["--benchmark", "dcgan", "--preset", "ci", "--data", str(data), "--out", str(out)])
    assert result.returncode == 0, result.stdout + result.stderr
    return result, only_run_dir(out)


def test_ci_run_summary_and_identical_eval_on_both_ranks(ci_run):
    _, run_dir = ci_run
    s = load_summary(run_dir)
    assert s["status"] == "ok" and s["ranks"] == 2 and s["epochs_completed"] == 2
    assert s["quality"]["metric"] == "val_quality"
    for name in ("dcgan_maps.png", "dcgan_power_spectrum.png"):  # rank 0 draws them at the end
        assert (run_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert s["flops"]["per_sample_train"] > 0
    t0, t1 = (read_trace(run_dir / f"trace-rank{r:05d}.h5") for r in (0, 1))
    assert t0.attrs["status"] == t1.attrs["status"] == "ok"
    for key in ("val_quality", "val_pk_error", "val_ks", "train_d_loss", "train_g_loss"):
        assert np.all(np.isfinite(t0.epochs[key])), key
        np.testing.assert_array_equal(t0.epochs[key], t1.epochs[key])
    # 128 training maps per rank, batch 16: 8 steps per epoch; 32 generated maps per rank evaluated
    assert t0.epochs["samples"].tolist() == [128, 128]
    assert t0.epochs["val_generated_maps"].tolist() == [64, 64]
    assert t0.epochs["val_real_maps"].tolist() == [128, 128]
    cfg = json.loads((run_dir / "config.json").read_text())
    assert "square-root scaling" in cfg["workload"]["lr_rule"]
    assert cfg["workload"]["eval_generated_maps"] == 64
    assert cfg["workload"]["generator_upsampling"] == "stride-2 transposed convolutions"  # ci's default
    assert cfg["workload"]["data_source"].startswith("files under")


@pytest.mark.parametrize("case, fragment", [
    ("wrong_shape", "expected (N, S, S)"),
    ("nan", "non-finite"),
    ("empty", "no train*.npy"),
])
def test_bad_data_ends_every_rank_with_one_line(tmp_path, case, fragment):
    data = tmp_path / "data"
    data.mkdir()
    if case != "empty":
        maps = np.zeros((64, 32, 32), np.float32)
        if case == "nan":
            maps[40, 1, 1] = np.nan  # in rank 1's shard only
        np.save(data / "train.npy", maps if case == "nan" else maps[:, :, :16])
        np.save(data / "val.npy", np.zeros((16, 32, 32), np.float32))
    out = tmp_path / "runs"
    result = mpirun(2, ["--benchmark", "dcgan", "--preset", "ci", "--data", str(data), "--out", str(out)],
                    timeout=180)
    assert result.returncode != 0
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("ai500: error:")]
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() or not any(out.iterdir())


def test_write_figures_draws_maps_and_spectra(tmp_path):
    from ai500.workloads import dcgan

    cfg = config.resolve(["--benchmark", "dcgan", "--preset", "ci"])
    w = dcgan.Workload(cfg, Dist(rank=0, size=1, local_rank=0, local_size=1, host="test"))
    assert [p.name for p in w.write_figures(tmp_path)] == ["dcgan_maps.png"]  # no evaluation yet
    w.last_spectra = (np.linspace(2, 1, 16), np.linspace(2, 1, 16) ** 2)
    paths = w.write_figures(tmp_path)
    assert [p.name for p in paths] == ["dcgan_maps.png", "dcgan_power_spectrum.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)


def test_the_evaluation_maps_are_one_global_set_split_in_whole_batches():
    from ai500.workloads.dcgan import EVAL_BATCH, evaluation_latents

    alone = evaluation_latents(512, 8, 0, Dist(0, 1, 0, 1, "h"))
    for size in (2, 3, 9):  # 9 ranks for 8 batches: one rank generates none
        parts = [evaluation_latents(512, 8, 0, Dist(r, size, r, size, "h")) for r in range(size)]
        assert all(len(p) % EVAL_BATCH == 0 for p in parts)
        np.testing.assert_array_equal(np.concatenate(parts), alone)
