"""Golden outputs: a fixed weak-scaling sweep of real resnet ci runs (1 and 2 ranks) and a micro
run, checked into tests/golden/ with the summaries and the report the code wrote from them. The
aggregator and the report must reproduce them byte for byte (plots excepted), so restructuring
their code cannot change a figure unnoticed (mllog.txt is compared without the mllog.py line
numbers MLPerf's format records). Made by tests/golden/README.md's commands."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from conftest import ROOT

from ai500 import aggregate
from ai500 import report as rpt

GOLDEN = ROOT / "tests" / "golden"
PLACE = "<GOLDEN>"  # the directory the expected files were written from, in their text


def run_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("config.json"))


@pytest.fixture
def copy(tmp_path) -> Path:
    where = tmp_path / "golden"
    shutil.copytree(GOLDEN, where)
    return where


def test_the_golden_set_is_there():
    assert len(run_dirs(GOLDEN)) == 3


def without_source_lines(mllog: str) -> str:
    """An mllog's text without the logger's record of which line of mllog.py wrote each entry
    (MLPerf's format keeps it; it moves with every edit of that file, not with any figure)."""
    return re.sub(r'"file": "[^"]*", "lineno": \d+', '"file": F, "lineno": L', mllog)


def test_summaries_and_mllog_are_reproduced_byte_for_byte(copy):
    for run in run_dirs(copy):
        summary, mllog = (run / "summary.json").read_bytes(), (run / "mllog.txt").read_text()
        for name in ("summary.json", "summary.h5", "mllog.txt"):
            (run / name).unlink(missing_ok=True)
        aggregate.aggregate(run)
        assert (run / "summary.json").read_bytes() == summary, f"{run.name}/summary.json changed"
        assert without_source_lines((run / "mllog.txt").read_text()) == without_source_lines(
            mllog), f"{run.name}/mllog.txt changed"


def test_report_is_reproduced_byte_for_byte(copy):
    out = copy / "report-now"
    assert rpt.main([str(copy / "resnet-weak"), "--out", str(out)]) == 0
    for name in ("report.json", "report.md"):
        now = (out / name).read_text().replace(str(copy), PLACE)
        assert now == (GOLDEN / "expected" / name).read_text(), f"{name} changed"
