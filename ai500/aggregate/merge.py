"""A training run's traces merged for its summary: [rank, epoch] arrays over the epochs every usable
rank completed (a resumed run's segments joined along the final model's lineage, segments.py),
what spoils the run, and the clock readings every section reads from them.

Epoch time of a rank: its training time in that epoch (t_train_end - t_start), seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from ai500.aggregate.segments import TIMES, Segment, join, lineage
from ai500.trace import Trace


def merge_epochs(traces: dict[int, Trace]) -> dict[str, np.ndarray]:
    """Per-epoch arrays over the epochs every readable rank completed: [rank, epoch] timings."""
    ranks = sorted(traces)
    n = min((len(traces[r].epochs.get("epoch", [])) for r in ranks), default=0)
    column = lambda key: np.array([traces[r].epochs[key][:n] for r in ranks])
    merged = {"rank": np.array(ranks), "epoch": np.arange(n)}
    for key in (*TIMES, "samples"):
        merged[key] = column(key) if n else np.zeros((len(ranks), 0))
    # Training and evaluation metrics are global (reduced over ranks) and identical on every
    # rank, so rank 0's copy (or the lowest readable rank's) stands for the run.
    first = traces[ranks[0]].epochs if ranks else {}
    for key, values in first.items():
        if key.startswith(("train_", "val_")):
            merged[key] = np.asarray(values[:n])
    return merged


def single_segment(traces: dict[int, Trace]) -> dict[str, np.ndarray]:
    """merge_epochs plus what a joined run has (segment index, training clock): one segment."""
    merged = merge_epochs(traces)
    merged["segment"] = np.zeros(len(merged["epoch"]), int)
    merged["t_eval_end_training"] = merged["t_eval_end"]
    return merged


@dataclass
class MergedRun:
    """One training run merged: its config.json, segments (one unless resumed) and lineage, the
    merged arrays ([rank, epoch] timings in seconds, NaN where a rank did not exist; per-epoch
    metrics; segment index), the position of each segment's first epoch in them, the problems by
    rank and of the lineage, and whether every rank of the run delivered a usable trace."""

    cfg: dict[str, Any]
    segments: list[Segment]
    chain: list[tuple[Segment, int | None]]
    arrays: dict[str, np.ndarray]
    first_epochs: list[int]
    rank_problems: dict[str, str]
    lineage_problems: list[str]
    complete: bool

    @property
    def resumed(self) -> bool:
        return len(self.segments) > 1

    @property
    def n(self) -> int:
        """Merged epochs."""
        return len(self.arrays["epoch"])

    @cached_property
    def epoch_time(self) -> np.ndarray:
        """[rank, epoch] training seconds; NaN: no such rank."""
        return self.arrays["t_train_end"] - self.arrays["t_start"]

    @cached_property
    def slowest(self) -> np.ndarray:
        """Per epoch, the slowest rank's training seconds."""
        return np.nanmax(self.epoch_time, axis=0) if self.n else np.zeros(0)

    @cached_property
    def fastest(self) -> np.ndarray:
        """Per epoch, the fastest rank's training seconds."""
        return np.nanmin(self.epoch_time, axis=0) if self.n else np.zeros(0)

    @cached_property
    def global_samples(self) -> np.ndarray:
        """Per epoch, the samples trained by all ranks together."""
        return np.nansum(self.arrays["samples"], axis=0) if self.n else np.zeros(0)

    def eval_end(self, position: int, clock: str = "t_eval_end") -> float:
        """Seconds at which merged epoch `position`'s evaluation ended on the slowest rank, on the
        MLPerf clock (t_eval_end) or the training clock (t_eval_end_training)."""
        return float(np.nanmax(self.arrays[clock][:, position]))

    def last_eval_end(self, clock: str = "t_eval_end") -> float | None:
        """Seconds at which the last evaluation any rank recorded ended (None: no epoch)."""
        return float(np.nanmax(self.arrays[clock])) if self.n else None

    def eval_end_by_rank(self, position: int | None = None) -> dict[int, float]:
        """Each rank's own reading (seconds from its run_start, MLPerf clock) of when merged epoch
        `position`'s evaluation ended, or (None) its last recorded one: ranks leave the barrier
        before run_start a few milliseconds apart, so their clocks differ by that much."""
        if not self.n:
            return {}
        ends = self.arrays["t_eval_end"]
        ends = np.nanmax(ends, axis=1) if position is None else ends[:, position]
        return {int(r): float(t) for r, t in zip(self.arrays["rank"], ends) if np.isfinite(t)}


def merge_run(cfg: dict[str, Any], traces: dict[int, Trace], problems: dict[int, str],
              segments: list[Segment] | None = None) -> MergedRun:
    """The run loaded by load_run (cfg, usable traces, problems by rank) merged; `segments`: a
    resumed run's segments (segments.load_segments), the first being cfg/traces."""
    segments = segments or [Segment(0, cfg, traces, problems)]
    chain = lineage(segments)
    if len(segments) > 1:
        arrays, issues, firsts = join(chain)
        rank_problems = {k: v for k, v in issues.items() if k.isdigit()}
        lineage_problems = [f"{k}: {v}" for k, v in issues.items() if not k.isdigit()]
        complete = not issues
    else:
        arrays, firsts = single_segment(traces), [0]
        rank_problems = {str(r): why for r, why in sorted(problems.items())}
        lineage_problems = []
        complete = not problems and len(traces) == int(cfg["dist"]["size"])
    return MergedRun(cfg, segments, chain, arrays, firsts, rank_problems, lineage_problems,
                     complete)
