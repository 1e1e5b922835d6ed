"""Time accounting (DESIGN §5): how long the run took (initialisation, run) and where its seconds
went, epoch by epoch and up to the quality point: training + evaluation + checkpoint + other.

Initialisation: process start → run_start, slowest rank, reported apart from time to quality.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ai500.aggregate.merge import MergedRun
from ai500.aggregate.sections.checkpoints import checkpoint_seconds
from ai500.aggregate.segments import TIMES

ACCOUNTING_DEFINITION = (
    "seconds on the job's timeline: training = from an epoch's start (all ranks past its "
    "barrier) until the last rank finished its steps and the reduction of their metrics; "
    "evaluation = from the last rank starting the global evaluation to the last finishing it; "
    "checkpoint = rank 0's checkpoint writes (barriers included); other = the window's wall time "
    "minus those three: trace flushes, progress lines, waiting at the barrier that starts each "
    "epoch (barrier_wait_s, also counted in other), and on a resumed run the interruptions "
    "(MLPerf clock); it should be near 0")


def run_times(run: MergedRun) -> dict[str, Any]:
    """Initialisation seconds (the first segment's slowest rank) and the run's length in seconds
    from run_start on the MLPerf and the training clock."""
    init = [float(t.attrs["init_seconds"]) for t in run.segments[0].traces.values()
            if "init_seconds" in t.attrs]
    return {
        "init_s": max(init) if init else None,
        "init_definition": "process start to run_start, slowest rank (imports, data staging, "
        "model build, FLOP count)" + ("; the first segment's (each segment's is in segments)"
                                      if run.resumed else ""),
        "run_s": run.last_eval_end(),
        "run_training_s": run.last_eval_end("t_eval_end_training"),
    }


def epoch_accounting(run: MergedRun) -> dict[str, np.ndarray]:
    """Per merged epoch, seconds on the job's timeline (every rank starts an epoch together,
    after its barrier): training until the last rank finished its steps, evaluation from the
    last rank starting it to the last finishing, rank 0's checkpoint, the longest wait at the
    starting barrier, the epoch's wall time (to the next epoch's start in the same segment, else
    to the end of its evaluation and checkpoint) and other = wall - training - evaluation -
    checkpoint (never negative: the phases follow one another on every rank). No epoch: {}."""
    if not run.n:
        return {}
    merged, checkpoints = run.arrays, checkpoint_seconds(run)
    segment, epoch = merged["segment"], merged["epoch"]
    last = {key: np.nanmax(merged[key], axis=0) for key in TIMES}
    start = last["t_start"]
    result = {
        "training_s": last["t_train_end"] - start,
        "evaluation_s": last["t_eval_end"] - last["t_eval_start"],
        "checkpoint_s": np.array([checkpoints.get((int(g), int(e)), 0.0)
                                  for g, e in zip(segment, epoch)]),
        "barrier_wait_s": np.nanmax(merged["t_start"] - merged["t_ready"], axis=0),
    }
    end = last["t_eval_end"] + result["checkpoint_s"]
    for i in range(len(segment) - 1):
        if segment[i + 1] == segment[i]:  # the epoch lasts until the next one starts
            end[i] = start[i + 1]
    result["wall_s"] = end - start
    result["other_s"] = (result["wall_s"] - result["training_s"] - result["evaluation_s"]
                         - result["checkpoint_s"])
    return result


def account_until(run: MergedRun, per_epoch: dict[str, np.ndarray],
                  position: int) -> dict[str, float]:
    """Where the seconds from run_start to the end of the evaluation of merged epoch `position`
    went: training, evaluation, checkpoints written before it, and the rest (other)."""
    total = run.eval_end(position)
    parts = {key: float(per_epoch[key][:position + 1].sum())
             for key in ("training_s", "evaluation_s", "barrier_wait_s")}
    parts["checkpoint_s"] = float(per_epoch["checkpoint_s"][:position].sum())
    other = total - parts["training_s"] - parts["evaluation_s"] - parts["checkpoint_s"]
    return {"total_s": total, **parts, "other_s": other,
            "other_share": other / total if total > 0 else None}


def time_accounting(run: MergedRun, per_epoch: dict[str, np.ndarray],
                    reached_at: int | None) -> dict[str, Any]:
    """The accounting up to the quality point and over the whole run (None where there is no
    such window); `per_epoch` is epoch_accounting(run)."""
    return {
        "to_quality": (account_until(run, per_epoch, reached_at) if reached_at is not None
                       else None),
        "run": account_until(run, per_epoch, run.n - 1) if run.n else None,
        "definition": ACCOUNTING_DEFINITION,
    }
