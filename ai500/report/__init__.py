"""The scaling report: many runs → weak/strong scaling tables, plots, Markdown, HTML and JSON.

inputs reads and checks sweeps and runs (and refuses to merge what is not comparable), points
computes the per-N figures, tables and plots present them, contents gathers what the report says,
render writes it, cli is python -m ai500.report.
"""

from ai500.report.cli import main
from ai500.report.contents import build
from ai500.report.inputs import ReportError
from ai500.report.points import olympic_mean, stats
from ai500.report.render import render
from ai500.report.tables import num

__all__ = ["ReportError", "build", "main", "num", "olympic_mean", "render", "stats"]
