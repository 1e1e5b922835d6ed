"""Weak-lensing convergence maps in the CosmoGAN `.npy` layout: generate, check, shard, normalise.

A file is one NumPy `.npy` array (N, S, S) of float maps (S = 256 in the real CosmoGAN sets). A
dataset directory holds `train*.npy` and `val*.npy` (held-out maps, the quality reference).

The synthetic stand-in (DESIGN §6): a Gaussian random field g on a periodic S x S grid with power
spectrum P(k) ∝ k^-2.5 (k in units of the grid's fundamental, the k = 0 mode removed), scaled to unit
variance by its expected (not its sample) variance, then the lognormal transform
κ = κ0·(exp(σ·g − σ²/2) − 1) with σ = 0.8, κ0 = 0.02: skewed, κ > −κ0, mean 0. Map i of a set depends
only on (seed, i), so any shard can be generated alone and the set does not depend on the rank count.

For the GAN the maps are normalised with a fixed invertible transform, logarithmic in the shifted
value x = κ + shift > 0 and clipped to [−1, 1]:

    s(κ) = clip(ln((κ + shift)/a) / L, −1, 1),   κ(s) = a·exp(L·s) − shift

With shift = κ0, a = κ0·exp(−σ²/2) and L = 5 this is exactly s = σ·g/5 for the synthetic maps: a
centred field (std 0.16, |s| < 1 up to 6σ of g) inside the tanh output's range. Why not CosmoGAN's
s = 2x/(x + a) − 1: its inverse diverges as s → 1, so a generator pixel that saturates tanh becomes an
unbounded κ spike; measured, one such pixel per million (s = 0.999) raises the median P(k) error of
real maps from 0.02 to 9, a defect the discriminator can hardly see in s. Here the largest κ a
generator can emit is a·e^L − shift ≈ 2.1 (real maps reach ≈ 0.5). Quality metrics are computed on
κ after inverting.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ai500.data import common, stream
from ai500.errors import DataError, first_line

SLOPE = -2.5  # P(k) ∝ k^SLOPE
SIGMA = 0.8  # lognormal width
KAPPA0 = 0.02  # κ >= -KAPPA0
SHIFT = KAPPA0  # normalisation: x = κ + SHIFT > 0
SCALE_A = KAPPA0 * float(np.exp(-SIGMA**2 / 2))  # normalisation constant a (≈ 0.0145)
LOG_RANGE = 5.0  # normalisation: L, the natural-log range that maps onto s ∈ [−1, 1]


def _amplitude(size: int, slope: float) -> np.ndarray:
    """sqrt(P(k)) on the rfft2 grid, normalised so that the field has unit expected variance."""
    ky = np.fft.fftfreq(size) * size
    kx = np.fft.rfftfreq(size) * size
    k = np.hypot(ky[:, None], kx[None, :])
    power = np.zeros_like(k)
    power[k > 0] = k[k > 0] ** slope
    # Expected variance of irfft2(W * A) for unit white noise W: mean of |A|^2 over the full grid
    # (the half grid counts the mirrored columns twice).
    weight = np.full(kx.size, 2.0)
    weight[0] = 1.0
    if size % 2 == 0:
        weight[-1] = 1.0
    variance = float((power * weight[None, :]).sum()) / size**2
    return np.sqrt(power / variance)


def gaussian_fields(first: int, count: int, seed: int, size: int, slope: float = SLOPE) -> np.ndarray:
    """Unit-variance Gaussian random fields [first, first+count) of set `seed`: (count, S, S) float64."""
    if size < 4 or first < 0 or count < 1 or seed < 0:
        raise ValueError(f"need size >= 4, first >= 0, count >= 1, seed >= 0; got "
                         f"{size}, {first}, {count}, {seed}")
    amp = _amplitude(size, slope)
    out = np.empty((count, size, size), np.float64)
    for j in range(count):
        white = np.random.default_rng([seed, first + j]).standard_normal((size, size))
        out[j] = np.fft.irfft2(np.fft.rfft2(white) * amp, s=(size, size))
    return out


def lognormal(g: np.ndarray, sigma: float = SIGMA, kappa0: float = KAPPA0) -> np.ndarray:
    """κ = κ0·(exp(σ·g − σ²/2) − 1) of a unit-variance Gaussian field g."""
    return kappa0 * (np.exp(sigma * g - sigma**2 / 2) - 1.0)


def generate_maps(first: int, count: int, seed: int, size: int, slope: float = SLOPE) -> np.ndarray:
    """Convergence maps [first, first+count) of set `seed`: (count, S, S) float32."""
    return lognormal(gaussian_fields(first, count, seed, size, slope)).astype(np.float32)


def normalise(kappa: np.ndarray, shift: float = SHIFT, a: float = SCALE_A,
              log_range: float = LOG_RANGE) -> np.ndarray:
    """s(κ) = clip(ln((κ + shift)/a)/L, −1, 1) as float32 (κ <= −shift gives −1)."""
    x = np.maximum(np.asarray(kappa, np.float64) + shift, np.finfo(np.float64).tiny)
    return np.clip(np.log(x / a) / log_range, -1.0, 1.0).astype(np.float32)


def denormalise(s: np.ndarray, shift: float = SHIFT, a: float = SCALE_A,
                log_range: float = LOG_RANGE) -> np.ndarray:
    """κ(s) = a·exp(L·s) − shift, the inverse of `normalise` on [−1, 1] (s clipped to it), float64."""
    return a * np.exp(log_range * np.clip(np.asarray(s, np.float64), -1.0, 1.0)) - shift


def split_seed(seed: int, split: str) -> int:
    """Map seed of `split` in dataset `seed` (common.split_seed: "train" is `seed`, "val" derived)."""
    return common.split_seed(seed, split)


def write_split(path: Path, count: int, seed: int, size: int, chunk: int = 256) -> None:
    """Write `count` maps of set `seed` to one `.npy` file, `chunk` maps at a time; the file appears
    under `path` only when complete (written to a temporary name, then renamed)."""
    if count < 1 or chunk < 1:
        raise ValueError(f"count and chunk must be positive, got {count}, {chunk}")
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(count, size, size))
        for start in range(0, count, chunk):
            n = min(chunk, count - start)
            out[start:start + n] = generate_maps(start, n, seed, size)
        out.flush()
        del out
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def generate_dataset(out_dir: Path, n_train: int, n_val: int, seed: int, image_size: int) -> list[Path]:
    """Write out_dir/train.npy and out_dir/val.npy (maps seeded by split_seed) and return their
    paths; raises DataError rather than overwrite an existing file."""
    return common.generate_dataset(
        out_dir, {"train": n_train, "val": n_val}, seed, ".npy",
        lambda path, count, split_seed: write_split(path, count, split_seed, image_size))


def split_files(data_dir: Path, split: str) -> list[Path]:
    """Sorted `.npy` files of `split` ("train": train*.npy; "val": val*.npy)."""
    return common.split_files(data_dir, split, ".npy")


def open_maps(path: Path, image_size: int | None = None) -> np.ndarray:
    """Memory-map one `.npy` map file after checking its layout: (N, S, S) real numbers with N >= 1
    and S == image_size if given, and the file long enough for its header's shape. DataError naming
    the file for a missing, empty, truncated, corrupt or wrongly shaped one."""
    path = common.check_file(path)
    try:
        maps = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # noqa: BLE001  (numpy parses the header as a Python literal: a
        # damaged one raises ValueError, SyntaxError, tokenize.TokenError, TypeError, ...)
        raise DataError(f"{path}: not a readable .npy file or truncated "
                        f"({first_line(exc)})") from None
    if not isinstance(maps, np.ndarray):  # np.load opens a zip archive as an .npz
        raise DataError(f"{path}: not a .npy file (an .npz archive or another format)")
    if maps.ndim != 3 or maps.shape[1] != maps.shape[2] or min(maps.shape) < 1:
        raise DataError(f"{path}: maps have shape {maps.shape}, expected (N, S, S)")
    if maps.dtype.kind not in "fiu":
        raise DataError(f"{path}: maps have non-numeric dtype {maps.dtype}")
    if image_size is not None and maps.shape[1] != image_size:
        raise DataError(f"{path}: maps are {maps.shape[1]}x{maps.shape[2]}, "
                        f"expected {image_size}x{image_size}")
    return maps


def shard_range(total: int, rank: int, size: int, equal: bool) -> tuple[int, int]:
    """Contiguous [start, stop) of the global map index for `rank` (see common.shard_range)."""
    return common.shard_range(total, rank, size, equal, unit="maps")


def inspect_splits(data_dir: Path, image_size: int | None = None,
                   splits: tuple[str, ...] = common.SPLITS) -> dict[str, stream.SplitFiles]:
    """The splits' map files under data_dir, each checked (open_maps) before any map is read,
    each split holding maps of one size: {"train": ..., "val": ...}, sample_shape (S, S). Meant
    for rank 0 alone (stream.once broadcasts it)."""
    def inspect(files: list[Path]) -> tuple[list[int], tuple[int, ...]]:
        shapes = [open_maps(p, image_size).shape for p in files]
        sizes = {shape[1] for shape in shapes}
        if len(sizes) > 1:
            raise DataError(f"{files[0].parent}: files {', '.join(p.name for p in files)} hold "
                            f"maps of different sizes {sorted(sizes)}")
        return [shape[0] for shape in shapes], shapes[0][1:]

    return stream.inspect_splits(data_dir, ".npy", inspect, splits)


class CosmoLayout:
    """The CosmoGAN `.npy` layout for ai500.data.stream: `maps` (S, S) float32. Rows are read
    from the file with preadv straight into the output (through a scratch block when the file's
    dtype is not native float32), not through a memory map: a map's pages would stay mapped and
    count in the process's resident memory."""

    unit = "maps"
    resident: tuple[str, ...] = ()

    def __init__(self, image_size: int):
        self.fields = {"maps": (image_size, image_size)}

    @contextlib.contextmanager
    def open(self, path: Path) -> Iterator[tuple[int, np.memmap]]:
        maps = open_maps(path)  # the header, checked; the memory map is never read from
        fd = os.open(path, os.O_RDONLY)
        try:
            yield fd, maps
        finally:
            os.close(fd)

    def read(self, handle: tuple[int, np.memmap], path: Path, lo: int, hi: int,
             out: dict[str, np.ndarray]) -> None:
        fd, maps = handle
        view = out["maps"]
        if not maps.flags.c_contiguous:  # a Fortran-order file: rows are not contiguous
            np.copyto(view, maps[lo:hi], casting="unsafe")
        else:
            native = maps.dtype == np.dtype(np.float32)
            target = view if native else np.empty((hi - lo, *maps.shape[1:]), maps.dtype)
            buffer = memoryview(target.reshape(-1).view(np.uint8))
            offset = maps.offset + lo * maps.itemsize * maps.shape[1] * maps.shape[2]
            while buffer:
                got = os.preadv(fd, [buffer], offset)
                if got == 0:
                    raise DataError(f"{path}: truncated: cannot read maps {lo}..{hi}")
                buffer, offset = buffer[got:], offset + got
            if not native:
                np.copyto(view, target, casting="unsafe")
        bad = ~np.isfinite(view).all(axis=(1, 2))
        if bad.any():
            raise DataError(f"{path}: map {lo + int(np.argmax(bad))} holds non-finite values")


def open_shards(data_dir: Path, image_size: int, dist: Any,
                stage: str) -> tuple[dict[str, stream.Staged | stream.Streamed], stream.StageChoice]:
    """This rank's "train" and "val" shards of the map files under data_dir (field maps (n, S, S),
    κ as in the files), inspected by rank 0 alone, staged or streamed as `stage` decides
    (ai500.data.stream.open_files). Every rank must call it (a broadcast)."""
    return stream.open_files(lambda: inspect_splits(Path(data_dir), image_size),
                             lambda split: CosmoLayout(split.sample_shape[0]), dist, stage,
                             "cosmo.inspect")


def load_shard(data_dir: Path, split: str, rank: int, size: int, equal: bool,
               image_size: int | None = None) -> tuple[np.ndarray, int]:
    """This rank's maps of `split` from the files under `data_dir` (read only its range) as float32
    (n, S, S), and the total map count of the split. Raises DataError for missing, truncated or
    wrongly shaped files, inconsistent sizes across files, or non-finite values in the shard."""
    meta = inspect_splits(data_dir, image_size, (split,))[split]
    start, stop = shard_range(meta.total, rank, size, equal)
    maps = stream.Shard(CosmoLayout(meta.sample_shape[0]), meta, start, stop).load()["maps"]
    return maps, meta.total
