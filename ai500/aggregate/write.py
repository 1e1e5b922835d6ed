"""A run directory's summary written: its traces loaded and summarised (a training run by
summary.py, a micro benchmark by ai500/micro/summary.py), summary.json and summary.h5 replaced
atomically, then mllog.txt."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from ai500.aggregate.load import load_run, trace_files
from ai500.aggregate.merge import merge_run
from ai500.aggregate.segments import Segment, load_segments
from ai500.aggregate.summary import summarise_run
from ai500.errors import DataError
from ai500.hdf5 import open_h5
from ai500.micro import summary as micro_summary
from ai500.mllog import write_mllog
from ai500.summary_common import SUMMARY_SCHEMA_VERSION
from ai500.system import fingerprint, platform_name, read_system


def system_section(run_dir: Path) -> dict:
    """What the summary says of the system the run ran on (its system.json, ai500/system.py):
    the platform in one line, the fingerprint reports compare, nodes described and the launcher."""
    described = read_system(run_dir)
    if described is None:
        return {"unavailable": "no readable system.json in the run directory (runs before "
                               "ai500 wrote one have none)"}
    job = described.get("job") or {}
    return {"platform": platform_name(described), "fingerprint": fingerprint(described),
            "nodes_described": len(described["nodes"]), "launcher": job.get("launcher"),
            "source": "system.json"}


def write_summary(run_dir: Path, summary: dict, merged: dict[str, np.ndarray]) -> None:
    """summary.json and summary.h5 (the JSON as an attribute plus the merged per-rank arrays,
    in group `epochs` for training runs, `kernels` for micro benchmarks)."""
    run_dir = Path(run_dir)
    text = json.dumps(summary, indent=2) + "\n"
    for name in ("summary.json", "summary.h5"):
        tmp = run_dir / (name + ".tmp")
        if name.endswith(".json"):
            tmp.write_text(text)
        else:
            with open_h5(tmp, "w") as f:
                f.attrs["summary"] = text
                f.attrs["schema_version"] = SUMMARY_SCHEMA_VERSION
                group = f.create_group("kernels" if summary.get("kind") == "micro" else "epochs")
                for key, values in merged.items():
                    values = np.asarray(values)
                    if values.dtype == object:
                        group.create_dataset(key, data=values.astype(str).tolist(),
                                             dtype=h5py.string_dtype())
                    else:
                        group.create_dataset(key, data=values)
        os.replace(tmp, run_dir / name)


def _summary_status(run_dir: Path) -> str | None:
    """The status of the summary.json already in run_dir, or None (none, or unreadable)."""
    try:
        status = json.loads((Path(run_dir) / "summary.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None
    return status if isinstance(status, str) else None


def describe_failure(run_dir: Path, summary: dict) -> str:
    """Why a summary says failed, in one line: the lowest rank's problem (which names its file,
    or is said of the run directory) and how many ranks have one."""
    problems = summary["missing_or_failed_ranks"]
    if not problems:
        if summary.get("kind") == "micro":
            return (f"{run_dir}: {summary['kernels_completed']} of {summary['kernels_expected']} "
                    "kernel rows completed")
        return f"{run_dir}: {summary['epochs_completed']} epochs completed"
    first = min(problems, key=int)
    why = problems[first]
    line = why if why.startswith(str(run_dir)) else f"{run_dir}: rank {first}: {why}"
    return line + (f" (and {len(problems) - 1} more rank(s))" if len(problems) > 1 else "")


def aggregate(run_dir: Path) -> dict:
    """Merge a run directory's traces and write its summary files atomically; returns the summary.

    Never replaces a summary of status ok with a failed one (a trace damaged or removed since):
    that raises DataError and leaves summary.json, summary.h5 and mllog.txt as they are."""
    run_dir = Path(run_dir)
    cfg, traces, problems = load_run(run_dir)
    if cfg.get("kind") == "micro":
        summary = micro_summary.summarise(cfg, traces, problems)
        arrays = micro_summary.merged_arrays(traces)
    else:
        run = merge_run(cfg, traces, problems,
                        load_segments(run_dir, Segment(0, cfg, traces, problems)))
        summary, arrays = summarise_run(run), run.arrays
    summary["system"] = system_section(run_dir)
    if summary["status"] != "ok" and _summary_status(run_dir) == "ok":
        raise DataError(f"{describe_failure(run_dir, summary)}; summary.json (status ok) kept, "
                        "not replaced by a failed one")
    write_summary(run_dir, summary, arrays)
    # mllog.txt comes from the lowest rank's trace that reads; only where that is a usable one.
    if min(trace_files(run_dir)) in traces:
        # A resumed run's epochs come from several segments: rank 0's row of the joined arrays.
        epochs = ({k: v[0] if np.ndim(v) == 2 else v for k, v in arrays.items()}
                  if summary.get("resumed") else None)
        write_mllog(run_dir, epochs=epochs)
    return summary
