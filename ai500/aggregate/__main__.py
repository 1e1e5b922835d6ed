"""python -m ai500.aggregate RUN_DIR (ai500/aggregate/cli.py)."""

import sys

from ai500.aggregate.cli import main

sys.exit(main())
