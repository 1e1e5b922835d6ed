"""Synthetic Extreme Weather climate fields (determinism, physics of the events) and the layout's reader
(files, crops, normalisation, errors)."""

from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import python_module

from ai500.data import common, weather, weather_synthetic
from ai500.errors import DataError

H, W = 48, 64  # small windows keep the tests fast
C = {name: i for i, name in enumerate(weather.CHANNELS)}


def write(path: Path, images: np.ndarray, boxes: np.ndarray) -> Path:
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images)
        f.create_dataset("boxes", data=boxes)
    return path


def valid_arrays(n: int = 4, channels: int = 16) -> tuple[np.ndarray, np.ndarray]:
    boxes = np.full((n, weather.MAX_BOXES, 5), -1.0, np.float32)
    boxes[:, 0] = [2, 3, 10, 12, 1]
    return np.zeros((n, channels, H, W), np.float32), boxes


def vorticity(fields: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Relative vorticity (1/s) of the 850 hPa wind, x east (columns), y north (rows)."""
    dx = weather.DX_KM * 1e3 * np.cos(np.deg2rad(lat))[:, None]
    dvdx = np.gradient(fields[C["V850"]], axis=1) / dx
    dudy = np.gradient(fields[C["U850"]], axis=0) / (weather.DY_KM * 1e3)
    return dvdx - dudy


def events_of(seed: int, n: int, height: int = 96, width: int = 128):
    """(fields, background without events, boxes, lat, events) of samples 0..n-1."""
    for i in range(n):
        fields, boxes, lat, events = weather_synthetic.sample(seed, i, height, width)
        background = weather_synthetic.sample(seed, i, height, width, events=False)[0]
        yield fields, background, boxes, lat, events


def test_generation_is_deterministic_and_blockwise():
    a = weather_synthetic.generate_samples(2, 2, seed=7, height=H, width=W)
    whole = weather_synthetic.generate_samples(0, 4, seed=7, height=H, width=W)
    assert whole["images"].shape == (4, 16, H, W) and whole["images"].dtype == np.float32
    assert whole["boxes"].shape == (4, 15, 5) and whole["boxes"].dtype == np.float32
    assert whole["latitude"].shape == (4, H) and whole["latitude"].dtype == np.float32
    for key in ("images", "boxes", "latitude"):
        np.testing.assert_array_equal(a[key], whole[key][2:])
        np.testing.assert_array_equal(a[key],
                                      weather_synthetic.generate_samples(2, 2, 7, H, W)[key])
    assert not np.array_equal(a["images"],
                              weather_synthetic.generate_samples(2, 2, 8, H, W)["images"])
    assert np.isfinite(whole["images"]).all()


def test_window_latitudes():
    d = weather_synthetic.generate_samples(0, 16, seed=3, height=H, width=W)
    lat = d["latitude"].astype(np.float64)
    np.testing.assert_allclose(np.diff(lat, axis=1), weather.DLAT, rtol=1e-4)  # row 0 southernmost
    centre = lat.mean(axis=1)
    assert np.all(np.abs(centre) <= weather_synthetic.MAX_CENTRE_LATITUDE + 1e-3)
    assert (centre > 0).any() and (centre < 0).any()
    # A full-height window is the whole globe, pole to pole.
    full = weather_synthetic.sample(3, 0, weather.GLOBAL_ROWS, 24)[2]
    assert full[0] == pytest.approx(-90 + weather.DLAT / 2, abs=1e-4)
    assert full[-1] == pytest.approx(90 - weather.DLAT / 2, abs=1e-4)


def test_climatology_magnitudes():
    d = weather_synthetic.generate_samples(0, 24, seed=4, height=H, width=W)
    img, lat = d["images"], d["latitude"]
    tropics, polar = np.abs(lat) < 15, np.abs(lat) > 55
    assert tropics.any() and polar.any()

    def zonal(name, rows):
        return img[:, C[name]].mean(axis=2)[rows].mean()

    assert zonal("TS", tropics) - zonal("TS", polar) > 25  # T ~ cos^2 latitude
    assert zonal("TMQ", tropics) > 3 * zonal("TMQ", polar)  # moisture peaked in the tropics
    assert 30 < zonal("TMQ", tropics) < 65
    assert 99000 < np.median(img[:, C["PSL"]]) < 103000  # Pa
    assert zonal("U850", tropics) < 0 < zonal("U850", (np.abs(lat) > 38) & (np.abs(lat) < 52))
    assert np.all(img[:, C["PS"]] <= img[:, C["PSL"]] + 1)  # orography only lowers PS
    assert 0 < img[:, C["QREFHT"]].min() and img[:, C["QREFHT"]].max() < 0.04
    assert 10500 < img[:, C["Z200"]].min() and img[:, C["Z200"]].max() < 12700
    assert np.all(img[:, C["PRECT"]] >= 0) and img[:, C["PRECT"]].max() < 2e-5  # m/s


def test_vortices_physics():
    seen = {(cls, hem): 0 for cls in (0, 1, 2) for hem in (1, -1)}
    for fields, background, boxes, lat, events in events_of(seed=5, n=40):
        zeta = vorticity(fields, lat)
        for ev in events:
            if ev.cls not in (0, 1, 2):
                continue
            y0, x0, y1, x1 = ev.box
            assert y0 <= ev.row < y1 and x0 <= ev.col < x1
            i, j = int(ev.row), int(ev.col)
            hem = 1 if ev.lat > 0 else -1
            seen[ev.cls, hem] += 1
            # cyclonic: counter-clockwise (positive vorticity) in the north, clockwise in the south
            assert hem * zeta[y0:y1, x0:x1].mean() > 0, (ev.cls, ev.lat)
            t500 = fields[C["T500"], i, j] - background[C["T500"], i, j]
            if ev.cls == 2:
                assert 35 - weather.DLAT <= abs(ev.lat) <= 65 + weather.DLAT
                assert t500 < -0.05 * ev.params["dp"]  # cold core aloft
                continue
            assert 5 - weather.DLAT <= abs(ev.lat) <= 30 + weather.DLAT
            t200 = fields[C["T200"], i, j] - background[C["T200"], i, j]
            assert t500 > 0.05 * ev.params["dp"] and t200 > 0.1 * ev.params["dp"]  # warm core
            tmq = fields[C["TMQ"], i, j] - background[C["TMQ"], i, j]
            assert tmq > 4  # moist core
            if ev.cls == 1:
                # the sea-level pressure minimum lies in the box, well below the surroundings
                psl = fields[C["PSL"]]
                r0, r1 = max(0, 2 * y0 - y1), min(psl.shape[0], 2 * y1 - y0)
                c0, c1 = max(0, 2 * x0 - x1), min(psl.shape[1], 2 * x1 - x0)
                around = psl[r0:r1, c0:c1].copy()
                inside = psl[y0:y1, x0:x1].min()
                lowest = np.unravel_index(np.argmin(psl[y0:y1, x0:x1]), (y1 - y0, x1 - x0))
                assert abs(y0 + lowest[0] + 0.5 - ev.row) < 1.5
                assert abs(x0 + lowest[1] + 0.5 - ev.col) < 1.5
                around[y0 - r0:y1 - r0, x0 - c0:x1 - c0] = np.nan
                assert inside < np.nanmean(around) - 15 * 100  # Pa
                rain = fields[C["PRECT"], y0:y1, x0:x1], background[C["PRECT"], y0:y1, x0:x1]
                assert rain[0].max() > 3 * rain[1].max()
    assert all(n > 0 for n in seen.values()), seen


def test_atmospheric_rivers_are_moisture_filaments():
    rivers = 0
    for fields, background, boxes, lat, events in events_of(seed=6, n=30, height=160, width=192):
        excess = fields[C["TMQ"]] - background[C["TMQ"]]
        assert excess.min() > -1e-3  # events only add moisture
        for ev in events:
            if ev.cls != 3:
                continue
            rivers += 1
            p = ev.params
            assert 20 - weather.DLAT <= abs(ev.lat) <= 50 + weather.DLAT
            assert np.sign(p["angle"]) == np.sign(ev.lat)  # pointing poleward (and east)
            y0, x0, y1, x1 = ev.box
            assert excess[y0:y1, x0:x1].max() >= 0.7 * p["tmq"] - 1e-3
            # along the central 60 % of the filament the excess stays large; 2.5 widths aside, small
            along = np.linspace(-0.3, 0.3, 13) * p["length"]
            for offset, low, high in ((0.0, 0.45, 1.01), (2.5 * 2.3548 * p["sigma"], -1.0, 0.25)):
                across = offset + p["bend"] * (2 * along / p["length"]) ** 2
                east = along * np.cos(p["angle"]) - across * np.sin(p["angle"])
                north = along * np.sin(p["angle"]) + across * np.cos(p["angle"])
                rows = np.floor(ev.row + north / weather.DY_KM).astype(int)
                ok = (rows >= 0) & (rows < excess.shape[0])
                cols = np.floor(ev.col + east[ok] / (weather.DX_KM * np.cos(np.deg2rad(lat[rows[ok]]))))
                ok2 = (cols >= 0) & (cols < excess.shape[1])
                values = excess[rows[ok][ok2], cols[ok2].astype(int)]
                assert values.size >= (3 if offset == 0 else 0)  # the midpoint is in the window
                assert np.all(values >= low * p["tmq"]) and np.all(values <= high * p["tmq"] + 12)
    assert rivers >= 4


def test_boxes_and_class_frequencies():
    d = weather_synthetic.generate_samples(0, 200, seed=1234, height=80, width=112)
    boxes = d["boxes"]
    used = boxes[..., 4] != -1
    weather._check_boxes(Path("generated"), 0, boxes, 80, 112)  # valid boxes inside the window
    assert np.all(boxes[~used] == -1)
    n = used.sum(axis=1)
    assert n.max() <= weather.MAX_BOXES
    assert np.all(used[:, :-1] | ~used[:, 1:])  # used rows first
    assert (n >= 1).mean() > 0.7 and 1.0 < n.mean() < 3.0  # most windows hold an event
    freq = np.bincount(boxes[used][:, 4].astype(int), minlength=4) / used.sum()
    assert np.all(freq > 0.1), freq
    # extratropical cyclones are the largest vortices, tropical cyclones the smallest
    b = boxes[used]
    size = np.sqrt((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))
    med = [np.median(size[b[:, 4] == c]) for c in range(3)]
    assert med[1] < med[0] < med[2]


def test_written_file_layout_and_load_range(tmp_path):
    path = tmp_path / "train-0.h5"
    weather_synthetic.write_split(path, 5, seed=3, height=H, width=W)
    assert not (tmp_path / "train-0.h5.tmp").exists()
    expected = weather_synthetic.generate_samples(0, 8, 3, H, W)
    with h5py.File(path, "r") as f:
        assert f["images"].shape == (5, 16, H, W) and f["images"].dtype == np.float32
        assert f["boxes"].shape == (5, 15, 5) and f["boxes"].dtype == np.float32
        assert list(f.attrs["channels"]) == list(weather.CHANNELS)
        np.testing.assert_array_equal(f["images"][:], expected["images"][:5])
        np.testing.assert_array_equal(f["boxes"][:], expected["boxes"][:5])
    write(tmp_path / "train-1.h5", expected["images"][5:], expected["boxes"][5:].astype(np.float64))
    files = weather.split_files(tmp_path, "train")
    counts = weather.inspect_files(files)
    assert counts == [5, 3]
    for start, stop in ((0, 8), (3, 7), (6, 8)):  # any shard, across the file boundary
        got = weather.load_range(files, counts, start, stop)
        assert got["images"].dtype == np.float32 and got["boxes"].dtype == np.float32
        np.testing.assert_array_equal(got["images"], expected["images"][start:stop])
        np.testing.assert_array_equal(got["boxes"], expected["boxes"][start:stop])
    with pytest.raises(ValueError):
        weather.load_range(files, counts, 4, 9)


def test_generate_dataset_disjoint_and_no_overwrite(tmp_path):
    paths = weather_synthetic.generate_dataset(tmp_path / "w", n_train=3, n_val=2, seed=2,
                                               height=H, width=W)
    assert [p.name for p in paths] == ["train.h5", "val.h5"]
    assert weather.inspect_files(paths) == [3, 2]
    with h5py.File(paths[1], "r") as val:
        np.testing.assert_array_equal(
            val["images"][:],
            weather_synthetic.generate_samples(0, 2, common.split_seed(2, "val"), H, W)["images"])
    with pytest.raises(DataError, match="refusing to overwrite"):
        weather_synthetic.generate_dataset(tmp_path / "w", n_train=3, n_val=2, seed=2,
                                           height=H, width=W)


def test_normalisation():
    rng = np.random.default_rng(0)
    scale = np.arange(1, 17)[None, :, None, None]
    images = (rng.normal(size=(10, 16, 8, 8)) * scale + 1e5).astype(np.float32)
    images[:, 3] = 7.0
    mean, std = weather.normalisation(images, block=3)
    assert mean.shape == std.shape == (16,) and mean.dtype == std.dtype == np.float32
    x = images.astype(np.float64)
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2, 3)), rtol=1e-6)
    expected = x.std(axis=(0, 2, 3))
    expected[3] = 1.0  # a constant channel is left unscaled
    np.testing.assert_allclose(std, expected, rtol=1e-4)
    # Blocks read one at a time (as the workload reads a file) give the same statistics.
    streamed = weather.normalisation(images[lo:lo + 4] for lo in range(0, 10, 4))
    np.testing.assert_allclose(streamed[0], mean, rtol=1e-6)
    np.testing.assert_allclose(streamed[1], std, rtol=1e-5)
    with pytest.raises(ValueError, match="at least one image"):
        weather.normalisation(iter([]))


def test_crop_by_hand():
    images = np.zeros((1, 16, 10, 12), np.float32)
    boxes = np.full((1, 15, 5), -1.0, np.float32)
    boxes[0, :4] = [
        [0, 0, 4, 4, 0],  # keeps 2x2 of 4x4 (25 %): dropped
        [3, 3, 6, 7, 1],  # inside: moved by (2, 2)
        [7, 2, 10, 12, 2],  # keeps one row: dropped
        [1, 8, 7, 11, 3],  # keeps 5x2 of 6x3 (56 %): clipped
    ]
    out, new = weather.random_crop(images, boxes, 6, 8, rng=None)  # centre: offset (2, 2)
    assert out.shape == (1, 16, 6, 8)
    expected = np.full((15, 5), -1.0, np.float32)
    expected[:2] = [[1, 1, 4, 5, 1], [0, 6, 5, 8, 3]]
    np.testing.assert_array_equal(new[0], expected)
    same = weather.random_crop(images, boxes, 10, 12, rng=np.random.default_rng(0))
    assert same[0] is images and same[1] is boxes
    with pytest.raises(DataError, match="cannot crop"):
        weather.random_crop(images, boxes, 11, 12, rng=None)


def test_random_and_centre_crops_follow_the_boxes():
    d = weather_synthetic.generate_samples(0, 12, seed=9, height=80, width=112)
    yy, xx = np.mgrid[0:80, 0:112]
    images = np.broadcast_to((yy * 1000 + xx).astype(np.float32), (12, 16, 80, 112)).copy()
    out, boxes = weather.random_crop(images, d["boxes"], 64, 96, np.random.default_rng(1))
    offsets = out[:, 0, 0, 0].astype(int)
    y0, x0 = offsets // 1000, offsets % 1000
    assert len(set(zip(y0, x0))) > 1  # random offsets per sample
    used = boxes[..., 4] != -1
    assert used.sum() <= (d["boxes"][..., 4] != -1).sum()
    weather._check_boxes(Path("cropped"), 0, boxes, 64, 96)
    for k in range(12):
        np.testing.assert_array_equal(out[k], images[k, :, y0[k]:y0[k] + 64, x0[k]:x0[k] + 96])
        for row in boxes[k][used[k]]:  # each kept box is an original one, moved and clipped
            match = d["boxes"][k][d["boxes"][k, :, 4] == row[4]]
            moved = np.clip(match[:, :4] - [y0[k], x0[k], y0[k], x0[k]], 0, [64, 96, 64, 96])
            assert np.any(np.all(moved == row[:4], axis=1))
    a = weather.random_crop(images, d["boxes"], 64, 96, None)
    b = weather.random_crop(images, d["boxes"], 64, 96, None)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert np.all(a[0][:, 0, 0, 0] == 8 * 1000 + 8)


@pytest.mark.parametrize("case,fragment", [
    ("empty", "empty file"),
    ("text", "not a readable HDF5"),
    ("truncated", "truncated"),
    ("missing", "no such file"),
    ("channels", "expected (N, 16, H, W)"),
    ("boxes_shape", "boxes have shape"),
    ("no_boxes", "missing dataset(s) boxes"),
    ("int_images", "floating point"),
    ("no_samples", "holds no samples"),
])
def test_inspect_rejects_bad_files(tmp_path, case, fragment):
    path = tmp_path / "train.h5"
    images, boxes = valid_arrays()
    if case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("not an HDF5 file\n")
    elif case == "truncated":
        weather_synthetic.write_split(tmp_path / "good.h5", 3, seed=1, height=H, width=W)
        raw = (tmp_path / "good.h5").read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
    elif case == "channels":
        write(path, images[:, :15], boxes)
    elif case == "boxes_shape":
        write(path, images, boxes[:, :, :4])
    elif case == "no_boxes":
        with h5py.File(path, "w") as f:
            f.create_dataset("images", data=images)
    elif case == "int_images":
        write(path, images.astype(np.int16), boxes)
    elif case == "no_samples":
        write(path, images[:0], boxes[:0])
    with pytest.raises(DataError) as info:
        weather.inspect_files([path])
    message = str(info.value)
    assert fragment in message and str(path) in message and "\n" not in message


def test_inspect_rejects_mixed_field_sizes(tmp_path):
    images, boxes = valid_arrays()
    a = write(tmp_path / "train-a.h5", images, boxes)
    b = write(tmp_path / "train-b.h5", images[..., :32], boxes)
    with pytest.raises(DataError, match="train-b.h5.*48x32"):
        weather.inspect_files([a, b])


@pytest.mark.parametrize("box", [
    [2, 3, 10, 70, 1],  # beyond the right edge
    [-1, 3, 10, 12, 1],  # above the top
    [10, 3, 10, 12, 1],  # empty
    [2, 3, 10, 12, 4],  # no such class
    [2, 3, 10, 12, 0.5],
    [2, np.nan, 10, 12, 0],
])
def test_load_range_rejects_bad_boxes(tmp_path, box):
    images, boxes = valid_arrays()
    boxes[2, 1] = box
    path = write(tmp_path / "train.h5", images, boxes)
    assert weather.load_range([path], [4], 0, 2)["boxes"].shape == (2, 15, 5)  # samples before are fine
    message = r"train.h5: sample 2 box 1 \[.*\] is not \[ymin, xmin, ymax, xmax, class"
    with pytest.raises(DataError, match=message):
        weather.load_range([path], [4], 1, 4)


def test_load_range_rejects_non_finite_and_truncated(tmp_path):
    images, boxes = valid_arrays()
    images[3, C["TMQ"], 5, 6] = np.inf
    path = write(tmp_path / "train.h5", images, boxes)
    assert weather.load_range([path], [4], 0, 3)["images"].shape == (3, 16, H, W)
    with pytest.raises(DataError, match="train.h5: sample 3 holds non-finite values in TMQ"):
        weather.load_range([path], [4], 2, 4)
    good = tmp_path / "good.h5"
    weather_synthetic.write_split(good, 3, seed=1, height=H, width=W)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated.h5"):
        weather.load_range([truncated], [3], 0, 3)


def test_cli_generates_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "d"
    args = ["generate", "weather", "--preset", "ci", "--train", "3", "--val", "2", "--out", str(out)]
    result = python_module("ai500.data", args)
    assert result.returncode == 0, result.stderr
    counts = weather.inspect_files([out / "train.h5", out / "val.h5"])
    assert counts == [3, 2]
    with h5py.File(out / "train.h5", "r") as f:
        assert f["images"].shape == (3, 16, 80, 112)
    again = python_module("ai500.data", args)
    assert again.returncode == 1
    assert again.stderr.count("\n") == 1 and again.stderr.startswith("ai500: error: ")
    assert "refusing to overwrite" in again.stderr


def axis_values(excess: np.ndarray, lat: np.ndarray, ev, fractions) -> np.ndarray:
    """The field `excess` at the in-window points `fractions` of a filament's length along its centre
    line (0 the midpoint, -0.5 and 0.5 the ends); NaN where a point leaves the window."""
    p = ev.params
    along = np.asarray(fractions, float) * p["length"]
    across = p["bend"] * (2 * along / p["length"]) ** 2
    east = along * np.cos(p["angle"]) - across * np.sin(p["angle"])
    north = along * np.sin(p["angle"]) + across * np.cos(p["angle"])
    rows = np.floor(ev.row + north / weather.DY_KM).astype(int)
    out = np.full(along.shape, np.nan)
    for k, (i, e) in enumerate(zip(rows, east)):
        if 0 <= i < excess.shape[0]:
            j = int(np.floor(ev.col + e / (weather.DX_KM * np.cos(np.deg2rad(lat[i])))))
            if 0 <= j < excess.shape[1]:
                out[k] = excess[i, j]
    return out


def test_lookalikes_fall_short_of_the_thresholds_and_get_no_box():
    """Unlabelled look-alikes (short or weak moisture plumes, weak mid-latitude lows, weak tropical
    disturbances) are in the fields but never in the boxes; labelled events meet the thresholds."""
    seen = {"short_plume": 0, "weak_plume": 0, "weak_low": 0, "disturbance": 0, "ar": 0, "etc": 0}
    n_windows, lookalikes = 100, 0
    for fields, background, boxes, lat, events in events_of(seed=11, n=n_windows, height=96, width=128):
        labelled = [ev for ev in events if ev.cls >= 0 and ev.box is not None]
        used = boxes[:, 4] != -1
        assert used.sum() == len(labelled)  # only labelled events get a box, the look-alikes none
        for row, ev in zip(boxes[used], labelled):
            assert tuple(row) == (*ev.box, ev.cls)
        d_psl = (background[C["PSL"]] - fields[C["PSL"]]) / 100.0  # hPa of deficit
        d_tmq = fields[C["TMQ"]] - background[C["TMQ"]]
        d_t500 = fields[C["T500"]] - background[C["T500"]]
        for ev in events:
            p = ev.params
            i, j = int(ev.row), int(ev.col)
            if ev.cls == -1:
                lookalikes += 1
            if ev.filament:
                if ev.cls == 3:  # a river: at least 2000 km long (before clipping) and 20 kg/m^2
                    assert p["length"] >= 2000 and p["tmq"] >= 20
                    # its ends in the window's coordinates (km, before clipping) are >= 2000 km apart
                    axis = weather_synthetic._axis_km(ev, float(np.cos(np.deg2rad(ev.lat))))
                    assert np.hypot(*(axis[-1] - axis[0])) >= 2000 - 1e-6
                    frac = np.linspace(-0.45, 0.45, 19)
                    values = axis_values(d_tmq, lat, ev, frac)
                    ok = ~np.isnan(values)
                    assert ok.sum() >= 1
                    floor = 0.6 * p["tmq"] * (1 - 0.3 * (frac[ok] + 0.5))
                    assert np.all(values[ok] >= floor)  # the excess holds along >= 0.9 of the length
                    seen["ar"] += 1
                    continue
                assert ev.cls == -1 and (p["length"] < 2000 or p["tmq"] < 20)  # short or weak
                assert d_tmq[i, j] >= 0.6 * p["tmq"]  # there in the field
                if p["length"] < 2000:
                    beyond = axis_values(d_tmq, lat, ev, [-0.55, 0.55])
                    beyond = beyond[~np.isnan(beyond)]
                    # half the peak is reached only within 1.1 x 1800 km < 2000 km
                    assert np.all(beyond <= 0.3 * p["tmq"] + 3), (beyond, p)
                    seen["short_plume"] += beyond.size > 0
                else:
                    seen["weak_plume"] += 1
                continue
            if ev.cls == 2:  # an extratropical cyclone: at least 15 hPa deep
                assert p["dp"] >= 15 and d_psl[i, j] >= 0.95 * 15
                seen["etc"] += 1
            elif ev.cls in (0, 1):
                assert p["dp"] >= 5
            elif p["tropical"]:  # a weak warm-core tropical disturbance, shallower than a depression
                assert p["dp"] < 5 and 3 - weather.DLAT <= abs(ev.lat) <= 30 + weather.DLAT
                assert 0.9 * p["dp"] <= d_psl[i, j] and d_t500[i, j] > 0.05 * p["dp"]
                seen["disturbance"] += 1
            else:  # a weak cold-core mid-latitude low, shallower than an extratropical cyclone
                assert 4 <= p["dp"] < 15 and 35 - weather.DLAT <= abs(ev.lat) <= 65 + weather.DLAT
                assert 0.9 * p["dp"] <= d_psl[i, j] <= p["dp"] + 4  # + the tails of others
                assert d_t500[i, j] < -0.03 * p["dp"]  # cold core
                seen["weak_low"] += d_psl[i, j] < 15
    assert all(n >= 5 for n in seen.values()), seen
    # about as many look-alikes as labelled events, scaled with the area like them
    expected = (weather_synthetic.LOOKALIKES_BASE
                + weather_synthetic.LOOKALIKES_PER_AREA * 96 * 128 / (160 * 240))
    # (fewer in small windows, where more of them find no place clear of the labelled events)
    assert 0.5 * expected < lookalikes / n_windows < 1.2 * expected


def test_lookalikes_keep_clear_of_other_events():
    """A look-alike never overlaps another event: vortices stay the sum of their box radii apart,
    filaments FILAMENT_GAP widths (sigma) from the others and from a vortex's box radius."""
    pairs = 0
    for i in range(60):
        events = weather_synthetic.sample(13, i, 160, 240, events=False)[3]
        for a in (ev for ev in events if ev.cls == -1):
            for b in events:
                if b is not a:
                    pairs += 1
                    assert not weather_synthetic._overlaps(a, b), (a, b)
                    if not (a.filament or b.filament):
                        assert (weather_synthetic._distance_km(a, b)
                                >= a.params["r10"] + b.params["r10"])
    assert pairs > 100
