"""Rank-0 merge of one run's traces into summary.json, summary.h5 and mllog.txt
(python -m ai500.aggregate RUN_DIR).

Every figure is computed from the merged traces, never extrapolated from one rank (DESIGN §5;
each definition is stated where it is computed). A run with a missing, unfinished or failed rank
gets status "failed" and no time-to-quality claim. A resumed run (`--resume`) is summarised over
its segments (segments.py: which epochs count, and their two clocks).

    load.py      config.json and the trace files, each checked: load_run
    segments.py  a resumed run's segments, joined along the final model's lineage
    merge.py     the traces merged into [rank, epoch] arrays: merge_run, MergedRun
    sections/    one module per summary section (quality and time to quality, throughput,
                 FLOPS, energy, cost, time accounting, checkpoints, epochs)
    summary.py   summarise: the sections assembled into the summary's dict
    table.py     format_summary: the table rank 0 prints
    write.py     aggregate: load, summarise, write summary.json/.h5 and mllog.txt
    cli.py       main (python -m ai500.aggregate)

Micro benchmarks are summarised by ai500/micro/summary.py; what both kinds of summary share is
in ai500/summary_common.py.
"""

from ai500.aggregate.cli import main
from ai500.aggregate.summary import summarise
from ai500.aggregate.table import format_summary
from ai500.aggregate.write import aggregate, write_summary

__all__ = ["aggregate", "format_summary", "main", "summarise", "write_summary"]
