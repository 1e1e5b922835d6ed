"""python -m ai500.aggregate RUN_DIR: (re)write a run directory's summary and print its table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ai500.aggregate.table import format_summary
from ai500.aggregate.write import aggregate, describe_failure
from ai500.errors import Ai500Error


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 for a summary of status ok, 1 for a failed one or an error (one line on
    stderr)."""
    parser = argparse.ArgumentParser(prog="python -m ai500.aggregate",
                                     description="Merge a run directory's per-rank traces into "
                                     "summary.json and summary.h5 and print the summary table.")
    parser.add_argument("run_dir", help="run directory (holds config.json and trace-rank*.h5)")
    args = parser.parse_args(argv)
    try:
        summary = aggregate(Path(args.run_dir))
    except Ai500Error as exc:
        print(f"ai500: error: {exc}", file=sys.stderr)
        return 1
    print(format_summary(summary))
    if summary["status"] != "ok":
        print(f"ai500: error: {describe_failure(Path(args.run_dir), summary)} "
              "(summary.json says failed)", file=sys.stderr)
        return 1
    return 0
