"""Derived figures of merit: Valid FLOPS, cost to quality, samples per joule, FLOPS per watt.

Pure functions. Where an input is unavailable (None), the figure is unavailable (None), never 0;
impossible inputs (a negative price, zero energy) raise ValueError.
"""

from __future__ import annotations


def valid_flops(
    flops_per_s: float,
    achieved_quality: float,
    target_quality: float,
    exponent: float,
    higher_is_better: bool = True,
) -> float:
    """HPC AI500 v2 Valid FLOPS (FLOP/s): FLOPS x (achieved / target) ** exponent.

    The ratio rewards beating the target (> 1) and penalises missing it (< 1); `exponent` (n, from the
    benchmark's config; 5 for image classification in HPC AI500 v2) sets how hard. For a quality
    metric where lower is better (a loss, an error), pass higher_is_better=False: the ratio becomes
    target / achieved, so missing the target still gives a ratio below 1.
    """
    if not flops_per_s >= 0:
        raise ValueError(f"FLOPS must be >= 0, got {flops_per_s}")
    if not (achieved_quality > 0 and target_quality > 0):
        raise ValueError(f"qualities must be > 0, got achieved {achieved_quality}, target {target_quality}")
    if not exponent >= 0:
        raise ValueError(f"Valid FLOPS exponent must be >= 0, got {exponent}")
    ratio = achieved_quality / target_quality if higher_is_better else target_quality / achieved_quality
    return flops_per_s * ratio**exponent


def node_hours(nodes: int, seconds: float) -> float:
    """Node-hours for `nodes` nodes held for `seconds` seconds."""
    if not (nodes > 0 and seconds >= 0):
        raise ValueError(f"need nodes > 0 and seconds >= 0, got {nodes}, {seconds}")
    return nodes * seconds / 3600


def cost_to_quality(node_hours: float | None, price_per_node_hour: float | None) -> float | None:
    """Cost in the price's currency (e.g. USD when the price is USD per node-hour) of `node_hours`
    node-hours, taken at the time-to-quality point."""
    if node_hours is None or price_per_node_hour is None:
        return None
    if not (node_hours >= 0 and price_per_node_hour >= 0):
        raise ValueError(f"need node_hours >= 0 and price >= 0, got {node_hours}, {price_per_node_hour}")
    return node_hours * price_per_node_hour


def samples_per_joule(samples: float | None, joules: float | None) -> float | None:
    """Training samples processed per joule (samples / J) over the same interval."""
    if samples is None or joules is None:
        return None
    if not joules > 0:
        raise ValueError(f"energy must be > 0 J, got {joules}")
    return samples / joules


def flops_per_watt(flops_per_s: float | None, watts: float | None) -> float | None:
    """FLOP/s per watt of average power, i.e. FLOP per joule (divide by 1e9 for GFLOPS/W). Pass Valid
    FLOPS for Valid FLOPS per watt."""
    if flops_per_s is None or watts is None:
        return None
    if not watts > 0:
        raise ValueError(f"power must be > 0 W, got {watts}")
    return flops_per_s / watts
