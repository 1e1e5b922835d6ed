"""The report's convergence figures over seeds: per rank count N, time to quality and epochs to
target over every completed run (seeds and repeats), with the rules of ai500.spread (a run that
did not reach the target enters as +infinity, CV over reached runs only, olympic mean from 5
runs), and the comparison with the reference convergence point of its global batch
(ai500.references: the file as it is when the report is made, not when the runs were)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ai500 import references
from ai500.report.inputs import Run
from ai500.spread import spread


def _group_verdict(epochs: dict, completed_missing: list[int], ref: references.Reference
                   ) -> tuple[str, float | None, str]:
    """(verdict, the epochs judged, which figure) for one N's epochs-to-target spread: the
    olympic mean from 5 runs, else the median (references.RULE)."""
    which = "olympic mean" if epochs["olympic_mean_reached"] is not None else "median"
    key = "olympic_mean" if which == "olympic mean" else "median"
    value = epochs[key]
    if not epochs[f"{key}_reached"]:
        # not reached: slower only if every run that missed trained past the slowest reference
        return references.judge(None, ref, min(completed_missing)), None, which
    return references.judge(value, ref), value, which


def seed_points(runs: list[Run], path: Path | str | None = None) -> list[dict[str, Any]]:
    """One row per N: the seeds, reached k of m, the spreads of time to quality (s) and epochs to
    target, and the reference comparison (verdict over the seeds and per run)."""
    rows = []
    for n in sorted({r.ranks for r in runs if r.ranks}):
        done = [r for r in runs if r.ranks == n and r.ok and r.kind != "micro"]
        if not done:
            rows.append({"ranks": n, "runs": 0, "seeds": [], "time_to_quality_s": None,
                         "epochs_to_target": None, "global_batch_size": [], "reference": None})
            continue
        epochs = [references.epochs_to_target(r.summary) for r in done]
        row: dict[str, Any] = {
            "ranks": n, "runs": len(done),
            "seeds": sorted({r.summary.get("seed") for r in done}, key=str),
            "global_batch_size": sorted({r.summary.get("global_batch_size") for r in done},
                                        key=str),
            "time_to_quality_s": spread([r.summary.get("time_to_quality_s") if r.reached
                                         else None for r in done]),
            "epochs_to_target": spread(epochs),
        }
        row["reference"] = _reference(done, epochs, row["epochs_to_target"], path)
        rows.append(row)
    return rows


def _reference(done: list[Run], epochs: list[int | None], spread_: dict,
               path: Path | str | None) -> dict[str, Any]:
    """One N's reference comparison (one global batch at one N in a weak or strong sweep; a
    mixture is judged against the first run's and says so)."""
    first = done[0].summary
    found = references.lookup_reference(first.get("benchmark"), first.get("preset"),
                                        first.get("global_batch_size"), first.get("quality"),
                                        path)
    out: dict[str, Any] = {"file": found.file}
    ref = found.reference
    if ref is None:
        return {**out, "verdict": found.verdict, "message": found.why, "reference": None,
                "runs": {}}
    missing = [r.summary.get("epochs_completed") or 0 for r, e in zip(done, epochs) if e is None]
    verdict, value, which = _group_verdict(spread_, missing, ref)
    per_run = [references.judge(e, ref, r.summary.get("epochs_completed"))
               for r, e in zip(done, epochs)]
    return {**out, "verdict": verdict, "judged": which, "epochs_judged": value,
            "message": references.explain(verdict, value, ref), "reference": ref.figures(),
            "runs": {v: per_run.count(v) for v in references.VERDICTS if v in per_run}}
