"""Reading and checking a report's inputs: sweep directories (launch/sweep.py's manifest.json),
run directories (ai500.aggregate's summary.json, the run's config.json, slurm_energy.json) and the
rules that refuse to merge them.

The report refuses (one line, exit status 2) to merge runs that are not comparable: a different
benchmark, preset or scaling mode, or a batch that breaks the mode's rule (weak: one per-rank batch;
strong: one global batch); and it refuses to count one run twice.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ai500.system import fingerprint, read_system

SUMMARY_SCHEMA_VERSION = 1  # ai500.aggregate's and ai500.micro.summary's
MANIFEST_SCHEMA_VERSION = 1  # launch/sweep.py's


class ReportError(Exception):
    """Inputs that cannot make one report; printed as one line."""


@dataclass
class Run:
    """One run as the report sees it: where it came from, its summary (if any) and its fate."""

    name: str
    source: str
    path: Path
    ranks: int | None
    repeat: int | None
    status: str  # "ok" or "failed"
    problem: str | None
    summary: dict | None
    benchmark: str | None
    preset: str | None
    oversubscribed: bool | None = None
    cores: int | None = None
    slurm_energy_j: float | None = None
    damaged: str | None = None  # an input file of this run that exists but cannot be used
    system: str = "unknown (no system.json)"  # ai500.system.fingerprint of its system.json

    @property
    def nodes(self) -> int | None:
        return (self.summary or {}).get("nodes")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def reached(self) -> bool:
        return self.ok and bool((self.summary or {}).get("quality", {}).get("reached"))

    @property
    def kind(self) -> str | None:
        return (self.summary or {}).get("kind")


@dataclass
class Source:
    """A sweep (with its manifest) or a loose run directory given on the command line."""

    path: str
    manifest: dict | None
    runs: list[Run] = field(default_factory=list)


def _read_json(path: Path) -> tuple[Any, str | None]:
    """A JSON file's content, or None and why (absent, unreadable, not JSON)."""
    try:
        return json.loads(path.read_text()), None
    except FileNotFoundError:
        return None, f"no {path.name}"
    except (ValueError, OSError) as exc:
        return None, f"{path}: unreadable ({exc})"


def _number(value: Any) -> bool:
    return value is None or (type(value) in (int, float) and math.isfinite(value))


def _count(value: Any) -> bool:
    return type(value) is int and value >= 1


def _text(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _list_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or (isinstance(value, list) and all(map(check, value)))


def _epoch_row(row: Any) -> bool:
    return (isinstance(row, dict) and type(row.get("epoch")) is int
            and _number(row.get("slowest_rank_s")))


def _kernel_row(row: Any) -> bool:
    return (isinstance(row, dict) and all(_text(row.get(k)) for k in ("op", "size", "direction"))
            and _number(row.get("aggregate_gflops")))


# The summary fields the report reads and what each must be where present (JSON null included
# where the summary writes null for "none").
SUMMARY_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "schema_version": (lambda v: v == SUMMARY_SCHEMA_VERSION, f"{SUMMARY_SCHEMA_VERSION}"),
    "status": (lambda v: isinstance(v, str), "text"),
    "kind": (lambda v: v in ("training", "micro"), "'training' or 'micro'"),
    "benchmark": (_text, "text"), "preset": (_text, "text"),
    "ranks": (_count, "a whole number >= 1"),
    "global_batch_size": (lambda v: v is None or _count(v), "a whole number >= 1"),
    "time_to_quality_s": (_number, "a finite number"), "init_s": (_number, "a finite number"),
    "quality.reached": (lambda v: v is None or type(v) is bool, "true or false"),
    "quality.best": (_number, "a finite number"), "quality.target": (_number, "a finite number"),
    "quality.metric": (_text, "text"),
    "throughput.samples_per_s": (_number, "a finite number"),
    "throughput.per_rank_samples_per_s": (_list_of(_number), "a list of finite numbers"),
    "throughput.epochs_measured": (_list_of(lambda v: type(v) is int), "a list of whole numbers"),
    "throughput.method": (_text, "text"),
    "flops.flops_per_s": (_number, "a finite number"),
    "flops.valid_flops_per_s": (_number, "a finite number"), "flops.method": (_text, "text"),
    "energy.joules": (_number, "a finite number"),
    "energy.joules_to_quality": (_number, "a finite number"), "energy.method": (_text, "text"),
    "cost.node_hours_to_quality": (_number, "a finite number"),
    "cost.cost_to_quality": (_number, "a finite number"), "cost.currency": (_text, "text"),
    "cost.reason": (_text, "text"),
    "load_imbalance.median": (_number, "a finite number"),
    "load_imbalance.max": (_number, "a finite number"),
    "missing_or_failed_ranks": (lambda v: v is None or isinstance(v, dict), "an object"),
    "epochs": (_list_of(_epoch_row), "a list of {epoch, slowest_rank_s} rows"),
    "kernels": (_list_of(_kernel_row), "a list of {op, size, direction, aggregate_gflops} rows"),
    "peak.practical.aggregate_gflops": (_number, "a finite number"),
    "peak.theoretical.aggregate_gflops": (_number, "a finite number"),
}
MANIFEST_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "schema_version": (lambda v: v == MANIFEST_SCHEMA_VERSION, f"{MANIFEST_SCHEMA_VERSION}"),
    "benchmark": (lambda v: isinstance(v, str), "text"),
    "preset": (lambda v: isinstance(v, str), "text"),
    "mode": (lambda v: v in ("weak", "strong"), "'weak' or 'strong'"),
    "batch_rule": (lambda v: isinstance(v, dict), "an object"),
    "points": (lambda v: isinstance(v, list) and all(map(_point, v)),
               "a list of {name, run_dir, ranks, repeat, status} points"),
}
REQUIRED_MANIFEST = ("benchmark", "preset", "mode", "points")


def _point(point: Any) -> bool:
    return (isinstance(point, dict) and isinstance(point.get("name"), str)
            and isinstance(point.get("run_dir"), str) and point["run_dir"] != ""
            and _count(point.get("ranks")) and (point.get("repeat") is None
                                                or type(point["repeat"]) is int)
            and isinstance(point.get("status", ""), str)
            and all(type(point.get(k)) in (bool, type(None)) for k in ("oversubscribed",))
            and (point.get("cores") is None or _count(point["cores"])))


def check_fields(record: Any, fields: dict[str, tuple[Callable[[Any], bool], str]],
                 required: tuple[str, ...] = ()) -> str | None:
    """Why a JSON record does not have the fields' types (dotted names; absent ones are fine
    unless required), or None."""
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    for dotted, (check, expected) in fields.items():
        value: Any = record
        for key in dotted.split("."):
            if not isinstance(value, dict):
                return f"{dotted} is inside {value!r:.40}, expected an object"
            if key not in value:
                if dotted in required:
                    return f"no {dotted}"
                break
            value = value[key]
        else:
            if not check(value):
                return f"{dotted} is {value!r:.60}, expected {expected}"
    return None


def read_run(path: Path, source: str, name: str | None = None, ranks: int | None = None,
             repeat: int | None = None, point: dict | None = None) -> Run:
    """A run directory (and, from a sweep, its manifest entry) as a Run. A summary.json,
    config.json or slurm_energy.json that exists but cannot be used makes the run failed and
    damaged (the report names the file and the problem)."""
    damaged = None
    summary, problem = _read_json(path / "summary.json")
    why = check_fields(summary, SUMMARY_FIELDS) if summary is not None else None
    if why is not None:
        summary, problem = None, f"{path / 'summary.json'}: {why}"
    if summary is None and problem.startswith(str(path)):
        damaged = problem
    cfg, cfg_problem = _read_json(path / "config.json")
    if cfg is not None and check_fields(cfg, {"config": (lambda v: isinstance(v, dict), ""),
                                              "dist": (lambda v: isinstance(v, dict), "")}):
        cfg, cfg_problem = None, f"{path / 'config.json'}: not an ai500 run record"
    if cfg is None and cfg_problem.startswith(str(path)) and summary is None:
        damaged = damaged or cfg_problem
    run_cfg = (cfg or {}).get("config", {})
    benchmark = (summary or {}).get("benchmark") or run_cfg.get("benchmark")
    preset = (summary or {}).get("preset") or run_cfg.get("preset")
    if summary is not None:
        ranks = summary.get("ranks") or ranks
    elif cfg is not None and ranks is None and _count((cfg.get("dist") or {}).get("size")):
        ranks = cfg["dist"]["size"]
    status = "ok"
    if summary is None:
        status = "failed"
        if point is not None and point.get("status") == "submitted":
            problem = f"{problem} (batch job {point.get('job_id')} not finished, or it failed)"
    elif summary.get("status") != "ok":
        status = "failed"
        why = "; ".join(f"rank {r}: {w}" for r, w in (summary.get("missing_or_failed_ranks")
                                                       or {}).items())
        problem = f"summary status {summary.get('status')!r}" + (f" ({why})" if why else "")
    if point is not None and point.get("status") in ("failed", "interrupted", "pending"):
        # The sweep saw the launch fail (exit status, timeout) even where a summary exists.
        status = "failed"
        said = point.get("problem") or f"sweep point {point['status']}"
        problem = said if problem is None or problem in said else f"{said}; {problem}"
    slurm, slurm_problem = _read_json(path / "slurm_energy.json")
    joules = slurm.get("joules") if isinstance(slurm, dict) else None
    if slurm is None and slurm_problem.startswith(str(path)):
        damaged = damaged or slurm_problem
    elif slurm is not None and not (isinstance(slurm, dict) and _number(joules)):
        joules = None
        damaged = damaged or (f"{path / 'slurm_energy.json'}: "
                              + check_fields(slurm, {"joules": (_number, "a finite number")}))
    return Run(name=name or path.name, source=source, path=path, ranks=ranks, repeat=repeat,
               status=status, problem=problem if status != "ok" else None, summary=summary,
               benchmark=benchmark, preset=preset,
               oversubscribed=(point or {}).get("oversubscribed"),
               cores=(point or {}).get("cores"), slurm_energy_j=joules, damaged=damaged,
               system=fingerprint(read_system(path)))


def read_source(path: Path) -> Source:
    """A sweep directory (manifest.json) or a run directory (summary.json or config.json)."""
    manifest_path = path / "manifest.json"
    if manifest_path.exists():
        manifest, problem = _read_json(manifest_path)
        if manifest is None:
            raise ReportError(problem)
        if not isinstance(manifest, dict) or manifest.get("kind") != "ai500-sweep":
            raise ReportError(f"{manifest_path}: not an ai500 sweep manifest (no kind "
                              "'ai500-sweep')")
        why = check_fields(manifest, MANIFEST_FIELDS, REQUIRED_MANIFEST)
        if why is not None:
            raise ReportError(f"{manifest_path}: {why}")
        src = Source(str(path), manifest)
        for point in manifest["points"]:
            src.runs.append(read_run(path / point["run_dir"], str(path), point["name"],
                                     point["ranks"], point.get("repeat"), point))
        return src
    if (path / "summary.json").exists() or (path / "config.json").exists():
        return Source(str(path), None, [read_run(path, str(path))])
    if not path.is_dir():
        raise ReportError(f"{path}: no such directory")
    raise ReportError(f"{path}: neither a sweep directory (no manifest.json) nor a run directory "
                      "(no summary.json or config.json)")


def check_distinct(sources: list[Source]) -> None:
    """ReportError if one run would be counted twice: the same directory reached twice, or two
    directories holding the same run (one run_id, a copy)."""
    seen: dict[Any, str] = {}
    for run in (r for s in sources for r in s.runs):
        keys = [run.path.resolve()]
        if run.summary is not None and isinstance(run.summary.get("run_id"), str):
            keys.append(("run_id", run.summary["run_id"]))
        for key in keys:
            if key in seen:
                what = "the same run directory" if isinstance(key, Path) else \
                    f"the same run (run_id {key[1]})"
                raise ReportError(f"refusing to count a run twice: {seen[key]} and {run.path} "
                                  f"are {what}")
            seen[key] = str(run.path)


def _differ(what: str, values: dict[str, list[str]]) -> None:
    if len(values) > 1:
        detail = "; ".join(f"{k}: {', '.join(sorted(set(v))[:3])}" for k, v in sorted(values.items()))
        raise ReportError(f"refusing to merge runs of different {what} ({detail})")


def check_comparable(sources: list[Source], mode: str | None) -> tuple[str, str, str]:
    """(benchmark, preset, mode) shared by every input, or ReportError saying what differs."""
    runs = [r for s in sources for r in s.runs]
    found = {}
    for what, attr in (("benchmarks", "benchmark"), ("presets", "preset")):
        values: dict[str, list[str]] = {}
        for s in sources:
            if s.manifest is not None:
                values.setdefault(str(s.manifest.get(attr)), []).append(s.path)
        for r in runs:
            if getattr(r, attr) is not None:
                values.setdefault(str(getattr(r, attr)), []).append(str(r.path))
        _differ(what, values)
        if not values:
            damaged = next((r.damaged for r in runs if r.damaged), None)
            raise ReportError(f"no {attr} recorded in any input (no usable summary.json or "
                              "config.json" + (f"; {damaged})" if damaged else ")"))
        found[attr] = next(iter(values))
    benchmark, preset = found["benchmark"], found["preset"]
    modes: dict[str, list[str]] = {}
    for s in sources:
        if s.manifest is not None:
            modes.setdefault(s.manifest["mode"], []).append(s.path)
    if mode is not None:
        modes.setdefault(mode, []).append("--mode")
    _differ("scaling modes", modes)
    if not modes:
        if any(r.kind == "micro" for r in runs):
            return benchmark, preset, "weak"  # every rank times the same kernels
        raise ReportError("run directories alone do not say whether they are weak or strong "
                          "scaling: pass --mode weak|strong (or report a sweep directory)")
    mode = next(iter(modes))
    ok = [r for r in runs if r.ok and r.kind != "micro" and r.summary.get("global_batch_size")]
    if mode == "weak":
        batches = {}
        for r in ok:
            per_rank = per_rank_batch(r.summary["global_batch_size"], r.ranks)
            batches.setdefault(per_rank, []).append(r.name)
        _differ("per-rank batches (weak scaling keeps it fixed)", batches)
    else:
        batches = {}
        for r in ok:
            batches.setdefault(str(r.summary["global_batch_size"]), []).append(r.name)
        _differ("global batches (strong scaling keeps it fixed)", batches)
    return benchmark, preset, mode


def per_rank_batch(global_batch: int, ranks: int) -> str:
    """The per-rank batch (samples) as text: a whole number where the ranks divide the global
    batch, else about 6 significant figures."""
    value = global_batch / ranks
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def lookup(d: dict | None, *keys: str) -> Any:
    """The value of a JSON record at nested keys, or None where a key or an object is missing."""
    for key in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d
