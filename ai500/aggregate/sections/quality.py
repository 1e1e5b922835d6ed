"""Quality and time to quality (DESIGN §5).

Time to quality: from run_start to the end of the first evaluation whose globally reduced quality
reached the target (seconds, slowest rank). A run with a missing, unfinished or failed rank
makes no time-to-quality claim. A resumed run's time_to_quality_s is on the MLPerf clock, from
the first segment's run_start through every interruption, and flagged mlperf_valid false;
time_to_quality_training_s sums the segments' training time (segments.py: the two clocks).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ai500.aggregate.merge import MergedRun
from ai500.aggregate.segments import Segment
from ai500.summary_common import finite

DEFINITION = ("seconds from run_start (after initialisation and data staging, all ranks past a "
              "barrier) to the end of the first evaluation reaching the target")
RESUMED_DEFINITION = ("MLPerf clock: wall-clock seconds from the first segment's run_start to "
                      "the end of the first evaluation reaching the target, through every "
                      "interruption (lost work, the gap, re-initialisation); not a valid "
                      "MLPerf result: the run was resumed from a checkpoint")
TRAINING_DEFINITION = "as time_to_quality_s: the run was not resumed"
RESUMED_TRAINING_DEFINITION = ("training time: the sum over the segments that made the final "
                               "model of their time from run_start to the checkpoint the next "
                               "segment resumed from, then the last segment's time to the "
                               "quality point; initialisation, gaps and work lost after a "
                               "checkpoint excluded")


def _metric(run: MergedRun) -> np.ndarray | None:
    """The quality metric per merged epoch (None: the traces hold no such column)."""
    return run.arrays.get(run.cfg["config"]["quality"]["metric"])


def quality_point(run: MergedRun) -> int | None:
    """Position in the merged epochs of the first evaluation reaching the target; None where
    none did or the run is incomplete (no claim)."""
    q = run.cfg["config"]["quality"]
    metric = _metric(run)
    if metric is None:
        return None
    better = (metric >= q["target"]) if q["higher_is_better"] else (metric <= q["target"])
    hits = np.nonzero(better)[0]
    return int(hits[0]) if len(hits) and run.complete else None


def best_quality(run: MergedRun) -> float | None:
    """The best finite quality any evaluation reached (None: none)."""
    metric = _metric(run)
    values = metric[np.isfinite(metric)] if metric is not None else np.zeros(0)
    if not len(values):
        return None
    higher = run.cfg["config"]["quality"]["higher_is_better"]
    return float(np.max(values) if higher else np.min(values))


def quality_section(run: MergedRun, reached_at: int | None) -> dict[str, Any]:
    """The summary's quality: metric, target, whether reached, best and final values."""
    q = run.cfg["config"]["quality"]
    metric = _metric(run)
    return {
        "metric": q["metric"], "target": q["target"],
        "higher_is_better": q["higher_is_better"],
        "reached": reached_at is not None, "best": best_quality(run),
        "final": finite(metric[-1]) if metric is not None and len(metric) else None,
    }


def time_to_quality(run: MergedRun, reached_at: int | None) -> dict[str, Any]:
    """Time to quality (seconds) on the MLPerf clock and on the training clock, its epoch, and
    the definitions of both."""
    reached = reached_at is not None
    return {
        "time_to_quality_s": run.eval_end(reached_at) if reached else None,
        "time_to_quality_epoch": int(run.arrays["epoch"][reached_at]) if reached else None,
        "time_to_quality_definition": RESUMED_DEFINITION if run.resumed else DEFINITION,
        "time_to_quality_training_s": (run.eval_end(reached_at, "t_eval_end_training")
                                       if reached else None),
        "time_to_quality_training_definition": (RESUMED_TRAINING_DEFINITION if run.resumed
                                                else TRAINING_DEFINITION),
    }


def mlperf_validity(run: MergedRun) -> dict[str, Any]:
    """Whether time_to_quality_s is a valid MLPerf result: false for a resumed run, else not
    judged (None)."""
    if run.resumed:
        return {"mlperf_valid": False,
                "mlperf_valid_reason": "resumed from a checkpoint: MLPerf times one uninterrupted "
                "run, so time_to_quality_s (its clock, which never pauses) is not a valid result"}
    return {"mlperf_valid": None,
            "mlperf_valid_reason": "not judged: ai500 does not check MLPerf's rules"}


def seconds_to_quality(run: MergedRun, reached_at: int | None
                       ) -> list[tuple[Segment, float | None]]:
    """Each segment with its own seconds from its run_start that count to the quality point:
    all of its recorded run (energy_end_s) for a segment before the one that reached the target,
    up to the quality point for that one, None for later ones or when none reached it."""
    q_segment = int(run.arrays["segment"][reached_at]) if reached_at is not None else None
    origin = run.segments[0].wall_start or 0.0
    result = []
    for seg in run.segments:
        own = None
        if q_segment is not None and seg.index < q_segment:
            own = seg.energy_end_s
        elif seg.index == q_segment:
            own = run.eval_end(reached_at) - ((seg.wall_start or 0.0) - origin)
        result.append((seg, own))
    return result
