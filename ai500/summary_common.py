"""What every run summary shares, training (ai500/aggregate/) and micro benchmark
(ai500/micro/summary.py) alike: the schema version, numbers for JSON and for tables, the energy
section with its table line, and the table lines naming ranks without a usable trace.

Energy (DESIGN §5): per node, not per rank; one rank per node copies its node's meters into its
trace, and the run's energy is the sum over nodes of each node's joules from run_start.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ai500.trace import Trace

SUMMARY_SCHEMA_VERSION = 1


def finite(value: float) -> float | None:
    """`value` as a float, or None where it is NaN or infinite (JSON holds neither)."""
    return float(value) if np.isfinite(value) else None


def fmt(value: float | None, unit: str = "", digits: int = 4) -> str:
    """A number for a summary table: `digits` significant digits, 1e6 and above in scientific
    notation, None as n/a."""
    if value is None:
        return "n/a"
    if abs(value) >= 1e6:
        return f"{value:.3e}{unit}"
    return f"{value:.{digits}g}{unit}"


def summarise_energy(cfg: dict[str, Any], traces: dict[int, Trace], t_end: Mapping[int, float],
                     t_quality: Mapping[int, float] | None = None) -> dict[str, Any]:
    """Energy of the run (joules from run_start to its end) and to the quality point, summed over
    nodes from each node's metering rank. `t_end` and `t_quality` give, by rank, that rank's own
    reading of the two instants (seconds from its run_start): every rank takes run_start as it
    leaves a barrier, so the ranks' clocks differ by the barrier's exit skew (milliseconds), and
    a node's meter, read on its metering rank's clock, may stop before the instant as another
    rank reads it. Nodes metered by different methods (a measured counter on one, the estimate
    on another) are never added: the total is then None. `coverage` says what the joules cover
    (cpu, gpu, cpu+gpu, estimated; ai500.metrics.energy.coverage)."""
    from ai500.metrics.energy import EnergySamples, energy_between, peak_power

    result: dict[str, Any] = {
        "method": "unavailable", "coverage": "none", "joules": None, "joules_to_quality": None,
        "average_power_w": None, "peak_node_power_w": None, "per_node": [],
        "definition": "node meters sampled at >= 1 Hz by one rank per node, integrated from "
        "run_start to the end, both on that rank's clock; 'estimated' = CPU seconds of the "
        "node's ranks x watts per core (ai500/configs/system.yaml), not a measurement",
    }
    energy_cfg = cfg["config"].get("system", {}).get("energy", {})
    if not energy_cfg.get("enabled", False):
        result["reason"] = "energy metering disabled"
        return result
    metered = [t for t in traces.values() if t.groups.get("energy", {}).get("t") is not None]
    if not metered:
        result["reason"] = "no trace holds energy samples"
        return result
    if not t_end:
        result["reason"] = "no rank recorded an end of the run"
        return result
    for trace in metered:
        rank = trace.attrs.get("rank")
        node = {"host": trace.attrs.get("host"), "rank": rank,
                "method": "unreadable", "coverage": "none",
                "meters": trace.attrs.get("energy_meters")}
        try:
            samples = EnergySamples.from_columns(trace.groups["energy"])
            node["method"], node["coverage"] = samples.method, samples.coverage
            if not (np.isfinite(samples.t).all() and np.isfinite(samples.joules).all()):
                raise ValueError("energy samples hold non-finite values")
            if rank not in t_end or (t_quality is not None and rank not in t_quality):
                raise ValueError(f"rank {rank} recorded no end of the run or of its quality point")
            node["joules"] = energy_between(samples, 0.0, t_end[rank])
            node["joules_to_quality"] = (energy_between(samples, 0.0, t_quality[rank])
                                         if t_quality is not None else None)
            node["peak_power_w"] = peak_power(samples)
        except ValueError as exc:
            node["joules"] = None
            sampler_error = trace.attrs.get("energy_error")
            node["reason"] = str(exc) + (f" (the sampler stopped: {sampler_error})"
                                         if sampler_error else "")
        result["per_node"].append(node)
    nodes = cfg["dist"]["nodes"]
    methods = sorted({n["method"] for n in result["per_node"]})
    complete = [n for n in result["per_node"] if n["joules"] is not None]
    result["method"] = "+".join(methods)
    result["coverage"] = coverage_of(result["method"])
    if len(complete) < nodes:
        why = [f"{n['host']}: {n['reason']}" for n in result["per_node"] if n.get("reason")]
        result["reason"] = "; ".join([f"energy covers {len(complete)} of {nodes} node(s)", *why])
    elif len(methods) > 1:
        result["reason"] = f"nodes metered by different methods ({', '.join(methods)}): not added"
    else:
        result["joules"] = sum(n["joules"] for n in complete)
        if t_quality is not None:
            result["joules_to_quality"] = sum(n["joules_to_quality"] for n in complete)
        run_s = max(t_end.values())
        result["average_power_w"] = result["joules"] / run_s if run_s > 0 else None
        result["peak_node_power_w"] = max(n["peak_power_w"] for n in complete)
    return result


def run_precision(record: dict[str, Any]) -> dict[str, Any]:
    """A run's precision from its config.json record: precision (fp32, bf16, fp16), xla, and
    whether TF32 was on (GPU runs; None on a CPU). Runs recorded before --precision were fp32."""
    cfg = record.get("config") or {}
    return {"precision": cfg.get("precision") or "fp32", "xla": bool(cfg.get("xla", False)),
            "tf32": (record.get("precision") or {}).get("tf32")}


def coverage_of(method: str) -> str:
    """What energy of a method label ("rapl", "nvml+rapl", ...) covers: cpu, gpu, cpu+gpu,
    estimated or none."""
    from ai500.metrics.energy import coverage

    return coverage(method.split("+"))


def energy_line(e: dict) -> str:
    """One table line for an energy summary, always naming its method (and what it covers where
    the method does not say it: cpu, gpu or cpu+gpu)."""
    covers = e.get("coverage") or coverage_of(e["method"])
    label = e["method"] if covers in (e["method"], "none") else f"{e['method']}, covers {covers}"
    if e["joules"] is None:
        return f"  energy         n/a [{label}] ({e.get('reason', '')})"
    return (f"  energy         {fmt(e['joules'], ' J')} [{label}], to quality "
            f"{fmt(e['joules_to_quality'], ' J')}, average {fmt(e['average_power_w'], ' W')}, "
            f"peak node {fmt(e['peak_node_power_w'], ' W')}")


def rank_problem_lines(s: dict) -> list[str]:
    """The table's closing lines: each rank without a usable trace, and why."""
    return [f"  rank {rank}: {why}" for rank, why in s["missing_or_failed_ranks"].items()]


def system_line(system: dict | None) -> str:
    """The table's line naming the system (from system.json), or why it cannot."""
    system = system or {"unavailable": "no system section"}
    if "platform" not in system:
        return f"  system         n/a ({system.get('unavailable')})"
    return f"  system         {system['platform']} [system.json; {system['launcher']}]"
