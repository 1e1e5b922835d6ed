"""Rewrite the golden summaries, mllogs and the expected report from the checked-in traces
(see README.md beside this file): for changes that mean to change those outputs."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from ai500 import aggregate, report

GOLDEN = Path(__file__).resolve().parent
PLACE = "<GOLDEN>"


def main() -> int:
    for record in sorted(GOLDEN.rglob("config.json")):
        aggregate.aggregate(record.parent)
        (record.parent / "summary.h5").unlink()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report"
        if report.main([str(GOLDEN / "resnet-weak"), "--out", str(out)]) != 0:
            return 1
        (GOLDEN / "expected").mkdir(exist_ok=True)
        for name in ("report.json", "report.md"):
            text = (out / name).read_text().replace(str(GOLDEN), PLACE)
            (GOLDEN / "expected" / name).write_text(text)
        shutil.rmtree(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
