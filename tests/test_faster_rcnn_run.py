"""faster_rcnn under a real `mpirun -np 2`: summary, traced losses, gathered mAP, figure, bad input."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from ai500 import config
from ai500.dist import Dist
from ai500.trace import read_trace
from tests.conftest import load_summary, mpirun, only_run_dir, python_module


@pytest.fixture(scope="module")
def weather_ci_data(tmp_path_factory):
    data = tmp_path_factory.mktemp("weather") / "ci"
    gen = python_module("ai500.data", ["generate", "weather", "--preset", "ci", "--out", str(data)])
    assert gen.returncode == 0, gen.stderr
    return data


@pytest.fixture(scope="module")
def ci_run(weather_ci_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    result = mpirun(2, ["--benchmark", "faster_rcnn", "--preset", "ci", "--data", str(weather_ci_data),
                        "--out", str(out)])
    assert result.returncode == 0, result.stdout + result.stderr
    return result, only_run_dir(out)


def test_ci_run_traces_both_stages_losses_and_the_same_map_on_every_rank(ci_run):
    _, run_dir = ci_run
    s = load_summary(run_dir)
    assert s["status"] == "ok" and s["ranks"] == 2 and s["epochs_completed"] == 2
    assert s["quality"]["metric"] == "val_map" and s["quality"]["target"] == 0.35
    assert s["flops"]["per_sample_train"] > 0
    t0, t1 = (read_trace(run_dir / f"trace-rank{r:05d}.h5") for r in (0, 1))
    for key in ("train_rpn_objectness", "train_rpn_box", "train_roi_class", "train_roi_box",
                "train_loss"):
        assert np.all(np.isfinite(t0.epochs[key])) and np.all(t0.epochs[key] >= 0), key
        np.testing.assert_array_equal(t0.epochs[key], t1.epochs[key])  # globally averaged
    for key in ("val_map", "val_ap_td", "val_ap_tc", "val_ap_etc", "val_ap_ar", "val_detections"):
        np.testing.assert_array_equal(t0.epochs[key], t1.epochs[key])  # gathered, then computed
    maps = t0.epochs["val_map"]
    assert np.all((maps >= 0) & (maps <= 1)) or np.all(np.isnan(maps))
    # 16 training fields per rank, batch 2: 8 steps per epoch
    assert t0.epochs["samples"].tolist() == [16, 16]
    assert (run_dir / "validation_boxes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["workload"]["model"] == "Faster R-CNN"
    assert cfg["workload"]["input_shape"] == [64, 96, 16]
    assert cfg["workload"]["data_source"].startswith("files under")
    flops = cfg["flops_per_sample"]  # backbone + RPN per image plus the RoI head on 16 RoIs
    assert "RoI head on the 16 sampled RoIs" in flops["method"]
    assert flops["train"] == pytest.approx(3 * flops["forward"]) and flops["forward"] > 5e6


def _write(path, images, boxes):
    with h5py.File(path, "w") as f:
        f["images"], f["boxes"] = images, boxes


@pytest.mark.parametrize("case, fragment", [
    ("channels", "expected (N, 16, H, W)"),
    ("outside", "inside 80x112"),
    ("empty", "no train*.h5"),
])
def test_bad_data_ends_every_rank_with_one_line(tmp_path, weather_ci_data, case, fragment):
    data = tmp_path / "data"
    data.mkdir()
    if case != "empty":
        with h5py.File(weather_ci_data / "train.h5") as f:
            images, boxes = f["images"][:], f["boxes"][:]
        if case == "channels":
            images = images[:, :15]
        else:  # a box reaches past the image's right edge
            boxes[20, 0] = [10, 50, 30, images.shape[3] + 40, 1]
        _write(data / "train.h5", images, boxes)
        (data / "val.h5").write_bytes((weather_ci_data / "val.h5").read_bytes())
    out = tmp_path / "runs"
    result = mpirun(2, ["--benchmark", "faster_rcnn", "--preset", "ci", "--data", str(data),
                        "--out", str(out)], timeout=180)
    assert result.returncode != 0
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("ai500: error:")]
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() or not any(out.iterdir())


def test_field_size_must_match_the_preset(tmp_path, weather_ci_data):
    from ai500.errors import ConfigError
    from ai500.workloads import faster_rcnn

    cfg = config.resolve(["--benchmark", "faster_rcnn", "--preset", "ci", "--data",
                          str(weather_ci_data), "--config", str(_override(tmp_path))])
    with pytest.raises(ConfigError, match="field_height/field_width"):
        faster_rcnn.Workload(cfg, Dist(rank=0, size=1, local_rank=0, local_size=1, host="test"))


def _override(tmp_path):
    path = tmp_path / "bigger.yaml"
    path.write_text("data: {field_height: 96, field_width: 128}\n")
    return path


def test_checkpoint_state_saves_and_restores_every_weight_and_momentum(tmp_path):
    import tensorflow as tf

    from ai500.workloads import faster_rcnn

    cfg = config.resolve(["--benchmark", "faster_rcnn", "--preset", "ci"])
    w = faster_rcnn.Workload(cfg, Dist(rank=0, size=1, local_rank=0, local_size=1, host="test"))
    state = w.checkpoint_state()
    assert set(state) == {"model", "optimizer"}
    variables = w.model.variables + list(w.optimizer.variables)
    assert len(w.optimizer.variables) > len(w.model.trainable_variables)  # momentum slots exist
    saved = [v.numpy().copy() for v in variables]
    path = tf.train.Checkpoint(**state).write(str(tmp_path / "state"))
    for v in variables:
        v.assign(tf.ones_like(v) * 7)
    tf.train.Checkpoint(**w.checkpoint_state()).read(path).assert_existing_objects_matched()
    for v, before in zip(variables, saved):
        np.testing.assert_array_equal(v.numpy(), before, err_msg=v.name)
