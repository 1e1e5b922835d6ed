"""Checkpoints as rank 0 recorded them: their write time per epoch (for the time accounting) and
the summary's checkpoint section."""

from __future__ import annotations

from typing import Any

import numpy as np

from ai500.aggregate.merge import MergedRun


def checkpoint_seconds(run: MergedRun) -> dict[tuple[int, int], float]:
    """Rank 0's checkpoint write time (seconds) by (segment, epoch)."""
    seconds: dict[tuple[int, int], float] = {}
    for seg in run.segments:
        rows = seg.traces[0].groups.get("checkpoints") if 0 in seg.traces else None
        if rows:
            for epoch, t0, t1 in zip(rows["epoch"], rows["t_start"], rows["t_end"]):
                seconds[(seg.index, int(epoch))] = float(t1 - t0)
    return seconds


def checkpoint_stats(run: MergedRun) -> dict[str, Any] | None:
    """What rank 0 recorded about the checkpoints it wrote (none: None)."""
    rows = [t.groups["checkpoints"] for seg in run.segments for r, t in seg.traces.items()
            if r == 0 and "checkpoints" in t.groups]
    if not rows:
        return None
    seconds = np.concatenate([c["t_end"] - c["t_start"] for c in rows])
    return {"written": len(seconds), "bytes_last": float(rows[-1]["bytes"][-1]),
            "write_s_mean": float(seconds.mean()), "write_s_max": float(seconds.max()),
            "definition": "rank 0's wall time from the start of a checkpoint to its manifest "
            "(every rank's share staged, synced, renamed into place; barriers included)"}
