"""Reference convergence points (RCPs): how many epochs a benchmark needs to reach its quality
target, per preset and global batch, measured over >= 5 seeds and stored as data
(ai500/configs/references.yaml, or the file named by AI500_REFERENCES or a `path` argument).

An entry holds the epochs to target of every reference run (epochs trained up to and including the
first evaluation that reached the target: time_to_quality_epoch + 1, epochs being numbered from 0
and evaluated after each), the seeds, the metric and target they were measured against, the sweep
command and the dates of the runs, and the machine (ai500.system.fingerprint of a run's
system.json). Entries are written by

    python -m ai500.references add SWEEP_DIR [SWEEP_DIR ...] [--file PATH]

from finished seed sweeps (launch/sweep.py --seeds 5); nothing else writes them.

The rule a run is judged by (RULE; with E its epochs to target, R the reference's epochs):
- faster than the reference allows (suspicious) if E < min(R) - 1, i.e. more than one epoch
  below the fastest reference seed;
- slower than the reference's spread if E > max(R); a run that did not reach the target is slower
  if it trained more than max(R) epochs, else not judged ("not reached": it stopped early);
- within otherwise. Over several seeds at one N (the report) E is their olympic mean from 5 runs,
  else their median, with the not-reached rule of ai500.spread.
MLPerf HPC's own test (the olympic mean of a submission's epochs must not fall below the RCP mean
minus an allowed spread, that spread found by simulating resampled RCP runs) needs more reference
runs than 5 seeds to estimate; this rule asks only the reference's observed range.
A run whose benchmark, preset and global batch have no entry, or whose entry was measured against
another metric or target, says "no reference".
"""

from __future__ import annotations

import json
import math
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from ai500.config import read_yaml
from ai500.errors import Ai500Error, ConfigError
from ai500.spread import spread

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FILE = Path(__file__).resolve().parent / "configs" / "references.yaml"
ENV = "AI500_REFERENCES"
SCHEMA_VERSION = 1
SLACK_EPOCHS = 1  # how far below the fastest reference seed a run may be before it is suspicious
MIN_SEEDS = 5  # MLPerf HPC's RCPs come from at least this many runs
RULE = (f"faster (suspicious) if epochs to target < min(reference) - {SLACK_EPOCHS}; slower if > "
        "max(reference), or not reached after more than max(reference) epochs; within "
        "otherwise; over seeds the olympic mean from 5 runs, else the median, is judged")
VERDICTS = ("faster", "within", "slower", "not reached", "no reference", "unknown")
HEADER = """\
# Reference convergence points (ai500.references): epochs to target per benchmark, preset and
# global batch over >= 5 seeds, with the command, dates and machine that produced them.
# Written by `python -m ai500.references add SWEEP_DIR ...`; do not edit the numbers by hand.
"""


@dataclass(frozen=True)
class Reference:
    """One reference convergence point: a benchmark at a preset and global batch (samples)."""

    benchmark: str
    preset: str
    global_batch: int
    metric: str
    target: float
    higher_is_better: bool
    epochs: list[int]  # epochs to target, one per reference run, in seed order
    seeds: list[int]
    ranks: list[int]  # the rank counts the reference runs used
    command: str  # the sweep command line(s) that ran them
    date: str  # UTC dates of the runs (first to last)
    machine: str  # ai500.system.fingerprint of the runs' system.json
    added: str  # UTC date the entry was written
    sweeps: list[str]

    def figures(self) -> dict[str, Any]:
        """The entry with n, min, max and mean of its epochs, JSON-ready."""
        return {**asdict(self), "n": len(self.epochs), "min": min(self.epochs),
                "max": max(self.epochs), "mean": sum(self.epochs) / len(self.epochs)}


def references_path(path: Path | str | None = None) -> Path:
    """The references file: `path`, else $AI500_REFERENCES, else ai500/configs/references.yaml."""
    return Path(path or os.environ.get(ENV) or DEFAULT_FILE)


def display(path: Path) -> str:
    """A path as the summary and the report print it: relative to the checkout if inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _whole(value: Any) -> bool:
    return type(value) is int


def _entry(raw: Any, where: str) -> Reference:
    """One YAML entry as a Reference; ConfigError naming the entry and the field."""
    types = {"benchmark": str, "preset": str, "global_batch": int, "metric": str,
             "target": (int, float), "higher_is_better": bool, "epochs": list, "seeds": list,
             "ranks": list, "command": str, "date": str, "machine": str, "added": str,
             "sweeps": list}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of {', '.join(types)}")
    unknown = sorted(set(raw) - set(types))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}")
    for key, kind in types.items():
        value = raw.get(key)
        if key not in raw or not isinstance(value, kind) or (kind is int and type(value) is bool):
            raise ConfigError(f"{where}: {key} is {value!r:.40}, expected "
                              f"{getattr(kind, '__name__', 'a number')}")
    if not raw["epochs"] or not all(_whole(e) and e >= 1 for e in raw["epochs"]):
        raise ConfigError(f"{where}: epochs must be a non-empty list of whole numbers >= 1")
    if len(raw["seeds"]) != len(raw["epochs"]) or not all(map(_whole, raw["seeds"])):
        raise ConfigError(f"{where}: seeds must be whole numbers, one per entry of epochs")
    if raw["global_batch"] < 1 or not math.isfinite(raw["target"]):
        raise ConfigError(f"{where}: global_batch must be >= 1 and target finite")
    return Reference(**{**raw, "target": float(raw["target"])})


def load(path: Path | str | None = None) -> list[Reference]:
    """Every reference in the file (see references_path); ConfigError (one line) for a file that
    is missing, not YAML or holds a malformed entry."""
    where = references_path(path)
    data = read_yaml(where, f"references file {where}")
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION \
            or not isinstance(data.get("references"), list):
        raise ConfigError(f"references file {where}: expected schema_version: {SCHEMA_VERSION} "
                          "and a list `references`")
    refs = [_entry(raw, f"references file {where}, entry {i + 1}")
            for i, raw in enumerate(data["references"])]
    keys = [(r.benchmark, r.preset, r.global_batch) for r in refs]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise ConfigError(f"references file {where}: more than one entry for "
                          + "; ".join(f"{b} {p} global batch {g}" for b, p, g in twice))
    return refs


def find(refs: list[Reference], benchmark: str, preset: str, global_batch: int
         ) -> Reference | None:
    """The reference for a benchmark, preset and global batch, or None."""
    return next((r for r in refs if (r.benchmark, r.preset, r.global_batch)
                 == (benchmark, preset, global_batch)), None)


def judge(epochs: float | None, ref: Reference, epochs_completed: int | None = None) -> str:
    """The verdict (see RULE) for `epochs` to target (None: not reached, after
    `epochs_completed` epochs; for several runs: did not reach it, all after more than max)."""
    if epochs is None:
        slower = epochs_completed is not None and epochs_completed > max(ref.epochs)
        return "slower" if slower else "not reached"
    if epochs < min(ref.epochs) - SLACK_EPOCHS:
        return "faster"
    return "slower" if epochs > max(ref.epochs) else "within"


def explain(verdict: str, epochs: float | None, ref: Reference) -> str:
    """One line saying why a verdict was given."""
    lo, hi, n = min(ref.epochs), max(ref.epochs), len(ref.epochs)
    span = f"reference {lo}–{hi} epochs over {n} seeds"
    shown = "not reached" if epochs is None else f"{epochs:g} epochs"
    return {
        "faster": f"faster than the reference allows ({shown} < {lo} - {SLACK_EPOCHS}; {span}): "
                  "suspicious",
        "within": f"within the reference ({shown}; {span})",
        "slower": f"slower than the reference's spread ({shown} > {hi}; {span})" if epochs
                  is not None else f"slower than the reference's spread (not reached after more "
                  f"than {hi} epochs; {span})",
        "not reached": f"target not reached, after no more than the reference's slowest seed "
                       f"({span}): not judged",
    }[verdict]


@dataclass(frozen=True)
class Lookup:
    """The reference that applies to a configuration, or the verdict and reason there is none."""

    reference: Reference | None
    verdict: str | None  # "no reference" or "unknown" (file unreadable) where reference is None
    why: str | None
    file: str  # the references file, as display() prints it


def lookup_reference(benchmark: str | None, preset: str | None, global_batch: int | None,
                     quality: dict | None, path: Path | str | None = None) -> Lookup:
    """The reference for a run's configuration; one measured against another metric or target
    does not apply, and an unreadable file gives verdict "unknown" (never an exception: a run's
    summary or a report is not worth failing for it)."""
    where = references_path(path)
    try:
        refs = load(where)
    except Ai500Error as exc:
        return Lookup(None, "unknown", f"references unreadable: {exc}", display(where))
    ref = find(refs, str(benchmark), str(preset), global_batch or 0)
    if ref is None:
        return Lookup(None, "no reference", f"no reference for {benchmark} {preset} at global "
                      f"batch {global_batch} (in {display(where)})", display(where))
    q = quality or {}
    if (q.get("metric"), q.get("target"), q.get("higher_is_better")) != (
            ref.metric, ref.target, ref.higher_is_better):
        return Lookup(None, "no reference", f"no reference for this target: the reference for "
                      f"{benchmark} {preset} at global batch {global_batch} was measured to "
                      f"{ref.metric} {'>=' if ref.higher_is_better else '<='} {ref.target:g}, "
                      f"this run's target is {q.get('metric')} {q.get('target')}", display(where))
    return Lookup(ref, None, None, display(where))


def epochs_to_target(summary: dict) -> int | None:
    """A run summary's epochs to target (time_to_quality_epoch + 1), None if not reached."""
    epoch = summary.get("time_to_quality_epoch")
    reached = (summary.get("quality") or {}).get("reached")
    return epoch + 1 if reached and type(epoch) is int else None


def compare_run(summary: dict, path: Path | str | None = None) -> dict[str, Any]:
    """A run summary's `reference` section: its epochs to target against the reference for its
    benchmark, preset and global batch (verdict and message, see RULE, and the numbers)."""
    found = lookup_reference(summary.get("benchmark"), summary.get("preset"),
                             summary.get("global_batch_size"), summary.get("quality"), path)
    epochs, ref = epochs_to_target(summary), found.reference
    section: dict[str, Any] = {"rule": RULE, "file": found.file, "epochs_to_target": epochs,
                               "epochs_completed": summary.get("epochs_completed")}
    if ref is None:
        return {"verdict": found.verdict, "message": found.why, **section, "reference": None}
    verdict = judge(epochs, ref, summary.get("epochs_completed"))
    return {"verdict": verdict, "message": explain(verdict, epochs, ref), **section,
            "reference": ref.figures()}


# --- python -m ai500.references add --------------------------------------------------------------

def _sweep_runs(sweep: Path) -> tuple[dict, list[tuple[dict, dict, Path]]]:
    """A finished sweep's manifest and (point, summary, run dir) for every point; ConfigError if
    it is not a sweep or a point has no usable summary."""
    try:
        manifest = json.loads((sweep / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{sweep}: no readable manifest.json ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != "ai500-sweep":
        raise ConfigError(f"{sweep}: manifest.json is not an ai500 sweep manifest")
    runs = []
    for point in manifest.get("points") or []:
        run_dir = sweep / point["run_dir"]
        try:
            summary = json.loads((run_dir / "summary.json").read_text())
        except (OSError, ValueError):
            raise ConfigError(f"{run_dir}: no readable summary.json (point status "
                              f"{point.get('status')!r}); a reference needs every run") from None
        if summary.get("status") != "ok" or point.get("status") != "ok":
            raise ConfigError(f"{run_dir}: the run did not complete (status "
                              f"{summary.get('status')!r}); a reference needs every run")
        runs.append((point, summary, run_dir))
    return manifest, runs


def _sweep_command(manifest: dict) -> str:
    command = manifest.get("command")
    if isinstance(command, list):
        return shlex.join(map(str, command))
    first = (manifest.get("points") or [{}])[0].get("command")  # older manifests
    return ("not recorded (sweep from before manifests held it); first run: "
            + shlex.join(map(str, first or [])))


def _dates(stamps: list[str]) -> str:
    """The UTC dates of ISO time stamps: one date, or the first to the last."""
    days = sorted({s[:10] for s in stamps})
    if not days:
        return "not recorded"
    return days[0] if len(days) == 1 else f"{days[0]} to {days[-1]}"


def entries_from_sweeps(sweeps: list[Path], min_seeds: int = MIN_SEEDS,
                        today: str | None = None) -> list[Reference]:
    """One Reference per (benchmark, preset, global batch) found in finished seed sweeps;
    ConfigError if a run failed or missed the target, or a batch has fewer than `min_seeds`
    distinct seeds."""
    from ai500.system import fingerprint, read_system

    groups: dict[tuple, list[tuple[dict, dict, Path, dict]]] = {}
    for sweep in sweeps:
        manifest, runs = _sweep_runs(sweep)
        for point, summary, run_dir in runs:
            q = summary.get("quality") or {}
            key = (summary["benchmark"], summary["preset"], summary["global_batch_size"],
                   q.get("metric"), q.get("target"), q.get("higher_is_better"))
            groups.setdefault(key, []).append((point, summary, run_dir, manifest))
    if not groups:
        raise ConfigError(f"no runs in {', '.join(map(str, sweeps))}")
    refs = []
    for (benchmark, preset, batch, metric, target, higher), runs in sorted(groups.items(),
                                                                            key=str):
        what = f"{benchmark} {preset} at global batch {batch}"
        missed = [str(run_dir) for _, s, run_dir, _ in runs if epochs_to_target(s) is None]
        if missed:
            raise ConfigError(f"{what}: {len(missed)} of {len(runs)} run(s) did not reach the "
                              f"target ({missed[0]}...); a reference needs every seed to reach it")
        runs.sort(key=lambda r: (r[1].get("seed", 0), r[0].get("repeat") or 0))
        seeds = [int(s.get("seed", 0)) for _, s, _, _ in runs]
        if len(set(seeds)) < min_seeds:
            raise ConfigError(f"{what}: {len(set(seeds))} distinct seed(s) ({seeds}); a reference "
                              f"needs >= {min_seeds} (launch/sweep.py --seeds {min_seeds})")
        machines = sorted({fingerprint(read_system(d)) for _, _, d, _ in runs})
        commands = list(dict.fromkeys(_sweep_command(m) for _, _, _, m in runs))
        refs.append(Reference(
            benchmark=benchmark, preset=preset, global_batch=batch, metric=metric,
            target=float(target), higher_is_better=bool(higher),
            epochs=[epochs_to_target(s) for _, s, _, _ in runs], seeds=seeds,
            ranks=sorted({int(s["ranks"]) for _, s, _, _ in runs}),
            command=" ; ".join(commands),
            date=_dates([p["started_utc"] for p, _, _, _ in runs if p.get("started_utc")]),
            machine=" | ".join(machines), added=today or time.strftime("%Y-%m-%d", time.gmtime()),
            sweeps=sorted({str(d.parent.resolve()) for _, _, d, _ in runs})))
    return refs


def write(refs: list[Reference], path: Path | str | None = None) -> Path:
    """Write the references file (header comment, then the entries sorted by key), atomically."""
    where = references_path(path)
    body = {"schema_version": SCHEMA_VERSION,
            "references": [asdict(r) for r in sorted(refs, key=lambda r: (
                r.benchmark, r.preset, r.global_batch))]}
    tmp = where.with_name(where.name + ".tmp")
    tmp.write_text(HEADER + yaml.safe_dump(body, sort_keys=False, width=100))
    os.replace(tmp, where)
    return where


def add(sweeps: list[Path], path: Path | str | None = None, min_seeds: int = MIN_SEEDS
        ) -> list[Reference]:
    """Add (or replace, same benchmark, preset and global batch) the references measured by
    finished seed sweeps, and write the file; returns the new entries."""
    new = entries_from_sweeps(sweeps, min_seeds)
    keys = {(r.benchmark, r.preset, r.global_batch) for r in new}
    kept = [r for r in load(path) if (r.benchmark, r.preset, r.global_batch) not in keys]
    write(kept + new, path)
    return new


def main(argv: list[str] | None = None) -> int:
    """python -m ai500.references add SWEEP_DIR ... [--file PATH] [--min-seeds K] | show."""
    from ai500.config import OneLineArgumentParser

    p = OneLineArgumentParser(prog="python -m ai500.references",
                              description="Reference convergence points: show them, or add them "
                              "from finished seed sweeps (launch/sweep.py --seeds 5).")
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("add", help="add/replace entries from finished seed sweep directories")
    a.add_argument("sweeps", nargs="+", type=Path, help="sweep directories (manifest.json)")
    s = sub.add_parser("show", help="print the entries")
    for q in (a, s):
        q.add_argument("--file", type=Path, default=None,
                       help=f"references file [default: ${ENV} or {display(DEFAULT_FILE)}]")
    a.add_argument("--min-seeds", type=int, default=MIN_SEEDS,
                   help=f"distinct seeds a reference needs [default: {MIN_SEEDS}]")
    try:
        args = p.parse_args(argv)
        if args.command == "add":
            for ref in add(args.sweeps, args.file, args.min_seeds):
                f = ref.figures()
                print(f"{ref.benchmark} {ref.preset} global batch {ref.global_batch}: epochs to "
                      f"{ref.metric} {ref.target:g} {ref.epochs} over seeds {ref.seeds} (min "
                      f"{f['min']}, max {f['max']}, mean {f['mean']:.3g}, median "
                      f"{spread(ref.epochs)['median']:g})")
            print(f"written: {references_path(args.file)}")
        else:
            refs = load(args.file)
            for ref in refs:
                print(f"{ref.benchmark} {ref.preset} global batch {ref.global_batch}: "
                      f"{ref.epochs} epochs to {ref.metric} {ref.target:g} ({ref.date}, "
                      f"{ref.machine})")
            if not refs:
                print(f"no references in {references_path(args.file)}")
    except Ai500Error as exc:
        print(f"ai500.references: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
