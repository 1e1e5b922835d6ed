"""Synthetic convergence maps in the CosmoGAN .npy layout: physics, determinism, files, shards, errors."""

import re

import numpy as np
import pytest
from conftest import python_module

from ai500.data import cosmo
from ai500.errors import DataError
from ai500.metrics import cosmo_quality as cq

S = 32


def test_generation_is_deterministic_and_blockwise():
    a = cosmo.generate_maps(5, 10, seed=7, size=S)
    assert a.shape == (10, S, S) and a.dtype == np.float32
    np.testing.assert_array_equal(a, cosmo.generate_maps(5, 10, seed=7, size=S))
    np.testing.assert_array_equal(a, cosmo.generate_maps(0, 20, seed=7, size=S)[5:15])
    assert not np.array_equal(a, cosmo.generate_maps(5, 10, seed=8, size=S))
    assert cosmo.split_seed(7, "val") != cosmo.split_seed(7, "train") == 7


def test_lognormal_one_point_statistics():
    kappa = cosmo.generate_maps(0, 256, seed=1, size=64).astype(np.float64)
    assert kappa.min() > -cosmo.KAPPA0
    assert abs(kappa.mean()) < 0.003
    # Unit-variance g: var κ = κ0² (exp(σ²) − 1); large-scale modes make the sample variance noisy.
    expected = cosmo.KAPPA0 * np.sqrt(np.exp(cosmo.SIGMA**2) - 1)
    assert kappa.std() == pytest.approx(expected, rel=0.2)
    skew = np.mean((kappa - kappa.mean()) ** 3) / kappa.std() ** 3
    assert skew > 1.0  # strongly skewed, unlike a Gaussian field


def test_gaussian_field_has_the_power_law_spectrum():
    g = cosmo.gaussian_fields(0, 128, seed=2, size=64)
    assert g.var() == pytest.approx(1.0, rel=0.2)
    p = cq.power_spectrum(g)
    k = np.arange(1, 33)
    slope = np.polyfit(np.log(k[2:24]), np.log(p[2:24]), 1)[0]
    assert slope == pytest.approx(cosmo.SLOPE, abs=0.1)


def test_normalisation_is_invertible_and_linear_in_the_field():
    g = cosmo.gaussian_fields(0, 4, seed=3, size=S)
    kappa = cosmo.lognormal(g)
    s = cosmo.normalise(kappa)
    assert s.dtype == np.float32 and np.all(np.abs(s) < 1)
    np.testing.assert_allclose(s, cosmo.SIGMA * g / cosmo.LOG_RANGE, atol=1e-5)
    np.testing.assert_allclose(cosmo.denormalise(s), kappa, rtol=1e-4, atol=1e-7)
    # bounded both ways: a saturated generator pixel is a bounded κ, values below −shift are −1
    edges = cosmo.denormalise(np.array([-1.0, 1.0, 3.0]))
    assert edges[0] > -cosmo.KAPPA0 and edges[1] == edges[2] < 2.5
    assert cosmo.normalise(np.array([-1.0, 1e9])).tolist() == [-1.0, 1.0]


def test_written_files_and_no_overwrite(tmp_path):
    paths = cosmo.generate_dataset(tmp_path / "c", n_train=12, n_val=6, seed=4, image_size=S)
    assert [p.name for p in paths] == ["train.npy", "val.npy"]
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["train.npy", "val.npy"]
    train = np.load(paths[0])
    assert train.shape == (12, S, S) and train.dtype == np.float32
    np.testing.assert_array_equal(train, cosmo.generate_maps(0, 12, 4, S))
    np.testing.assert_array_equal(np.load(paths[1]), cosmo.generate_maps(0, 6, cosmo.split_seed(4, "val"), S))
    with pytest.raises(DataError, match="refusing to overwrite"):
        cosmo.generate_dataset(tmp_path / "c", n_train=12, n_val=6, seed=4, image_size=S)


def test_cli_writes_ci_preset(tmp_path):
    result = python_module("ai500.data", ["generate", "cosmo", "--preset", "ci", "--out", str(tmp_path / "d")])
    assert result.returncode == 0, result.stderr
    assert np.load(tmp_path / "d" / "train.npy", mmap_mode="r").shape == (256, 32, 32)
    assert np.load(tmp_path / "d" / "val.npy", mmap_mode="r").shape == (128, 32, 32)
    again = python_module("ai500.data", ["generate", "cosmo", "--preset", "ci", "--out", str(tmp_path / "d")])
    assert again.returncode != 0 and "refusing to overwrite" in again.stderr


def test_shards_cover_the_set_for_any_rank_count(tmp_path):
    cosmo.write_split(tmp_path / "train-a.npy", 7, seed=5, size=S, chunk=3)
    np.save(tmp_path / "train-b.npy", cosmo.generate_maps(7, 4, 5, S))
    whole = cosmo.generate_maps(0, 11, 5, S)
    for size in (1, 2, 3):
        shards = [cosmo.load_shard(tmp_path, "train", r, size, equal=False) for r in range(size)]
        assert all(total == 11 for _, total in shards)
        np.testing.assert_array_equal(np.concatenate([m for m, _ in shards]), whole)
        equal = [cosmo.load_shard(tmp_path, "train", r, size, equal=True)[0] for r in range(size)]
        assert {len(m) for m in equal} == {11 // size}
    # In-memory generation of a shard gives the same maps as reading it from the file.
    np.testing.assert_array_equal(cosmo.load_shard(tmp_path, "train", 1, 2, equal=True)[0],
                                  cosmo.generate_maps(5, 5, 5, S))


@pytest.mark.parametrize("case, fragment", [
    ("no_dir", "does not exist"),
    ("empty", "no train*.npy"),
    ("wrong_shape", "expected (N, S, S)"),
    ("flat", "expected (N, S, S)"),
    ("size", "expected 32x32"),
    ("truncated", "truncated"),
    ("nan", "non-finite"),
    ("text", "not a readable .npy"),
])
def test_bad_files_raise_data_error(tmp_path, case, fragment):
    d = tmp_path / "d"
    if case != "no_dir":
        d.mkdir()
    maps = cosmo.generate_maps(0, 4, 1, S)
    if case == "wrong_shape":
        np.save(d / "train.npy", np.zeros((4, S, S + 1), np.float32))
    elif case == "flat":
        np.save(d / "train.npy", np.zeros((S, S), np.float32))
    elif case == "size":
        np.save(d / "train.npy", np.zeros((4, 16, 16), np.float32))
    elif case in ("truncated", "nan"):
        if case == "nan":
            maps[2, 3, 4] = np.inf
        np.save(d / "train.npy", maps)
        if case == "truncated":
            raw = (d / "train.npy").read_bytes()
            (d / "train.npy").write_bytes(raw[: len(raw) // 2])
    elif case == "text":
        (d / "train.npy").write_text("not numpy")
    with pytest.raises(DataError, match=re.escape(fragment)):
        cosmo.load_shard(d, "train", 0, 1, equal=True, image_size=S)
