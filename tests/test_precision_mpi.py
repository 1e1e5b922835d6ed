"""Mixed precision and XLA in real `mpirun -np 2` runs of every component benchmark at the ci
preset: the run finishes, its losses are finite, the precision is recorded (config.json, traces,
summary, mllog), and fp16 trains through dynamic loss scaling, identically on both ranks.

Each run is one epoch of two steps per rank (the ci preset with fewer samples): TensorFlow's CPU
float16 kernels are scalar emulation, seconds per step even for the ci models."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import (
    checkpoint_state,
    load_summary,
    mpirun,
    only_run_dir,
    wait_for_lock_holder_to_exit,
)

from ai500.trace import read_trace

BENCHMARKS = ("resnet", "dcgan", "faster_rcnn")
# Each optimizer's loss scale, as the mean over an epoch's steps (a train_ metric).
SCALES = {"resnet": ["train_loss_scale"], "faster_rcnn": ["train_loss_scale"],
          "dcgan": ["train_d_loss_scale", "train_g_loss_scale"]}


# Two steps per rank on 2 ranks (the ci batch sizes are 32, 16 and 2).
FEWER = {"resnet": "{n_train: 128, n_val: 64}", "dcgan": "{n_train: 64, n_val: 64}",
         "faster_rcnn": "{n_train: 8, n_val: 8}"}


def run(tmp_path, benchmark: str, *args: str):
    override = tmp_path / "fewer.yaml"
    override.write_text(f"data: {FEWER[benchmark]}\n")
    out = tmp_path / "runs"
    result = mpirun(2, ["--benchmark", benchmark, "--preset", "ci", "--epochs", "1",
                        "--config", str(override), "--out", str(out), *args], timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = only_run_dir(out)
    traces = [read_trace(run_dir / f"trace-rank{rank:05d}.h5") for rank in (0, 1)]
    return run_dir, traces


def check_finite_and_recorded(run_dir, traces, mode: str, xla: bool) -> None:
    record = json.loads((run_dir / "config.json").read_text())
    assert (record["config"]["precision"], record["config"]["xla"]) == (mode, xla)
    assert record["precision"]["precision"] == mode and record["precision"]["xla"] is xla
    assert record["dist"]["devices"] == [f"{record['dist']['hosts'][0]} CPU"] * 2
    for trace in traces:
        assert (trace.attrs["precision"], bool(trace.attrs["xla"])) == (mode, xla)
        losses = [key for key in trace.epochs if key.startswith("train_") and "loss" in key]
        assert losses
        for key in losses:
            assert np.all(np.isfinite(trace.epochs[key])), key
    summary = load_summary(run_dir)
    assert summary["precision"] == mode
    mllog = [json.loads(line.split(" ", 1)[1]) for line in
             (run_dir / "mllog.txt").read_text().splitlines()]
    assert next(r["value"] for r in mllog if r["key"] == "precision") == mode


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_bf16(tmp_path, benchmark):
    run_dir, traces = run(tmp_path, benchmark, "--precision", "bf16")
    check_finite_and_recorded(run_dir, traces, "bf16", False)
    assert record_policy(run_dir) == "mixed_bfloat16"
    assert not any("loss_scale" in key for key in traces[0].epochs)  # bf16 needs no scaling


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_fp16_trains_through_loss_scaling(tmp_path, benchmark):
    run_dir, traces = run(tmp_path, benchmark, "--precision", "fp16")
    check_finite_and_recorded(run_dir, traces, "fp16", False)
    assert record_policy(run_dir) == "mixed_float16"
    for key in SCALES[benchmark]:
        scales = [trace.epochs[key] for trace in traces]
        # The scale starts at 2^15 and only halves (on a non-finite step) within so few steps;
        # both ranks see the same averaged gradients, so they keep the same scale.
        assert np.all((scales[0] > 0) & (scales[0] <= 2.0 ** 15)), (key, scales[0])
        np.testing.assert_array_equal(scales[0], scales[1])


@pytest.mark.parametrize("benchmark, mode", [("resnet", "fp32"), ("dcgan", "bf16"),
                                             ("faster_rcnn", "fp32")])
def test_xla(tmp_path, benchmark, mode):
    run_dir, traces = run(tmp_path, benchmark, "--xla", "--precision", mode)
    check_finite_and_recorded(run_dir, traces, mode, True)
    # one model on every rank: the global metrics agree
    for key in (k for k in traces[0].epochs if k.startswith(("train_", "val_"))):
        np.testing.assert_array_equal(traces[0].epochs[key], traces[1].epochs[key])


def record_policy(run_dir) -> str:
    return json.loads((run_dir / "config.json").read_text())["precision"]["keras_policy"]


def test_fp16_resume_continues_the_loss_scale_and_the_weights(tmp_path):
    """An fp16 run killed after its epoch-1 checkpoint and resumed ends where the uninterrupted
    run ends: weights, optimizer slots and the dynamic loss scale's state (scale and its count of
    finite steps) are in the checkpoint, and the resumed epoch trains at the saved scale."""

    override = tmp_path / "fewer.yaml"
    override.write_text(f"data: {FEWER['resnet']}\n")
    out = tmp_path / "runs"

    def args(name: str) -> list[str]:
        return ["--benchmark", "resnet", "--preset", "ci", "--precision", "fp16", "--epochs", "3",
                "--no-stop-at-target", "--checkpoint-every", "1", "--config", str(override),
                "--out", str(out), "--run-name", name]

    full = mpirun(2, args("full"), timeout=900)
    assert full.returncode == 0, full.stderr[-3000:]
    cut = mpirun(2, args("cut"), timeout=900, env={"AI500_FAULT": "rank=1,epoch=2,kind=exit"})
    assert cut.returncode != 0
    wait_for_lock_holder_to_exit(out / "cut")
    resumed = mpirun(2, ["--resume", str(out / "cut")], timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    a, b = checkpoint_state(out / "full"), checkpoint_state(out / "cut")
    scale_keys = [key for key in a if "loss_scale" in key or "counter" in key]
    assert scale_keys, sorted(a)  # the loss scale's state is saved at all
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=0, atol=1e-6, err_msg=key)
    before = read_trace(out / "full" / "trace-rank00000.h5").epochs
    after = read_trace(out / "cut" / "segment-01" / "trace-rank00000.h5").epochs
    assert after["epoch"].tolist() == [2]
    for key in ("train_loss", "train_loss_scale"):
        np.testing.assert_allclose(after[key], before[key][2:], rtol=0, atol=1e-6, err_msg=key)
