"""Non-learned baselines for faster_rcnn's mAP: what a target must beat to show learning.

Both are scored with ai500.metrics.detection on the validation fields the workload evaluates (the
preset's synthetic set, centre crops), so their mAP is on the same scale as `val_map`:

- random boxes: per field, `detections_per_image` boxes with (height, width, class) drawn jointly
  from the boxes of the training fields (centre crops), placed uniformly inside the crop, uniform
  random scores; seeded.
- threshold detector: the physical channels and fixed thresholds, as TECA labels the real data.
  PSL deficit d = row median of PSL - PSL (hPa); a local maximum of d over 9x9 pixels is a vortex
  centre; at |latitude| < 32.5 deg it is a tropical cyclone if d >= 20 hPa, a tropical depression if
  d >= 5, at higher latitudes an extratropical cyclone if d >= 13.5 (between the generator's weak
  lows, < 12, and ETCs, >= 15). Its box is the pixels connected to the centre where d >= d/2,
  scaled about its centre by 2.6 (tropical) or 2.3 (extratropical): the ratio of the 10 % radius
  (the labels' box) to the 50 % radius of the generator's Holland profiles. Atmospheric rivers:
  TMQ excess e = TMQ - row median of TMQ; each connected region (8-neighbour) of e >= 10 kg/m^2
  whose box diagonal is >= 2000 km is a river; its box is the region of e >= 0.3 x its peak
  connected to it. Scores: d / 100 hPa for vortices, peak e / 40 kg/m^2 for rivers.

`python -m ai500.metrics.detection_baselines --preset small` prints both baselines' mAP and
per-class AP (README, faster_rcnn).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

from ai500 import config
from ai500.data import common, weather, weather_synthetic
from ai500.errors import Ai500Error
from ai500.metrics import detection

TROPICS = 32.5  # |latitude| below which a low is tropical, degrees (TD/TC 5-30, ETC 35-65)
TD_DEFICIT, TC_DEFICIT, ETC_DEFICIT = 5.0, 20.0, 13.5  # hPa
BOX_SCALE = {True: 2.6, False: 2.3}  # tropical?, 10 % radius / 50 % radius of the Holland profiles
CENTRE_WINDOW = 9  # pixels: a vortex centre is the deepest point of this square
AR_EXCESS = 10.0  # kg/m^2: a river's core
AR_EDGE = 0.3  # its box: the region above this fraction of its peak excess
AR_LENGTH_KM = 2000.0  # the labels: a river is >= 2000 km long


def _dilate(mask: np.ndarray) -> np.ndarray:
    """8-neighbour dilation of a 2-D boolean mask by one pixel."""
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    rows = out.copy()
    out[:, 1:] |= rows[:, :-1]
    out[:, :-1] |= rows[:, 1:]
    return out


def _flood(mask: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """The pixels of `mask` 8-connected to any pixel of the boolean array `seed` (within mask)."""
    region = seed & mask
    while True:
        grown = _dilate(region) & mask
        if np.array_equal(grown, region):
            return region
        region = grown


def _bbox(region: np.ndarray) -> tuple[float, float, float, float]:
    """(ymin, xmin, ymax, xmax) in pixels of a non-empty mask, rows ymin <= y < ymax."""
    rows, cols = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
    return float(rows[0]), float(cols[0]), float(rows[-1] + 1), float(cols[-1] + 1)


def _zonal_anomaly(field: np.ndarray) -> np.ndarray:
    """A field (H, W) minus the median of each row: the synoptic anomaly against the zonal background."""
    return field - np.median(field, axis=1, keepdims=True)


def _vortices(psl: np.ndarray, lat: np.ndarray) -> list[tuple[int, float, tuple]]:
    """(class, score, box) of the PSL lows of one field (Pa) with row latitudes `lat` (degrees)."""
    deficit = -_zonal_anomaly(psl) / 100.0  # hPa
    half = CENTRE_WINDOW // 2
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(deficit, half, mode="edge"),
                                                       (CENTRE_WINDOW, CENTRE_WINDOW))
    centres = (deficit >= windows.max(axis=(-2, -1))) & (deficit >= TD_DEFICIT)
    height, width = psl.shape
    taken = np.zeros_like(centres)
    found = []
    for flat in np.argsort(-deficit, axis=None):  # deepest first, so a shallower centre inside
        y, x = divmod(int(flat), width)            # an accepted low is not a second low
        if not centres[y, x]:
            continue
        if deficit[y, x] < TD_DEFICIT:
            break
        if taken[y, x]:
            continue
        d = float(deficit[y, x])
        tropical = abs(float(lat[y])) < TROPICS
        cls = (1 if d >= TC_DEFICIT else 0) if tropical else (2 if d >= ETC_DEFICIT else -1)
        seed = np.zeros_like(centres)
        seed[y, x] = True
        core = _flood(deficit >= 0.5 * d, seed)
        taken |= core
        if cls < 0:
            continue
        y0, x0, y1, x1 = _bbox(core)
        cy, cx, scale = (y0 + y1) / 2, (x0 + x1) / 2, BOX_SCALE[tropical]
        hy, hx = scale * (y1 - y0) / 2, scale * (x1 - x0) / 2
        box = (max(0.0, cy - hy), max(0.0, cx - hx), min(float(height), cy + hy),
               min(float(width), cx + hx))
        found.append((cls, min(1.0, d / 100.0), box))
    return found


def _rivers(tmq: np.ndarray, lat: np.ndarray) -> list[tuple[int, float, tuple]]:
    """(3, score, box) of the long moisture filaments of one field (TMQ kg/m^2)."""
    excess = _zonal_anomaly(tmq)
    core = excess >= AR_EXCESS
    km_per_col = weather.DX_KM * np.cos(np.deg2rad(float(np.mean(lat))))
    found = []
    while core.any():
        seed = np.zeros_like(core)
        seed[np.unravel_index(np.argmax(np.where(core, excess, -np.inf)), core.shape)] = True
        part = _flood(core, seed)
        core &= ~part
        y0, x0, y1, x1 = _bbox(part)
        if np.hypot((y1 - y0) * weather.DY_KM, (x1 - x0) * km_per_col) < AR_LENGTH_KM:
            continue
        peak = float(excess[part].max())
        found.append((3, min(1.0, peak / 40.0), _bbox(_flood(excess >= AR_EDGE * peak, part))))
    return found


def threshold_detections(images: np.ndarray, latitude: np.ndarray,
                         image_ids: np.ndarray) -> np.ndarray:
    """The threshold detector on raw fields (n, 16, H, W) in the Extreme Weather channels and units,
    row latitudes (n, H) in degrees: detections [K, 7] (image, class, score, ymin, xmin, ymax, xmax)."""
    psl, tmq = weather.CHANNELS.index("PSL"), weather.CHANNELS.index("TMQ")
    rows = [(gid, cls, score, *box)
            for gid, field, lat in zip(image_ids, images, latitude)
            for cls, score, box in _vortices(field[psl], lat) + _rivers(field[tmq], lat)]
    return np.array(rows, np.float64).reshape(-1, 7)


def random_detections(train_boxes: np.ndarray, image_ids: np.ndarray, height: int, width: int,
                      per_image: int, seed: int) -> np.ndarray:
    """`per_image` random boxes in each H x W image: (height, width, class) drawn jointly from the
    used rows of train_boxes (n, 15, 5), uniform positions inside the image, uniform scores.
    Returns detections [K, 7] (image, class, score, ymin, xmin, ymax, xmax); pixels."""
    used = train_boxes[train_boxes[..., 4] >= 0]
    if len(used) == 0:
        raise ValueError("the training fields hold no boxes to draw sizes from")
    rng = np.random.default_rng(seed)
    n = len(image_ids) * per_image
    pick = used[rng.integers(0, len(used), n)]
    h, w = pick[:, 2] - pick[:, 0], pick[:, 3] - pick[:, 1]
    y0, x0 = rng.uniform(0, height - h), rng.uniform(0, width - w)
    return np.column_stack([np.repeat(image_ids, per_image), pick[:, 4], rng.uniform(0, 1, n),
                            y0, x0, y0 + h, x0 + w])


def preset_fields(preset: str, n_val: int | None = None, n_train_boxes: int = 64) -> dict[str, Any]:
    """The synthetic validation fields of faster_rcnn's `preset` as the workload sees them (centre
    crops; the first `n_val` only if given) with their row latitudes, and the boxes of the first
    `n_train_boxes` training fields (centre crops). Also the crop size and detections per image."""
    sections = config.load_preset("faster_rcnn", preset)
    data, model = sections["data"], sections["model"]
    shape = (data["field_height"], data["field_width"])
    crop = (data["crop_height"], data["crop_width"])
    count = data["n_val"] if n_val is None else min(n_val, data["n_val"])
    val = weather_synthetic.generate_samples(0, count, common.split_seed(data["seed"], "val"), *shape)
    train = weather_synthetic.generate_samples(0, min(n_train_boxes, data["n_train"]),
                                               common.split_seed(data["seed"], "train"), *shape)
    images, boxes = weather.random_crop(val["images"], val["boxes"], *crop, None)
    top = (shape[0] - crop[0]) // 2  # random_crop's centre offset, for the latitudes
    return {"images": images, "boxes": boxes, "latitude": val["latitude"][:, top:top + crop[0]],
            "train_boxes": weather.centre_crop_boxes(train["boxes"], *shape, *crop),
            "crop": crop, "per_image": model.get("detections_per_image", 100)}


def score_baselines(fields: dict[str, Any], seed: int = 0) -> dict[str, dict]:
    """mAP and per-class AP (ai500.metrics.detection) of both baselines on preset_fields' fields:
    {"random": {...}, "threshold": {...}}, each as mean_average_precision returns it."""
    ids = np.arange(len(fields["images"]), dtype=np.float64)
    truths = detection.truth_rows(fields["boxes"], ids)
    detections = {
        "random": random_detections(fields["train_boxes"], ids, *fields["crop"],
                                    fields["per_image"], seed),
        "threshold": threshold_detections(fields["images"], fields["latitude"], ids),
    }
    return {name: detection.mean_average_precision(d, truths, num_classes=len(weather.CLASSES))
            for name, d in detections.items()}


def main(argv: list[str] | None = None) -> int:
    """Print both baselines' mAP and per-class AP on a preset's validation fields."""
    p = argparse.ArgumentParser(prog="python -m ai500.metrics.detection_baselines",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="small", help="faster_rcnn preset [default: small]")
    p.add_argument("--seed", type=int, default=0, help="seed of the random boxes [default: 0]")
    args = p.parse_args(argv)
    try:
        fields = preset_fields(args.preset)
    except Ai500Error as e:
        print(f"ai500: error: {e}", file=sys.stderr)
        return 2
    target = config.load_preset("faster_rcnn", args.preset)["quality"]["target"]
    print(f"faster_rcnn {args.preset}: {len(fields['images'])} validation fields, "
          f"target mAP {target}")
    widths = [len(name) for name in weather.CLASSES]
    print(f"{'baseline':<10} {'mAP':>6}  AP " + "  ".join(weather.CLASSES))
    for name, result in score_baselines(fields, args.seed).items():
        print(f"{name:<10} {result['map']:6.3f}     "
              + "  ".join(f"{a:{w}.3f}" for a, w in zip(result["ap"], widths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
