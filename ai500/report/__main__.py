"""python -m ai500.report: see ai500.report.cli."""

import sys

from ai500.report.cli import main

sys.exit(main())
