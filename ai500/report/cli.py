"""python -m ai500.report SWEEP_DIR [SWEEP_DIR | RUN_DIR ...] --out DIR: a scaling report.

Reads sweep manifests (launch/sweep.py) and run summaries (ai500.aggregate) and writes, under --out,
report.md, report.html, report.json and the plots as PNG. Inputs that cannot make one report end it
with one line and exit status 2; an --out that cannot be written, or a damaged input file (the
report lists it), with exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ai500.report.contents import build
from ai500.report.inputs import ReportError
from ai500.report.render import render
from ai500.report.tables import Table


def main(argv: list[str] | None = None) -> int:
    """Build and write the report; print its first two tables. Exit status 0, 1 (--out not
    writable, or a damaged input file) or 2 (inputs that cannot make one report)."""
    p = argparse.ArgumentParser(
        prog="python -m ai500.report",
        description="Weak/strong scaling report (Markdown, self-contained HTML, JSON, PNG plots) "
        "from sweep directories (launch/sweep.py) and/or run directories.")
    p.add_argument("paths", nargs="+", type=Path, help="sweep directories or run directories")
    p.add_argument("--out", type=Path, required=True, help="directory for the report files")
    p.add_argument("--mode", choices=("weak", "strong"), default=None,
                   help="scaling mode of run directories given without a sweep manifest")
    p.add_argument("--references", type=Path, default=None,
                   help="reference convergence points file [default: $AI500_REFERENCES or "
                   "ai500/configs/references.yaml]")
    args = p.parse_args(argv)
    try:
        report = build(args.paths, args.mode, args.references)
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
