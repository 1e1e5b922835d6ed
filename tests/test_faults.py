"""A rank that dies, raises or hangs mid-run ends the whole job within a bound, with a message
naming the rank, and every surviving trace stays readable (the AI500_FAULT testing aid)."""

from __future__ import annotations

import time

import pytest
from conftest import load_summary, mpirun, python_module

from ai500.trace import read_trace
from ai500.watchdog import SLOW_FAULT_S, Watchdog, parse_fault

STALL_S = 45  # longer than a first step (graph tracing) takes on a loaded 2-core machine


@pytest.mark.parametrize("kind, message", [
    ("exit", "injected fault: rank 1 exits at epoch 1"),
    ("raise", "rank 1 on"),
    ("hang", "no progress for"),
])
def test_a_failing_rank_ends_the_job_and_loses_nothing(tmp_path, hep_ci_data, kind, message):
    start = time.monotonic()
    result = mpirun(2, ["--benchmark", "resnet", "--preset", "ci", "--data", str(hep_ci_data),
                        "--out", str(tmp_path), "--run-name", "r", "--epochs", "4",
                        "--stall-timeout", str(STALL_S)],
                    env={"AI500_FAULT": f"rank=1,epoch=1,kind={kind}"}, timeout=300)
    elapsed = time.monotonic() - start
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-3000:]
    if kind == "raise":
        assert "RuntimeError: injected fault at epoch 1" in result.stderr
    # Bounded: start-up plus one epoch plus the stall timeout and its check interval, with room
    # for a loaded machine; a hang would run into the subprocess timeout instead.
    assert elapsed < 240
    run = tmp_path / "r"
    for rank in (0, 1):
        trace = read_trace(run / f"trace-rank{rank:05d}.h5")
        assert trace.epochs["epoch"][0] == 0  # epoch 0 completed and is kept
        assert trace.attrs["status"] == "running"  # never closed: the run did not end cleanly
    agg = python_module("ai500.aggregate", [str(run)])
    assert agg.returncode == 1
    assert "status failed" in agg.stdout and "time to quality n/a" in agg.stdout
    assert "rank 1: trace status 'running'" in agg.stdout


def test_watchdog_fires_once_after_the_timeout():
    fired = []
    dog = Watchdog(0.2, fired.append)
    dog.start()
    time.sleep(0.6)
    assert len(fired) == 1 and fired[0] > 0.2


def test_watchdog_quiet_while_beating():
    fired = []
    dog = Watchdog(0.3, fired.append)
    dog.start()
    for _ in range(8):
        time.sleep(0.05)
        dog.beat()
    dog.stop()
    assert fired == []


@pytest.mark.parametrize("text", ["rank=1", "rank=x,epoch=1,kind=exit", "rank=1,epoch=1,kind=boom"])
def test_malformed_fault_spec_is_refused(text):
    with pytest.raises(ValueError, match="AI500_FAULT"):
        parse_fault(text)


def test_a_slow_rank_is_waited_for_at_the_barrier_not_counted_as_training(tmp_path, hep_ci_data):
    """Rank 1 sleeps 3 s before epoch 1's barrier (as a slow flush would): rank 0's wait is
    recorded and lands in *other*, and no rank starts the epoch before every rank is ready."""
    result = mpirun(2, ["--benchmark", "resnet", "--preset", "ci", "--data", str(hep_ci_data),
                        "--out", str(tmp_path), "--run-name", "r", "--epochs", "3"],
                    env={"AI500_FAULT": "rank=1,epoch=1,kind=slow"}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    traces = [read_trace(tmp_path / "r" / f"trace-rank{rank:05d}.h5") for rank in (0, 1)]
    for epoch in range(3):
        ready = max(t.epochs["t_ready"][epoch] for t in traces)
        assert all(t.epochs["t_start"][epoch] >= ready for t in traces)  # the barrier held
    waited = traces[0].epochs["t_start"][1] - traces[0].epochs["t_ready"][1]
    assert waited >= SLOW_FAULT_S - 0.5
    summary = load_summary(tmp_path / "r")
    epoch0, epoch1 = summary["epochs"][:2]
    assert epoch1["barrier_wait_s"] >= SLOW_FAULT_S - 0.5
    # The wait belongs to the time between epochs 0 and 1 (epoch 0's other), not to training.
    assert epoch0["other_s"] >= SLOW_FAULT_S - 0.5
    account = summary["time_accounting"]["run"]
    assert account["other_s"] >= SLOW_FAULT_S - 0.5
    assert account["training_s"] + account["evaluation_s"] + account["checkpoint_s"] + (
        account["other_s"]) == pytest.approx(account["total_s"])
