"""What every dataset shares: split seeds, contiguous shards per rank, split files on disk.

A dataset is two splits, "train" and "val", each a list of files `<split>*<suffix>` in one
directory, its samples indexed globally across the sorted files; each rank reads one contiguous
range of that index.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ai500.errors import DataError

SPLITS = ("train", "val")


def split_seed(seed: int, split: str) -> int:
    """The sample seed of `split` in the dataset `seed`: "train" uses `seed` itself, "val" a seed
    derived from it (and different from it), so the two sets are disjoint."""
    if split == "train":
        return seed
    if split != "val":
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    derived = int(np.random.SeedSequence([seed, 0x76616C]).generate_state(1, np.uint64)[0]) >> 1
    return derived if derived != seed else derived + 1


def shard_range(total: int, rank: int, size: int, equal: bool, unit: str = "samples",
                allow_empty: bool = False) -> tuple[int, int]:
    """Contiguous [start, stop) of the global sample index for `rank` of `size` ranks.

    equal=True: every rank gets total // size samples and the remainder is dropped (training: all
    ranks run the same number of steps). equal=False: shard sizes differ by at most one and cover
    every sample (validation). An empty shard is a DataError unless `allow_empty`.
    """
    if size < 1 or not 0 <= rank < size:
        raise ValueError(f"rank {rank} is not in a group of {size}")
    base, extra = divmod(total, size)
    if equal:
        start, n = rank * base, base
    else:
        start, n = rank * base + min(rank, extra), base + (rank < extra)
    if n < 1 and not allow_empty:
        raise DataError(f"{total} {unit} cannot give each of {size} ranks at least one")
    return start, start + n


def split_files(data_dir: Path, split: str, suffix: str) -> list[Path]:
    """Sorted files `<split>*<suffix>` in data_dir ("val*" also matches valid*, validation*)."""
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: data directory does not exist")
    files = sorted(p for p in data_dir.glob(f"{split}*{suffix}") if p.is_file())
    if not files:
        raise DataError(f"{data_dir}: no {split}*{suffix} file")
    return files


def generate_dataset(out_dir: Path, sizes: dict[str, int], seed: int, suffix: str,
                     write_split: Callable[[Path, int, int], None]) -> list[Path]:
    """Write out_dir/train<suffix> and out_dir/val<suffix> with `write_split(path, count, seed)`
    (samples seeded by split_seed) and return their paths; DataError rather than overwrite a file."""
    out_dir = Path(out_dir)
    paths = [out_dir / f"{split}{suffix}" for split in SPLITS]
    for p in paths:
        if p.exists():
            raise DataError(f"{p}: already exists; refusing to overwrite a dataset file")
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, path in zip(SPLITS, paths):
        write_split(path, sizes[split], split_seed(seed, split))
    return paths


def check_file(path: Path) -> Path:
    """`path` as a Path; DataError naming it when it is missing or empty (before a reader meets
    the library's own, less clear, error)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file")
    return path


def open_hdf5(path: Path) -> Any:
    """An HDF5 file opened for reading (an h5py.File); DataError naming it if it cannot be."""
    from ai500.errors import HDF5_ERRORS, first_line
    from ai500.hdf5 import open_h5

    try:
        return open_h5(path, "r")
    except HDF5_ERRORS as exc:
        raise DataError(f"{path}: not a readable HDF5 file, or corrupt ({first_line(exc)})") from None


@contextlib.contextmanager
def open_datasets(path: Path, keys: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The named datasets (h5py.Dataset) of an HDF5 file opened for reading, each looked up
    once: a streamed batch reads its events one by one, and looking a dataset up by name costs
    h5py more than reading a 49 KB event (about 50 against 35 us)."""
    with open_hdf5(path) as f:
        yield {key: f[key] for key in keys}


def file_ranges(files: list[Path], counts: list[int], start: int,
                stop: int) -> Iterator[tuple[Path, int, int]]:
    """(file, lo, hi) for each file holding part of the global samples [start, stop) of the
    concatenated `files` (with `counts` samples each): that file's rows lo..hi-1."""
    if not 0 <= start < stop <= sum(counts):
        raise ValueError(f"sample range [{start}, {stop}) is outside 0..{sum(counts)}")
    offset = 0
    for path, n in zip(files, counts):
        lo, hi = max(start - offset, 0), min(stop - offset, n)
        offset += n
        if lo < hi:
            yield path, lo, hi
