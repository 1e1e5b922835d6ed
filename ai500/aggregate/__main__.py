"""python -m ai500.aggregate RUN_DIR (ai500/aggregate/cli.py)."""

import sys

from ai500.aggregate.cli import main

# Guarded: the aggregator's spawned trace readers import the main module (as __mp_main__).
if __name__ == "__main__":
    sys.exit(main())
