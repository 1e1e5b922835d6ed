"""A resumed run's segments joined into one sequence of epochs for its summary.

Segment 0 is the first run (config.json and traces at the top of the run directory), segment k
the k-th `--resume` (segment-kk/segment.json and traces, ai500/rundir.py), each with times from
its own run_start. The final model's lineage runs back from the last segment through the
segments each resumed from (a resume that failed before its first checkpoint is a dead branch:
its time and energy count, its epochs do not). From each lineage segment the joined epochs take
those up to the checkpoint the next one resumed from, so an epoch redone after a resume counts
once, as the later segment ran it.

Two clocks for every joined epoch:
- MLPerf clock (t_ready, t_start, t_train_end, t_eval_start, t_eval_end): wall-clock seconds from the first segment's
  run_start, through failures, lost work, gaps and re-initialisation (the hosts' clocks are
  assumed to agree);
- training clock (t_eval_end_training): the checkpoint's elapsed_s that the segment resumed from
  (its predecessors' time from run_start to that checkpoint, initialisation, gaps and work lost
  after the checkpoint excluded) plus the segment's own time from its run_start.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ai500 import rundir
from ai500.aggregate.load import load_run
from ai500.errors import DataError
from ai500.trace import Trace

TIMES = ("t_ready", "t_start", "t_train_end", "t_eval_start", "t_eval_end")


@dataclass
class Segment:
    """One uninterrupted part of a run: its record (config.json or segment.json), usable traces
    by rank, and why each other rank has none (as load_run reports them)."""

    index: int
    record: dict[str, Any]
    traces: dict[int, Trace]
    problems: dict[int, str]

    @property
    def size(self) -> int:
        return int(self.record["dist"]["size"])

    @property
    def resumed_from(self) -> dict[str, Any] | None:
        return self.record.get("resumed_from")

    @property
    def wall_start(self) -> float | None:
        """Unix seconds at this segment's run_start (its lowest usable rank's anchor)."""
        return float(self.traces[min(self.traces)].attrs["wall_start"]) if self.traces else None

    @property
    def run_s(self) -> float:
        """Seconds from run_start to the last evaluation any rank recorded (0 without epochs)."""
        ends = [float(np.max(t.epochs["t_eval_end"])) for t in self.traces.values()
                if len(t.epochs.get("t_eval_end", []))]
        return max(ends, default=0.0)

    @property
    def energy_end_s(self) -> float:
        """Seconds from run_start up to which the segment's energy can be summed: run_s, or the
        earliest node meter's last reading if sooner (a killed segment's meters were last
        copied into its traces at the flush before it died)."""
        last = [float(np.max(t.groups["energy"]["t"])) for t in self.traces.values()
                if len(t.groups.get("energy", {}).get("t", []))]
        return min([self.run_s, *last])

    def epochs(self, rank: int) -> np.ndarray:
        trace = self.traces.get(rank)
        return np.asarray(trace.epochs.get("epoch", [])) if trace else np.zeros(0)


def load_segments(run_dir: Path, first: Segment) -> list[Segment]:
    """`first` (segment 0, already loaded) and every resumed segment of `run_dir`, in order,
    each read by load_run (a segment may hold no usable trace). A segment's record must name
    the run and say where it resumed from."""
    segments = [first]
    for index in rundir.segment_indices(run_dir):
        path = rundir.segment_dir(run_dir, index)
        record, traces, problems = load_run(path, rundir.SEGMENT_RECORD, require_traces=False)
        source = path / rundir.SEGMENT_RECORD
        if record.get("run_id") != first.record["run_id"]:
            raise DataError(f"{source}: belongs to run {record.get('run_id')}, not "
                            f"{first.record['run_id']}")
        origin = record.get("resumed_from")
        if not (isinstance(origin, dict) and isinstance(origin.get("segment"), int)
                and isinstance(origin.get("epoch"), int)
                and isinstance(origin.get("elapsed_s"), (int, float))
                and 0 <= origin["segment"] < index):
            raise DataError(f"{source}: resumed_from is {origin!r}, expected the segment, epoch "
                            "and elapsed_s of an earlier segment's checkpoint")
        segments.append(Segment(index, record, traces, problems))
    return segments


def lineage(segments: list[Segment]) -> list[tuple[Segment, int | None]]:
    """The segments that made the final model, first to last, each with the last epoch it
    contributes (the epoch of the checkpoint the next one resumed from; None: all of them)."""
    by_index = {s.index: s for s in segments}
    chain = [segments[-1]]
    while chain[-1].resumed_from is not None:
        chain.append(by_index[chain[-1].resumed_from["segment"]])
    chain.reverse()
    return [(seg, None if nxt is None else int(nxt.resumed_from["epoch"]))
            for seg, nxt in zip(chain, [*chain[1:], None])]


def join(chain: list[tuple[Segment, int | None]]
         ) -> tuple[dict[str, np.ndarray], dict[str, str], list[int]]:
    """The lineage's epochs as one run: merged arrays ([rank, epoch] timings on the MLPerf clock,
    NaN where a rank did not exist in that segment; t_eval_end_training on the training clock;
    per-epoch metrics and segment index), the problems that spoil the run (keyed by rank, with
    the segment for earlier ones), and the positions of each segment's first epoch."""
    ranks = max(seg.size for seg, _ in chain)
    origin = chain[0][0].wall_start or 0.0
    problems: dict[str, str] = {}
    parts: list[dict[str, np.ndarray]] = []
    first_epochs: list[int] = []
    expected = 0  # the next epoch the lineage needs
    for seg, until in chain:
        last = until is None
        if last:
            problems.update({str(r): why for r, why in sorted(seg.problems.items())})
        else:  # an interrupted segment: unfinished traces are expected, missing ones are not
            problems.update({f"{r} (segment {seg.index})": why
                             for r, why in sorted(seg.problems.items()) if r not in seg.traces})
        if not seg.traces:
            continue
        offset_wall = (seg.wall_start or origin) - origin
        offset_train = float(seg.resumed_from["elapsed_s"]) if seg.resumed_from else 0.0
        # Epochs every usable rank of the segment recorded, from the one the lineage needs.
        common = min((len(seg.epochs(r)) for r in seg.traces), default=0)
        numbers = seg.epochs(min(seg.traces))[:common].astype(int)
        keep = (numbers >= expected) & (numbers <= (np.inf if last else until))
        if not last and not (keep.any() and numbers[keep][-1] == until):
            problems[f"segment {seg.index}"] = (f"its traces end before epoch {until}, the "
                                                "checkpoint the next segment resumed from")
        if not keep.any():
            continue
        idx = np.nonzero(keep)[0]
        if numbers[idx[0]] != expected:
            problems[f"segment {seg.index}"] = (f"starts at epoch {numbers[idx[0]]}, but the "
                                                f"lineage needs epoch {expected} next")
        part: dict[str, np.ndarray] = {"epoch": numbers[idx],
                                       "segment": np.full(len(idx), seg.index)}
        columns = seg.traces[min(seg.traces)].epochs
        for key in TIMES + ("samples",):
            grid = np.full((ranks, len(idx)), np.nan)
            for r, trace in seg.traces.items():
                grid[r] = np.asarray(trace.epochs[key], dtype=float)[idx]
            part[key] = grid + (offset_wall if key.startswith("t_") else 0.0)
        part["t_eval_end_training"] = part["t_eval_end"] - offset_wall + offset_train
        for key, values in columns.items():
            if key.startswith(("train_", "val_")):
                part[key] = np.asarray(values, dtype=float)[idx]
        first_epochs.append(sum(len(p["epoch"]) for p in parts))
        parts.append(part)
        expected = int(numbers[idx[-1]]) + 1
    merged: dict[str, np.ndarray] = {"rank": np.arange(ranks)}
    for key in dict.fromkeys(k for p in parts for k in p):
        # Only per-epoch metrics can be missing from a part (1-D): NaN there.
        merged[key] = np.concatenate([p.get(key, np.full(len(p["epoch"]), np.nan))
                                      for p in parts], axis=-1)
    if not parts:
        merged.update({"epoch": np.zeros(0, int), "segment": np.zeros(0, int),
                       **{k: np.zeros((ranks, 0)) for k in (*TIMES, "samples",
                                                            "t_eval_end_training")}})
    return merged, problems, first_epochs


def describe(segments: list[Segment], chain: list[tuple[Segment, int | None]]) -> list[dict]:
    """One JSON-ready line per segment for the summary."""
    used = {seg.index: until for seg, until in chain}
    rows = []
    for i, seg in enumerate(segments):
        statuses = sorted({str(t.attrs.get("status")) for t in seg.traces.values()})
        epochs = seg.epochs(min(seg.traces)) if seg.traces else np.zeros(0)
        origin = seg.resumed_from or {}
        nxt = next((s for s in segments[i + 1:] if s.resumed_from
                    and s.resumed_from["segment"] == seg.index and s.index in used), None)
        start = float(origin.get("elapsed_s", 0.0))
        rows.append({
            "segment": seg.index,
            "ranks": seg.size,
            "nodes": seg.record["dist"].get("nodes"),
            "resumed_from_segment": origin.get("segment"),
            "resumed_from_epoch": origin.get("epoch"),
            "epochs_recorded": [int(epochs[0]), int(epochs[-1])] if len(epochs) else [],
            "in_lineage": seg.index in used,
            "status": "+".join(statuses) if statuses else "no traces",
            "ranks_without_ok_trace": len(seg.problems),
            "wall_start": seg.wall_start,
            "init_s": max((float(t.attrs.get("init_seconds", np.nan)) for t in seg.traces.values()),
                          default=None),
            "run_s": seg.run_s,
            "training_s": (float(nxt.resumed_from["elapsed_s"]) - start if nxt is not None
                           else seg.run_s if seg.index in used else None),
        })
    return rows
