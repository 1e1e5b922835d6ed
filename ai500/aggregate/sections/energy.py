"""A training run's energy section: summary_common.summarise_energy over the run and to the quality
point; a resumed run adds every segment's own run (each up to its last recorded evaluation, to
the quality point for the segment that reached it), never across metering methods."""

from __future__ import annotations

from typing import Any

from ai500.aggregate.merge import MergedRun
from ai500.aggregate.sections.quality import seconds_to_quality
from ai500.metrics import scoring
from ai500.summary_common import coverage_of, summarise_energy


def combine_energy(parts: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    """A resumed run's energy: its segments' summaries (`summarise_energy`, each over its own
    recorded run and, up to the quality point, its share) added up, never across methods."""
    methods = sorted({p["method"] for _, p in parts})
    result: dict[str, Any] = {
        "method": "+".join(methods), "coverage": coverage_of("+".join(methods)),
        "joules": None, "joules_to_quality": None,
        "average_power_w": None, "peak_node_power_w": None,
        "per_node": [{**node, "segment": k} for k, p in parts for node in p["per_node"]],
        "definition": parts[0][1]["definition"] + "; a resumed run adds its segments, each "
        "from its run_start to its last recorded evaluation (gaps between them unmetered)",
    }
    missing = [f"segment {k}: {p.get('reason', 'no total')}" for k, p in parts
               if p["joules"] is None]
    if missing:
        result["reason"] = "; ".join(missing)
    elif len(methods) > 1:
        result["reason"] = f"segments metered by different methods ({', '.join(methods)}): not added"
    else:
        result["joules"] = sum(p["joules"] for _, p in parts)
        to_quality = [p["joules_to_quality"] for _, p in parts]
        if all(j is not None for j in to_quality):
            result["joules_to_quality"] = sum(to_quality)
        result["peak_node_power_w"] = max(p["peak_node_power_w"] for _, p in parts)
    return result


def energy_section(run: MergedRun, reached_at: int | None) -> dict[str, Any]:
    """Joules of the run and to the quality point, average and peak node power (W)."""
    if not run.resumed:
        return summarise_energy(run.cfg, run.segments[0].traces, run.eval_end_by_rank(),
                                run.eval_end_by_rank(reached_at) if reached_at is not None
                                else None)
    # A resumed segment is cut at one instant for all its nodes (energy_end_s: inside every
    # node's readings, whatever the ranks' clock skew), and its quality point is held to it.
    parts = []
    for seg, own in seconds_to_quality(run, reached_at):
        end = dict.fromkeys(seg.traces, seg.energy_end_s)
        to_quality = dict.fromkeys(seg.traces, min(own, seg.energy_end_s)) if own is not None else None
        parts.append((seg.index, summarise_energy(seg.record, seg.traces, end, to_quality)))
    energy = combine_energy(parts)
    total_s = sum(seg.energy_end_s for seg in run.segments)
    if energy["joules"] is not None and total_s > 0:
        energy["average_power_w"] = energy["joules"] / total_s
    return energy


def samples_per_joule(run: MergedRun, joules: float | None) -> float | None:
    """Samples trained by all ranks per joule of the run (None without either)."""
    return scoring.samples_per_joule(float(run.global_samples.sum()) if run.n else None, joules)
