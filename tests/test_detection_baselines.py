"""faster_rcnn's non-learned baselines score clearly below the small preset's target."""

from __future__ import annotations

import numpy as np
import pytest

from ai500 import config
from ai500.metrics import detection_baselines

MARGIN = 0.12  # mAP: each baseline at least this far below the target (threshold: 0.427 on these 64)


@pytest.fixture(scope="module")
def small_fields():
    # The first 64 of small's 256 validation fields (the full set: the README's command).
    return detection_baselines.preset_fields("small", n_val=64, n_train_boxes=32)


@pytest.fixture(scope="module")
def small_scores(small_fields):
    return detection_baselines.score_baselines(small_fields, seed=0)


def test_both_baselines_score_clearly_below_the_small_target(small_scores):
    target = config.load_preset("faster_rcnn", "small")["quality"]["target"]
    for name, result in small_scores.items():
        assert result["classes_with_truth"] == 4, name
        assert result["map"] <= target - MARGIN, (name, result)


def test_the_threshold_detector_is_a_real_detector(small_scores):
    # Not a straw man: it finds tropical cyclones (deep, compact lows) well, and every class
    # but rivers better than random boxes do.
    threshold, random = small_scores["threshold"], small_scores["random"]
    assert threshold["ap"][1] > 0.6
    assert threshold["map"] > 0.3 > random["map"] + 0.25
    assert all(t > r for t, r in zip(threshold["ap"][:3], random["ap"][:3]))


def test_random_boxes_have_training_sizes_and_lie_inside_the_crop(small_fields):
    ids = np.arange(5, dtype=np.float64)
    height, width = small_fields["crop"]
    rows = detection_baselines.random_detections(small_fields["train_boxes"], ids, height, width,
                                                 per_image=50, seed=3)
    assert rows.shape == (250, 7)
    np.testing.assert_array_equal(rows, detection_baselines.random_detections(
        small_fields["train_boxes"], ids, height, width, per_image=50, seed=3))
    assert np.all(rows[:, 3:5] >= 0) and np.all(rows[:, 5] <= height) and np.all(rows[:, 6] <= width)
    used = small_fields["train_boxes"][small_fields["train_boxes"][..., 4] >= 0]
    known = {tuple(r) for r in np.round(np.column_stack(
        [used[:, 2] - used[:, 0], used[:, 3] - used[:, 1], used[:, 4]]), 3)}
    drawn = np.round(np.column_stack([rows[:, 5] - rows[:, 3], rows[:, 6] - rows[:, 4], rows[:, 1]]), 3)
    assert all(tuple(r) in known for r in drawn)


def test_a_lone_deep_tropical_low_is_one_tropical_cyclone_box():
    # A flat 1010 hPa field at 15 N with a 40 hPa Gaussian low of 4 px radius at (30, 40).
    height, width = 64, 96
    y, x = np.mgrid[:height, :width]
    fields = np.zeros((1, 16, height, width), np.float32)
    psl = 101000.0 - 4000.0 * np.exp(-((y - 30) ** 2 + (x - 40) ** 2) / (2 * 4.0**2))
    fields[0, detection_baselines.weather.CHANNELS.index("PSL")] = psl
    latitude = np.full((1, height), 15.0, np.float32)
    rows = detection_baselines.threshold_detections(fields, latitude, np.array([7.0]))
    assert rows.shape == (1, 7)
    image, cls, score, y0, x0, y1, x1 = rows[0]
    assert (image, cls, score) == (7.0, 1.0, pytest.approx(0.4))
    assert (y0 + y1) / 2 == pytest.approx(30.5, abs=1) and (x0 + x1) / 2 == pytest.approx(40.5, abs=1)
    # half depth at 1.18 sigma = 4.7 px: a core about 10 px across, scaled by 2.6
    assert 20 <= y1 - y0 <= 30 and 20 <= x1 - x0 <= 30
    latitude[:] = 50.0  # the same low at 50 N is an extratropical cyclone
    assert detection_baselines.threshold_detections(fields, latitude, np.array([7.0]))[0, 1] == 2


def test_cli_prints_both_baselines(capsys):
    assert detection_baselines.main(["--preset", "ci"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("faster_rcnn ci: 16 validation fields, target mAP")
    scores = {line.split()[0]: float(line.split()[1]) for line in out[2:]}
    assert set(scores) == {"random", "threshold"} and all(0 <= s <= 1 for s in scores.values())

