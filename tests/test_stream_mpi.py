"""--stage stream under real `mpirun -np 2` runs at the ci preset (and one epoch of the small
one), from the benchmark's files (resnet HEP HDF5, dcgan CosmoGAN .npy, faster_rcnn Extreme
Weather HDF5): the same losses and metrics as --stage memory with the same seed, the choice and
peak RSS per rank in the traces and the summary; and bad files (found by rank 0's inspection, or by one rank's stream
in the middle of an epoch) end the job with one line. Select with `pytest -k stream`."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from conftest import mpirun

from ai500 import config
from ai500.data import __main__ as data_cli
from ai500.data import cosmo, hep, weather_synthetic
from ai500.trace import read_trace

SEED = 5


@pytest.fixture(scope="module")
def ci_files(tmp_path_factory):
    """The resnet ci set (512 + 256 events, 64x64) written as files."""
    d = tmp_path_factory.mktemp("hep") / "data"
    hep.generate_dataset(d, 512, 256, seed=1234, image_size=64)
    return d


@pytest.fixture(scope="module")
def cosmo_files(tmp_path_factory):
    """The dcgan ci set (256 + 128 maps, 32x32) written as files."""
    d = tmp_path_factory.mktemp("cosmo") / "data"
    cosmo.generate_dataset(d, 256, 128, seed=1234, image_size=32)
    return d


@pytest.fixture(scope="module")
def weather_files(tmp_path_factory):
    """The faster_rcnn ci set (32 + 16 fields, 80x112) written as files."""
    d = tmp_path_factory.mktemp("weather") / "data"
    weather_synthetic.generate_dataset(d, 32, 16, seed=1234, height=80, width=112)
    return d


DATASET = {benchmark: name for name, benchmark in data_cli.DATASETS.items()}  # resnet -> hep, ...


@pytest.fixture(scope="module")
def small_files(tmp_path_factory):
    """benchmark -> its `small` preset's set written as files (python -m ai500.data), once."""
    root = tmp_path_factory.mktemp("small")

    def files(benchmark: str):
        d = root / benchmark
        if not d.exists():
            assert data_cli.main(["generate", DATASET[benchmark], "--preset", "small",
                                  "--out", str(d)]) == 0
        return d
    return files


def _run(data, out, stage: str, benchmark: str, preset: str = "ci", extra: tuple = ()):
    result = mpirun(2, ["--benchmark", benchmark, "--preset", preset, "--data", str(data),
                        "--stage", stage, "--seed", str(SEED), "--no-energy", "--out", str(out),
                        "--run-name", stage, *extra], timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return out / stage


# dcgan's arithmetic is not always bit-reproducible on this CPU, and the cause is not found:
# in two of about a dozen memory/stream pairs run inside full test runs its losses differed
# (ci: one epoch's mean D(fake) by 3.7e-9; small: by 1.4% after one epoch, a GAN amplifying
# such a difference; both before the input CRC was recorded), and never in 71 ci runs (41 alone,
# 30 beside two memory-churning processes) or 7 small ones. Its input is compared exactly, like
# every benchmark's; its losses to these relative tolerances. resnet and faster_rcnn have matched
# bit for bit in every run so far.
LOSS_RTOL = {("dcgan", "ci"): 1e-6, ("dcgan", "small"): 5e-2}


def _assert_same_numbers(runs: dict, benchmark: str, preset: str = "ci") -> None:
    """Both stages' runs: stage and peak RSS recorded per rank, every rank's input the same bit
    for bit (input_crc32, each epoch), and every loss and metric equal (LOSS_RTOL above)."""
    epochs, inputs = {}, {}
    for stage, run_dir in runs.items():
        traces = [read_trace(run_dir / f"trace-rank{r:05d}.h5") for r in (0, 1)]
        inputs[stage] = [t.epochs["input_crc32"] for t in traces]
        for t in traces:
            assert t.attrs["stage"] == stage and t.attrs["stage_reason"] == f"--stage {stage}"
            assert t.attrs["peak_rss_bytes"] > 100e6  # TensorFlow alone is more than that
        epochs[stage] = traces[0].epochs
        summary = json.loads((run_dir / "summary.json").read_text())
        memory = summary["memory"]
        assert memory["stage"] == {stage: [0, 1]}
        assert memory["peak_rss_bytes"] == [t.attrs["peak_rss_bytes"] for t in traces]
        assert memory["peak_rss_bytes_max"] == max(memory["peak_rss_bytes"])
        record = json.loads((run_dir / "config.json").read_text())
        assert record["config"]["stage"] == stage
        assert record["workload"]["stage_rank0"]["mode"] == stage
    metrics = [k for k in epochs["memory"] if k.startswith(("train_", "val_"))]
    assert any(k.startswith("train_") and "loss" in k for k in metrics)
    assert config.load_preset(benchmark, "ci")["quality"]["metric"] in metrics
    assert len(epochs["memory"]["epoch"]) == len(epochs["stream"]["epoch"]) >= 1
    for rank in (0, 1):  # the same batches in the same order, on each rank
        np.testing.assert_array_equal(inputs["stream"][rank], inputs["memory"][rank])
    assert (inputs["memory"][0] != inputs["memory"][1]).all()  # the ranks read different shards
    rtol = LOSS_RTOL.get((benchmark, preset), 0.0)
    for key in metrics:
        np.testing.assert_allclose(epochs["stream"][key], epochs["memory"][key], rtol=rtol,
                                   atol=0.0, err_msg=key)


@pytest.mark.parametrize("benchmark, files", [("resnet", "ci_files"), ("dcgan", "cosmo_files"),
                                              ("faster_rcnn", "weather_files")])
def test_stream_gives_the_losses_of_memory(benchmark, files, request, tmp_path):
    data = request.getfixturevalue(files)
    runs = {stage: _run(data, tmp_path / "runs", stage, benchmark)
            for stage in ("memory", "stream")}
    _assert_same_numbers(runs, benchmark)


@pytest.mark.parametrize("benchmark", ["resnet", "dcgan", "faster_rcnn"])
def test_stream_small_preset_gives_the_losses_of_memory(benchmark, small_files, tmp_path):
    """The small preset's full sets and model for one epoch: shards of thousands of events, many
    read-ahead blocks per epoch (the ci sets fit in one or two). Select with `-k stream_small`."""
    data = small_files(benchmark)
    runs = {stage: _run(data, tmp_path / "runs", stage, benchmark, preset="small",
                        extra=("--epochs", "1"))
            for stage in ("memory", "stream")}
    _assert_same_numbers(runs, benchmark, "small")


def _damage_inspection(data):
    with h5py.File(data / "val.h5", "r+") as f:
        del f["weight"]


def _damage_event(data):
    """Flip bytes of training event 300's compressed chunk (rank 1's shard holds events 256..511)."""
    path = data / "train.h5"
    with h5py.File(path, "r") as f:
        info = f["data"].id.get_chunk_info_by_coord((300, 0, 0, 0))
    raw = bytearray(path.read_bytes())
    middle = info.byte_offset + info.size // 2
    raw[middle:middle + 16] = bytes(b ^ 0xFF for b in raw[middle:middle + 16])
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage, fragment", [
    (_damage_inspection, "val.h5: missing dataset(s) weight"),
    (_damage_event, "train.h5: cannot read events"),
], ids=["inspection", "streamed_event"])
def test_stream_bad_files_end_every_rank_with_one_line(ci_files, tmp_path, damage, fragment):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train.h5", "val.h5"):
        (data / name).write_bytes((ci_files / name).read_bytes())
    damage(data)
    result = mpirun(2, ["--benchmark", "resnet", "--preset", "ci", "--data", str(data),
                        "--stage", "stream", "--epochs", "1", "--no-energy",
                        "--out", str(tmp_path / "runs")], timeout=600)
    assert result.returncode != 0
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("ai500: error:")]
    assert len(lines) == 1 and fragment in lines[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr
