"""Map-quality metrics discriminate: real vs real passes, Gaussian fails KS, wrong slope fails P(k)."""

import numpy as np
import pytest

from ai500.data import cosmo
from ai500.metrics import cosmo_quality as cq

SIZE, N_GEN, N_REAL = 64, 512, 1024  # the small preset's evaluation: 2 ranks x 256 vs 1024


@pytest.fixture(scope="module")
def real():
    return cosmo.generate_maps(0, N_REAL, cosmo.split_seed(3, "val"), SIZE)


def _compare(maps, real):
    return cq.compare(maps, real, cosmo.normalise)


def test_independent_real_sets_pass(real):
    m = _compare(cosmo.generate_maps(0, N_GEN, 3, SIZE), real)
    assert m["pk_error"] < cq.PK_THRESHOLD / 3
    assert m["ks"] < cq.KS_THRESHOLD / 3
    assert m["quality"] < 1.0


def test_gaussian_field_of_equal_variance_fails_pixel_test(real):
    gauss = cosmo.gaussian_fields(0, N_GEN, 3, SIZE) * float(real.std())
    m = _compare(gauss, real)
    assert m["ks"] > 2 * cq.KS_THRESHOLD
    assert m["quality"] > 1.0


def test_wrong_spectral_slope_fails_spectrum_test(real):
    m = _compare(cosmo.generate_maps(0, N_GEN, 3, SIZE, slope=-1.5), real)
    assert m["pk_error"] > 5 * cq.PK_THRESHOLD
    assert m["ks"] < cq.KS_THRESHOLD  # same one-point distribution: only the spectrum catches it
    assert m["quality"] > 1.0


def test_spectrum_sums_add_across_shards():
    maps = cosmo.generate_maps(0, 10, 4, 32)
    s_all, c_all = cq.spectrum_sums(maps)
    parts = [cq.spectrum_sums(maps[:3]), cq.spectrum_sums(maps[3:])]
    np.testing.assert_allclose(parts[0][0] + parts[1][0], s_all, rtol=1e-12)
    np.testing.assert_array_equal(parts[0][1] + parts[1][1], c_all)
    # Mode counts: every full-grid mode with 1 <= |k| rounded <= S/2, once per map.
    k = np.rint(np.hypot(*np.meshgrid(np.fft.fftfreq(32) * 32, np.fft.fftfreq(32) * 32)))
    assert c_all.sum() == 10 * np.count_nonzero((k >= 1) & (k <= 16))


def test_white_noise_spectrum_is_flat_at_its_variance():
    noise = np.random.default_rng(0).normal(0.0, 2.0, (64, 32, 32))
    np.testing.assert_allclose(cq.power_spectrum(noise), 4.0, rtol=0.1)


def test_binned_ks_matches_exact_ks():
    rng = np.random.default_rng(1)
    a, b = np.tanh(rng.normal(0, 1, 5000)), np.tanh(rng.normal(0.1, 1.1, 7000))
    binned = cq.ks_from_histograms(cq.pixel_histogram(a), cq.pixel_histogram(b))
    assert binned == pytest.approx(cq.ks_statistic(a, b), abs=2 / cq.HIST_BINS + 1e-3)
    assert cq.ks_from_histograms(cq.pixel_histogram(a), cq.pixel_histogram(a)) == 0.0


def test_spectrum_error_and_combined_quality():
    p = np.array([1.0, 2.0, 4.0])
    assert cq.spectrum_error(p, p) == 0.0
    assert cq.spectrum_error(p * np.array([1.1, 0.8, 1.0]), p) == pytest.approx(0.1)
    assert cq.combined_quality(cq.PK_THRESHOLD, 0.0) == pytest.approx(1.0)
    assert cq.combined_quality(0.0, 2 * cq.KS_THRESHOLD) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        cq.spectrum_error(p, np.zeros(3))
