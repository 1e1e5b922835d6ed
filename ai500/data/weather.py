"""The Extreme Weather dataset's HDF5 layout: its facts (channels, classes, the native grid) and
reading, checking, cropping and normalising its fields. The synthetic stand-in that writes this
layout is ai500.data.weather_synthetic.

A file holds `images` (N, 16, H, W) float (768 x 1152 and float32 in the real sets; read the dtype from
the file) with the CHANNELS below, and `boxes` (N, 15, 5) rows `ymin, xmin, ymax, xmax, class` in pixel
coordinates (a box covers rows ymin <= y < ymax), unused rows all -1. Classes: CLASSES. Units are CAM5's:
PRECT m/s, pressures Pa, QREFHT kg/kg, temperatures K, TMQ kg/m^2, winds m/s, heights m.

The native grid is global: 768 rows from latitude -90 to 90 (row 0 southernmost, 0.234 deg = 26.1 km a
row) by 1152 columns (0.3125 deg = 34.7 km x cos(latitude) a column).

A dataset directory holds train*.h5 and val*.h5 (ai500.data.common); inspect_files checks every
file's layout before any field is read, and each rank then reads its contiguous range of the global
sample index with load_range.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ai500.data import common, stream
from ai500.errors import HDF5_ERRORS, DataError, first_line
from ai500.hdf5 import open_h5

CHANNELS: tuple[str, ...] = ("PRECT", "PS", "PSL", "QREFHT", "T200", "T500", "TMQ", "TREFHT", "TS",
                             "U850", "UBOT", "V850", "VBOT", "Z1000", "Z200", "ZBOT")
CLASSES: tuple[str, ...] = ("tropical_depression", "tropical_cyclone", "extratropical_cyclone",
                            "atmospheric_river")
MAX_BOXES = 15

GLOBAL_ROWS, GLOBAL_COLS = 768, 1152  # the native grid: latitude -90..90 by longitude 0..360
DLAT = 180.0 / GLOBAL_ROWS  # degrees of latitude per row
KM_PER_DEGREE = 111.195
DY_KM = KM_PER_DEGREE * DLAT  # 26.1 km per row
DX_KM = KM_PER_DEGREE * 360.0 / GLOBAL_COLS  # 34.7 km per column at the equator


# --- files -------------------------------------------------------------------------------------


def split_files(data_dir: Path, split: str) -> list[Path]:
    """Sorted HDF5 files of `split` ("train": train*.h5; "val": val*.h5, which includes valid*)."""
    return common.split_files(data_dir, split, ".h5")


def inspect_files(files: list[Path], channels: int = len(CHANNELS)) -> list[int]:
    """Check each file's layout without reading the data: a readable HDF5 file with `images` (N, C, H, W)
    floating point (C = channels, one H x W across files, N >= 1) and `boxes` (N, 15, 5); returns the
    sample count of each file. Raises DataError naming the file and the problem."""
    return _inspect(files, channels)[0]


def inspect_splits(data_dir: Path, channels: int = len(CHANNELS)) -> dict[str, stream.SplitFiles]:
    """Both splits' files under data_dir, inspected (inspect_files) before any field is read:
    {"train": ..., "val": ...}, sample_shape (C, H, W). Meant for rank 0 alone (stream.once)."""
    return stream.inspect_splits(data_dir, ".h5", lambda files: _inspect(files, channels))


def _inspect(files: list[Path], channels: int) -> tuple[list[int], tuple[int, int, int]]:
    """inspect_files' checks; (samples per file, (C, H, W))."""
    counts: list[int] = []
    size = None
    for path in files:
        path = common.check_file(path)
        try:
            with open_h5(path, "r") as f:
                missing = [k for k in ("images", "boxes") if k not in f]
                if missing:
                    raise DataError(f"{path}: missing dataset(s) {', '.join(missing)}")
                images, boxes = f["images"], f["boxes"]
                for name, obj in (("images", images), ("boxes", boxes)):
                    if not isinstance(obj, h5py.Dataset):
                        raise DataError(f"{path}: {name} is not a dataset")
                shape = images.shape
                if len(shape) != 4 or shape[1] != channels:
                    raise DataError(f"{path}: images have shape {shape}, expected (N, {channels}, H, W)")
                if images.dtype.kind != "f":
                    raise DataError(f"{path}: images have dtype {images.dtype}, expected floating point")
                if shape[0] < 1:
                    raise DataError(f"{path}: holds no samples")
                if boxes.shape != (shape[0], MAX_BOXES, 5) or boxes.dtype.kind not in "fiu":
                    raise DataError(f"{path}: boxes have shape {boxes.shape} ({boxes.dtype}), expected "
                                    f"({shape[0]}, {MAX_BOXES}, 5) numbers")
                if size is not None and shape[2:] != size:
                    raise DataError(f"{path}: images are {shape[2]}x{shape[3]}, the files before "
                                    f"{size[0]}x{size[1]}")
                size = shape[2:]
                counts.append(int(shape[0]))
        except HDF5_ERRORS as exc:
            raise DataError(f"{path}: not a readable HDF5 file, or corrupt ({first_line(exc)})") from None
    return counts, (channels, *size)


def _check_boxes(path: Path, first: int, boxes: np.ndarray, height: int, width: int) -> None:
    """DataError naming the first used box row (class != -1) that is not a valid box in an H x W image."""
    cls = boxes[..., 4]
    used = cls != -1
    y0, x0, y1, x1 = (boxes[..., k] for k in range(4))
    with np.errstate(invalid="ignore"):
        good = (np.isin(cls, np.arange(len(CLASSES))) & np.isfinite(boxes[..., :4]).all(axis=-1)
                & (y0 >= 0) & (y0 < y1) & (y1 <= height) & (x0 >= 0) & (x0 < x1) & (x1 <= width))
    bad = np.argwhere(used & ~good)
    if bad.size:
        i, j = (int(v) for v in bad[0])
        raise DataError(f"{path}: sample {first + i} box {j} {boxes[i, j].tolist()} is not "
                        f"[ymin, xmin, ymax, xmax, class 0-{len(CLASSES) - 1}] inside {height}x{width}")


class WeatherLayout:
    """The Extreme Weather layout for ai500.data.stream: `images` (C, H, W) float32, read straight
    into the output when the file holds float32, and `boxes` (15, 5) (resident: a streamed shard
    holds them whole, 300 bytes a sample)."""

    unit = "fields"
    resident = ("boxes",)

    def __init__(self, sample_shape: tuple[int, int, int]):
        self.fields = {"images": tuple(sample_shape), "boxes": (MAX_BOXES, 5)}

    def open(self, path: Path) -> contextlib.AbstractContextManager[dict[str, h5py.Dataset]]:
        return common.open_datasets(path, self.fields)

    def read(self, datasets: dict[str, h5py.Dataset], path: Path, lo: int, hi: int,
             out: dict[str, np.ndarray]) -> None:
        try:
            for key, view in out.items():
                ds = datasets[key]
                if ds.dtype == np.float32:
                    ds.read_direct(view, np.s_[lo:hi])
                else:
                    np.copyto(view, ds[lo:hi], casting="unsafe")
        except HDF5_ERRORS as exc:
            raise DataError(f"{path}: cannot read samples {lo}..{hi} ({first_line(exc)})") from None
        if "images" in out:
            finite = np.isfinite(out["images"]).all(axis=(2, 3))
            if not finite.all():
                i, c = (int(v) for v in np.argwhere(~finite)[0])
                name = CHANNELS[c] if c < len(CHANNELS) else f"channel {c}"
                raise DataError(f"{path}: sample {lo + i} holds non-finite values in {name}")
        if "boxes" in out:
            _, height, width = self.fields["images"]
            _check_boxes(path, lo, out["boxes"], height, width)


def open_shards(data_dir: Path, dist: Any,
                stage: str) -> tuple[dict[str, stream.Staged | stream.Streamed], stream.StageChoice]:
    """This rank's "train" and "val" shards of the files under data_dir (fields images
    (n, C, H, W), boxes (n, 15, 5)), inspected by rank 0 alone, staged or streamed as `stage`
    decides (ai500.data.stream.open_files). Every rank must call it (a broadcast)."""
    return stream.open_files(lambda: inspect_splits(Path(data_dir)),
                             lambda split: WeatherLayout(split.sample_shape), dist, stage,
                             "weather.inspect")


def load_range(files: list[Path], counts: list[int], start: int, stop: int) -> dict[str, np.ndarray]:
    """Read global samples [start, stop) of the concatenated `files` (with `counts` samples each), only
    those: `images` (n, 16, H, W) float32 and `boxes` (n, 15, 5) float32, each into one buffer
    allocated once (ai500.data.stream.Shard.load). Raises DataError for unreadable data,
    non-finite images or invalid used boxes."""
    first = next(common.file_ranges(files, counts, start, stop))[0]
    with common.open_hdf5(first) as f:  # (C, H, W), for callers that kept no inspect_splits result
        shape = tuple(int(n) for n in f["images"].shape[1:])
    split = stream.SplitFiles(tuple(map(str, files)), tuple(counts), shape)
    return stream.Shard(WeatherLayout(shape), split, start, stop).load()


def first_fields(split: stream.SplitFiles, samples: int, block: int) -> Iterator[np.ndarray]:
    """The images (n, C, H, W) float32 of the split's first `samples` fields, `block` at a time."""
    shard = stream.Shard(WeatherLayout(split.sample_shape), split, 0, min(samples, split.total))
    with shard.reader() as read:
        for rows in stream.blocks(len(shard), block):
            yield read(rows, ("images",))["images"]


def normalisation_once(dist: Any, images: Callable[[], Iterable[np.ndarray]]) -> tuple[np.ndarray,
                                                                                      np.ndarray]:
    """normalisation(images()) computed by rank 0 alone and broadcast (stream.once): e.g.
    `normalisation_once(dist, lambda: first_fields(splits["train"], 64, 8))`. A read error on
    rank 0 is raised on every rank."""
    return stream.once(dist, lambda: normalisation(images()), "weather.normalisation")


# --- training-time helpers ---------------------------------------------------------------------


def normalisation(images: np.ndarray | Iterable[np.ndarray],
                  block: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation (float32, shape (C,)) of images (n, C, H, W), in float64
    and `block` samples at a time; or of an iterable of such arrays (e.g. read from a file a block at a
    time, so the whole sample is never in memory). A constant channel gets std 1."""
    parts = images
    if isinstance(images, np.ndarray):
        parts = (images[lo:lo + block] for lo in range(0, len(images), block))
    ref = None
    s1 = s2 = 0.0
    count = 0
    for part in parts:
        if ref is None:
            ref = part[0].mean(axis=(1, 2), dtype=np.float64)  # shift against cancellation
        x = part.astype(np.float64) - ref[None, :, None, None]
        s1 = s1 + x.sum(axis=(0, 2, 3))
        s2 = s2 + (x * x).sum(axis=(0, 2, 3))
        count += part.shape[0] * part.shape[2] * part.shape[3]
    if ref is None:
        raise ValueError("normalisation needs at least one image")
    mean = s1 / count
    std = np.sqrt(np.maximum(s2 / count - mean**2, 0.0))
    std[~(std > 0)] = 1.0
    return (mean + ref).astype(np.float32), std.astype(np.float32)


def random_crop(images: np.ndarray, boxes: np.ndarray, crop_h: int, crop_w: int,
                rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
    """Crop images (n, C, H, W) to (n, C, crop_h, crop_w), each sample at its own random offset (rng) or
    all at the centre (rng=None), and move boxes (n, 15, 5) with them: clipped to the crop, dropped
    (-1 rows) when they keep less than half their area or are under 2 pixels high or wide, used rows
    first. Images already of the crop size are returned as they are."""
    n, _, height, width = images.shape
    if (crop_h, crop_w) == (height, width):
        return images, boxes
    if not (0 < crop_h <= height and 0 < crop_w <= width):
        raise DataError(f"cannot crop {height}x{width} images to {crop_h}x{crop_w}")
    if rng is None:
        y0 = np.full(n, (height - crop_h) // 2)
        x0 = np.full(n, (width - crop_w) // 2)
    else:
        y0 = rng.integers(0, height - crop_h + 1, n)
        x0 = rng.integers(0, width - crop_w + 1, n)
    out = np.empty((n, images.shape[1], crop_h, crop_w), images.dtype)
    for k in range(n):
        out[k] = images[k, :, y0[k]:y0[k] + crop_h, x0[k]:x0[k] + crop_w]
    return out, _move_boxes(boxes, y0, x0, crop_h, crop_w)


def centre_crop_boxes(boxes: np.ndarray, height: int, width: int, crop_h: int,
                      crop_w: int) -> np.ndarray:
    """The boxes (n, 15, 5) of height x width fields as random_crop(..., rng=None) leaves them, without
    the images (a streamed validation shard's boxes are known before its fields are read)."""
    if (crop_h, crop_w) == (height, width):
        return boxes
    n = len(boxes)
    return _move_boxes(boxes, np.full(n, (height - crop_h) // 2), np.full(n, (width - crop_w) // 2),
                       crop_h, crop_w)


def _move_boxes(boxes: np.ndarray, y0: np.ndarray, x0: np.ndarray, crop_h: int,
                crop_w: int) -> np.ndarray:
    """Boxes moved into crops at offsets (y0, x0) per sample: clipped, dropped (-1 rows) when they
    keep less than half their area or are under 2 pixels high or wide, used rows first."""
    n = len(boxes)
    used = boxes[..., 4] != -1
    shift = np.stack([y0, x0, y0, x0], axis=1)[:, None, :].astype(np.float32)
    limit = np.array([crop_h, crop_w, crop_h, crop_w], np.float32)
    moved = np.clip(boxes[..., :4] - shift, 0.0, limit)
    h, w = moved[..., 2] - moved[..., 0], moved[..., 3] - moved[..., 1]
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    keep = used & (h >= 2) & (w >= 2) & (h * w >= 0.5 * area)
    new = np.full_like(boxes, -1.0)
    for k in range(n):
        rows = np.flatnonzero(keep[k])
        new[k, :rows.size, :4] = moved[k, rows]
        new[k, :rows.size, 4] = boxes[k, rows, 4]
    return new
