"""Cost to quality (DESIGN §5): nodes × time to quality (hours) × the price per node-hour of the
system config; a resumed run adds each segment's nodes × its own run time to the quality point."""

from __future__ import annotations

from typing import Any

from ai500.aggregate.merge import MergedRun
from ai500.aggregate.sections.quality import seconds_to_quality
from ai500.metrics import scoring


def node_hours_to_quality(run: MergedRun, reached_at: int | None) -> float | None:
    """Node-hours spent up to the quality point (None: not reached)."""
    if reached_at is None:
        return None
    return sum(scoring.node_hours(int(seg.record["dist"]["nodes"]), seconds)
               for seg, seconds in seconds_to_quality(run, reached_at) if seconds is not None)


def cost_section(run: MergedRun, reached_at: int | None) -> dict[str, Any]:
    """Cost to quality, or null with the reason (no price set: the default, since a made-up price
    would read as a real cost; or no time to quality)."""
    cost = run.cfg["config"].get("system", {}).get("cost", {})
    node_hours = node_hours_to_quality(run, reached_at)
    price = cost.get("price_per_node_hour")
    value = scoring.cost_to_quality(node_hours, price)
    reason = (None if value is not None else
              "no price_per_node_hour set in system.yaml (a site sets one with --system FILE.yaml)"
              if price is None else "the quality target was not reached")
    return {
        "node_hours_to_quality": node_hours,
        "price_per_node_hour": price,
        "currency": cost.get("currency"),
        "cost_to_quality": value,
        "reason": reason,
        "definition": "nodes x time to quality (hours) x price per node-hour (system config)"
        + ("; a resumed run adds each segment's nodes x its run time up to the quality "
           "point (gaps between segments excluded)" if run.resumed else ""),
    }
