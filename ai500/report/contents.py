"""What a report says, as one JSON-ready dict: the inputs read and checked, the per-N points and
scaling figures, the definitions, and every run. Runs that failed or did not reach the quality
target are listed, never dropped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ai500 import references, spread
from ai500.report.inputs import check_comparable, check_distinct, lookup, read_source
from ai500.report.points import micro_points, training_points
from ai500.report.seeds import seed_points

REPORT_SCHEMA_VERSION = 1


def build(paths: list[Path], mode: str | None = None,
          references_file: Path | None = None) -> dict:
    """Everything the report says, as a JSON-ready dict (no files written); `references_file`:
    the reference convergence points to compare with (default: ai500.references.references_path)."""
    sources = [read_source(Path(p)) for p in paths]
    check_distinct(sources)
    benchmark, preset, mode = check_comparable(sources, mode)
    runs = [r for s in sources for r in s.runs]
    kinds = {r.kind for r in runs if r.kind}
    kind = "micro" if "micro" in kinds else "training"
    first = next((r.summary for r in runs if r.ok), None) or {}
    over = sorted({r.ranks for r in runs if r.oversubscribed})
    cores = sorted({r.cores for r in runs if r.cores})
    report: dict[str, Any] = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "benchmark": benchmark, "preset": preset, "mode": mode, "kind": kind,
        "sources": [s.path for s in sources],
        "batch_rules": sorted({lookup(s.manifest, "batch_rule", "rule") for s in sources
                               if lookup(s.manifest, "batch_rule", "rule")}),
        "oversubscribed": {"ranks": over, "cores": cores,
                           "known": any(r.oversubscribed is not None for r in runs)},
        "runs": [{"name": r.name, "source": r.source, "run_dir": str(r.path), "ranks": r.ranks,
                  "repeat": r.repeat, "status": r.status, "reached": r.reached if r.ok else None,
                  "problem": r.problem, "oversubscribed": r.oversubscribed,
                  "time_to_quality_s": (r.summary or {}).get("time_to_quality_s"),
                  "throughput": lookup(r.summary, "throughput", "samples_per_s"),
                  "nodes": r.nodes, "system": r.system} for r in runs],
        # Merged runs are never refused over their systems, but the report says when they differ.
        "systems": sorted({r.system for r in runs}),
        "failed": [{"name": r.name, "ranks": r.ranks, "run_dir": str(r.path), "problem": r.problem}
                   for r in runs if not r.ok],
        "damaged": [r.damaged for r in runs if r.damaged],
        "not_reached": [{"name": r.name, "ranks": r.ranks, "run_dir": str(r.path),
                         "best": lookup(r.summary, "quality", "best"),
                         "target": lookup(r.summary, "quality", "target")}
                        for r in runs if r.ok and r.kind != "micro" and not r.reached],
        "definitions": {
            "throughput": lookup(first, "throughput", "method"),
            "time_to_quality": first.get("time_to_quality_definition"),
            "flops": lookup(first, "flops", "method"),
            "load_imbalance": lookup(first, "load_imbalance", "definition"),
            "repeats": "median [min–max] over repeats; from 5 repeats also the olympic mean "
            "(best and worst dropped); scaling figures use the medians",
        },
        "quality": {k: lookup(first, "quality", k)
                    for k in ("metric", "target", "higher_is_better")},
    }
    if kind == "micro":
        rows, kernels = micro_points(runs)
        report.update(points=rows, kernels=kernels, scaling={"baseline_ranks": None, "basis": None})
    else:
        rows, info = training_points(runs, mode)
        report.update(points=rows, scaling=info, seeds=seed_points(runs, references_file))
        report["definitions"].update(seeds=spread.RULES, reference=references.RULE)
        report["definitions"]["scaling"] = (
            "weak scaling (per-rank batch fixed): efficiency E(N) = X(N) / (N·X(1)), X = throughput"
            if mode == "weak" else
            "strong scaling (global batch fixed): speedup S(N) = T(1)/T(N), efficiency S(N)/N, "
            f"T = {info['basis']}")
    report["_runs"] = runs  # not serialised
    return report
