"""A rank that dies, raises or hangs mid-run ends the whole job within a bound, with a message
naming the rank, and every surviving trace stays readable (the AI500_FAULT testing aid)."""

from __future__ import annotations

import time

import pytest
from conftest import load_summary, mpirun, python_module

from ai500.trace import read_trace
from ai500.watchdog import (
    INIT_FAULT,
    INIT_PHASE,
    SLOW_FAULT_S,
    TRAINING_PHASE,
    Watchdog,
    parse_fault,
    progress,
)

STALL_S = 45  # longer than a later step or evaluation (the first epoch has --init-timeout) takes loaded


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
    dog = Watchdog(0.2, lambda idle, phase: fired.append((idle, phase)))
    dog.start()
    time.sleep(0.6)
    assert len(fired) == 1 and fired[0][0] > 0.2 and fired[0][1] == TRAINING_PHASE


def test_watchdog_quiet_while_beating():
    fired = []
    dog = Watchdog(0.3, lambda idle, phase: fired.append(phase))
    dog.start()
    for _ in range(8):
        time.sleep(0.05)
        dog.beat()
    dog.stop()
    assert fired == []


def test_watchdog_phases_have_their_own_timeouts():
    """Initialisation may be silent for longer than a training step; the training timeout
    applies from the moment the phase is entered, and the verdict names the phase."""
    fired = []
    dog = Watchdog(2.0, lambda idle, phase: fired.append((idle, phase)), INIT_PHASE)
    dog.start()
    time.sleep(0.5)  # longer than the training timeout below, shorter than the init one
    assert fired == []
    dog.enter(TRAINING_PHASE, 0.2)
    time.sleep(0.6)
    dog.stop()
    assert len(fired) == 1 and fired[0][1] == TRAINING_PHASE and 0.2 < fired[0][0] < 0.6


def slow_evaluation(batches: int, seconds_per_batch: float, beat: bool) -> None:
    """An evaluation loop as a workload runs it: batch after batch, progress() between them."""
    for _ in range(batches):
        time.sleep(seconds_per_batch)
        if beat:
            progress()


@pytest.mark.parametrize("beat, killed", [(True, False), (False, True)])
def test_a_slow_evaluation_that_reports_progress_is_not_killed(beat, killed):
    """A healthy evaluation three times longer than the timeout lives while it calls
    progress() between its batches; the same evaluation without them is killed."""
    fired = []
    dog = Watchdog(0.3, lambda idle, phase: fired.append(phase))
    dog.start()
    slow_evaluation(10, 0.1, beat)
    dog.stop()
    assert bool(fired) is killed
    progress()  # no watchdog running: a no-op


@pytest.mark.parametrize("text", ["rank=1", "rank=x,epoch=1,kind=exit", "rank=1,epoch=1,kind=boom",
                                  "rank=1,epoch=start,kind=hang"])
def test_malformed_fault_spec_is_refused(text):
    with pytest.raises(ValueError, match="AI500_FAULT"):
        parse_fault(text)


def test_fault_during_initialisation_is_parsed():
    assert parse_fault("rank=1,epoch=init,kind=hang") == {"rank": 1, "epoch": INIT_FAULT,
                                                          "kind": "hang"}


INIT_S = 20  # --init-timeout of the test below: longer than a loaded start-up takes to stage ci


def test_watchdog_ends_a_job_whose_rank_hangs_while_staging(tmp_path, hep_ci_data):
    """Rank 1 hangs as it stages its data; rank 0 waits for it in the error agreement. The
    initialisation timeout ends the job (not the training stall timeout, which is longer here)
    with a line naming the phase and the option, well before any epoch."""
    start = time.monotonic()
    result = mpirun(2, ["--benchmark", "resnet", "--preset", "ci", "--data", str(hep_ci_data),
                        "--out", str(tmp_path), "--run-name", "r", "--init-timeout", str(INIT_S),
                        "--stall-timeout", "600"],
                    env={"AI500_FAULT": "rank=1,epoch=init,kind=hang"}, timeout=400)
    elapsed = time.monotonic() - start
    assert result.returncode != 0
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("ai500: error:")]
    assert lines and all(
        "initialisation (MPI start-up, data staging, model build) made no progress for" in ln
        and f"(--init-timeout {INIT_S})" in ln for ln in lines), result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert elapsed < 300  # start-up + the init timeout + its check interval; the stall is 600 s
    assert not list((tmp_path / "r").glob("trace-rank*.h5"))  # no epoch began


def test_the_first_epoch_is_watched_with_the_init_timeout(tmp_path, hep_ci_data):
    """The first epoch traces (with --xla, compiles) the training and evaluation steps, which may
    take longer than --stall-timeout: a first epoch held up 3 s by rank 1 lives under a 1 s stall
    timeout, and a rank hanging in it is ended by --init-timeout with a line naming the phase."""
    args = ["--benchmark", "resnet", "--preset", "ci", "--data", str(hep_ci_data),
            "--out", str(tmp_path), "--epochs", "1"]
    slow = mpirun(2, [*args, "--run-name", "slow", "--stall-timeout", "1"],
                  env={"AI500_FAULT": "rank=1,epoch=0,kind=slow"}, timeout=300)
    assert slow.returncode == 0, slow.stderr[-3000:]
    assert load_summary(tmp_path / "slow")["status"] == "ok"
    start = time.monotonic()
    # The phase's timeout is the longer of the two: the stall timeout must be shorter here.
    hung = mpirun(2, [*args, "--run-name", "hung", "--init-timeout", str(INIT_S),
                      "--stall-timeout", str(INIT_S / 2)],
                  env={"AI500_FAULT": "rank=1,epoch=0,kind=hang"}, timeout=400)
    elapsed = time.monotonic() - start
    assert hung.returncode != 0
    lines = [ln for ln in hung.stderr.splitlines() if ln.startswith("ai500: error:")]
    assert lines and all(
        "the first epoch (tracing and compiling the training and evaluation steps) made no "
        "progress for" in ln and f"(--init-timeout {INIT_S})" in ln for ln in lines), (
        hung.stderr[-3000:])
    assert elapsed < 300  # start-up + the init timeout + its check interval


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
