"""A training run's summary: the sections of the merged run assembled, in summary.json's key order."""

from __future__ import annotations

from typing import Any

from ai500.aggregate.merge import MergedRun, merge_run
from ai500.aggregate.sections.accounting import epoch_accounting, run_times, time_accounting
from ai500.aggregate.sections.checkpoints import checkpoint_stats
from ai500.aggregate.sections.cost import cost_section
from ai500.aggregate.sections.energy import energy_section, samples_per_joule
from ai500.aggregate.sections.epochs import epoch_rows
from ai500.aggregate.sections.flops import flops_section
from ai500.aggregate.sections.memory import memory_section
from ai500.aggregate.sections.quality import (
    mlperf_validity,
    quality_point,
    quality_section,
    time_to_quality,
)
from ai500.aggregate.sections.reference import reference_section
from ai500.aggregate.sections.throughput import load_imbalance, throughput_section
from ai500.aggregate.segments import Segment, describe
from ai500.summary_common import SUMMARY_SCHEMA_VERSION, run_precision
from ai500.trace import Trace


def summarise(cfg: dict[str, Any], traces: dict[int, Trace], problems: dict[int, str],
              segments: list[Segment] | None = None) -> dict:
    """The run summary as a JSON-ready dict (the definitions: each section's module).
    `segments`: a resumed run's segments (segments.py), the first being cfg/traces."""
    return summarise_run(merge_run(cfg, traces, problems, segments))


def summarise_run(run: MergedRun) -> dict:
    """The summary of a merged run (see summarise)."""
    run_cfg, dist = run.cfg["config"], run.cfg["dist"]
    size = int(dist["size"])
    reached_at = quality_point(run)
    quality = quality_section(run, reached_at)
    throughput = throughput_section(run)
    energy = energy_section(run, reached_at)
    per_epoch = epoch_accounting(run)
    summary = {
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "status": "ok" if run.complete and run.n > 0 else "failed",
        "kind": "training",
        "run_id": run.cfg["run_id"],
        "benchmark": run_cfg["benchmark"],
        "preset": run_cfg["preset"],
        "ranks": size,
        "nodes": dist["nodes"],
        "hosts": dist["hosts"],
        "seed": run_cfg["seed"],
        "global_batch_size": run_cfg["train"]["batch_size"] * size,
        **run_precision(run.cfg),
        "versions": run.cfg.get("versions", {}),
        "command": run.cfg.get("command"),
        "epochs_completed": run.n,
        "missing_or_failed_ranks": run.rank_problems,
        "lineage_problems": run.lineage_problems,
        "resumed": run.resumed,
        "segments": describe(run.segments, run.chain),
        **mlperf_validity(run),
        "quality": quality,
        **time_to_quality(run, reached_at),
        **run_times(run),
        "throughput": throughput,
        "flops": flops_section(run, throughput["samples_per_s"], quality["best"],
                               energy["average_power_w"]),
        "energy": energy,
        "samples_per_joule": samples_per_joule(run, energy["joules"]),
        "cost": cost_section(run, reached_at),
        "load_imbalance": load_imbalance(run),
        "memory": memory_section(run),
        "checkpoints": checkpoint_stats(run),
        "time_accounting": time_accounting(run, per_epoch, reached_at),
        "epochs": epoch_rows(run, per_epoch),
    }
    summary["reference"] = reference_section(summary)
    return summary
