"""python -m ai500.report SWEEP_DIR [SWEEP_DIR | RUN_DIR ...] --out DIR: a scaling report.

Reads sweep manifests (launch/sweep.py) and run summaries (ai500.aggregate) and writes, under --out,
report.md, report.html (self-contained: plots embedded as data URIs), report.json and the plots as PNG.

It refuses (one line, exit status 2) to merge runs that are not comparable: a different benchmark,
preset or scaling mode, or a batch that breaks the mode's rule (weak: one per-rank batch; strong: one
global batch). Runs that failed or did not reach the quality target are listed, never dropped.

Definitions (DESIGN §5), stated in the report too:
- X(N): throughput of an N-rank run, samples/s (global samples / the slowest rank's time over the
  measured epochs, as in the run summary).
- Weak scaling (per-rank batch fixed): weak-scaling efficiency E(N) = X(N) / (N · X(1)). The ratio
  X(N) / X(1) is shown beside it as the scaled throughput ratio; it is not called a speedup.
- Strong scaling (global batch fixed): speedup S(N) = T(1) / T(N) and strong-scaling efficiency
  E(N) = S(N) / N, with T = time to quality when every rank count reached the target, otherwise the
  time per epoch (the mean of the slowest rank's epoch times over the measured epochs); the report
  says which.
- Where the smallest N is not 1, N0 replaces 1: E(N) = X(N)·N0 / (N·X(N0)), S(N) = T(N0) / T(N),
  E(N) = S(N)·N0 / N.
- Repeats: median with [min–max]; with 5 or more repeats also the MLPerf-style olympic mean (the
  best and the worst dropped, the rest averaged). Scaling figures use the medians.
- Energy is read from the run summary's `energy` section (joules, method, joules_to_quality); where a
  run has none the report says n/a, and it never makes a number up. Valid FLOPS likewise comes from
  `flops.valid_flops_per_s`.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import math
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPORT_SCHEMA_VERSION = 1
SUMMARY_SCHEMA_VERSION = 1  # ai500.aggregate's and ai500.micro.summary's
MANIFEST_SCHEMA_VERSION = 1  # launch/sweep.py's
PLOTS = ("throughput", "efficiency", "time_to_quality", "energy_to_quality")
CSS = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
       "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #bbb;"
       "padding:3px 8px;text-align:right}th{background:#eee}td:first-child{text-align:left}"
       "img{max-width:48%;margin:4px}")


class ReportError(Exception):
    """Inputs that cannot make one report; printed as one line."""


# ---------------------------------------------------------------------------------------------
# Reading sweeps and runs


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
               cores=(point or {}).get("cores"), slurm_energy_j=joules, damaged=damaged)


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
            batches.setdefault(_fmt_batch(r.summary["global_batch_size"] / r.ranks), []).append(r.name)
        _differ("per-rank batches (weak scaling keeps it fixed)", batches)
    else:
        batches = {}
        for r in ok:
            batches.setdefault(str(r.summary["global_batch_size"]), []).append(r.name)
        _differ("global batches (strong scaling keeps it fixed)", batches)
    return benchmark, preset, mode


def _fmt_batch(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


# ---------------------------------------------------------------------------------------------
# Statistics


def olympic_mean(values: list[float]) -> float:
    """MLPerf-style olympic mean: drop the best and the worst result (one each), average the rest."""
    if len(values) < 3:
        raise ValueError(f"an olympic mean needs at least 3 values, got {len(values)}")
    ordered = sorted(values)
    return statistics.fmean(ordered[1:-1])


def stats(values: list[float | None]) -> dict | None:
    """Median, min, max over repeats (and the olympic mean from 5 repeats); None without data."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return None
    return {"n": len(vals), "median": statistics.median(vals), "min": min(vals), "max": max(vals),
            "olympic_mean": olympic_mean(vals) if len(vals) >= 5 else None, "values": vals}


def _median(s: dict | None) -> float | None:
    return None if s is None else s["median"]


def epoch_time(summary: dict) -> float | None:
    """Mean of the slowest rank's training time per measured epoch (seconds)."""
    measured = summary.get("throughput", {}).get("epochs_measured") or []
    epochs = {e["epoch"]: e for e in summary.get("epochs", [])}
    times = [epochs[e]["slowest_rank_s"] for e in measured if e in epochs]
    return statistics.fmean(times) if times else None


def _get(d: dict | None, *keys: str) -> Any:
    for key in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


# ---------------------------------------------------------------------------------------------
# Per-N tables


def training_points(runs: list[Run], mode: str) -> tuple[list[dict], dict]:
    """One row per rank count with the repeats summarised, plus the scaling figures' basis."""
    rows = []
    for n in sorted({r.ranks for r in runs if r.ranks}):
        at_n = [r for r in runs if r.ranks == n]
        ok = [r for r in at_n if r.ok]
        reached = [r for r in ok if r.reached]
        s = [r.summary for r in ok]
        energies = [_get(x, "energy") or {} for x in s]
        over = [r.oversubscribed for r in at_n if r.oversubscribed is not None]
        rows.append({
            "ranks": n, "runs": len(at_n), "ok": len(ok), "failed": len(at_n) - len(ok),
            "reached": len(reached),
            "global_batch_size": sorted({x["global_batch_size"] for x in s
                                         if x.get("global_batch_size")}),
            "time_to_quality_s": stats([r.summary.get("time_to_quality_s") for r in reached]),
            "time_per_epoch_s": stats([epoch_time(x) for x in s]),
            "throughput": stats([_get(x, "throughput", "samples_per_s") for x in s]),
            "throughput_per_rank": stats([statistics.fmean(v) if v else None for v in
                                          (_get(x, "throughput", "per_rank_samples_per_s")
                                           for x in s)]),
            "flops_per_s": stats([_get(x, "flops", "flops_per_s") for x in s]),
            "valid_flops_per_s": stats([_get(x, "flops", "valid_flops_per_s") for x in s]),
            "energy_j": stats([e.get("joules") for e in energies]),
            "energy_methods": sorted({str(e["method"]) for e in energies if e.get("method")}),
            "energy_to_quality_j": stats([(_get(r.summary, "energy") or {}).get("joules_to_quality")
                                          for r in reached]),
            "slurm_energy_j": stats([r.slurm_energy_j for r in ok]),
            **cost_figures(reached),
            **time_figures(reached),
            "load_imbalance_median": stats([_get(x, "load_imbalance", "median") for x in s]),
            "load_imbalance_max": max((v for v in (_get(x, "load_imbalance", "max") for x in s)
                                       if v is not None), default=None),
            "best_quality": stats([_get(x, "quality", "best") for x in s]),
            "init_s": stats([x.get("init_s") for x in s]),
            "oversubscribed": any(over) if over else None,
            "cores": next((r.cores for r in at_n if r.cores), None),
        })
    basis = scaling(rows, mode)
    return rows, basis


def cost_figures(reached: list[Run]) -> dict:
    """A rank count's cost columns from its runs that reached the target: the summaries' cost to
    quality, its currency, and why it is n/a (no price set, for one) where a run has none."""
    costs = [_get(r.summary, "cost") or {} for r in reached]
    return {"node_hours_to_quality": stats([c.get("node_hours_to_quality") for c in costs]),
            "cost_to_quality": stats([c.get("cost_to_quality") for c in costs]),
            "cost_currency": sorted({str(c["currency"]) for c in costs
                                     if c.get("currency") and c.get("cost_to_quality") is not None}),
            "cost_reasons": sorted({str(c.get("reason") or "no cost in the run summary")
                                    for c in costs if c.get("cost_to_quality") is None})
            or ([] if reached else ["no run reached the quality target"])}


ACCOUNTED = ("total_s", "training_s", "evaluation_s", "checkpoint_s", "other_s", "other_share")


def time_figures(reached: list[Run]) -> dict:
    """A rank count's time to quality taken apart (the summaries' time_accounting.to_quality):
    training, evaluation, checkpoint and other seconds, and other's share, over the runs that
    reached the target."""
    parts = [_get(r.summary, "time_accounting", "to_quality") or {} for r in reached]
    return {f"ttq_{key}": stats([p.get(key) for p in parts]) for key in ACCOUNTED}


def scaling(rows: list[dict], mode: str) -> dict:
    """Fill in ideal throughput, ratios, speedup and efficiency (in place); return the basis."""
    with_x = [r for r in rows if _median(r["throughput"]) is not None]
    base = with_x[0] if with_x else None
    info: dict[str, Any] = {"baseline_ranks": base["ranks"] if base else None, "basis": None}
    for row in rows:
        row.update(ideal_throughput=None, throughput_ratio=None, speedup=None, efficiency=None)
    if base is None:
        return info
    n0, x0 = base["ranks"], _median(base["throughput"])
    for row in rows:
        x = _median(row["throughput"])
        row["ideal_throughput"] = x0 * row["ranks"] / n0
        if x is not None:
            row["throughput_ratio"] = x / x0
            if mode == "weak":
                row["efficiency"] = x * n0 / (row["ranks"] * x0)
    if mode == "weak":
        info["basis"] = "throughput"
        return info
    ran = [r for r in rows if r["ok"]]
    if ran and all(_median(r["time_to_quality_s"]) is not None for r in ran):
        key, info["basis"] = "time_to_quality_s", "time to quality"
    else:
        key, info["basis"] = "time_per_epoch_s", "time per epoch"
    t0 = _median(base[key])
    info["baseline_time_s"] = t0
    for row in rows:
        t = _median(row[key])
        if t0 is not None and t:
            row["speedup"] = t0 / t
            row["efficiency"] = row["speedup"] * n0 / row["ranks"]
    return info


def micro_points(runs: list[Run]) -> tuple[list[dict], list[dict]]:
    """Micro runs: per N the peaks, and per kernel the aggregate GFLOPS (median over repeats)."""
    ns = sorted({r.ranks for r in runs if r.ranks})
    rows, kernels = [], {}
    for n in ns:
        at_n = [r for r in runs if r.ranks == n]
        ok = [r for r in at_n if r.ok]
        rows.append({
            "ranks": n, "runs": len(at_n), "ok": len(ok), "failed": len(at_n) - len(ok),
            "kernels": stats([len(r.summary.get("kernels", [])) for r in ok]),
            "practical_peak_gflops": stats([_get(r.summary, "peak", "practical", "aggregate_gflops")
                                            for r in ok]),
            "theoretical_peak_gflops": stats([_get(r.summary, "peak", "theoretical",
                                                   "aggregate_gflops") for r in ok]),
        })
        for r in ok:
            for k in r.summary.get("kernels", []):
                label = (k.get("op"), k.get("size"), k.get("direction"))
                kernels.setdefault(label, {}).setdefault(n, []).append(k.get("aggregate_gflops"))
    table = []
    for (op, size, direction), by_n in kernels.items():
        entry = {"op": op, "size": size, "direction": direction,
                 "aggregate_gflops": {n: stats(v) for n, v in by_n.items()}}
        known = [n for n in ns if _median(entry["aggregate_gflops"].get(n)) is not None]
        if len(known) >= 2:
            n0, n1 = known[0], known[-1]
            g0, g1 = _median(entry["aggregate_gflops"][n0]), _median(entry["aggregate_gflops"][n1])
            entry["efficiency_at_max"] = {"ranks": n1, "value": g1 * n0 / (n1 * g0) if g0 else None}
        table.append(entry)
    return rows, table


# ---------------------------------------------------------------------------------------------
# Formatting


def num(value: float | None, digits: int = 4) -> str:
    """A number for a table cell: n/a for missing, else about `digits` significant figures."""
    if value is None:
        return "n/a"
    if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
        return f"{value:.{digits - 1}e}"
    if abs(value) >= 10 ** digits:
        return f"{value:.0f}"
    return f"{value:.{digits}g}"


def cell(s: dict | None, scale: float = 1.0) -> str:
    """median [min–max] over repeats (just the value for one), plus the olympic mean from 5."""
    if s is None:
        return "n/a"
    text = num(s["median"] / scale)
    if s["n"] > 1:
        text += f" [{num(s['min'] / scale)}–{num(s['max'] / scale)}]"
    if s.get("olympic_mean") is not None:
        text += f" o.m. {num(s['olympic_mean'] / scale)}"
    return text


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]]
    note: str = ""

    def markdown(self) -> str:
        lines = [f"### {self.title}", ""]
        if self.note:
            lines += [self.note, ""]
        lines.append("| " + " | ".join(self.headers) + " |")
        lines.append("|" + "|".join("---" for _ in self.headers) + "|")
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in self.rows]
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                       for row in self.rows)
        note = f"<p>{html.escape(self.note)}</p>" if self.note else ""
        return (f"<h3>{html.escape(self.title)}</h3>{note}<table><thead><tr>{head}</tr></thead>"
                f"<tbody>{body}</tbody></table>")


def _over(row: dict) -> str:
    if row.get("oversubscribed") is None:
        return "unknown"
    return f"yes (> {row['cores']} cores)" if row["oversubscribed"] else "no"


def training_tables(rows: list[dict], info: dict, mode: str, metric: str) -> list[Table]:
    n0 = info["baseline_ranks"]
    one = "1" if n0 in (None, 1) else f"N0={n0}"
    tables = [Table(
        "Time to quality",
        ["N", "runs ok/total", "reached target", "time to quality s", f"best {metric}",
         "initialisation s", "oversubscribed"],
        [[str(r["ranks"]), f"{r['ok']}/{r['runs']}", f"{r['reached']}/{r['ok']}",
          cell(r["time_to_quality_s"]), cell(r["best_quality"]), cell(r["init_s"]), _over(r)]
         for r in rows],
        "Time to quality is over the runs that reached the target only (n/a: none did).")]
    if mode == "weak":
        tables.append(Table(
            "Throughput and weak scaling",
            ["N", "global batch", "throughput samples/s", "per rank samples/s",
             f"ideal N·X({one}) samples/s", f"X(N)/X({one})", "weak-scaling efficiency E(N)"],
            [[str(r["ranks"]), ", ".join(map(str, r["global_batch_size"])) or "n/a",
              cell(r["throughput"]), cell(r["throughput_per_rank"]), num(r["ideal_throughput"]),
              num(r["throughput_ratio"], 3), num(r["efficiency"], 3)] for r in rows],
            f"E(N) = X(N) / (N · X({one})), X = median throughput over repeats. "
            f"X(N)/X({one}) is the scaled throughput ratio, not a speedup."))
    else:
        key = "time_to_quality_s" if info["basis"] == "time to quality" else "time_per_epoch_s"
        tables.append(Table(
            "Speedup and strong scaling",
            ["N", "per-rank batch", f"T(N) = {info['basis']} s", f"speedup S(N) = T({one})/T(N)",
             "strong-scaling efficiency S(N)/N", "throughput samples/s",
             f"ideal N·X({one}) samples/s"],
            [[str(r["ranks"]), ", ".join(_fmt_batch(g / r["ranks"]) for g in
                                          r["global_batch_size"]) or "n/a",
              cell(r[key]), num(r["speedup"], 3), num(r["efficiency"], 3), cell(r["throughput"]),
              num(r["ideal_throughput"])] for r in rows],
            f"T = {info['basis']} (median over repeats)"
            + ("" if info["basis"] == "time to quality" else
               ", because not every N reached the quality target: the mean of the slowest "
               "rank's training time per measured epoch") + "."))
    tables.append(Table(
        "Where the time to quality went",
        ["N", "time to quality s", "training s", "evaluation s", "checkpoint s", "other s",
         "other %"],
        [[str(r["ranks"]), *(cell(r[f"ttq_{key}"]) for key in ACCOUNTED[:-1]),
          cell(r["ttq_other_share"], 0.01)] for r in rows],
        "From run_start to the end of the evaluation that reached the target, on the job's "
        "timeline: training (all ranks' steps), evaluation, checkpoints written before it, and "
        "other: everything else (trace flushes, waits at the barriers between epochs, on a "
        "resumed run the interruptions), which should be near 0. Runs that reached the target."))
    tables.append(Table(
        "FLOPS", ["N", "FLOPS (GFLOP/s)", "Valid FLOPS (GFLOP/s)"],
        [[str(r["ranks"]), cell(r["flops_per_s"], 1e9), cell(r["valid_flops_per_s"], 1e9)]
         for r in rows],
        "FLOPS = training FLOPs per sample × throughput. Valid FLOPS (HPC AI500 v2) = FLOPS × "
        "(achieved / target quality)^n, as recorded by the run (n/a where the run has none)."))
    tables.append(Table(
        "Energy", ["N", "energy J", "method", "energy to quality J", "Slurm sacct J (cross-check)"],
        [[str(r["ranks"]), cell(r["energy_j"]), ", ".join(r["energy_methods"]) or "n/a",
          cell(r["energy_to_quality_j"]), cell(r["slurm_energy_j"])] for r in rows],
        "From each run summary's energy section; `estimated` is a model (CPU time × watts per "
        "core), not a measurement. n/a: the runs recorded no energy."))
    tables.append(Table(
        "Cost", ["N", "node-hours to quality", "cost to quality", "why n/a"],
        [[str(r["ranks"]), cell(r["node_hours_to_quality"]),
          cell(r["cost_to_quality"]) + "".join(f" {c}" for c in r["cost_currency"]),
          "; ".join(r["cost_reasons"])] for r in rows],
        "Nodes × time to quality (hours) × price per node-hour (the runs' system config), over "
        "the runs that reached the target. There is no price unless a site sets one (--system)."))
    tables.append(Table(
        "Load imbalance", ["N", "median (slowest/fastest rank)", "max"],
        [[str(r["ranks"]), cell(r["load_imbalance_median"]), num(r["load_imbalance_max"])]
         for r in rows],
        "Slowest / fastest rank's training time per measured epoch (1.0 = perfectly balanced)."))
    return tables


def runs_table(runs: list[Run], several_sources: bool) -> Table:
    headers = ["run", "N", "repeat", "status", "reached", "time to quality s", "samples/s",
               "problem"] + (["source"] if several_sources else [])
    rows = []
    for r in sorted(runs, key=lambda r: (r.ranks or 0, r.repeat or 0, r.name)):
        s = r.summary or {}
        ttq = num(s.get("time_to_quality_s")) if r.reached else "-"
        if r.reached and s.get("resumed"):  # the MLPerf clock ran through the interruption
            ttq += (f" (resumed: wall clock, not a valid MLPerf result; training time "
                    f"{num(s.get('time_to_quality_training_s'))})")
        row = [r.name, str(r.ranks or "?"), str(r.repeat or "-"), r.status,
               ("yes" if r.reached else "no") if r.ok and r.kind != "micro" else "-", ttq,
               num(_get(s, "throughput", "samples_per_s")) if r.ok else "-", r.problem or ""]
        rows.append(row + ([r.source] if several_sources else []))
    return Table("Every run", headers, rows)


def micro_tables(rows: list[dict], kernels: list[dict]) -> list[Table]:
    ns = [r["ranks"] for r in rows]
    tables = [Table(
        "Micro benchmark runs",
        ["N", "runs ok/total", "kernels", "practical peak GFLOPS (aggregate)",
         "theoretical peak GFLOPS (aggregate)"],
        [[str(r["ranks"]), f"{r['ok']}/{r['runs']}", cell(r["kernels"]),
          cell(r["practical_peak_gflops"]), cell(r["theoretical_peak_gflops"])] for r in rows],
        "Micro benchmarks time kernels, not training: no time to quality, energy to quality or "
        "speedup. Every rank times the same kernels at once (weak scaling by construction).")]
    tables.append(Table(
        "Aggregate GFLOPS by kernel vs N",
        ["op", "size", "direction", *[f"N={n}" for n in ns], "efficiency at largest N"],
        [[str(k["op"]), str(k["size"]), str(k["direction"]),
          *[cell(k["aggregate_gflops"].get(n)) for n in ns],
          num((k.get("efficiency_at_max") or {}).get("value"), 3)] for k in kernels],
        "Aggregate GFLOPS: the sum of FLOPs over ranks / the slowest rank's median time (run "
        "summary). Efficiency = G(Nmax)·N0 / (Nmax·G(N0))."))
    return tables


# ---------------------------------------------------------------------------------------------
# Plots


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=100)
    ax.set_xscale("log", base=2)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_xlabel("ranks N")
    return plt, fig, ax


def _plain_numbers(ax) -> None:
    """Label a log y axis with plain numbers (major and minor ticks), not powers of ten."""
    from matplotlib.ticker import FuncFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def _series(rows: list[dict], key: str, scale: float = 1.0):
    pts = [(r["ranks"], r[key]) for r in rows if r.get(key) is not None]
    xs = [n for n, _ in pts]
    if pts and isinstance(pts[0][1], dict):
        med = [s["median"] / scale for _, s in pts]
        err = [[m - s["min"] / scale for m, (_, s) in zip(med, pts)],
               [s["max"] / scale - m for m, (_, s) in zip(med, pts)]]
        return xs, med, err
    return xs, [v / scale for _, v in pts], None


def _save(plt, fig, ax, out: Path, name: str) -> str:
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / f"{name}.png"
    fig.savefig(path)
    plt.close(fig)
    return path.name


def make_plots(rows: list[dict], info: dict, mode: str, title: str, out: Path) -> tuple[dict, dict]:
    """PNG plots under `out`; returns ({plot: file name}, {plot: why skipped})."""
    for name in PLOTS:  # a plot from an earlier report into the same directory must not linger
        (out / f"{name}.png").unlink(missing_ok=True)
    from matplotlib.ticker import NullLocator

    files, notes = {}, {}
    ns = [r["ranks"] for r in rows]

    def ticks(ax):
        ax.set_xticks(ns)
        ax.set_xticklabels([str(n) for n in ns])
        ax.xaxis.set_minor_locator(NullLocator())

    xs, ys, err = _series(rows, "throughput")
    if xs:
        plt, fig, ax = _figure()
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label="measured (median, min–max)")
        ideal = [(r["ranks"], r["ideal_throughput"]) for r in rows if r["ideal_throughput"]]
        ax.plot([n for n, _ in ideal], [v for _, v in ideal], "k--", label="ideal N·X(N0)/N0")
        ax.set_yscale("log")
        _plain_numbers(ax)
        ax.set_ylabel("throughput, samples/s")
        ax.set_title(f"{title}: throughput", fontsize=10)
        ticks(ax)
        files["throughput"] = _save(plt, fig, ax, out, "throughput")
    else:
        notes["throughput"] = "no successful run with a throughput"

    xs, ys, _ = _series(rows, "efficiency")
    if xs:
        plt, fig, ax = _figure()
        label = ("weak: E(N) = X(N)/(N·X(N0)/N0)" if mode == "weak" else
                 f"strong: S(N)·N0/N, T = {info['basis']}")
        ax.plot(xs, ys, marker="o", label=label)
        ax.axhline(1.0, color="k", ls="--", label="ideal")
        ax.set_ylim(0, max(1.1, max(ys) * 1.1))
        ax.set_ylabel("parallel efficiency")
        ax.set_title(f"{title}: {mode}-scaling efficiency", fontsize=10)
        ticks(ax)
        files["efficiency"] = _save(plt, fig, ax, out, "efficiency")
    else:
        notes["efficiency"] = "no efficiency (no successful runs)"

    for key, name, ylabel in (("time_to_quality_s", "time_to_quality", "time to quality, s"),
                              ("energy_to_quality_j", "energy_to_quality", "energy to quality, J")):
        xs, ys, err = _series(rows, key)
        if not xs:
            notes[name] = ("no run reached the quality target" if key == "time_to_quality_s" else
                           "no run recorded energy to quality")
            continue
        plt, fig, ax = _figure()
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label="reached runs (median, min–max)")
        if mode == "strong" and key == "time_to_quality_s":
            ax.plot(xs, [ys[0] * xs[0] / n for n in xs], "k--", label="ideal T(N0)·N0/N")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title}: {ylabel.split(',')[0]}", fontsize=10)
        ticks(ax)
        files[name] = _save(plt, fig, ax, out, name)
    return files, notes


# ---------------------------------------------------------------------------------------------
# The report


def build(paths: list[Path], mode: str | None = None) -> dict:
    """Everything the report says, as a JSON-ready dict (no files written)."""
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
        "batch_rules": sorted({_get(s.manifest, "batch_rule", "rule") for s in sources
                               if _get(s.manifest, "batch_rule", "rule")}),
        "oversubscribed": {"ranks": over, "cores": cores,
                           "known": any(r.oversubscribed is not None for r in runs)},
        "runs": [{"name": r.name, "source": r.source, "run_dir": str(r.path), "ranks": r.ranks,
                  "repeat": r.repeat, "status": r.status, "reached": r.reached if r.ok else None,
                  "problem": r.problem, "oversubscribed": r.oversubscribed,
                  "time_to_quality_s": (r.summary or {}).get("time_to_quality_s"),
                  "throughput": _get(r.summary, "throughput", "samples_per_s")} for r in runs],
        "failed": [{"name": r.name, "ranks": r.ranks, "run_dir": str(r.path), "problem": r.problem}
                   for r in runs if not r.ok],
        "damaged": [r.damaged for r in runs if r.damaged],
        "not_reached": [{"name": r.name, "ranks": r.ranks, "run_dir": str(r.path),
                         "best": _get(r.summary, "quality", "best"),
                         "target": _get(r.summary, "quality", "target")}
                        for r in runs if r.ok and r.kind != "micro" and not r.reached],
        "definitions": {
            "throughput": _get(first, "throughput", "method"),
            "time_to_quality": first.get("time_to_quality_definition"),
            "flops": _get(first, "flops", "method"),
            "load_imbalance": _get(first, "load_imbalance", "definition"),
            "repeats": "median [min–max] over repeats; from 5 repeats also the olympic mean "
            "(best and worst dropped); scaling figures use the medians",
        },
        "quality": {k: _get(first, "quality", k) for k in ("metric", "target", "higher_is_better")},
    }
    if kind == "micro":
        rows, kernels = micro_points(runs)
        report.update(points=rows, kernels=kernels, scaling={"baseline_ranks": None, "basis": None})
    else:
        rows, info = training_points(runs, mode)
        report.update(points=rows, scaling=info)
        report["definitions"]["scaling"] = (
            "weak scaling (per-rank batch fixed): efficiency E(N) = X(N) / (N·X(1)), X = throughput"
            if mode == "weak" else
            "strong scaling (global batch fixed): speedup S(N) = T(1)/T(N), efficiency S(N)/N, "
            f"T = {info['basis']}")
    report["_runs"] = runs  # not serialised
    return report


def _intro(report: dict) -> list[str]:
    mode = report["mode"]
    lines = [
        (f"Benchmark **{report['benchmark']}**, preset **{report['preset']}**, "
         f"**{mode} scaling**, from {', '.join(f'`{s}`' for s in report['sources'])}."),
        "",
        ("Weak scaling keeps the per-rank batch fixed, so the problem grows with N; the figure of "
         "merit is the weak-scaling efficiency E(N) = X(N) / (N · X(1)), X = throughput."
         if mode == "weak" else
         "Strong scaling keeps the global batch (the problem) fixed and divides it among the ranks; "
         "the speedup is S(N) = T(1) / T(N) and the strong-scaling efficiency is S(N) / N "
         f"(T = {report['scaling'].get('basis')})."),
    ]
    for rule in report["batch_rules"]:
        lines += ["", f"Batch rule: {rule}."]
    over = report["oversubscribed"]
    if over["ranks"]:
        lines += ["", (f"**Oversubscribed:** N = {', '.join(map(str, over['ranks']))} ran more "
                       f"ranks than the node's {', '.join(map(str, over['cores']))} cores (mpirun "
                       "--oversubscribe --bind-to none): those points measure ranks time-sharing "
                       "cores, not scaling.")]
    elif over["known"]:
        lines += ["", (f"No point was oversubscribed (ranks ≤ "
                       f"{', '.join(map(str, over['cores']))} cores per node).")]
    else:
        lines += ["", "Oversubscription unknown (no sweep manifest, or ranks placed by Slurm)."]
    return lines


def _lists(report: dict) -> list[tuple[str, list[str]]]:
    failed = [f"`{f['name']}` (N={f['ranks']}): {f['problem']}" for f in report["failed"]]
    missed = [f"`{f['name']}` (N={f['ranks']}): best {num(f['best'])}, target {f['target']}"
              for f in report["not_reached"]]
    damaged = [("Damaged input files (what they hold is left out)",
                report["damaged"])] if report["damaged"] else []
    return [("Failed runs", failed or ["none"]),
            ("Runs that did not reach the quality target", missed or ["none"]), *damaged]


def render(report: dict, out: Path) -> dict[str, Path]:
    """Write the plots, report.md, report.html and report.json under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    runs = report.pop("_runs")
    title = f"{report['benchmark']} ({report['preset']}) {report['mode']}"
    if report["kind"] == "micro":
        tables = micro_tables(report["points"], report["kernels"])
        files, notes = {}, {p: "not drawn for micro benchmarks (see the GFLOPS table)"
                            for p in PLOTS}
    else:
        tables = training_tables(report["points"], report["scaling"], report["mode"],
                                 report["quality"].get("metric") or "quality")
        files, notes = make_plots(report["points"], report["scaling"], report["mode"], title, out)
    tables.append(runs_table(runs, len(report["sources"]) > 1))
    report["plots"] = {"files": files, "skipped": notes}
    report["tables"] = [{"title": t.title, "headers": t.headers, "rows": t.rows, "note": t.note}
                        for t in tables]
    defs = [(k, v) for k, v in report["definitions"].items() if v]

    md = [f"# ai500 scaling report: {title}", "", *_intro(report), ""]
    md += [t.markdown() for t in tables[:-1]]
    for heading, items in _lists(report):
        md += [f"### {heading}", "", *[f"- {i}" for i in items], ""]
    md += ["### Plots", ""]
    for name in PLOTS:
        md.append(f"![{name}]({files[name]})" if name in files else
                  f"- {name.replace('_', ' ')}: not drawn ({notes[name]})")
    md += ["", tables[-1].markdown(), "### Definitions", ""]
    md += [f"- **{k.replace('_', ' ')}**: {v}" for k, v in defs]
    (out / "report.md").write_text("\n".join(md) + "\n")

    def para(text: str) -> str:
        escaped = html.escape(text)
        while "**" in escaped:
            escaped = escaped.replace("**", "<b>", 1).replace("**", "</b>", 1)
        return escaped.replace("`", "")

    h = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
         f"<title>ai500 scaling report: {html.escape(title)}</title><style>",
         CSS,
         "</style></head><body>", f"<h1>ai500 scaling report: {html.escape(title)}</h1>"]
    h += [f"<p>{para(line)}</p>" for line in _intro(report) if line]
    h += [t.html() for t in tables[:-1]]
    for heading, items in _lists(report):
        h.append(f"<h3>{html.escape(heading)}</h3><ul>"
                 + "".join(f"<li>{para(i)}</li>" for i in items) + "</ul>")
    h.append("<h3>Plots</h3>")
    for name in PLOTS:
        if name in files:
            data = base64.b64encode((out / files[name]).read_bytes()).decode("ascii")
            h.append(f"<img alt='{name}' src='data:image/png;base64,{data}'>")
        else:
            h.append(f"<p>{html.escape(name.replace('_', ' '))}: not drawn "
                     f"({html.escape(notes[name])})</p>")
    h.append(tables[-1].html())
    h.append("<h3>Definitions</h3><ul>" + "".join(
        f"<li><b>{html.escape(k.replace('_', ' '))}</b>: {html.escape(str(v))}</li>"
        for k, v in defs) + "</ul></body></html>")
    (out / "report.html").write_text("\n".join(h) + "\n")
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return {"md": out / "report.md", "html": out / "report.html", "json": out / "report.json",
            **{k: out / v for k, v in files.items()}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m ai500.report",
        description="Weak/strong scaling report (Markdown, self-contained HTML, JSON, PNG plots) "
        "from sweep directories (launch/sweep.py) and/or run directories.")
    p.add_argument("paths", nargs="+", type=Path, help="sweep directories or run directories")
    p.add_argument("--out", type=Path, required=True, help="directory for the report files")
    p.add_argument("--mode", choices=("weak", "strong"), default=None,
                   help="scaling mode of run directories given without a sweep manifest")
    args = p.parse_args(argv)
    try:
        report = build(args.paths, args.mode)
    except ReportError as exc:
        print(f"ai500.report: error: {exc}", file=sys.stderr)
        return 2
    try:
        files = render(report, args.out)
    except OSError as exc:
        print(f"ai500.report: error: --out {args.out}: cannot write the report "
              f"({exc.strerror or exc})", file=sys.stderr)
        return 1
    for table in report["tables"][:2]:
        print(Table(**table).markdown())
    n_failed, n_missed = len(report["failed"]), len(report["not_reached"])
    if n_failed or n_missed:
        print(f"{n_failed} run(s) failed, {n_missed} did not reach the target (listed in the report)")
    print(f"report: {files['md']}, {files['html']}, {files['json']}")
    if report["damaged"]:
        more = len(report["damaged"]) - 1
        print(f"ai500.report: error: {report['damaged'][0]}"
              + (f" (and {more} more damaged input file(s))" if more else "")
              + "; the report lists it", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
