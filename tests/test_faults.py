"""A rank that dies, raises or hangs mid-run ends the whole job within a bound, with a message
naming the rank, and every surviving trace stays readable (the AI500_FAULT testing aid)."""

from __future__ import annotations

import time

import pytest
from conftest import mpirun, python_module

from ai500.trace import read_trace
from ai500.watchdog import Watchdog, parse_fault

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
