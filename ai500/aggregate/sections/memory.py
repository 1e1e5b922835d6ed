"""Memory per rank (issue 17): how each rank held its data shard and the most memory it used.

stage: the trace attribute `stage` (memory: the shard in memory; stream: read from the files
batch by batch; ai500.data.stream) and `stage_reason` (the --stage asked for, or auto's figures);
absent for workloads that record none (micro benchmarks, workloads not yet streaming).
peak RSS: the trace attribute `peak_rss_bytes`, the rank's peak resident set size up to its
last trace flush (getrusage ru_maxrss, bytes); of the last segment on a resumed run.
"""

from __future__ import annotations

from typing import Any

from ai500.aggregate.merge import MergedRun

MEMORY_DEFINITION = (
    "stage: how each rank held its data shard (memory, or stream: read from the files batch by "
    "batch), as the rank recorded it; peak_rss_bytes: each rank's peak resident set size up to "
    "its last trace flush (getrusage ru_maxrss, bytes), null where the trace has none")


def memory_section(run: MergedRun) -> dict[str, Any]:
    """Ranks by stage, rank 0's reason, and the peak RSS per rank (bytes) and its maximum, from the
    traces of the run's last segment."""
    segment = run.segments[-1]
    stages: dict[str, list[int]] = {}
    peaks: list[int | None] = []
    for rank in range(segment.size):
        attrs = segment.traces[rank].attrs if rank in segment.traces else {}
        if isinstance(attrs.get("stage"), str):
            stages.setdefault(attrs["stage"], []).append(rank)
        peak = attrs.get("peak_rss_bytes")
        peaks.append(int(peak) if type(peak) in (int, float) and peak >= 0 else None)
    rank0 = segment.traces[0].attrs if 0 in segment.traces else {}
    known = [p for p in peaks if p is not None]
    return {
        "stage": stages or None,
        "stage_reason_rank0": rank0.get("stage_reason"),
        "peak_rss_bytes": peaks,
        "peak_rss_bytes_max": max(known) if known else None,
        "peak_rss_rank_max": peaks.index(max(known)) if known else None,
        "definition": MEMORY_DEFINITION,
    }
