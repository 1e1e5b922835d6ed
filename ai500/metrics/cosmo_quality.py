"""Quality of generated convergence maps against held-out real maps (numpy only).

Both metrics are computed from additive per-map statistics so that every rank can summarise its own
maps and the sums can be reduced across ranks exactly:

- Power spectrum: each map's 2-D periodogram |FFT(κ)|²/S² summed into integer |k| bins 1..S/2
  (`spectrum_sums` returns per-bin sums over maps and the mode counts). The azimuthally averaged
  P(k) of a set is sums/counts; the error is the median over k bins of |P_gen(k)/P_real(k) − 1|.
- Pixel distribution: the Kolmogorov–Smirnov statistic (largest CDF difference) between the pixel
  values of the two sets, from histograms on fixed fine bins (`pixel_histogram`). The bins are
  uniform in the normalised value s(κ) (ai500.data.cosmo), i.e. fixed edges κ(s) in κ; KS is
  unchanged by a monotone transform, so binning s or κ gives the same statistic up to the bin width
  (4096 bins: at most 1/4096 of the mass moves within a bin).

Thresholds (the quality target), measured with `python -m ai500.metrics.cosmo_quality` (see
DCGAN_README_SECTION.md): a generated set passes when the P(k) error is below PK_THRESHOLD and the
KS statistic below KS_THRESHOLD. `combined_quality` is the larger of the two metrics each divided
by its threshold: ≤ 1 means both pass.
"""

from __future__ import annotations

import numpy as np

PK_THRESHOLD = 0.2
KS_THRESHOLD = 0.05
HIST_BINS = 4096


def k_bins(size: int) -> np.ndarray:
    """Integer |k| bin (rounded) of each mode on the rfft2 grid of an S x S map; k = 0 is bin 0."""
    ky = np.fft.fftfreq(size) * size
    kx = np.fft.rfftfreq(size) * size
    return np.rint(np.hypot(ky[:, None], kx[None, :])).astype(np.int64)


def _rfft_weights(size: int) -> np.ndarray:
    """How many full-grid modes each rfft2 column stands for (the mirrored half counts twice)."""
    w = np.full(size // 2 + 1, 2.0)
    w[0] = 1.0
    if size % 2 == 0:
        w[-1] = 1.0
    return w


def spectrum_sums(kappa: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin sums over maps of the periodogram |FFT(κ)|²/S², and the number of (map, mode) pairs
    per bin, for bins k = 1..S/2. `kappa` is (N, S, S); N may be 0."""
    kappa = np.asarray(kappa, np.float64)
    n, size = kappa.shape[0], kappa.shape[-1]
    nbins = size // 2
    bins = k_bins(size)
    weights = np.broadcast_to(_rfft_weights(size)[None, :], bins.shape)
    keep = (bins >= 1) & (bins <= nbins)
    idx = bins[keep] - 1
    counts = n * np.bincount(idx, weights[keep], nbins)
    sums = np.zeros(nbins)
    for start in range(0, n, 64):
        f = np.fft.rfft2(kappa[start:start + 64])
        power = (f.real**2 + f.imag**2) / size**2
        sums += np.bincount(idx, (power.sum(axis=0) * weights)[keep], nbins)
    return sums, counts


def power_spectrum(kappa: np.ndarray) -> np.ndarray:
    """Azimuthally averaged P(k) of a set of maps, k = 1..S/2."""
    sums, counts = spectrum_sums(kappa)
    return sums / counts


def spectrum_error(p_gen: np.ndarray, p_real: np.ndarray) -> float:
    """Median over k bins of |P_gen(k)/P_real(k) − 1|."""
    p_gen, p_real = np.asarray(p_gen, np.float64), np.asarray(p_real, np.float64)
    if p_gen.shape != p_real.shape or p_gen.size == 0:
        raise ValueError(f"spectra differ in shape or are empty: {p_gen.shape}, {p_real.shape}")
    if not (np.all(np.isfinite(p_gen)) and np.all(np.isfinite(p_real)) and np.all(p_real > 0)):
        raise ValueError("spectra must be finite with a positive reference")
    return float(np.median(np.abs(p_gen / p_real - 1.0)))


def pixel_histogram(s: np.ndarray, bins: int = HIST_BINS) -> np.ndarray:
    """Counts of normalised pixel values s ∈ [−1, 1] on `bins` uniform bins (values outside are
    counted in the end bins), float64."""
    s = np.clip(np.asarray(s, np.float64).ravel(), -1.0, 1.0)
    idx = np.minimum(((s + 1.0) * (bins / 2.0)).astype(np.int64), bins - 1)
    return np.bincount(idx, minlength=bins).astype(np.float64)


def ks_from_histograms(h_a: np.ndarray, h_b: np.ndarray) -> float:
    """Kolmogorov–Smirnov statistic between two samples given as histograms on the same bins."""
    h_a, h_b = np.asarray(h_a, np.float64), np.asarray(h_b, np.float64)
    if h_a.shape != h_b.shape or h_a.sum() <= 0 or h_b.sum() <= 0:
        raise ValueError("histograms must share bins and be non-empty")
    return float(np.max(np.abs(np.cumsum(h_a) / h_a.sum() - np.cumsum(h_b) / h_b.sum())))


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Exact two-sample KS statistic of raw values (for checking the binned one)."""
    a, b = np.sort(np.ravel(a)), np.sort(np.ravel(b))
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, side="right") / a.size
    cdf_b = np.searchsorted(b, grid, side="right") / b.size
    return float(np.max(np.abs(cdf_a - cdf_b)))


def combined_quality(pk_error: float, ks: float, pk_threshold: float = PK_THRESHOLD,
                     ks_threshold: float = KS_THRESHOLD) -> float:
    """max(P(k) error / its threshold, KS / its threshold): ≤ 1 exactly when both pass."""
    return float(max(pk_error / pk_threshold, ks / ks_threshold))


def compare(kappa_gen: np.ndarray, kappa_real: np.ndarray, normalise) -> dict[str, float]:
    """Both metrics for two in-memory sets of κ maps (single process); `normalise` is κ → s."""
    pk = spectrum_error(power_spectrum(kappa_gen), power_spectrum(kappa_real))
    ks = ks_from_histograms(pixel_histogram(normalise(kappa_gen)),
                            pixel_histogram(normalise(kappa_real)))
    return {"pk_error": pk, "ks": ks, "quality": combined_quality(pk, ks)}


def _evidence(size: int, n_gen: int, n_real: int, seed: int = 11) -> dict[str, dict[str, float]]:
    """The threshold evidence at one map size and set sizes: independent real sets, a Gaussian
    field of equal variance and equal spectrum, and a lognormal field of slope −1.5."""
    from ai500.data import cosmo

    real = cosmo.generate_maps(0, n_real, cosmo.split_seed(seed, "val"), size)
    other = cosmo.generate_maps(0, n_gen, seed, size)
    gauss = cosmo.gaussian_fields(0, n_gen, seed, size) * float(real.std())
    slope = cosmo.generate_maps(0, n_gen, seed, size, slope=-1.5)
    return {name: compare(maps, real, cosmo.normalise)
            for name, maps in (("real_vs_real", other), ("gaussian_same_variance", gauss),
                               ("slope_-1.5", slope))}


if __name__ == "__main__":
    import sys

    args = [int(a) for a in sys.argv[1:]] or [64, 512, 1024]
    for name, m in _evidence(*args).items():
        print(f"{name:24s} pk_error {m['pk_error']:.4f}  ks {m['ks']:.4f}  quality {m['quality']:.3f}")
